"""The wheel installs one package, ``managed_agents``, with its data files and the CLI entry point.

The wheel is built (``uv build --wheel``) from a copy of the working tree in a temporary
directory, so the build's ``build/`` and ``*.egg-info`` never land in the repository (a stale
``build/lib`` would leak deleted modules into later wheels).
"""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

import pytest

from tests.helpers import ROOT

PACKAGE = "managed_agents"
#: Names that must not be installed anywhere (the old top-level packages and repository folders).
FORBIDDEN_NAMES = {"workflows", "activities", "tests", "bench", "schemas", "deploy", "scripts", "worker.py"}
#: Not copied into the build directory: the virtualenv, VCS data, caches and build output.
_IGNORE = shutil.ignore_patterns(
    ".git", ".venv", "__pycache__", "*.pyc", ".mypy_cache", ".pytest_cache", ".ruff_cache", ".managed-agents",
    "build", "dist", "*.egg-info",
)  # fmt: skip


def _uv() -> str:
    local = Path(sys.executable).with_name("uv")
    found = str(local) if local.exists() else shutil.which("uv")
    if found is None:
        pytest.skip("uv is not installed")
    return found


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[zipfile.ZipFile]:
    src = tmp_path_factory.mktemp("src") / "project"
    shutil.copytree(ROOT, src, ignore=_IGNORE, symlinks=True)
    out = tmp_path_factory.mktemp("wheel")
    cmd = [_uv(), "build", "--wheel", "--out-dir", str(out), "--no-progress", str(src)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    if proc.returncode != 0:  # no index reachable: the build backend may still be in uv's cache
        proc = subprocess.run([*cmd, "--offline"], capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, f"uv build failed:\n{proc.stderr[-4000:]}"
    wheels = list(out.glob("*.whl"))
    assert len(wheels) == 1, wheels
    with zipfile.ZipFile(wheels[0]) as zf:
        yield zf


def _names(wheel: zipfile.ZipFile) -> list[str]:
    return [n for n in wheel.namelist() if not n.endswith("/")]


def _dist_info(wheel: zipfile.ZipFile) -> str:
    (dist_info,) = {n.split("/", 1)[0] for n in _names(wheel) if n.split("/", 1)[0].endswith(".dist-info")}
    return dist_info


def test_wheel_installs_only_the_managed_agents_package(wheel: zipfile.ZipFile) -> None:
    top = {PurePosixPath(n).parts[0] for n in _names(wheel)}
    assert top == {PACKAGE, _dist_info(wheel)}, f"unexpected top-level entries: {sorted(top)}"
    stray = sorted(n for n in _names(wheel) if FORBIDDEN_NAMES & set(PurePosixPath(n).parts))
    assert not stray, f"the wheel holds files that do not belong to the package: {stray}"
    assert not [n for n in _names(wheel) if "__pycache__" in n or n.endswith(".pyc")]
    top_level = wheel.read(f"{_dist_info(wheel)}/top_level.txt").decode().split()
    assert top_level == [PACKAGE]


def test_wheel_holds_every_module_of_the_package(wheel: zipfile.ZipFile) -> None:
    """Every source file of the package is installed, namespace packages (folders without an
    ``__init__.py``, such as ``_dreams``) included."""
    in_wheel = set(_names(wheel))
    source = sorted(
        p.relative_to(ROOT).as_posix() for p in (ROOT / PACKAGE).rglob("*.py") if "__pycache__" not in p.parts
    )
    missing = [p for p in source if p not in in_wheel]
    assert not missing, f"package modules missing from the wheel: {missing}"
    for module in (
        "managed_agents/__init__.py",
        "managed_agents/__main__.py",
        "managed_agents/_cli.py",
        "managed_agents/_workflows/session.py",
        "managed_agents/_activities/model.py",
        "managed_agents/_dreams/models.py",
        "managed_agents/testing/mock_claude.py",
    ):
        assert module in in_wheel


def test_wheel_declares_the_console_script(wheel: zipfile.ZipFile) -> None:
    entry_points = configparser.ConfigParser()
    entry_points.read_string(wheel.read(f"{_dist_info(wheel)}/entry_points.txt").decode())
    assert entry_points["console_scripts"]["managed-agents"] == "managed_agents._cli:main"
    assert "managed_agents/_cli.py" in wheel.namelist()
    assert b"\ndef main(" in wheel.read("managed_agents/_cli.py")


def test_wheel_holds_the_migrations_package_data(wheel: zipfile.ZipFile) -> None:
    names = set(_names(wheel))
    assert "managed_agents/_migrations/script.py.mako" in names
    assert "managed_agents/_migrations/env.py" in names
    versions = sorted(
        p.relative_to(ROOT).as_posix() for p in (ROOT / PACKAGE / "_migrations" / "versions").glob("r*.py")
    )
    assert versions, "no migration versions in the source tree?"
    assert set(versions) <= names, f"migration versions missing from the wheel: {sorted(set(versions) - names)}"
