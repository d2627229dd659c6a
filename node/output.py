"""What the node core asks its actor to do after a batch of inputs.

The node core (node/core.py) touches no socket: every message it wants sent
is appended here, per destination and in order, and the raft actor sends
them all after each loop turn. Order matters only within one destination
(a LogSync before the writes it announces, a rewind's ApplyBatch after the
batches it supersedes), so one list per destination keeps all of it.

Answers to clients are batched: every answer to one client in one loop turn
travels in one ClientReply (`reply_to`), whether it is a result, a refusal or
a LOST, so a turn costs one message per client, not one per request.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sandzmq.protocol import ClientReply


@dataclass(slots=True)
class Output:
    """Messages to send, per destination, and requests to the actor."""

    #: To other nodes' raft actors (the Raft core's messages and PeerHello): each names its `dst`.
    peers: list[Any] = field(default_factory=list)
    #: To this node's log-store, in this order (LogSync, LogWrite, LogIdentity).
    log_store: list[Any] = field(default_factory=list)
    #: To this node's apply actor, in this order (ApplyBatch, LocalQuery).
    apply: list[Any] = field(default_factory=list)
    #: Batched answers to client requests: one ClientReply per client identity.
    replies: dict[bytes, ClientReply] = field(default_factory=dict)
    #: Other answers to clients, one message each: (identity, StatusReply | ClusterHelloReply).
    answers: list[tuple[bytes, Any]] = field(default_factory=list)
    #: Set when the node must not run (the identity handshake refused it): the
    #: reason, already logged. The actor exits with the "refuses to start" status.
    refuse: str | None = None

    def reply_to(self, identity: bytes) -> ClientReply:
        """The ClientReply that collects this turn's answers to `identity`."""
        reply = self.replies.get(identity)
        if reply is None:
            reply = self.replies[identity] = ClientReply([], [], [])
        return reply

    def __bool__(self) -> bool:
        return bool(
            self.peers or self.log_store or self.apply or self.replies or self.answers or self.refuse is not None
        )
