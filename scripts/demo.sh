#!/usr/bin/env bash
# Runs `otahub demo` on a fresh machine: a hub on free loopback ports and one
# agent per dialect, each updated end to end. Installs otahub with the hub
# extra only (no test tools). Extra arguments go to the demo.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ensure_venv hub
cd "$ROOT"
exec "$VENV/bin/otahub" demo "$@"
