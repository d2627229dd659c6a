"""Snapshots in the Raft core, one rule per test: compaction and its trailing
window, the SNAPSHOT progress state, InstallSnapshot's term rules, chunk
acknowledgements only once durable, installing (keep a matching suffix or
discard the log), HashiCorp raft issue 697's livelock, and hostile values.

`Net` is a tiny hand-driven cluster for these tests: FIFO delivery (with an
optional drop filter), writes durable at once unless held, snapshots kept in
memory as the owner's files would be, the state machine a list of commands.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from message_strategies import message_of
from raft_harness import entries, make_config
from sandzmq.raft import (
    AppendEntries,
    AppendEntriesResponse,
    CoreConfig,
    Entry,
    HardState,
    Heartbeat,
    InstallSnapshot,
    InstallSnapshotResponse,
    LogBase,
    MemoryLog,
    Message,
    PersistWrite,
    ProgressState,
    RaftCore,
    Ready,
    Role,
    SnapshotChunk,
)
from sandzmq.raft.messages import MAX_INDEX

ABC = ("a", "b", "c")


def config(**overrides) -> CoreConfig:
    base = {"snapshot_trailing": 2, "max_snapshot_chunk": 8, "max_snapshot_inflight": 2}
    base.update(overrides)
    return make_config(None, **base)


def of(messages: list[Message], cls: type, **fields) -> list:
    return [m for m in messages if isinstance(m, cls) and all(getattr(m, k) == v for k, v in fields.items())]


class Net:
    """Cores over a FIFO queue; each node's state machine is the list of the
    (index, data) it applied; a snapshot is that list pickled."""

    def __init__(self, ids: tuple[str, ...] = ABC, **overrides) -> None:
        self.config = config(**overrides)
        self.cores = {i: RaftCore(i, ids, config=self.config, seed=ord(i[0])) for i in ids}
        self.queue: list[Message] = []
        self.state: dict[str, list[tuple[int, bytes]]] = {i: [] for i in ids}
        self.snapshots: dict[str, dict[tuple[int, int], bytes]] = {i: {} for i in ids}
        self.partial: dict[str, bytearray] = {i: bytearray() for i in ids}
        self.writes: dict[str, list[PersistWrite]] = {i: [] for i in ids}
        self.readies: dict[str, list[Ready]] = {i: [] for i in ids}
        self.down: set[str] = set()
        self.auto_install = True

    def pump(self, node: str) -> None:
        core = self.cores[node]
        while core.has_ready():
            rd = core.ready()
            self.readies[node].append(rd)
            self.queue += rd.messages
            if rd.write is not None:
                self.writes[node].append(rd.write)
                for chunk in rd.write.chunks:
                    if chunk.offset == 0:
                        self.partial[node] = bytearray()
                    assert len(self.partial[node]) == chunk.offset
                    self.partial[node] += chunk.data
                core.persisted(rd.write.write_id)
            for e in rd.committed:
                self.state[node].append((e.index, e.data))
            if rd.committed:
                core.confirm_applied(rd.committed[-1].index)
            for r in rd.snapshot_reads:
                data = self.snapshots[node][(r.index, r.term)]
                chunk = data[r.offset : r.offset + self.config.max_snapshot_chunk]
                core.send_snapshot_chunk(r.peer, r.index, r.term, r.offset, chunk, r.offset + len(chunk) >= len(data))
            if rd.install_snapshot is not None and self.auto_install:
                self.install(node, *rd.install_snapshot)

    def install(self, node: str, index: int, term: int) -> None:
        """Verify the partial file (a garbage one fails, as a bad checksum would), then install."""
        try:
            state = pickle.loads(bytes(self.partial[node]))
            assert state[-1][0] == index
        except Exception:
            self.cores[node].snapshot_failed(index, term)
            return
        self.state[node] = state
        self.snapshots[node][(index, term)] = bytes(self.partial[node])
        self.cores[node].snapshot_installed(index, term)

    def take_snapshot(self, node: str) -> tuple[int, int]:
        core = self.cores[node]
        index = core.applied
        term = core.log.term(index)
        assert term is not None
        self.snapshots[node][(index, term)] = pickle.dumps(self.state[node])
        core.snapshot_taken(index, term)
        self.pump(node)
        return index, term

    def deliver_all(self, drop: Callable[[Message], bool] | None = None, rounds: int = 10_000) -> list[Message]:
        delivered = []
        for _ in range(rounds):
            if not self.queue:
                return delivered
            m = self.queue.pop(0)
            if m.dst in self.down or m.src in self.down or (drop is not None and drop(m)):
                continue
            delivered.append(m)
            self.cores[m.dst].step(m)
            self.pump(m.dst)
        raise AssertionError("the cluster never went quiet")

    def deliver_until(self, done: Callable[[], bool], rounds: int = 100) -> None:
        """Deliver queued messages one at a time until `done()` (checked
        before each): to look at the queue mid-exchange, before it is acked."""
        for _ in range(rounds):
            if done():
                return
            m = self.queue.pop(0)
            self.cores[m.dst].step(m)
            self.pump(m.dst)
        raise AssertionError("the condition never held")

    def tick(self, node: str | None = None, n: int = 1) -> None:
        for _ in range(n):
            for i, core in self.cores.items():
                if (node is None or i == node) and i not in self.down:
                    core.tick()
                    self.pump(i)

    def elect(self, node: str) -> None:
        for _ in range(50):
            self.tick(node)
            self.deliver_all()
            if self.cores[node].role is Role.LEADER:
                return
        raise AssertionError(f"{node} did not win")

    def propose(self, node: str, count: int) -> None:
        core = self.cores[node]
        core.propose([f"cmd{core.log.last_index + i + 1}".encode() for i in range(count)])
        self.pump(node)


# ---------------------------------------------------------------- compaction


def test_snapshot_taken_compacts_the_log_but_keeps_the_trailing_window() -> None:
    net = Net(("a",), snapshot_trailing=3)
    net.elect("a")
    net.propose("a", 10)
    a = net.cores["a"]
    assert a.applied == 11  # the no-op and ten commands
    index, term = net.take_snapshot("a")
    assert (a.snapshot_index, a.snapshot_term) == (11, term)
    assert a.log.base_index == 8 and a.log.first_index == 9
    assert a.log.term(7) is None and a.log.term(8) == term
    assert net.writes["a"][-1].base == LogBase(8, term)
    assert not net.writes["a"][-1].must_sync  # a compaction is not a durability point
    assert a.status()["snapshot_index"] == 11


def test_snapshot_rules_for_the_owner() -> None:
    net = Net(("a",), snapshot_trailing=0)
    net.elect("a")
    net.propose("a", 3)
    a = net.cores["a"]
    with pytest.raises(ValueError, match="past the applied"):
        a.snapshot_taken(a.applied + 1, a.term)
    with pytest.raises(ValueError, match="term"):
        a.snapshot_taken(a.applied, a.term + 1)
    net.take_snapshot("a")
    assert a.log.base_index == a.applied and len(a.log) == 0
    before = len(net.writes["a"])
    a.snapshot_taken(1, 1)  # older than what it has: nothing happens
    net.pump("a")
    assert len(net.writes["a"]) == before
    with pytest.raises(ValueError, match="below the log's base"):
        a.set_applied(0)


def test_without_snapshots_writes_and_readies_carry_nothing_new() -> None:
    net = Net()
    net.elect("a")
    net.propose("a", 5)
    net.deliver_all()
    for node in ABC:
        assert all(w.base is None and not w.chunks for w in net.writes[node])
        assert all(not r.snapshot_reads and r.install_snapshot is None for r in net.readies[node])


def test_a_briefly_absent_follower_catches_up_from_the_trailing_window_not_a_snapshot() -> None:
    net = Net(snapshot_trailing=20)
    net.elect("a")
    net.down.add("c")
    net.propose("a", 5)
    net.deliver_all()
    net.take_snapshot("a")
    net.down.discard("c")
    delivered = []
    for _ in range(3):
        net.tick("a", 2)
        delivered += net.deliver_all()
    assert not of(delivered, InstallSnapshot)
    assert net.state["c"] == net.state["a"] and net.cores["c"].snapshot_index == 0


# ---------------------------------------------------------------- leader: SNAPSHOT progress


def lagging_c(**overrides) -> Net:
    """a leads; c missed 12 commands, now compacted away on a."""
    net = Net(**overrides)
    net.elect("a")
    net.down.add("c")
    net.propose("a", 12)
    net.deliver_all()
    net.take_snapshot("a")
    assert net.cores["a"].log.base_index > net.cores["c"].log.last_index
    net.down.discard("c")
    return net


def test_a_follower_behind_the_log_base_gets_the_snapshot_and_then_the_log() -> None:
    net = lagging_c()
    a, c = net.cores["a"], net.cores["c"]
    net.tick("a", 2)  # a heartbeat: c answers, a probes, c rejects below the base
    delivered = net.deliver_all()
    assert of(delivered, InstallSnapshot, dst="c", done=True)
    assert of(delivered, InstallSnapshotResponse, src="c", installed=True)
    pr = a.progress["c"]
    assert pr.state is ProgressState.PROBE and pr.match == a.snapshot_index  # back to the log
    assert c.snapshot_index == a.snapshot_index and c.applied >= a.snapshot_index
    net.propose("a", 3)
    net.deliver_all()
    net.tick("a", 2)
    net.deliver_all()
    assert pr.state is ProgressState.REPLICATE and pr.match == a.log.last_index
    assert net.state["c"] == net.state["a"] == net.state["b"]
    assert c.log.term(c.log.last_index) == a.log.term(a.log.last_index)


def test_the_leader_keeps_a_window_of_chunks_in_flight() -> None:
    net = lagging_c(max_snapshot_inflight=2, max_snapshot_chunk=4)
    a = net.cores["a"]
    net.tick("a", 2)
    # Deliver until a first InstallSnapshot is queued, then look at the queue without acking.
    net.deliver_until(lambda: bool(of(net.queue, InstallSnapshot)))
    pr = a.progress["c"]
    assert pr.state is ProgressState.SNAPSHOT
    assert len(of(net.queue, InstallSnapshot)) == 2 and pr.is_paused()
    assert [m.offset for m in of(net.queue, InstallSnapshot)] == [0, 4]
    assert not of(net.queue, AppendEntries, dst="c")  # no entries while streaming


def test_a_lost_chunk_is_sent_again() -> None:
    net = lagging_c(max_snapshot_chunk=4)
    lost = []

    def lose_first(m: Message) -> bool:
        if isinstance(m, InstallSnapshot) and m.offset == 4 and not lost:
            lost.append(m)
            return True
        return False

    net.tick("a", 2)
    net.deliver_all(drop=lose_first)
    for _ in range(20):
        net.tick("a", 2)
        net.deliver_all()
    assert lost
    assert net.cores["c"].snapshot_index == net.cores["a"].snapshot_index
    assert net.cores["a"].progress["c"].state is ProgressState.PROBE
    assert net.cores["a"].progress["c"].match == net.cores["a"].snapshot_index
    assert net.state["c"] == net.state["a"]


def test_lost_acknowledgements_are_recovered_after_a_few_heartbeats() -> None:
    net = lagging_c(max_snapshot_chunk=4)
    net.tick("a", 2)
    net.deliver_all(drop=lambda m: isinstance(m, InstallSnapshotResponse))
    assert net.cores["a"].progress["c"].state is ProgressState.SNAPSHOT
    for _ in range(20):
        net.tick("a", 2)
        net.deliver_all()
    assert net.cores["a"].progress["c"].state is ProgressState.PROBE
    assert net.cores["a"].progress["c"].match == net.cores["a"].snapshot_index
    assert net.state["c"] == net.state["a"]


def test_a_stale_read_is_not_sent() -> None:
    net = lagging_c()
    a = net.cores["a"]
    assert not a.send_snapshot_chunk("c", a.snapshot_index, a.snapshot_term, 0, b"x", False)  # not streaming
    assert not a.send_snapshot_chunk("zz", a.snapshot_index, a.snapshot_term, 0, b"x", False)
    with pytest.raises(ValueError):
        a.send_snapshot_chunk("c", a.snapshot_index, a.snapshot_term, 0, b"x" * 100, False)


# ---------------------------------------------------------------- follower: term rules and durability


def chunk(term: int = 2, index: int = 5, sterm: int = 2, offset: int = 0, data: bytes = b"abcd", done: bool = False):
    return InstallSnapshot("a", "b", term, index, sterm, offset, data, done)


def test_a_chunk_is_acknowledged_only_once_durable() -> None:
    b = RaftCore("b", ABC, config=config())
    b.step(chunk())
    rd = b.ready()
    assert not of(rd.messages, InstallSnapshotResponse)
    assert rd.write is not None and rd.write.must_sync
    assert rd.write.chunks == [SnapshotChunk(5, 2, 0, b"abcd", False)]
    assert b.ready().messages == []
    b.persisted(rd.write.write_id)
    (reply,) = of(b.ready().messages, InstallSnapshotResponse)
    assert (reply.dst, reply.next_offset, reply.installed, reply.rejected) == ("a", 4, False, False)


def test_install_snapshot_term_rules() -> None:
    b = RaftCore("b", ABC, config=config(), hard_state=HardState(term=3))
    b.election_elapsed = 5
    b.step(chunk(term=2, sterm=2))  # stale leader: refused, told our term
    rd = b.ready()
    assert rd.write is None
    (reply,) = of(rd.messages, InstallSnapshotResponse)
    assert reply.term == 3 and reply.rejected
    assert b.election_elapsed == 5

    b.step(chunk(term=4, sterm=2))  # a newer leader: adopt its term, count it as hearing from it
    assert (b.term, b.leader, b.role, b.election_elapsed) == (4, "a", Role.FOLLOWER, 0)

    c = RaftCore("c", ABC, config=config(pre_vote=False), hard_state=HardState(term=2))
    while c.role is not Role.CANDIDATE:
        c.tick()
    c.step(InstallSnapshot("a", "c", c.term, 5, 2, 0, b"x", False))
    assert c.role is Role.FOLLOWER and c.leader == "a"


def test_a_gap_is_rejected_with_the_offset_held_and_a_duplicate_acknowledged() -> None:
    b = RaftCore("b", ABC, config=config())
    b.step(chunk(offset=4))  # nothing received: start from 0
    rd = b.ready()
    assert rd.write is None or not rd.write.chunks
    if rd.write:
        b.persisted(rd.write.write_id)
    (reply,) = of(rd.messages + b.ready().messages, InstallSnapshotResponse)
    assert reply.rejected and reply.next_offset == 0

    b.step(chunk(offset=0))
    b.persisted(b.ready().write.write_id)
    b.ready()
    b.step(chunk(offset=0))  # a duplicate: acknowledge what we hold
    (reply,) = of(b.ready().messages, InstallSnapshotResponse)
    assert not reply.rejected and reply.next_offset == 4
    b.step(chunk(offset=8))  # a gap
    (reply,) = of(b.ready().messages, InstallSnapshotResponse)
    assert reply.rejected and reply.next_offset == 4


def receive_whole(b: RaftCore, index: int, sterm: int, term: int | None = None) -> Ready:
    """Step a one-chunk snapshot into b and make it durable; returns the Ready asking to install."""
    term = term or sterm
    b.step(InstallSnapshot("a", "b", term, index, sterm, 0, b"state", True))
    rd = b.ready()
    b.persisted(rd.write.write_id)
    rd = b.ready()
    assert rd.install_snapshot == (index, sterm)
    assert not rd.committed
    return rd


def test_install_discards_a_log_that_conflicts_with_the_snapshot_hashicorp_697() -> None:
    """b holds entries 4 and 5 of an old term 2; the snapshot ends at (5, term 3).
    Keeping entry 5 would make b reject every AppendEntries after the snapshot
    (prev (5, t3) never matches), and the leader send the snapshot forever."""
    b = RaftCore(
        "b", ABC, config=config(), hard_state=HardState(term=3, commit=3), log=MemoryLog(entries([1, 1, 1, 2, 2]))
    )
    receive_whole(b, 5, 3)
    b.snapshot_installed(5, 3)
    rd = b.ready()
    assert rd.write is not None and rd.write.base == LogBase(5, 3, discard=True) and rd.write.must_sync
    assert (rd.write.last_index, rd.write.last_term) == (5, 3)
    assert not of(rd.messages, InstallSnapshotResponse)  # held until the new base is durable
    b.persisted(rd.write.write_id)
    (reply,) = of(b.ready().messages, InstallSnapshotResponse)
    assert reply.installed and reply.snapshot_index == 5
    assert (b.log.base_index, b.log.last_index, b.log.term(5), b.commit, b.applied) == (5, 5, 3, 5, 5)
    # The next AppendEntries after the snapshot matches: no livelock.
    b.step(AppendEntries("a", "b", 3, 5, 3, [Entry(6, 3, b"x")], commit=6))
    rd = b.ready()
    b.persisted(rd.write.write_id)
    (ack,) = of(b.ready().messages, AppendEntriesResponse)
    assert ack.success and ack.index == 6


def test_install_keeps_the_log_after_a_matching_last_entry() -> None:
    b = RaftCore("b", ABC, config=config(), hard_state=HardState(term=1, commit=2), log=MemoryLog(entries([1] * 7)))
    receive_whole(b, 5, 1)
    b.snapshot_installed(5, 1)
    rd = b.ready()
    assert rd.write.base == LogBase(5, 1, discard=False)
    assert (b.log.base_index, b.log.last_index, b.commit, b.applied) == (5, 7, 5, 5)
    assert b.log.entries(6, 8) == entries([1, 1], start=6)


def test_a_snapshot_the_log_already_covers_is_answered_installed() -> None:
    b = RaftCore("b", ABC, config=config(), hard_state=HardState(term=2, commit=5), log=MemoryLog(entries([1] * 5)))
    b.step(chunk(index=4, sterm=1))
    (reply,) = of(b.ready().messages, InstallSnapshotResponse)
    assert reply.installed and b.log.base_index == 0


def test_a_failed_verification_asks_for_the_snapshot_again() -> None:
    b = RaftCore("b", ABC, config=config())
    receive_whole(b, 5, 2)
    with pytest.raises(ValueError):
        b.snapshot_installed(6, 2)
    b.snapshot_failed(5, 2)
    (reply,) = of(b.ready().messages, InstallSnapshotResponse)
    assert reply.rejected and reply.next_offset == 0
    assert b.log.base_index == 0 and b.commit == 0


def test_a_restart_after_the_snapshot_but_before_the_log_was_rewritten_installs_it_again() -> None:
    conflicting = RaftCore("b", ABC, log=MemoryLog(entries([1, 1, 2])), snapshot=(5, 3), applied=5)
    assert (conflicting.log.base_index, conflicting.log.last_index, conflicting.commit) == (5, 5, 5)
    assert conflicting.ready().write.base == LogBase(5, 3, discard=True)
    matching = RaftCore("b", ABC, log=MemoryLog(entries([1] * 8)), snapshot=(5, 1), applied=5)
    assert (matching.log.base_index, matching.log.last_index, matching.commit) == (5, 8, 5)
    with pytest.raises(ValueError):
        RaftCore("b", ABC, log=MemoryLog(entries([1] * 8)), snapshot=(5, 1), applied=2)


# ---------------------------------------------------------------- hostile values


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (InstallSnapshot("a", "b", 2, 5, 3, 0, b"x", False), "snapshot out of range"),  # snapshot term above term
        (InstallSnapshot("a", "b", 2, 0, 1, 0, b"x", False), "snapshot out of range"),
        (InstallSnapshot("a", "b", 2, MAX_INDEX + 1, 1, 0, b"x", False), "snapshot out of range"),
        (InstallSnapshot("a", "b", 2, 5, 0, 0, b"x", False), "snapshot out of range"),
        (InstallSnapshot("a", "b", 2, 5, 1, MAX_INDEX + 1, b"x", False), "snapshot chunk out of range"),
        (InstallSnapshot("a", "b", 2, 5, 1, 0, b"x" * 9, False), "snapshot chunk out of range"),
        (InstallSnapshotResponse("a", "b", 2, MAX_INDEX + 1, 1, 0), "snapshot response out of range"),
        (InstallSnapshotResponse("a", "b", 2, 5, 3, 0), "snapshot response out of range"),
        (InstallSnapshotResponse("a", "b", 2, 5, 1, MAX_INDEX + 1), "snapshot response out of range"),
    ],
)
def test_unbelievable_snapshot_messages_are_refused(message: Message, reason: str) -> None:
    b = RaftCore("b", ABC, config=config(), hard_state=HardState(term=2))
    b.step(message)
    assert b.refused == {reason: 1}
    assert b.term == 2 and not b.ready()


def test_a_response_acknowledging_bytes_never_sent_is_refused() -> None:
    net = lagging_c(max_snapshot_chunk=4, max_snapshot_inflight=1)
    a = net.cores["a"]
    net.tick("a", 2)
    net.deliver_until(lambda: bool(of(net.queue, InstallSnapshot)))
    pr = a.progress["c"]
    assert pr.state is ProgressState.SNAPSHOT and pr.snap_sent == 4
    a.step(InstallSnapshotResponse("c", "a", a.term, a.snapshot_index, a.snapshot_term, 9))
    assert a.refused == {"acknowledges snapshot bytes never sent": 1}
    assert pr.snap_acked == 0


def test_installed_before_any_chunk_was_sent_is_refused() -> None:
    net = lagging_c()
    a = net.cores["a"]
    net.tick("a", 2)
    for _ in range(100):  # up to the moment a enters SNAPSHOT, before the owner reads a chunk
        if a.progress["c"].state is ProgressState.SNAPSHOT:
            break
        m = net.queue.pop(0)
        net.cores[m.dst].step(m)
        if m.dst == "a":
            rd = a.ready()
            net.queue += rd.messages
            if a.progress["c"].state is ProgressState.SNAPSHOT:
                break
        else:
            net.pump(m.dst)
    assert a.progress["c"].state is ProgressState.SNAPSHOT and not a.progress["c"].snap_started
    a.step(InstallSnapshotResponse("c", "a", a.term, a.snapshot_index, a.snapshot_term, 0, installed=True))
    assert a.refused == {"acknowledges snapshot bytes never sent": 1}
    assert a.progress["c"].match < a.snapshot_index


def test_heartbeat_and_snapshot_roles_interleave_safely() -> None:
    """A heartbeat during a stream changes nothing in the stream."""
    b = RaftCore("b", ABC, config=config())
    b.step(chunk(term=2))
    b.step(Heartbeat("a", "b", 2, commit=0))
    rd = b.ready()
    assert rd.write.chunks and b.leader == "a"


def test_a_node_installing_a_snapshot_does_not_campaign() -> None:
    """The install rewrites the log: it must never land on a leader's log."""
    b = RaftCore("b", ABC, config=config())
    receive_whole(b, 5, 2)
    for _ in range(100):
        b.tick()
    assert b.role is Role.FOLLOWER
    b.snapshot_installed(5, 2)
    for _ in range(100):
        b.tick()
    assert b.role is not Role.FOLLOWER


