"""A hand-driven node core with in-memory partners, for tests/test_node_core.py.

Nothing happens unless the test says so: time passes only through `tick`
and `clock.advance`; after each input `run()` flushes the core and, unless
told to hold them, hands its log-store traffic to an in-memory log-store
(FakeLogStore, which keeps actors/log_store.py's rules: writes in order
within the synced epoch, a LogGap otherwise, LogDurable naming where the log
ends) and its apply traffic to an in-memory apply actor (FakeApply: batches
only in order, ApplyState otherwise), and feeds their answers back, until
nothing moves. Peer messages and client answers are collected for the test
to read. No sockets, no threads, no wall clock.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from sandzmq.node.core import NodeCore
from sandzmq.node.output import Output
from sandzmq.protocol import (
    ApplyBatch,
    ApplyResults,
    ApplyState,
    ClientQuery,
    ClientSubmit,
    ClusterHello,
    LocalQuery,
    LocalQueryResult,
    LogDurable,
    LogGap,
    LogIdentity,
    LogState,
    LogSync,
    LogWrite,
    PeerHello,
    ReplyStatus,
    StatusRequest,
)
from sandzmq.raft import (
    AppendEntries,
    AppendEntriesResponse,
    Entry,
    EntryKind,
    HardState,
    Heartbeat,
    HeartbeatResponse,
    RequestVote,
    RequestVoteResponse,
    Role,
)
from sandzmq.raft.messages import MESSAGE_TYPES

from sandzmq.config import ClusterConfig, NodeConfig, RaftOptions

CLUSTER_ID = "00000000000000c1"
APPLY_INCARNATION = 7
TRANSPORT_DROPS = {
    "malformed": 0,
    "oversized": 0,
    "version": 0,
    "cluster": 0,
    "unknown_type": 0,
    "wrong_socket": 0,
    "handshake_failed": 0,
    "disconnects": 0,
    "total": 0,
}


def make_config(nodes: Iterable[str] = ("n1",), join: Iterable[str] = (), **raft: Any) -> ClusterConfig:
    """A config with these nodes (no file behind it: the core reads none)."""
    joining = set(join)
    return ClusterConfig(
        path=Path("/nonexistent/cluster.toml"),
        name="coretest",
        state_machine="kv",
        state_machine_options={},
        data_dir=Path("/nonexistent"),
        raft=RaftOptions(**raft),
        nodes=tuple(
            NodeConfig(node, f"tcp://127.0.0.1:{7000 + i}", f"tcp://127.0.0.1:{7100 + i}", join=node in joining)
            for i, node in enumerate(nodes)
        ),
    )


def entries(terms: Iterable[int], start: int = 1) -> list[Entry]:
    return [Entry(start + i, term, f"{start + i}@{term}".encode()) for i, term in enumerate(terms)]


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def advance(self, seconds: float) -> None:
        self.now += seconds


class FakeLogStore:
    """The log-store's half of its protocol, in memory; also the node core's cold reader."""

    def __init__(
        self,
        log: Iterable[Entry] = (),
        hard_state: HardState | None = None,
        cluster_id: str = CLUSTER_ID,
        proposal: int = 0,
    ) -> None:
        self.log: list[Entry] = list(log)
        self.hard_state = hard_state or HardState()
        self.cluster_id, self.proposal = cluster_id, proposal
        self.incarnation = 1
        self.epoch = 0
        self.expected = 1
        self.sync_nonce = 0
        self.durable = 0
        self.cold_reads: list[tuple[int, int]] = []
        self.identities: list[LogIdentity] = []

    @property
    def last_index(self) -> int:
        return len(self.log)

    @property
    def last_term(self) -> int:
        return self.log[-1].term if self.log else 0

    def state(self, nonce: int) -> LogState:
        return LogState(
            nonce,
            4242,
            self.incarnation,
            self.hard_state,
            1,
            self.last_index,
            self.last_term,
            self.durable,
            self.cluster_id,
            self.proposal,
        )

    def take(self, msg: Any) -> list[Any]:
        """The log-store's answers to `msg`."""
        if isinstance(msg, LogSync):
            self.epoch, self.expected, self.sync_nonce = msg.epoch, msg.next_write_id, msg.nonce
            return [self.state(msg.nonce)]
        if isinstance(msg, LogIdentity):
            self.identities.append(msg)
            self.cluster_id, self.proposal = msg.cluster_id, msg.proposal
            return [self.state(msg.nonce)]
        assert isinstance(msg, LogWrite), msg
        if (msg.epoch, msg.write_id) != (self.epoch, self.expected):
            return [LogGap(self.sync_nonce, self.expected)]
        self.expected += 1
        if msg.entries:
            first = msg.entries[0].index
            assert first <= self.last_index + 1, "a write that leaves a gap"
            self.log[first - 1 :] = list(msg.entries)
        if msg.hard_state is not None:
            self.hard_state = msg.hard_state
        self.durable = msg.write_id
        return [LogDurable(msg.write_id, self.last_index, self.last_term, msg.epoch)]

    def restart(self) -> None:
        """A new incarnation: it takes writes again only after a LogSync."""
        self.incarnation += 1
        self.epoch, self.expected = 0, 1

    # the cold reader (raft/log.py ColdReader)
    def entries(self, lo: int, hi: int) -> list[Entry]:
        self.cold_reads.append((lo, hi))
        return self.log[lo - 1 : hi - 1]

    def term_at(self, index: int) -> int | None:
        return self.log[index - 1].term if 0 < index <= len(self.log) else None


