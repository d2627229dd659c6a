"""The errors sandzmq raises on purpose.

All of them derive from SandzmqError so that an application can tell "the
replicated log said no" apart from bugs with one `except` clause. The three
replication errors differ in what the caller may conclude about the command,
which is what decides whether and how to retry it.
"""

from __future__ import annotations

import os


class SandzmqError(Exception):
    """Base class of every error sandzmq raises deliberately."""


class NotLeaderError(SandzmqError):
    """The node asked to replicate is not the leader, so it did not accept the command.

    The command was not appended anywhere: sending it to the leader is safe.
    `leader_id` and `leader_address` (the leader's client address) are what
    this node believes; either is None when it does not know, for example
    during an election.
    """

    def __init__(self, leader_id: str | None = None, leader_address: str | None = None) -> None:
        self.leader_id = leader_id
        self.leader_address = leader_address
        if leader_id is None:
            hint = "the leader is unknown (an election may be running); retry shortly"
        else:
            where = f" at {leader_address}" if leader_address else ""
            hint = f"the leader is {leader_id}{where}"
        super().__init__(f"this node is not the leader: {hint}")


class ReplicationTimeout(SandzmqError):
    """The command was not confirmed within its timeout: its outcome is unknown.

    It may have been appended by a leader and may still commit and be applied
    later, so the caller must not assume it failed; read the state to find
    out. Within its timeout the Client already retried it under the same
    session sequence number, so it is applied at most once; a new replicate()
    call with the same bytes is a second command.
    """


class ClusterUnavailable(SandzmqError):
    """No node could take the command: no leader is reachable, or the replicator is not running.

    Unlike ReplicationTimeout this means the command was never accepted by a
    leader, so it did not and will not commit.
    """


class ConfigError(SandzmqError):
    """A config file (or a command-line choice checked against it) is invalid.

    str() is exactly one line, `<path>: <key>: <what is wrong>`, because the
    command line prints it as the whole error report (SPEC 4). `key` is the
    dotted TOML key (`raft.heartbeat_ms`, `nodes[2].raft`), a command-line
    option such as `--node`, or `-` when the whole file is at fault.
    """

    def __init__(self, path: str | os.PathLike[str], key: str, problem: str) -> None:
        self.path = os.fspath(path)
        self.key = key
        self.problem = problem
        super().__init__(_one_line(f"{self.path}: {key}: {problem}"))


def _one_line(text: str) -> str:
    """Fold line breaks so that a message never spans lines, whatever went into it."""
    return " ".join(text.splitlines())
