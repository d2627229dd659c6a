"""The Raft actor: a loop between the node's sockets and its node core.

Everything the node decides lives in the node core (node/core.py), which
knows no I/O; this actor owns what it cannot: the sockets, the clock and
the process. One loop turn (SocketActor's pump) hands every message waiting
on the sockets to the core, with the time where time matters, ticks it when
a tick is due, then calls its flush() until it has nothing more, sending
what each Output says before the next call: the Raft core's messages and
PeerHellos to the peers, writes and requests to the log-store, committed
entries and local reads to the apply actor, and one batched reply per
client. An Output that refuses the node (its identity
handshake found it lost its data) makes the process exit with status 3.

Each socket takes its own message set (SPEC 3 trust boundaries,
docs/ARCHITECTURE.md): the Raft core's messages and PeerHello on the raft
port, client messages on the client port, and the log-store's and apply
actor's only on the private ipc socket, each from its own identity. That
check is the transport's (Inbox accept sets), made before a body is
decoded, so a message reaches the core only through the socket it belongs
to: a forged LogDurable or ApplyResults from a public port never does.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from sandzmq.node.core import NodeCore
from sandzmq.node.output import Output
from sandzmq.protocol import (
    CLIENT_REQUESTS,
    FROM_APPLY,
    FROM_LOG_STORE,
    HELLO_TAG,
    ApplyResults,
    ApplyState,
    ClientQuery,
    ClientSubmit,
    ClusterHello,
    LocalQueryResult,
    LogDurable,
    LogGap,
    LogState,
    PeerHello,
    StatusRequest,
)
from sandzmq.raft.messages import MESSAGE_TYPES
from sandzmq.storage import WalReader
from sandzmq.transport import ANY_SENDER, Envelope, Inbox, PeerLink, Peers, receive_hwm

from sandzmq.config import ClusterConfig

from .base import SocketActor
from .layout import APPLY_IDENTITY, LOG_IDENTITY, RAFT_IDENTITY, NodeLayout
from .process import EXIT_REFUSED, request_exit

log = logging.getLogger(__name__)

_PEER_MESSAGE_TYPES = frozenset(MESSAGE_TYPES)


class RaftActor(SocketActor):
    """One node's Raft actor. See the module docstring."""

    def __init__(self, config: ClusterConfig, node_id: str) -> None:
        super().__init__()
        self.config = config
        self.node_id = node_id
        self.layout = NodeLayout.of(config, node_id)
        self.tick_interval = config.raft.tick_ms / 1000.0
        self.envelope = Envelope(config.name)
        # The node core reads the write-ahead log only through this reader: its tail when
        # the Raft core starts, and entries trimmed from memory that a lagging follower needs.
        self.core = NodeCore(config, node_id, cold=WalReader(self.layout.wal_dir), pid=os.getpid())

    # ------------------------------------------------------------------ sockets

    def open(self) -> None:
        node = self.layout.node
        tags_of = self.envelope.registry.tags_of
        # Each socket takes its own message set (see the module docstring). The
        # public ports take frames only as large as the messages they carry,
        # and queue a bounded number of bytes per connection.
        opts = self.config.raft
        self.peer_inbox = Inbox(
            node.raft,
            self.envelope,
            accept={ANY_SENDER: tags_of(*MESSAGE_TYPES, PeerHello)},
            max_frame_bytes=opts.peer_frame_bytes,
            rcvhwm=receive_hwm(opts.peer_frame_bytes),
        )
        # The client port also answers the discovery handshake from any cluster name.
        client_envelope = Envelope(self.config.name, drops=self.envelope.drops, open_tags=frozenset({HELLO_TAG}))
        self.client_inbox = Inbox(
            node.client,
            client_envelope,
            accept={ANY_SENDER: tags_of(*CLIENT_REQUESTS)},
            max_frame_bytes=opts.client_frame_bytes,
            rcvhwm=receive_hwm(opts.client_frame_bytes),
        )
        self.local_inbox = Inbox(
            self.layout.raft_ipc,
            self.envelope,
            handover=True,
            accept={
                LOG_IDENTITY.encode(): tags_of(*FROM_LOG_STORE),
                APPLY_IDENTITY.encode(): tags_of(*FROM_APPLY),
            },
        )
        others = {n.id: n.raft for n in self.config.nodes if n.id != self.node_id}
        # No fixed identity on peer links: on a public port it would be a
        # handle for anyone to take the link over (see transport Inbox).
        self.peers = Peers(self.envelope, None, others, accept=frozenset())
        self.log_link = PeerLink(self.layout.log_ipc, self.envelope, RAFT_IDENTITY, accept=frozenset())
        self.apply_link = PeerLink(self.layout.apply_ipc, self.envelope, RAFT_IDENTITY, accept=frozenset())
        self.watch_inbox(self.peer_inbox)
        self.watch_inbox(self.client_inbox)
        self.watch_inbox(self.local_inbox)
        self.core.start(time.monotonic())
        log.info("raft actor up: peers on %s, clients on %s", node.raft, node.client)

    def close(self) -> None:
        for name in ("peer_inbox", "client_inbox", "local_inbox", "peers", "log_link", "apply_link"):
            sock = getattr(self, name, None)
            if sock is not None:
                sock.close()

    # ------------------------------------------------------------------ inputs

    def handle(self, message: Any, reply_to: bytes | None) -> Any:
        core = self.core
        kind = type(message)
        if kind in _PEER_MESSAGE_TYPES:
            core.peer_message(message)
        elif kind is ClientSubmit:
            core.client_submit(reply_to, message)
        elif kind is LogDurable:
            core.log_durable(message, time.monotonic())
        elif kind is ApplyResults:
            core.apply_results(message, time.monotonic())
        elif kind is ApplyState:
            core.apply_state(message, time.monotonic())
        elif kind is LocalQueryResult:
            core.local_query_result(message)
        elif kind is ClientQuery:
            core.client_query(reply_to, message)
        elif kind is PeerHello:
            core.peer_hello(message)
        elif kind is StatusRequest:
            if reply_to is None:
                return self.status()  # an in-process ask
            core.status_request(reply_to, message, self._transport_drops())
        elif kind is LogState:
            core.log_state(message, time.monotonic())
        elif kind is LogGap:
            core.log_gap(message, time.monotonic())
        elif kind is ClusterHello:
            core.cluster_hello(reply_to, message)
        else:
            core.unexpected(message)
        return None

    def handle_failed(self, message: Any) -> None:
        self.core.failed(message)

    def on_tick(self) -> None:
        self.core.tick(time.monotonic())

    # ------------------------------------------------------------------ outputs

    def flush(self) -> None:
        core = self.core
        while (out := core.flush(time.monotonic())) is not None:
            self._send(out)

    def _send(self, out: Output) -> None:
        if out.peers:
            peers = self.peers
            for m in out.peers:
                peers.send(m.dst, m)
        if out.log_store:
            for msg in out.log_store:
                self.log_link.send(msg)
        if out.apply:
            for msg in out.apply:
                self.apply_link.send(msg)
        client_inbox = self.client_inbox
        for identity, reply in out.replies.items():
            client_inbox.reply(identity, reply)
        for identity, answer in out.answers:
            client_inbox.reply(identity, answer)
        if out.refuse is not None:
            request_exit(self, EXIT_REFUSED)

    # ------------------------------------------------------------------ status

    def _transport_drops(self) -> dict[str, int]:
        for inbox in (self.peer_inbox, self.client_inbox, self.local_inbox):
            inbox.count_monitor_events()
        return self.envelope.drops.as_dict()  # one envelope, so one set of counters, for all inboxes

    def status(self) -> dict[str, Any]:
        """What `sandzmq status` shows (SPEC 5), plus detail for the human view."""
        return self.core.status(self._transport_drops())
