"""The Replicator contract (SPEC 6): what applications call.

A Replicator puts commands into a replicated log and hands each committed one
to the StateMachine of every node. NoOpReplicator (one node, no consensus)
and RaftReplicator share it, so an application can be written and tested
against the first and deployed on the second (the seed's
PosixMetadataReplicator).
"""

from __future__ import annotations

import abc
from types import TracebackType
from typing import Any, Self


class Replicator(abc.ABC):
    """Puts commands into a replicated log and returns their results once applied.

    Implementations are safe to call from many threads at once. A context
    manager: `with replicator:` starts it and stops it.
    """

    @abc.abstractmethod
    def start(self) -> None:
        """Start serving; calling it on a running replicator does nothing."""

    @abc.abstractmethod
    def replicate(self, command: bytes, timeout: float | None = None) -> Any:
        """Commit `command` and return StateMachine.apply()'s result for it.

        Returns only once the entry is durable on a majority and applied.
        Raises NotLeaderError on a follower, and ReplicationTimeout or
        ClusterUnavailable when it cannot confirm the commit within
        `timeout` seconds (None: no limit); it never reports a success it
        cannot prove.
        """

    @abc.abstractmethod
    def query(self, query: bytes, consistency: str = "linearizable") -> Any:
        """Return StateMachine.query()'s answer at the given consistency.

        `linearizable` sees every write acknowledged before the call began,
        `lease` may trust the leader's lease instead of a quorum round trip,
        `local` reads this node's applied state, however stale.
        """

    @abc.abstractmethod
    def stop(self) -> None:
        """Stop serving; calling it on a stopped replicator does nothing."""

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
