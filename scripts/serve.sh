#!/usr/bin/env bash
# Runs the hub on its embedded defaults on a fresh machine. Extra arguments
# go to `otahub serve`.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ensure_venv hub
cd "$ROOT"
exec "$VENV/bin/otahub" serve "$@"
