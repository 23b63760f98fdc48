# Shared set-up for the project scripts: a virtualenv with otahub installed,
# and the Debian packages the tests and benchmarks drive.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${OTAHUB_VENV:-$ROOT/.venv}"

_as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# ensure_debs PKG...: install the Debian packages that are missing, without
# letting their maintainer scripts start system services (a system-wide
# mosquitto on port 1883 would collide with `otahub serve`).
ensure_debs() {
    local missing=()
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    echo "installing Debian packages: ${missing[*]}"
    local policy=/usr/sbin/policy-rc.d created=0
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' | _as_root tee "$policy" >/dev/null
        _as_root chmod +x "$policy"
        created=1
    fi
    _as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive _as_root apt-get install -y -qq --no-install-recommends "${missing[@]}"
    [ "$created" -eq 1 ] && _as_root rm -f "$policy"
    return 0
}

pick_python() {
    for candidate in python3.13 python3.12 python3.11 python3; do
        if command -v "$candidate" >/dev/null 2>&1 &&
            "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
            echo "$candidate"
            return 0
        fi
    done
    echo "otahub needs Python >= 3.11" >&2
    return 1
}

# ensure_build_tools PYTHON: the C compiler and Python headers the install
# compiles otahub.mqtt with (without them it installs plain Python, slower).
ensure_build_tools() {
    local py="$1"
    command -v apt-get >/dev/null 2>&1 || return 0
    local wanted=()
    command -v "$("$py" -c 'import sysconfig; print((sysconfig.get_config_var("CC") or "gcc").split()[0])')" \
        >/dev/null 2>&1 || wanted+=(gcc)
    # Debian's headers of this interpreter: python3-dev for python3, python3.12-dev for python3.12
    "$py" -c 'import pathlib, sys, sysconfig; sys.exit(not (pathlib.Path(sysconfig.get_paths()["include"]) / "Python.h").exists())' ||
        wanted+=("$(basename "$py")-dev")
    [ ${#wanted[@]} -eq 0 ] || ensure_debs "${wanted[@]}"
}

# extras_requirements EXTRAS: the requirements of pyproject.toml's extras
# (comma-separated), one a line, an extra naming otahub's own extras expanded.
extras_requirements() {
    "$VENV/bin/python" - "$ROOT/pyproject.toml" "$1" <<'PY'
import re, sys, tomllib
extras = tomllib.load(open(sys.argv[1], "rb"))["project"]["optional-dependencies"]
todo, seen = sys.argv[2].split(","), set()
while todo:
    extra = todo.pop()
    if extra in seen:
        continue
    seen.add(extra)
    for req in extras[extra]:
        own = re.fullmatch(r"otahub\[(.+)\]", req)
        if own:
            todo.extend(own.group(1).split(","))
        else:
            print(req)
PY
}

# ensure_venv EXTRAS: create the virtualenv and install otahub (editable)
# with the given extras (comma-separated: hub, test). otahub itself is built
# (compiling otahub.mqtt in place) again only when pyproject.toml, setup.py or
# a compiled source changed; other extras on a current build install only
# their requirements.
ensure_venv() {
    local extras="$1"
    local py
    py="$(pick_python)"
    case "${OTAHUB_PURE_PYTHON:-}" in "" | 0) ensure_build_tools "$py" ;; esac
    if [ ! -x "$VENV/bin/python" ]; then
        "$py" -m venv "$VENV" 2>/dev/null || {
            ensure_debs python3-venv
            "$py" -m venv "$VENV"
        }
    fi
    local built="$VENV/.otahub-built" stamp="$VENV/.otahub-installed-$extras"
    if [ ! -f "$built" ] || [ "$ROOT/pyproject.toml" -nt "$built" ] || [ "$ROOT/setup.py" -nt "$built" ] ||
        [ -n "$(find "$ROOT/src/otahub/mqtt" -name '*.py' ! -name __init__.py -newer "$built" -print -quit)" ]; then
        "$VENV/bin/python" -m pip install -q --upgrade pip
        "$VENV/bin/python" -m pip install -q -e "$ROOT[$extras]"
        touch "$built" "$stamp"
    elif [ ! -f "$stamp" ] || [ "$built" -nt "$stamp" ]; then
        local reqs
        mapfile -t reqs < <(extras_requirements "$extras")
        "$VENV/bin/python" -m pip install -q "${reqs[@]}"
        touch "$stamp"
    fi
}