# ---------------------------------------------------------------- hostile sequences

snapshot_messages = st.one_of(message_of(InstallSnapshot), message_of(InstallSnapshotResponse))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(snapshot_messages, st.booleans(), st.integers(0, 3)), max_size=25))
def test_hostile_snapshot_messages_never_raise_and_never_lie_about_progress(steps) -> None:
    """Any sequence of snapshot messages, from any values the codec lets
    through, into a streaming leader and a follower: nothing raises, a
    leader's acknowledged offset never passes what it sent, and a follower
    never installs or acknowledges what it has not received."""
    net = lagging_c(max_snapshot_chunk=4)
    a, c = net.cores["a"], net.cores["c"]
    net.tick("a", 2)
    for _ in range(6):  # part of the stream, then hostile traffic
        if net.queue:
            m = net.queue.pop(0)
            net.cores[m.dst].step(m)
            net.pump(m.dst)
    for message, to_leader, term_shift in steps:
        message.src, message.dst = ("c", "a") if to_leader else ("a", "c")
        if message.term > 2**40:
            message.term = a.term + term_shift  # mostly plausible terms, so the deeper checks run
        net.cores[message.dst].step(message)
        net.pump(message.dst)
        pr = a.progress.get("c")
        if a.role is Role.LEADER and pr is not None and pr.state is ProgressState.SNAPSHOT:
            assert pr.snap_acked <= pr.snap_sent
        assert c.applied <= c.commit
    net.queue.clear()
