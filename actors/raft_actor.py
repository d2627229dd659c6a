"""The Raft actor: drives the sans-I/O core from sockets and a clock.

One loop turn (SocketActor's pump): everything waiting on the sockets is
handled, then flush() proposes all client commands that arrived as ONE batch,
steps the core's output until it is idle, and sends: AppendEntries to the
followers and the same entries to the local log-store at the same time (the
leader's disk write runs in parallel with replication, dissertation 10.2.1),
committed entries to the apply actor, results back to the clients.

What it keeps besides the core:
- the writes the log-store has not yet acknowledged, with where the log must
  end after each, to resend them in order if the log-store restarts, reports
  a gap, or acknowledges a write with its log ending elsewhere than the core
  expects (appends supersede, so a resend is harmless; see log_store.py);
- the client requests proposed on this leader, by log index, until the apply
  actor returns their results (an entry committed at that index with another
  term means the proposal was lost: the client is told LOST and retries with
  the same sequence number, which the apply actor's sessions deduplicate).

It starts without a core: first the log-store must say what is durable and
whose data it holds (LogState). A node with an identity (a cluster id)
starts its core; one without goes through the identity handshake with its
peers first (actors/bootstrap.py: a node that lost its data must not vote
again), and a join = true node waits to be added. Until the core runs,
clients get BUSY and the core's messages are ignored.
"""
from __future__ import annotations

import itertools
import logging
import os
import secrets
import time
from collections import deque
from typing import Any

from sandzmq.config import ClusterConfig
from sandzmq.raft import CoreConfig, MemoryLog, Message, NotLeader, RaftCore, Role
from sandzmq.raft.messages import MESSAGE_TYPES, AppendEntries
from sandzmq.storage import WalReader
from sandzmq.transport import ANY_SENDER, Envelope, Inbox, PeerLink, Peers, receive_hwm

from .base import SocketActor
from sandzmq.node.bootstrap import Become, DataState, Handshake, PeerReport, Propose, Refuse, Wait
from .process import EXIT_REFUSED, request_exit
from .layout import APPLY_IDENTITY, LOG_IDENTITY, RAFT_IDENTITY, NodeLayout
from sandzmq.node.proposals import PendingProposals
from sandzmq.protocol import (
    CLIENT_REQUESTS,
    FROM_APPLY,
    FROM_LOG_STORE,
    ApplyBatch,
    ApplyResults,
    ApplyState,
    ClientQuery,
    ClientReply,
    ClientSubmit,
    ClusterHello,
    ClusterHelloReply,
    HELLO_TAG,
    LocalQuery,
    LocalQueryResult,
    LogDurable,
    LogGap,
    LogIdentity,
    LogState,
    PeerHello,
    LogSync,
    LogWrite,
    ReplyStatus,
    StatusReply,
    StatusRequest,
    encode_read,
)

log = logging.getLogger(__name__)

_PEER_MESSAGE_TYPES = tuple(MESSAGE_TYPES)
MEMORY_TAIL_ENTRIES = 50_000  # committed entries kept in memory; older ones are read from the WAL
MAX_PENDING_REQUESTS = 100_000  # proposals awaiting results on a leader; beyond it clients get BUSY
MAX_PENDING_LOCAL_QUERIES = 10_000  # local reads the apply actor has not answered; beyond it: BUSY
#: Unacknowledged writes older than this are resent (a LogGap lost on the way,
#: or a log-store that dropped them): the resend is harmless, a stuck log is not.
LOG_RESEND_AFTER_S = 5.0
#: During the identity handshake, hellos go to the peers not yet heard from this often (ticks).
HELLO_TICKS = 5
#: An apply actor silent this long is taken for dead (it reports at least
#: every 0.5 s, and between batches, which are bounded): the node stops
#: leading until it hears from it again.
APPLY_SILENCE_S = 5.0
CONSISTENCY_LEVELS = ("linearizable", "lease", "local")


