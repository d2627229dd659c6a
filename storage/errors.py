"""Errors of the storage layer.

StorageError is deliberately not a sandzmq.SandzmqError: those are the answers
the public API gives to callers (SPEC 6); a storage error stops the log-store
actor and is reported by its supervisor. Importing sandzmq.errors here would
also pull the whole top-level package into the log-store process.
"""

from __future__ import annotations

import os


class StorageError(Exception):
    """The durable log cannot do what was asked (I/O failure, unusable state)."""


class WalCorruptError(StorageError):
    """A record that cannot be a torn tail is damaged: the log refuses to start.

    Recovery only repairs what a crash can produce (a partial last record);
    anything else means bytes that were once durable changed, and guessing
    past them could lose acknowledged entries or a vote. str() is one line
    naming the file, the byte offset and the problem.
    """

    def __init__(self, path: str | os.PathLike[str], offset: int, problem: str) -> None:
        self.path = os.fspath(path)
        self.offset = offset
        self.problem = problem
        message = (
            f"{self.path}: corrupt write-ahead log at byte offset {offset}: {problem}; "
            "the log refuses to start (restore this node's data directory, or remove the "
            "node from the cluster and re-add it empty)"
        )
        super().__init__(" ".join(message.splitlines()))


class LogCompactedError(IndexError):
    """Entries asked for are below the log's first index: a snapshot replaced them.

    An IndexError (what an out-of-range read always raised) so existing callers
    keep working; a leader that gets it sends the follower a snapshot instead.
    """

    def __init__(self, lo: int, first_index: int) -> None:
        self.lo = lo
        self.first_index = first_index
        super().__init__(
            f"entry {lo} is compacted: the log starts at index {first_index} (a snapshot covers what came before)"
        )
