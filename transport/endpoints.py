"""Endpoint names: where a node's actors bind their ipc:// sockets.

A Unix socket path must fit in sockaddr_un.sun_path (108 bytes on Linux, 104
on macOS, NUL included), and libzmq refuses a longer one with ENAMETOOLONG.
A node's run directory can easily be deeper than that (a test's tmp_path, a
deployment under /srv/...), so a path that does not fit is replaced by a
short one under the temp dir, named by a hash of the long one: every process
of the node computes the same name from the same run directory, with no
coordination and nothing written to disk.
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
import tempfile

#: Longest usable Unix socket path, in bytes (sun_path minus the NUL).
IPC_PATH_MAX = 103 if sys.platform == "darwin" else 107

_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def ipc_endpoint(run_dir: str | os.PathLike[str], name: str) -> str:
    """`ipc://<run_dir>/<name>.ipc`, or `ipc://<tmp>/sandzmq-<hash>.ipc` when
    that path is too long for a Unix socket.

    The directory is not created here (the binder does it); the short form
    depends only on the absolute long path, so it is stable across processes
    and restarts but unique per run directory.
    """
    if not _NAME.fullmatch(name):
        raise ValueError(f"endpoint name must match {_NAME.pattern}: {name!r}")
    path = os.path.abspath(os.path.join(os.fspath(run_dir), f"{name}.ipc"))
    if len(os.fsencode(path)) <= IPC_PATH_MAX:
        return "ipc://" + path
    digest = hashlib.sha256(os.fsencode(path)).hexdigest()[:20]
    short = os.path.join(tempfile.gettempdir(), f"sandzmq-{digest}.ipc")
    if len(os.fsencode(short)) > IPC_PATH_MAX:  # a very long TMPDIR
        short = f"/tmp/sandzmq-{digest}.ipc"
    return "ipc://" + short


def ipc_path(endpoint: str) -> str | None:
    """The filesystem path of an ipc:// endpoint, None for other transports
    (and for Linux abstract-namespace names, which start with '@')."""
    if endpoint.startswith("ipc://") and not endpoint.startswith("ipc://@"):
        return endpoint[len("ipc://") :]
    return None
