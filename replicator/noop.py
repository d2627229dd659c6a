"""NoOpReplicator: the Replicator contract on one node, without consensus.

For developing and testing an application's StateMachine in one process:
code written against it runs unchanged on RaftReplicator. Commands are
applied at once, in the order callers take the lock, which is the total
order a single-node log would give them.
"""

from __future__ import annotations

import threading
from typing import Any

from sandzmq.replicator.base import Replicator

from sandzmq.errors import ClusterUnavailable, ReplicationTimeout
from sandzmq.state_machine import StateMachine, check_consistency


class NoOpReplicator(Replicator):
    """Applies each command to `state_machine` directly; nothing is written to disk.

    A lock serialises apply() and query(), because a StateMachine is promised
    that it is never called concurrently. Before start() and after stop(),
    replicate() and query() raise ClusterUnavailable, as a stopped node
    would; start() after stop() resumes with the state as it was.
    """

    def __init__(self, state_machine: StateMachine) -> None:
        if not isinstance(state_machine, StateMachine):
            raise TypeError(f"expected a sandzmq.StateMachine, got {type(state_machine).__name__}")
        self._state_machine = state_machine
        self._lock = threading.Lock()
        self._running = False

    def start(self) -> None:
        self._running = True

    def stop(self) -> None:
        self._running = False

    def replicate(self, command: bytes, timeout: float | None = None) -> Any:
        """Apply `command` and return the result; ReplicationTimeout if the lock
        is not had within `timeout` seconds (then the command was not applied)."""
        _check_bytes("command", command)
        if not self._lock.acquire(timeout=-1 if timeout is None else timeout):
            raise ReplicationTimeout(f"not applied within {timeout} s: the state machine is busy")
        try:
            self._check_running()
            return self._state_machine.apply(command)
        finally:
            self._lock.release()

    def query(self, query: bytes, consistency: str = "linearizable") -> Any:
        """There is one copy of the state, so every consistency level reads it."""
        _check_bytes("query", query)
        check_consistency(consistency)
        with self._lock:
            self._check_running()
            return self._state_machine.query(query)

    def _check_running(self) -> None:
        if not self._running:
            raise ClusterUnavailable("the NoOpReplicator is not running: call start() first")


def _check_bytes(name: str, value: object) -> None:
    """Insist on bytes here too, so code that passes anything else fails before it meets a real log."""
    if not isinstance(value, bytes):
        raise TypeError(f"{name} must be bytes, got {type(value).__name__}")
