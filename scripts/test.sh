#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine: installs what the tests need,
# then lint, type check and pytest. Extra arguments go to pytest instead of the
# default run.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ensure_debs mosquitto mosquitto-clients curl openssl postgresql nginx chromium
ensure_venv hub,test
cd "$ROOT"

echo "== ruff"
"$VENV/bin/ruff" check src tests benchmarks
echo "== mypy"
"$VENV/bin/mypy" src
# Most tests wait on hubs and devices in other processes, so two workers (a
# test file each at a time: files share module-scoped hubs) nearly halve the
# time on two cores. OTAHUB_TEST_WORKERS=0 runs everything in one process.
workers=(-n "${OTAHUB_TEST_WORKERS:-2}" --dist loadfile)
if [ $# -eq 0 ]; then
    # The endpoint runs compiled; its tests also run on the plain sources, as
    # an OTAHUB_PURE_PYTHON=1 install would run them.
    echo "== pytest tests/mqtt, otahub.mqtt as plain Python"
    pure="$(mktemp -d)"
    tar -C src --exclude='*.so' --exclude=__pycache__ -cf - otahub | tar -C "$pure" -xf -
    OTAHUB_PURE_PYTHON=1 PYTHONPATH="$pure" "$VENV/bin/pytest" -q -p no:cacheprovider "${workers[@]}" tests/mqtt
    rm -rf "$pure"
    set -- "${workers[@]}"
fi
echo "== pytest"
exec "$VENV/bin/pytest" "$@"
