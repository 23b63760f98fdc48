"""The distribution as a user installs it: sdist and wheel built from this
tree, installed offline into empty virtualenvs.

Both builds run with the C compiler out of reach (PATH without gcc): quick,
and the fallback to plain Python is what they show.
"""

from __future__ import annotations

import email.parser
import os
import subprocess
import sys
import tomllib
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from otahub.cli.hub_extra import HUB_MODULES
from tests.packaging.wheelhouse import build_wheelhouse

pytestmark = pytest.mark.packaging

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
WARNING = "WARNING: otahub.mqtt is installed as plain Python, not compiled"


@dataclass(frozen=True)
class Built:
    sdist: Path
    wheel: Path
    log: str
    wheelhouse: Path


def _clean_env(path: str) -> dict[str, str]:
    """No pip configuration of this machine (its indexes), no compiler choice."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "OTAHUB_", "CC"))}
    env.update(PATH=path, PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1")
    return env


def _requires_dist(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        meta = email.parser.BytesParser().parsebytes(archive.read(name))
    return meta.get_all("Requires-Dist") or []


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    """The sdist, and the wheel built from it, with only the virtualenv on PATH."""
    out = tmp_path_factory.mktemp("dist")
    # build copies the tree's own build/ leftovers into nothing: it builds from a
    # fresh sdist unpacked elsewhere, so what the sdist lacks, the wheel lacks
    result = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(ROOT)],
        env=_clean_env(str(VENV_BIN)),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    [sdist] = out.glob("otahub-*.tar.gz")
    [wheel] = out.glob("otahub-*.whl")
    build_requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]
    roots = [r for r in _requires_dist(wheel) if "extra ==" not in r]
    wheelhouse = build_wheelhouse(
        [*roots, *build_requires["requires"]], tmp_path_factory.mktemp("wheelhouse")
    )
    return Built(sdist, wheel, result.stdout + result.stderr, wheelhouse)


def _empty_venv(path: Path) -> Path:
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)
    return path / "bin" / "python"


def _pip_install(python: Path, built: Built, target: Path, *, path: str) -> str:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "-v",
            "--no-index",
            "--find-links",
            str(built.wheelhouse),
            str(target),
        ],
        env=_clean_env(path),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout + result.stderr


def test_the_wheel_carries_the_dashboard_templates_and_static_files(built: Built) -> None:
    with zipfile.ZipFile(built.wheel) as archive:
        names = set(archive.namelist())
    dashboard = "otahub/hub/dashboard"
    for name in ("templates/base.html", "templates/rollout_live.html", "static/htmx.min.js"):
        assert f"{dashboard}/{name}" in names
    for name in ("static/NOTICE", "static/htmx.LICENSE", "static/style.css", "static/live.js"):
        assert f"{dashboard}/{name}" in names


def test_agent_only_install_runs_the_agent_without_any_hub_dependency(
    built: Built, tmp_path: Path
) -> None:
    python = _empty_venv(tmp_path / "device")
    _pip_install(python, built, built.wheel, path=str(python.parent))
    env = _clean_env(f"{python.parent}:/usr/bin:/bin")

    importable = subprocess.run(
        [
            str(python),
            "-c",
            "import importlib.util, sys; "
            "print(' '.join(m for m in sys.argv[1:] if importlib.util.find_spec(m)))",
            *HUB_MODULES,
            "uvloop",
            "httptools",
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert importable.stdout.strip() == ""

    otahub = python.parent / "otahub"
    agent_help = subprocess.run(
        [str(otahub), "agent", "--help"], env=env, capture_output=True, text=True, timeout=60
    )
    assert agent_help.returncode == 0, agent_help.stderr
    assert "--config" in agent_help.stdout
    assert "Traceback" not in agent_help.stderr

    for command in (["--help"], ["device", "--help"], ["update", "--help"]):
        shown = subprocess.run(
            [str(otahub), *command], env=env, capture_output=True, text=True, timeout=60
        )
        assert shown.returncode == 0, (command, shown.stderr)

    serve = subprocess.run(
        [str(otahub), "serve"], env=env, capture_output=True, text=True, timeout=60
    )
    assert serve.returncode == 1
    assert serve.stderr.strip().splitlines() == [
        "otahub: the hub is not installed: pip install 'otahub[hub]' (missing: "
        + ", ".join(HUB_MODULES)
        + ")"
    ]


def test_install_without_a_compiler_gives_the_plain_python_package_with_one_warning(
    built: Built, tmp_path: Path
) -> None:
    # the build fixture ran without a compiler too: one warning for its one wheel
    assert built.log.count(WARNING) == 1
    assert built.wheel.name.endswith("-py3-none-any.whl")

    python = _empty_venv(tmp_path / "nocc")
    # from the sdist, in pip's isolated build environment (setuptools, wheel and
    # the pinned mypy from the wheelhouse), with nothing but the venv on PATH
    output = _pip_install(python, built, built.sdist, path=str(python.parent))
    assert output.count(WARNING) == 1, output[-3000:]
    assert "no C compiler" in output

    compiled = subprocess.run(
        [str(python), "-c", "import otahub.mqtt; print(otahub.mqtt.compiled())"],
        env=_clean_env(str(python.parent)),
        capture_output=True,
        text=True,
        check=True,
    )
    assert compiled.stdout.strip() == "False"


def test_a_failing_compiler_leaves_the_plain_python_package_with_one_warning(
    built: Built, tmp_path: Path
) -> None:
    # a compiler that is found but fails: mypyc's C does not compile
    env = _clean_env(f"{VENV_BIN}:/usr/bin:/bin")
    env["CC"] = "/bin/false"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-v",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--wheel-dir",
            str(tmp_path),
            str(built.sdist),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert output.count(WARNING) == 1, output[-3000:]
    assert "compiling failed" in output
    [wheel] = tmp_path.glob("otahub-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    assert "otahub/mqtt/codec.py" in names
    assert not [name for name in names if name.endswith(".so")]
