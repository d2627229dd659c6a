"""A StateMachine for the integration tests: it records every command it applies.

The node's apply actor imports it as "recording_sm:RecordingStateMachine"
(tests/cluster.py puts this folder on the node processes' PYTHONPATH), so it
must import nothing from the test suite and keep its state deterministic.

- apply(command) appends the command and returns its position (0-based) in
  the list: a client learns where its command landed, which lets a test check
  the order of concurrent writes, not only of sequential ones.
- query(b"all") -> the whole list, query(b"count") -> its length,
  query(b"tail:N") -> the last N commands.
- snapshot/restore: the list, msgpack'ed, so that a node restored from a
  snapshot answers exactly as one that applied every entry.
"""

from __future__ import annotations

from typing import Any, BinaryIO

import msgpack

import sandzmq


class RecordingStateMachine(sandzmq.StateMachine):
    def __init__(self) -> None:
        self.commands: list[bytes] = []

    def apply(self, command: bytes) -> Any:
        self.commands.append(bytes(command))
        return len(self.commands) - 1

    def query(self, query: bytes) -> Any:
        if query == b"all":
            return list(self.commands)
        if query == b"count":
            return len(self.commands)
        if query.startswith(b"tail:"):
            try:
                n = int(query[5:])
            except ValueError:
                return {"error": "bad query"}
            return self.commands[-n:] if n > 0 else []
        return {"error": "unknown query"}

    def snapshot(self, sink: BinaryIO) -> None:
        sink.write(msgpack.packb(self.commands))

    def restore(self, source: BinaryIO) -> None:
        data = source.read()
        self.commands = [bytes(c) for c in msgpack.unpackb(data)] if data else []
