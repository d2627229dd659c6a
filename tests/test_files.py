"""storage/files.py: private directories and atomically replaced files.

Real directories and files, real fsync. Each test sets a permissive umask
(0): the modes must not depend on the one the node happens to start with.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from sandzmq.storage import files
from sandzmq.storage.files import make_private_dir, write_file_atomically


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(autouse=True)
def open_umask() -> Iterator[None]:
    previous = os.umask(0)
    try:
        yield
    finally:
        os.umask(previous)


def test_make_private_dir_creates_missing_parents_0700(tmp_path: Path) -> None:
    target = tmp_path / "data" / "n1" / "wal"
    make_private_dir(target)
    assert target.is_dir()
    for path in (tmp_path / "data", tmp_path / "data" / "n1", target):
        assert mode(path) == 0o700, path
    make_private_dir(target)  # idempotent
    assert mode(target) == 0o700


def test_make_private_dir_tightens_an_existing_directory(tmp_path: Path) -> None:
    parent = tmp_path / "shared"
    parent.mkdir(0o755)
    old = parent / "n1"
    old.mkdir(0o775)
    make_private_dir(old)
    assert mode(old) == 0o700
    assert mode(parent) == 0o755  # only the directory asked for: a parent that existed is not ours to change


def test_make_private_dir_leaves_narrower_bits_alone(tmp_path: Path) -> None:
    narrow = tmp_path / "ro"
    narrow.mkdir(0o500)
    try:
        make_private_dir(narrow)
        assert mode(narrow) == 0o500
    finally:
        narrow.chmod(0o700)


def test_make_private_dir_refuses_a_file(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"")
    with pytest.raises(NotADirectoryError):
        make_private_dir(tmp_path / "f")


def test_write_file_atomically_is_0600_and_replaces(tmp_path: Path) -> None:
    path = tmp_path / "identity"
    write_file_atomically(path, b"one")
    assert path.read_bytes() == b"one" and mode(path) == 0o600
    write_file_atomically(path, b"two")
    assert path.read_bytes() == b"two" and mode(path) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["identity"]  # no temp file left


def test_write_file_atomically_does_not_inherit_a_stale_temp_files_mode(tmp_path: Path) -> None:
    path = tmp_path / "snapshot"
    stale = tmp_path / ("snapshot" + files.TMP_SUFFIX)
    stale.write_bytes(b"left by a crash")
    stale.chmod(0o666)
    write_file_atomically(path, b"data", fsync=False)
    assert path.read_bytes() == b"data" and mode(path) == 0o600
    assert not stale.exists()


def test_write_file_atomically_with_another_mode(tmp_path: Path) -> None:
    path = tmp_path / "public"
    write_file_atomically(path, b"x", mode=0o640)
    assert mode(path) == 0o640


def test_a_failed_write_leaves_the_old_file_and_no_temp_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "identity"
    write_file_atomically(path, b"old")

    def failing_fsync(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(files.os, "fsync", failing_fsync)
    with pytest.raises(OSError):
        write_file_atomically(path, b"new")
    monkeypatch.undo()
    assert path.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["identity"]
