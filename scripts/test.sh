#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine: installs what the tests need,
# then lint, type check and pytest. Extra arguments go to pytest.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ensure_debs mosquitto mosquitto-clients curl openssl postgresql nginx chromium
ensure_venv hub,test
cd "$ROOT"

echo "== ruff"
"$VENV/bin/ruff" check src tests benchmarks
echo "== mypy"
"$VENV/bin/mypy" src
if [ $# -eq 0 ]; then
    # The endpoint runs compiled; its tests also run on the plain sources, as
    # an OTAHUB_PURE_PYTHON=1 install would run them.
    echo "== pytest tests/mqtt, otahub.mqtt as plain Python"
    pure="$(mktemp -d)"
    tar -C src --exclude='*.so' --exclude=__pycache__ -cf - otahub | tar -C "$pure" -xf -
    OTAHUB_PURE_PYTHON=1 PYTHONPATH="$pure" "$VENV/bin/pytest" -q -p no:cacheprovider tests/mqtt
    rm -rf "$pure"
fi
echo "== pytest"
exec "$VENV/bin/pytest" "$@"
