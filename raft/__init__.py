"""The sans-I/O Raft core: deterministic, no sockets, no threads, no clock.

See core.py for how to drive it. Everything the actors and the simulation need
is exported here.
"""

from .core import (
    CoreConfig,
    LogBase,
    NotLeader,
    PersistWrite,
    RaftCore,
    Ready,
    Role,
    SafetyViolation,
    SnapshotChunk,
    SnapshotRead,
)
from .log import MemoryLog
from .messages import (
    MESSAGE_TYPES,
    SNAPSHOT_MESSAGE_TYPES,
    AppendEntries,
    AppendEntriesResponse,
    Entry,
    EntryKind,
    HardState,
    Heartbeat,
    HeartbeatResponse,
    InstallSnapshot,
    InstallSnapshotResponse,
    Message,
    RequestVote,
    RequestVoteResponse,
)
from .progress import Inflights, Progress, ProgressState

__all__ = [
    "AppendEntries",
    "AppendEntriesResponse",
    "CoreConfig",
    "Entry",
    "EntryKind",
    "HardState",
    "Heartbeat",
    "HeartbeatResponse",
    "Inflights",
    "InstallSnapshot",
    "InstallSnapshotResponse",
    "LogBase",
    "MESSAGE_TYPES",
    "MemoryLog",
    "Message",
    "NotLeader",
    "PersistWrite",
    "Progress",
    "ProgressState",
    "RaftCore",
    "Ready",
    "RequestVote",
    "RequestVoteResponse",
    "Role",
    "SafetyViolation",
    "SNAPSHOT_MESSAGE_TYPES",
    "SnapshotChunk",
    "SnapshotRead",
]