def core_config(config: ClusterConfig) -> CoreConfig:
    """Translate the config file's milliseconds into the core's ticks."""
    opts = config.raft
    tick = opts.tick_ms
    low, high = opts.election_timeout_ms
    heartbeat = max(1, opts.heartbeat_ms // tick)
    election_low = max(heartbeat + 1, low // tick)
    return CoreConfig(
        election_ticks=(election_low, max(election_low, high // tick)),
        heartbeat_ticks=heartbeat,
        max_batch_entries=opts.max_batch_entries,
        max_batch_bytes=opts.max_batch_bytes,
        max_inflight=opts.max_inflight,
        max_inflight_bytes=opts.max_inflight_bytes,
        pre_vote=opts.pre_vote,
        check_quorum=opts.check_quorum,
    )


class RaftActor(SocketActor):
    """One node's Raft actor. See the module docstring."""

    def __init__(self, config: ClusterConfig, node_id: str) -> None:
        super().__init__()
        self.config = config
        self.node_id = node_id
        self.layout = NodeLayout.of(config, node_id)
        self.tick_interval = config.raft.tick_ms / 1000.0
        self.core_config = core_config(config)
        self.voters = [n.id for n in config.nodes if not n.join]
        self.client_addresses = {n.id: n.client for n in config.nodes}
        self.core: RaftCore | None = None
        self.envelope = Envelope(config.name)
        self.pids = {"raft": os.getpid(), "log": None, "apply": None}
        self.applied_index = 0  # as last reported by the apply actor
        self.failed_messages = 0  # handled messages that raised (counted as dropped)
        self.foreign_messages = 0  # peer messages not addressed to this node or from a non-member
        self._log_incarnation: int | None = None
        self._sync_nonce = 0
        self._epoch = int.from_bytes(os.urandom(6), "big") | 1  # this actor's life: its write ids are its own
        # Writes sent and not acknowledged: (write, last index and term the log must have after it).
        self._unacked: deque[tuple[LogWrite, int, int]] = deque()
        self._unacked_since = 0.0  # when the oldest of them was sent, or last progress
        self._next_write_id = 1  # the id of the core's next write
        self._last_resync = 0.0
        # Client messages waiting for this loop turn's proposal: (identity, first request id, payloads).
        self._proposals: list[tuple[bytes, int, list[bytes]]] = []
        self._proposal_count = 0
        self._pending = PendingProposals()  # proposed, awaiting the apply actor's results
        self._replies: dict[bytes, ClientReply] = {}
        self._local_queries: dict[int, tuple[bytes, int]] = {}
        self._query_ids = itertools.count(1)
        self._last_role: tuple[Role, int] | None = None
        #: Cumulative counters for `status` and `sandzmq bench` (batching at each hop).
        self.stats: dict[str, int] = dict.fromkeys(
            ("append_messages", "append_entries", "fsyncs", "fsync_entries", "log_resyncs", "log_mismatches",
             "apply_entries", "apply_rewinds"), 0)
        self._apply_incarnation = 0
        self._apply_generation = 1  # bumped at every rewind (see ApplyBatch)
        self._apply_heard_at = time.monotonic()
        self._ineligible: set[str] = set()  # why this node must not lead now
        # The identity handshake (actors/bootstrap.py) and where start-up is.
        self.phase = "starting"  # starting | bootstrapping | joining | member | refused
        self._handshake = Handshake(node_id, [v for v in self.voters if v != node_id])
        self._cluster_id = ""
        self._proposal = 0
        self._identity_nonce = 0  # a LogIdentity awaiting its LogState
        self._identity_sent = 0.0
        self._has_data = False  # a log with a term or entries but no identity (data from before identities)
        self._log_state: LogState | None = None  # the last LogState, for status before the core runs
        self._waiting_for: tuple[str, ...] = ()
        self._foreign_peers: set[str] = set()  # members of another cluster id: not listened to
        # The nonce this node's asks to each peer carry: only an answer echoing it is believed.
        self._hello_nonces = {peer: secrets.randbits(62) for peer in self._handshake.peers}
        self.forged_hellos = 0  # answers that did not echo our nonce (counted as unbelievable)
        self._ticks = 0

    # ------------------------------------------------------------------ sockets

    def open(self) -> None:
        node = self.layout.node
        tags_of = self.envelope.registry.tags_of
        # Each socket takes its own message set (SPEC 3 trust boundaries):
        # peers' messages on the raft port, clients' on the client port, and
        # the log-store's and apply actor's only on the private ipc socket,
        # each from its own identity.
        # The public ports take frames only as large as the messages they carry,
        # and queue a bounded number of bytes per connection.
        opts = self.config.raft
        self.peer_inbox = Inbox(
            node.raft, self.envelope, accept={ANY_SENDER: tags_of(*MESSAGE_TYPES, PeerHello)},
            max_frame_bytes=opts.peer_frame_bytes, rcvhwm=receive_hwm(opts.peer_frame_bytes),
        )
        # The client port also answers the discovery handshake from any cluster name.
        client_envelope = Envelope(self.config.name, drops=self.envelope.drops, open_tags=frozenset({HELLO_TAG}))
        self.client_inbox = Inbox(
            node.client, client_envelope, accept={ANY_SENDER: tags_of(*CLIENT_REQUESTS)},
            max_frame_bytes=opts.client_frame_bytes, rcvhwm=receive_hwm(opts.client_frame_bytes),
        )
        self.local_inbox = Inbox(self.layout.raft_ipc, self.envelope, handover=True, accept={
            LOG_IDENTITY.encode(): tags_of(*FROM_LOG_STORE),
            APPLY_IDENTITY.encode(): tags_of(*FROM_APPLY),
        })
        others = {n.id: n.raft for n in self.config.nodes if n.id != self.node_id}
        # No fixed identity on peer links: on a public port it would be a
        # handle for anyone to take the link over (see transport Inbox).
        self.peers = Peers(self.envelope, None, others, accept=frozenset())
        self.log_link = PeerLink(self.layout.log_ipc, self.envelope, RAFT_IDENTITY, accept=frozenset())
        self.apply_link = PeerLink(self.layout.apply_ipc, self.envelope, RAFT_IDENTITY, accept=frozenset())
        self.watch_inbox(self.peer_inbox)
        self.watch_inbox(self.client_inbox)
        self.watch_inbox(self.local_inbox)
        self._request_log_state()
        log.info("raft actor up: peers on %s, clients on %s", node.raft, node.client)

    def close(self) -> None:
        for name in ("peer_inbox", "client_inbox", "local_inbox", "peers", "log_link", "apply_link"):
            sock = getattr(self, name, None)
            if sock is not None:
                sock.close()

    def _request_log_state(self) -> None:
        """LogSync: report what is durable, and take our writes from the next one on."""
        self._sync_nonce += 1
        self.log_link.send(LogSync(self._sync_nonce, self._epoch, self._next_write_id))

    def _resend_writes(self, why: str) -> None:
        """LogSync from the first unacknowledged write, then every unacknowledged write, in order."""
        first = self._unacked[0][0].write_id if self._unacked else self._next_write_id
        log.warning("%s: resending %d unacknowledged writes from write %d", why, len(self._unacked), first)
        self._sync_nonce += 1
        self.log_link.send(LogSync(self._sync_nonce, self._epoch, first))
        for write, _, _ in self._unacked:
            self.log_link.send(write)
        self.stats["log_resyncs"] += 1
        self._last_resync = self._unacked_since = time.monotonic()

    # ------------------------------------------------------------------ dispatch

    def handle(self, message: Any, reply_to: bytes | None) -> Any:
        if isinstance(message, _PEER_MESSAGE_TYPES):
            self._on_peer_message(message, reply_to)
        elif isinstance(message, ClientSubmit):
            self._on_submit(message, reply_to)
        elif isinstance(message, LogDurable):
            self._on_durable(message)
        elif isinstance(message, ApplyResults):
            self._on_results(message)
        elif isinstance(message, ApplyState):
            self._on_apply_state(message)
        elif isinstance(message, LocalQueryResult):
            self._on_local_query_result(message)
        elif isinstance(message, ClientQuery):
            self._on_query(message, reply_to)
        elif isinstance(message, PeerHello):
            self._on_peer_hello(message, reply_to)
        elif isinstance(message, StatusRequest):
            # Until the log-store has said what is durable the node serves
            # nothing; it stays silent, so `sandzmq status` shows it unreachable
            # rather than a role with unknown term and indexes.
            if reply_to is not None and self.phase != "starting":
                self.client_inbox.reply(reply_to, StatusReply(message.request_id, self.status()))
            elif reply_to is None:
                return self.status()
        elif isinstance(message, LogState):
            self._on_log_state(message)
        elif isinstance(message, LogGap):
            self._on_log_gap(message)
        elif isinstance(message, ClusterHello) and reply_to is not None:
            self.client_inbox.reply(reply_to, ClusterHelloReply(message.nonce, self.config.name))
        else:
            self.foreign_messages += 1
        return None

    def handle_failed(self, message: Any) -> None:
        self.failed_messages += 1

    def on_tick(self) -> None:
        self._ticks += 1
        if self.phase == "starting":
            self._request_log_state()  # the log-store may still be starting
            return
        if self.phase == "bootstrapping":
            self._advance_bootstrap()
            return
        core = self.core
        if core is None:
            return  # joining, or refused
        if self._ticks % HELLO_TICKS == 0:
            self._hello_unheard()
        if "bootstrap" in self._ineligible and (core.term > 0 or self._handshake.first_election_allowed(self._cluster_id)):
            self._set_ineligible("bootstrap", False)  # every peer is a member (or someone already campaigned)
        now = time.monotonic()
        if self._unacked and now - self._unacked_since > LOG_RESEND_AFTER_S:
            self._resend_writes("no acknowledgement from the log-store")
        if now - self._apply_heard_at > APPLY_SILENCE_S and "apply" not in self._ineligible:
            # It could commit but never answer a client, nor apply what it commits.
            log.error("the apply actor has been silent for %.0f s", now - self._apply_heard_at)
            self._set_ineligible("apply", True)
        core.tick()
        settled = min(core.commit, core.durable_index)
        if settled - core.log.memory_first_index > 2 * MEMORY_TAIL_ENTRIES:
            core.log.trim(settled - MEMORY_TAIL_ENTRIES)  # bounded memory; the WAL serves laggards

    # ------------------------------------------------------------------ peers

    def _from_peer(self, m: Message | PeerHello, identity: bytes | None) -> bool:
        """Whether `m` claims to come from a voter of the config file, for this
        node. (A claim: without authentication any sender can make it, and
        CURVE is what will bind a peer's key to its node id.)"""
        if m.dst != self.node_id or m.src not in self._handshake.peers:
            self.foreign_messages += 1
            return False
        return True

    def _on_peer_message(self, m: Message, identity: bytes | None) -> None:
        if self.core is None:
            return  # not started yet; Raft retries
        if not self._from_peer(m, identity):
            return
        if m.src in self._foreign_peers:
            self.foreign_messages += 1  # a member of another cluster (see _on_peer_hello)
            return
        self.core.step(m)

    # ------------------------------------------------------------------ identity handshake

    def _my_report(self) -> PeerReport:
        term = self.core.term if self.core is not None else (self._log_state.hard_state.term if self._log_state else 0)
        if self.phase == "member":
            return PeerReport(DataState.MEMBER, self._cluster_id, self._proposal, term)
        if self.phase == "joining":
            return PeerReport(DataState.JOINING, "", 0, term)
        state = DataState.PROPOSED if self._proposal else DataState.UNKNOWN
        return PeerReport(state, "", self._proposal, term)

    def _hello(self, peer: str, ask: bool, nonce: int) -> None:
        r = self._my_report()
        self.peers.send(peer, PeerHello(self.node_id, peer, ask, int(r.state), r.cluster_id, r.proposal, r.term, nonce))

    def _hello_unheard(self) -> None:
        """Ask the peers this node still needs to hear from: all of them while
        bootstrapping, and those not heard as members of its cluster after
        (a peer that looked like another cluster's is asked again: the
        verdict must be able to heal)."""
        for peer in self._handshake.peers:
            report = self._handshake.reports.get(peer)
            if (
                report is None or self.phase == "bootstrapping" or report.state is not DataState.MEMBER
                or peer in self._foreign_peers
            ):
                self._hello(peer, ask=True, nonce=self._hello_nonces[peer])

    def _on_peer_hello(self, m: PeerHello, identity: bytes | None) -> None:
        if self.phase == "starting" or not self._from_peer(m, identity):
            return
        if m.ask:
            self._hello(m.src, ask=False, nonce=m.nonce)  # what an ask claims is not believed
            return
        if m.nonce != self._hello_nonces[m.src]:
            self.forged_hellos += 1  # not an answer to any ask of ours
            return
        self._handshake.heard(m.src, PeerReport(DataState(m.state), m.cluster_id, m.proposal, m.term))
        if self.phase != "member":
            return
        other = self._handshake.other_cluster(m.src, self._cluster_id)
        if other and m.src not in self._foreign_peers:
            log.error("%s belongs to cluster %s, this node to %s: one of them holds another cluster's data; "
                      "not listening to it", m.src, other, self._cluster_id)
            self._foreign_peers.add(m.src)
        elif not other:
            self._foreign_peers.discard(m.src)

    def _on_identity(self, state: LogState) -> None:
        """The log-store said whose data it holds: start Raft, or find out first."""
        self._identity_nonce = 0
        self._cluster_id, self._proposal = state.cluster_id, state.proposal
        if state.cluster_id:
            self.phase = "member"
            self._start_core(state)
            if self.core is not None and self.core.term == 0 and self._handshake.peers:
                self._set_ineligible("bootstrap", True)  # the first election waits for every peer to be a member
            self._hello_unheard()
        elif self.layout.node.join:
            if self.phase != "joining":
                log.info("no data, and join = true: waiting to be added to the cluster (sandzmq members add %s)",
                         self.node_id)
            self.phase = "joining"
        else:
            if self.phase != "bootstrapping":
                log.info("no identity yet: asking %s whose data they hold before this node may vote",
                         ", ".join(self._handshake.peers) or "nobody (one node)")
            self.phase = "bootstrapping"
            self._has_data = state.hard_state.term > 0 or state.last_index > 0
            self._advance_bootstrap()

    def _advance_bootstrap(self) -> None:
        if self._identity_nonce:
            if time.monotonic() - self._identity_sent > 1.0:  # a restarted log-store never got it
                self._write_identity(self._cluster_id, self._proposal)
            return
        if self._ticks % HELLO_TICKS == 0:
            self._hello_unheard()
        decision = self._handshake.decide(self._proposal, self._has_data)
        if isinstance(decision, Wait):
            self._waiting_for = decision.peers
        elif isinstance(decision, Refuse):
            log.error("%s", decision.reason)
            self.phase = "refused"
            request_exit(self, EXIT_REFUSED)
        elif isinstance(decision, Propose):
            self._write_identity("", secrets.randbits(62) | 1)
        elif isinstance(decision, Become):
            log.info("joining cluster %s (the handshake with %s is complete)", decision.cluster_id,
                     ", ".join(self._handshake.peers) or "nobody")
            self._write_identity(decision.cluster_id, self._proposal)

    def _write_identity(self, cluster_id: str, proposal: int) -> None:
        """Have the log-store record it; its LogState answer moves start-up on."""
        self._cluster_id, self._proposal = cluster_id, proposal
        self._sync_nonce += 1
        self._identity_nonce = self._sync_nonce
        self._identity_sent = time.monotonic()
        self.log_link.send(LogIdentity(self._sync_nonce, cluster_id, proposal))

    # ------------------------------------------------------------------ log-store

    def _on_log_state(self, state: LogState) -> None:
        self.pids["log"] = state.pid
        if self.core is None:
            if state.nonce != self._sync_nonce:
                return  # an answer to an older request, or the unprompted hello: wait for ours
            self._log_state = state
            self._log_incarnation = state.incarnation
            self._on_identity(state)
            return
        if state.incarnation != self._log_incarnation:
            # The log-store restarted: whatever it had not acknowledged may be
            # lost. Resend it all, in order; appends supersede, so it is harmless.
            self._log_incarnation = state.incarnation
            self._resend_writes(f"log-store restarted (pid {state.pid})")
        self._log_incarnation = state.incarnation

    def _on_log_gap(self, gap: LogGap) -> None:
        if gap.sync_nonce >= self._sync_nonce:  # (an older one: the LogSync sent since covers it)
            self._resend_writes(f"the log-store misses write {gap.expected}")

    def _start_core(self, state: LogState) -> None:
        # Load only a tail: entries up to `memory_from` are committed and
        # durable, so the cold reader (the WAL) can serve them if ever needed.
        reader = WalReader(self.layout.wal_dir)
        base_index = state.first_index - 1
        memory_from = max(base_index, min(state.hard_state.commit, state.last_index) - MEMORY_TAIL_ENTRIES)
        entries = reader.entries(memory_from + 1, state.last_index + 1) if state.last_index > memory_from else []
        memory_log = MemoryLog(
            entries,
            base_index=base_index,
            base_term=0,
            cold=reader,
            mem_base=memory_from,
            mem_base_term=(reader.term_at(memory_from) or 0) if memory_from > base_index else 0,
        )
        # Entries the apply actor (if it already spoke) applied are committed: start from there.
        applied = self.applied_index if self._apply_incarnation else 0
        self.core = RaftCore(
            self.node_id, self.voters, config=self.core_config, hard_state=state.hard_state, log=memory_log,
            applied=applied,
        )
        self.core.set_eligible(not self._ineligible)
        log.info(
            "recovered: term %d, vote %s, commit %d, log (%d, %d]",
            state.hard_state.term, state.hard_state.vote, state.hard_state.commit, base_index, state.last_index,
        )

    def _on_durable(self, ack: LogDurable) -> None:
        """Writes up to ack.write_id are durable, if the log ends where the
        core expects after that write; otherwise the log-store lost or refused
        something, and everything unacknowledged is resent instead."""
        unacked = self._unacked
        if ack.epoch != self._epoch or not unacked or ack.write_id < unacked[0][0].write_id:
            return  # a previous raft actor's write, or one already covered
        position = ack.write_id - unacked[0][0].write_id
        if position >= len(unacked):
            log.error("the log-store acknowledged write %d, which was never sent", ack.write_id)
            self.stats["log_mismatches"] += 1
            return
        _, last_index, last_term = unacked[position]
        if (ack.last_index, ack.last_term) != (last_index, last_term):
            self.stats["log_mismatches"] += 1
            if time.monotonic() - self._last_resync > 1.0:
                self._resend_writes(
                    f"the log-store acknowledged write {ack.write_id} with its log ending at "
                    f"({ack.last_index}, {ack.last_term}), not ({last_index}, {last_term})")
            return
        made_durable = 0
        for _ in range(position + 1):
            made_durable += len(unacked.popleft()[0].entries)
        self._unacked_since = time.monotonic()
        if made_durable:  # one acknowledgement per fsync (group commit); commit-only writes are not fsync'd
            stats = self.stats
            stats["fsyncs"] += 1
            stats["fsync_entries"] += made_durable
        if self.core is not None:
            self.core.persisted(ack.write_id)

    # ------------------------------------------------------------------ apply

    def _on_apply_state(self, state: ApplyState) -> None:
        """A (re)started apply actor, or one that refused a batch: hand out
        committed entries again from its applied index, but once per
        rejection of the current generation (see ApplyBatch)."""
        self.pids["apply"] = state.pid
        self._heard_from_apply()
        restarted = state.incarnation != self._apply_incarnation
        self._apply_incarnation = state.incarnation
        self.applied_index = state.applied_index
        if self.core is not None and (restarted or state.generation == self._apply_generation):
            self._apply_generation += 1
            self.stats["apply_rewinds"] += 1
            self.core.set_applied(state.applied_index)

    def _on_results(self, results: ApplyResults) -> None:
        self._heard_from_apply()
        self.applied_index = results.applied_index
        if self.core is not None:
            self.core.confirm_applied(results.applied_index)
        if results.indexes:
            self._pending.resolve(results.indexes, results.terms, results.statuses, results.values, self._reply_to)

    # ------------------------------------------------------------------ clients

    def _reply_to(self, identity: bytes) -> ClientReply:
        """This loop turn's reply message to `identity`, sent by flush()."""
        reply = self._replies.get(identity)
        if reply is None:
            reply = self._replies[identity] = ClientReply([], [], [])
        return reply

    def _reply(self, identity: bytes, request_id: int, status: int, value: Any) -> None:
        self._reply_to(identity).add(request_id, status, value)

    def _refusal(self) -> tuple[int, Any] | None:
        """Why this node cannot take a write now, or None if it can."""
        core = self.core
        if core is None:
            return ReplyStatus.BUSY, "node is starting"
        if core.role is not Role.LEADER:
            return ReplyStatus.NOT_LEADER, [core.leader, self.client_addresses.get(core.leader or "")]
        if len(self._pending) + self._proposal_count >= MAX_PENDING_REQUESTS:
            return ReplyStatus.BUSY, "too many requests in flight"
        return None

    def _on_submit(self, submit: ClientSubmit, identity: bytes | None) -> None:
        payloads = submit.payloads
        if identity is None or not payloads:
            return
        refusal = self._refusal()
        first = submit.first_request_id
        if refusal is not None:
            self._reply_to(identity).add_range(first, len(payloads), *refusal)
            return
        limit = self.config.raft.max_batch_bytes
        if max(map(len, payloads)) <= limit:
            self._queue_proposals(identity, first, payloads)
            return
        # Rare: refuse the oversized commands, propose the others in runs of consecutive ids.
        run: list[bytes] = []
        for request_id, payload in enumerate(payloads, first):
            if len(payload) > limit:
                if run:
                    self._queue_proposals(identity, request_id - len(run), run)
                    run = []
                self._reply(identity, request_id, ReplyStatus.ERROR, f"command of {len(payload)} bytes exceeds max_batch_bytes ({limit})")
            else:
                run.append(payload)
        if run:
            self._queue_proposals(identity, first + len(payloads) - len(run), run)

    def _queue_proposals(self, identity: bytes, first_request_id: int, payloads: list[bytes]) -> None:
        self._proposals.append((identity, first_request_id, payloads))
        self._proposal_count += len(payloads)

    def _on_query(self, query: ClientQuery, identity: bytes | None) -> None:
        if identity is None:
            return
        if query.consistency not in CONSISTENCY_LEVELS:
            self._reply(identity, query.request_id, ReplyStatus.ERROR, f"unknown consistency {query.consistency!r}")
            return
        if query.consistency == "local":
            if len(self._local_queries) >= MAX_PENDING_LOCAL_QUERIES:
                self._reply(identity, query.request_id, ReplyStatus.BUSY, "too many local queries in flight")
                return
            query_id = next(self._query_ids)
            self._local_queries[query_id] = (identity, query.request_id)
            self.apply_link.send(LocalQuery(query_id, query.query))
            return
        # linearizable and lease: through the log until ReadIndex lands, so the
        # answer reflects every write committed before the query arrived.
        refusal = self._refusal()
        limit = self.config.raft.max_batch_bytes
        if refusal is None and len(query.query) > limit:
            # As a log entry it could never be replicated: it would exceed every AppendEntries.
            refusal = ReplyStatus.ERROR, f"query of {len(query.query)} bytes exceeds max_batch_bytes ({limit})"
        if refusal is not None:
            self._reply(identity, query.request_id, *refusal)
        else:
            self._queue_proposals(identity, query.request_id, [encode_read(query.query)])

    def _heard_from_apply(self) -> None:
        self._apply_heard_at = time.monotonic()
        if "apply" in self._ineligible:
            self._set_ineligible("apply", False)

    def _set_ineligible(self, reason: str, ineligible: bool) -> None:
        """This node must not lead while any reason holds (see RaftCore.set_eligible)."""
        before = bool(self._ineligible)
        if ineligible:
            self._ineligible.add(reason)
        else:
            self._ineligible.discard(reason)
        if self.core is not None:
            self.core.set_eligible(not self._ineligible)
        if bool(self._ineligible) != before:
            log.warning("%s", f"may not lead: {', '.join(sorted(self._ineligible))}" if self._ineligible else "may lead again")

    def _on_local_query_result(self, result: LocalQueryResult) -> None:
        waiting = self._local_queries.pop(result.request_id, None)
        if waiting is not None:
            self._reply(waiting[0], waiting[1], result.status, result.value)

    # ------------------------------------------------------------------ the batch

    def flush(self) -> None:
        core = self.core
        if core is not None:
            if self._proposals:
                self._propose()
            while core.has_ready():
                self._carry_out(core.ready())
        if self._replies:
            for identity, reply in self._replies.items():
                self.client_inbox.reply(identity, reply)
            self._replies = {}

    def _propose(self) -> None:
        proposals, self._proposals = self._proposals, []
        self._proposal_count = 0
        if len(proposals) == 1:
            payloads = proposals[0][2]
        else:
            payloads = [payload for _, _, run in proposals for payload in run]
        try:
            index = self.core.propose(payloads)
        except NotLeader as refused:
            hint = [refused.leader, self.client_addresses.get(refused.leader or "")]
            for identity, first, run in proposals:
                self._reply_to(identity).add_range(first, len(run), ReplyStatus.NOT_LEADER, hint)
            return
        term = self.core.term
        pending = self._pending
        for identity, first, run in proposals:
            pending.add(index, len(run), term, identity, first)
            index += len(run)

    def _carry_out(self, ready: Any) -> None:
        peers = self.peers
        stats = self.stats
        for m in ready.messages:
            if type(m) is AppendEntries:
                stats["append_messages"] += 1
                stats["append_entries"] += len(m.entries)
            peers.send(m.dst, m)
        w = ready.write
        if w is not None:
            write = LogWrite(w.write_id, w.entries, w.hard_state, w.must_sync, self._epoch)
            if not self._unacked:
                self._unacked_since = time.monotonic()
            self._unacked.append((write, w.last_index, w.last_term))
            self._next_write_id = w.write_id + 1
            self.log_link.send(write)
        if ready.committed:
            self.apply_link.send(ApplyBatch(ready.committed, bool(self._pending), self._apply_generation))
            self.stats["apply_entries"] += len(ready.committed)
        if ready.role_changed:
            self._on_role_change()

    def _on_role_change(self) -> None:
        core = self.core
        now = (core.role, core.term)
        if now != self._last_role:
            log.info("%s in term %d (leader: %s)", core.role.value, core.term, core.leader)
        self._last_role = now
        if self._pending and not (core.role is Role.LEADER and self._pending.all_in_term(core.term)):
            # Proposals of a lost leadership may or may not commit: the client
            # retries with the same sequence number, and sessions apply it once.
            for run in self._pending.take_all():
                self._reply_to(run.identity).add_range(run.first_request_id, run.count, ReplyStatus.LOST, None)

    # ------------------------------------------------------------------ status

    def status(self) -> dict[str, Any]:
        """What `sandzmq status` shows (SPEC 5), plus detail for the human view."""
        for inbox in (self.peer_inbox, self.client_inbox, self.local_inbox):
            inbox.drops  # reading it folds in the inbox's socket-monitor events
        counters = self.envelope.drops  # one envelope, so one set of counters, for all inboxes
        drops = counters.as_dict()
        drops["failed"] = self.failed_messages
        drops["foreign"] = self.foreign_messages
        # Messages the core refused as unbelievable (RaftCore.refused, by reason).
        refused = dict(self.core.refused) if self.core is not None else {}
        drops["unbelievable"] = sum(refused.values()) + self.forged_hellos
        dropped = counters.total + self.failed_messages + self.foreign_messages + drops["unbelievable"]
        core = self.core
        state = self._log_state
        if core is None and (state is None or self.phase == "starting"):
            return {
                "id": self.node_id, "role": "unreachable", "term": None, "leader": None,
                "commit_index": None, "applied_index": None, "last_index": None,
                "snapshot_index": None, "dropped": dropped, "pids": dict(self.pids), "followers": {}, "drops": drops,
            }
        if core is None:
            assert state is not None
            # Up, but not a member yet: it neither votes nor leads.
            waiting = ", ".join(self._waiting_for) or "its log-store"
            return {
                "id": self.node_id, "role": "learner" if self.phase == "joining" else "follower",
                "term": state.hard_state.term, "leader": None, "commit_index": state.hard_state.commit,
                "applied_index": self.applied_index, "last_index": state.last_index,
                "snapshot_index": state.first_index - 1, "dropped": dropped, "pids": dict(self.pids),
                "followers": {}, "drops": drops,
                "state": "waiting to be added (join = true)" if self.phase == "joining"
                else f"{self.phase}: waiting for {waiting}",
            }
        core_status = core.status()
        role = core.role.value if core.role is not Role.PRE_CANDIDATE else "candidate"
        return {
            "id": self.node_id,
            "role": role,
            "term": core.term,
            "leader": core.leader,
            "commit_index": core.commit,
            "applied_index": self.applied_index,
            "last_index": core.log.last_index,
            "snapshot_index": core.log.base_index,
            "dropped": dropped,
            "pids": dict(self.pids),
            "followers": core_status["followers"],
            "drops": drops,
            "durable_index": core.durable_index,
            "refused": refused,
            "stats": dict(self.stats),
        }