class FakeApply:
    """The apply actor's half of its protocol: results are the commands' own bytes."""

    def __init__(self) -> None:
        self.applied = 0
        self.incarnation = APPLY_INCARNATION
        self.batches: list[ApplyBatch] = []

    def take(self, msg: Any) -> list[Any]:
        if isinstance(msg, LocalQuery):
            return [LocalQueryResult(msg.request_id, int(ReplyStatus.OK), b"local " + msg.query)]
        assert isinstance(msg, ApplyBatch), msg
        self.batches.append(msg)
        if msg.entries[0].index != self.applied + 1:
            return [ApplyState(4343, self.applied, self.incarnation, msg.generation)]
        self.applied = msg.entries[-1].index
        normal = [e for e in msg.entries if e.kind == EntryKind.NORMAL] if msg.want_results else []
        return [ApplyResults.of([(e.index, e.term, ReplyStatus.OK, e.data) for e in normal], self.applied)]

    def hello(self) -> ApplyState:
        """What a (re)started apply actor says first."""
        return ApplyState(4343, self.applied, self.incarnation, 0)


class Node:
    """One node core, its fake clock, log-store and apply actor, and what it sent."""

    def __init__(
        self,
        nodes: Iterable[str] = ("n1",),
        me: str = "n1",
        *,
        join: Iterable[str] = (),
        disk: FakeLogStore | None = None,
        seed: int = 1,
        **raft: Any,
    ) -> None:
        self.config = make_config(nodes, join, **raft)
        self.clock = FakeClock()
        self.disk = disk if disk is not None else FakeLogStore()
        self.apply = FakeApply()
        self.core = NodeCore(self.config, me, cold=self.disk, pid=4141, randbits=random.Random(seed).getrandbits)
        self.hold_log = False  # keep log-store traffic in `to_log` instead of delivering it
        self.hold_apply = False  # keep apply traffic in `to_apply`
        self.to_log: list[Any] = []
        self.to_apply: list[Any] = []
        self.to_peers: list[Any] = []
        self.replies: dict[bytes, list[tuple[int, int, Any]]] = {}
        self.answers: list[tuple[bytes, Any]] = []
        self.refused: str | None = None
        self.core.start(self.clock.now)

    # ------------------------------------------------------------------ driving

    def deliver(self, msg: Any, sender: bytes | None = None) -> None:
        """Hand `msg` to the core as the raft actor would, then run()."""
        core, now = self.core, self.clock.now
        kind = type(msg)
        if kind in MESSAGE_TYPES:
            core.peer_message(msg)
        elif kind is PeerHello:
            core.peer_hello(msg)
        elif kind is ClientSubmit:
            core.client_submit(sender, msg)
        elif kind is ClientQuery:
            core.client_query(sender, msg)
        elif kind is StatusRequest:
            assert sender is not None
            core.status_request(sender, msg, TRANSPORT_DROPS)
        elif kind is ClusterHello:
            core.cluster_hello(sender, msg)
        elif kind is LogState:
            core.log_state(msg, now)
        elif kind is LogDurable:
            core.log_durable(msg, now)
        elif kind is LogGap:
            core.log_gap(msg, now)
        elif kind is ApplyState:
            core.apply_state(msg, now)
        elif kind is ApplyResults:
            core.apply_results(msg, now)
        elif kind is LocalQueryResult:
            core.local_query_result(msg)
        else:
            raise AssertionError(f"no input for {msg!r}")
        self.run()

    def tick(self, n: int = 1) -> None:
        for _ in range(n):
            self.clock.advance(self.config.raft.tick_ms / 1000.0)
            self.core.tick(self.clock.now)
            self.run()

    def run(self) -> None:
        """Flush, deliver log-store and apply traffic (unless held) and their
        answers, until nothing moves."""
        for _ in range(10_000):
            out = self.core.flush(self.clock.now)
            if out is None:
                return
            self._record(out)
            answers: list[Any] = []
            for box, hold, partner in (
                (out.log_store, self.hold_log, self.disk),
                (out.apply, self.hold_apply, self.apply),
            ):
                if hold:
                    (self.to_log if partner is self.disk else self.to_apply).extend(box)
                else:
                    for msg in box:
                        answers.extend(partner.take(msg))
            for answer in answers:
                self._input(answer)
        raise AssertionError("the node core never settled")

    def _input(self, msg: Any) -> None:
        now = self.clock.now
        core = self.core
        kind = type(msg)
        handlers = {
            LogState: core.log_state,
            LogDurable: core.log_durable,
            LogGap: core.log_gap,
            ApplyState: core.apply_state,
            ApplyResults: core.apply_results,
        }
        if kind is LocalQueryResult:
            core.local_query_result(msg)
        else:
            handlers[kind](msg, now)

    def _record(self, out: Output) -> None:
        self.to_peers.extend(out.peers)
        for identity, reply in out.replies.items():
            self.replies.setdefault(identity, []).extend(reply.replies)
        self.answers.extend(out.answers)
        if out.refuse is not None:
            self.refused = out.refuse

    def release_log(self) -> None:
        """Deliver the held log-store traffic (and keep delivering from now on)."""
        self.hold_log = False
        held, self.to_log = self.to_log, []
        for msg in held:
            for answer in self.disk.take(msg):
                self._input(answer)
        self.run()

    # ------------------------------------------------------------------ reading

    @property
    def raft(self) -> Any:
        return self.core.raft

    def status(self) -> dict[str, Any]:
        return self.core.status(TRANSPORT_DROPS)

    def sent(self, cls: type, **fields: Any) -> list[Any]:
        """Peer messages sent so far of `cls` with these field values."""
        return [m for m in self.to_peers if isinstance(m, cls) and all(getattr(m, k) == v for k, v in fields.items())]

    def take_peers(self) -> list[Any]:
        sent, self.to_peers = self.to_peers, []
        return sent

    def replies_to(self, identity: bytes) -> list[tuple[int, int, Any]]:
        return self.replies.get(identity, [])

    def tick_until(self, predicate: Any, what: str, limit: int = 200) -> None:
        for _ in range(limit):
            if predicate():
                return
            self.tick()
        assert predicate(), f"{what}: not after {limit} ticks ({self.status()})"

    # ------------------------------------------------------------------ set-ups

    def start_member(self) -> Node:
        """The log-store and the apply actor answer: the node is a member, its Raft core runs."""
        self.run()  # the LogSync of start(), answered by the log-store (identity CLUSTER_ID)
        self.deliver(self.apply.hello())
        assert self.core.startup.phase == "member", self.core.startup.phase
        return self

    def lead_alone(self) -> Node:
        """A one-node cluster: member, leader, its no-op committed and applied."""
        self.start_member()
        self.tick_until(lambda: self.raft.role is Role.LEADER, "leadership")
        assert self.apply.applied >= self.raft.commit >= 1
        return self

    def answer_peers(self) -> None:
        """Play every peer: grant votes, acknowledge appends and heartbeats, once, for what is queued."""
        for m in self.take_peers():
            if isinstance(m, RequestVote):
                self.deliver(RequestVoteResponse(m.dst, m.src, m.term, granted=True, pre_vote=m.pre_vote))
            elif isinstance(m, AppendEntries):
                self.deliver(
                    AppendEntriesResponse(m.dst, m.src, m.term, success=True, index=m.prev_index + len(m.entries))
                )
            elif isinstance(m, Heartbeat):
                self.deliver(HeartbeatResponse(m.dst, m.src, m.term, m.context))

    def lead_three(self) -> Node:
        """n1 leads n2 and n3 (played by answer_peers); the disk starts at term 1, so
        the first-election gate is past."""
        self.start_member()
        for _ in range(100):
            if self.raft.role is Role.LEADER:
                break
            self.tick()
            self.answer_peers()
        assert self.raft.role is Role.LEADER
        self.answer_peers()
        return self


def three(me: str = "n1", **kw: Any) -> Node:
    """A node of n1, n2, n3 whose log-store holds term 1 (elections have happened)."""
    kw.setdefault("disk", FakeLogStore(hard_state=HardState(term=1)))
    return Node(("n1", "n2", "n3"), me, **kw)


def messages_of(msgs: Iterable[Any], cls: type) -> list[Any]:
    return [m for m in msgs if isinstance(m, cls)]
