"""RaftReplicator: one node of a Raft cluster, as a Replicator.

A placeholder until the node lands: it fixes the public name and signature
(SPEC 6) so that code can be written against them, and every method raises
NotImplementedError.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from sandzmq.state_machine import Replicator

_LATER = "RaftReplicator arrives with the node"


class RaftReplicator(Replicator):
    """Will run node `node_id` of the cluster described by the config file at `config`."""

    def __init__(self, config: str | Path, node_id: str) -> None:
        self.config = Path(config)
        self.node_id = node_id

    def start(self) -> None:
        raise NotImplementedError(_LATER)

    def replicate(self, command: bytes, timeout: float | None = None) -> Any:
        raise NotImplementedError(_LATER)

    def query(self, query: bytes, consistency: str = "linearizable") -> Any:
        raise NotImplementedError(_LATER)

    def stop(self) -> None:
        raise NotImplementedError(_LATER)
