"""Packaging (SPEC 2): an install puts one import package, `sandzmq`, into site-packages."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SOURCE_FOLDERS = [
    "actors",
    "benchmark",
    "cli",
    "node",
    "protocol",
    "raft",
    "replicator",
    "statemachines",
    "storage",
    "transport",
]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[zipfile.ZipFile]:
    out = tmp_path_factory.mktemp("wheel")
    # Built from a copy: setuptools keeps a build/ folder in the source tree,
    # whose leftovers (modules since moved or deleted) would end up in the
    # next wheel, and in the tree.
    source = tmp_path_factory.mktemp("source") / "sandzmq"
    shutil.copytree(
        REPO,
        source,
        ignore=shutil.ignore_patterns(
            ".git", ".venv", "build", "*.egg-info", "__pycache__", "data", "*.ipc", "results"
        ),
    )
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(source)],
        capture_output=True,
        text=True,
    )
    assert build.returncode == 0, build.stderr
    (path,) = out.glob("sandzmq-*.whl")
    with zipfile.ZipFile(path) as archive:
        yield archive


def test_wheel_has_only_the_sandzmq_package(wheel: zipfile.ZipFile) -> None:
    top = {name.split("/")[0] for name in wheel.namelist()}
    dist_info = {name for name in top if name.startswith("sandzmq-") and name.endswith(".dist-info")}
    assert len(dist_info) == 1
    assert top - dist_info == {"sandzmq"}


@pytest.mark.parametrize("folder", SOURCE_FOLDERS)
def test_source_folders_are_subpackages(wheel: zipfile.ZipFile, folder: str) -> None:
    assert f"sandzmq/{folder}/__init__.py" in wheel.namelist()


def test_wheel_carries_the_modules_and_the_console_script(wheel: zipfile.ZipFile) -> None:
    names = set(wheel.namelist())
    for module in [
        "sandzmq/__init__.py",
        "sandzmq/config.py",
        "sandzmq/statemachines/kv.py",
        "sandzmq/replicator/noop.py",
    ]:
        assert module in names
    (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
    scripts = wheel.read(entry_points).decode()
    assert "sandzmq = sandzmq.cli.main:main" in scripts
    assert scripts.count(" = ") == 1  # one console script


def test_source_folders_are_not_importable_at_top_level(tmp_path: Path) -> None:
    code = f"import importlib.util, sys; sys.exit(any(importlib.util.find_spec(n) for n in {SOURCE_FOLDERS!r}))"
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    # The check itself must be able to fail: from the repository root the folders are visible.
    visible = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True)
    assert visible.returncode == 1
