"""Files only the node's own user may read, and files that are whole or absent.

A node's data directory holds its log (every command ever replicated), its
vote and, later, its identity and snapshots: another local user must not
read them, and must not be able to change them behind the node's back. So
everything here is created with explicit modes (0700 directories, 0600
files), set with chmod after creation because the umask the node was
started with could otherwise widen or narrow them.

A file written with write_file_atomically() survives a crash whole or not at
all: it is written under a temporary name next to its final one, fsynced,
renamed over it, and the directory is fsynced so the rename itself is
durable. The temporary name is fixed (TMP_SUFFIX appended), so a crashed
write's leftover is overwritten by the next one; callers must not write the
same path from two places at once (each file here has one owner).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600
TMP_SUFFIX = ".tmp"


def write_all(fd: int, data: bytes) -> None:
    """os.write until all of `data` is written (a write may be partial)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def fsync_dir(directory: str | os.PathLike[str]) -> None:
    """Make the directory's entries (created, renamed, removed names) durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_private_dir(path: str | os.PathLike[str]) -> None:
    """`mkdir -p`, every directory it creates 0700; an existing `path` with
    group or other bits is tightened to its owner's bits (data directories
    made by older versions). Parents that already exist are left as they
    are: they may be shared on purpose. A created directory's parent is
    fsynced, so the directory survives a crash.

    Safe to run from several processes at once (a node's actors all call it)."""
    path = Path(os.path.abspath(path))
    missing: list[Path] = []
    ancestor = path
    while not ancestor.exists():
        missing.append(ancestor)
        if ancestor.parent == ancestor:
            break
        ancestor = ancestor.parent
    for directory in reversed(missing):
        try:
            os.mkdir(directory, PRIVATE_DIR_MODE)
        except FileExistsError:  # another process made it meanwhile: tightened below, if it is `path`
            continue
        os.chmod(directory, PRIVATE_DIR_MODE)  # the umask may have taken the owner's bits
        fsync_dir(directory.parent)
    st = os.stat(path)
    if not stat.S_ISDIR(st.st_mode):
        raise NotADirectoryError(f"{path} exists and is not a directory")
    if st.st_mode & 0o077:
        os.chmod(path, stat.S_IMODE(st.st_mode) & ~0o077)


def write_file_atomically(
    path: str | os.PathLike[str], data: bytes, *, mode: int = PRIVATE_FILE_MODE, fsync: bool = True
) -> None:
    """Replace `path` with a file holding `data`, created with `mode` whatever
    the umask. With fsync=False the rename still makes the replacement
    atomic for readers and across a process crash, but not durable across
    a machine crash. On failure the old file (if any) is left as it was and
    the temporary file is removed."""
    path = Path(path)
    tmp = path.with_name(path.name + TMP_SUFFIX)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode)
        try:
            os.fchmod(fd, mode)  # the umask, or a crashed write's leftover with another mode
            write_all(fd, data)
            if fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    if fsync:
        fsync_dir(path.parent)


__all__ = [
    "PRIVATE_DIR_MODE",
    "PRIVATE_FILE_MODE",
    "TMP_SUFFIX",
    "fsync_dir",
    "make_private_dir",
    "write_all",
    "write_file_atomically",
]
