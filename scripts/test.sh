#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine: installs what the tests need,
# then lint, type check and pytest. Extra arguments go to pytest.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ensure_debs mosquitto mosquitto-clients curl openssl postgresql nginx
ensure_venv test
cd "$ROOT"

echo "== ruff"
"$VENV/bin/ruff" check src tests benchmarks
echo "== mypy"
"$VENV/bin/mypy" src
echo "== pytest"
exec "$VENV/bin/pytest" "$@"
