"""sandzmq: a Raft replicated log for Python, built as an actor system on ZeroMQ.

The public API (SPEC 6) is re-exported here; import it from `sandzmq`, not
from the modules that define it, which may move.
"""

from importlib.metadata import version as _version

from sandzmq.errors import (
    ClusterUnavailable,
    ConfigError,
    NotLeaderError,
    ReplicationTimeout,
    SandzmqError,
)
from sandzmq.replicator.base import Replicator
from sandzmq.replicator.client import Client
from sandzmq.replicator.noop import NoOpReplicator
from sandzmq.replicator.raft import RaftReplicator
from sandzmq.state_machine import StateMachine

__version__ = _version("sandzmq")

__all__ = [
    "Client",
    "ClusterUnavailable",
    "ConfigError",
    "NoOpReplicator",
    "NotLeaderError",
    "RaftReplicator",
    "ReplicationTimeout",
    "Replicator",
    "SandzmqError",
    "StateMachine",
    "__version__",
]
