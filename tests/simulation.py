"""A deterministic simulation of Raft clusters, for finding bugs in the core.

Several RaftCores run over a fake network that drops, duplicates, delays,
reorders and partitions messages; each node has a fake disk whose writes
complete after a random delay, and nodes crash (losing every write not yet
complete and everything in memory) and restart from their disk. After every
event the safety properties of the Raft paper's Figure 3 are checked:

- election safety: at most one leader per term;
- leader append-only: a leader never overwrites or deletes its own entries;
- log matching: entries with the same index and term hold the same command
  and follow the same history (checked as: each (index, term) ever written
  anywhere has one command and one predecessor term);
- leader completeness: a new leader's log holds every entry known committed;
- state machine safety: no two nodes apply different entries at one index.

Snapshots (in most runs): nodes snapshot their state machine (the list of
entries it applied) at random points, the core compacts its log behind a
trailing window, and followers that fall behind it (partitions, crashes)
catch up by InstallSnapshot, its chunks dropped, duplicated, reordered, and
nodes crashing mid-install (before or after the snapshot file is renamed into
place). On top of the invariants above:
- a snapshot never covers uncommitted entries, and every installed
  snapshot's entries agree with what was committed;
- no applied index goes backwards within a node's life;
- an InstallSnapshotResponse leaves only once what it acknowledges is on the
  node's disk (the chunk bytes, or the entries / snapshot it claims);
- every replica's state is equal at the end.

Then the faults stop (partitions heal, crashed nodes restart, links deliver in
order without loss, as ZeroMQ over TCP does) and liveness is checked: a leader is elected and every command proposed after
the faults stopped is applied on every node.

Everything is driven by one seed, so any failure replays exactly, and
--verbose prints it as a protocol trace (sandzmq.protocol.describe: every
message delivered, dropped or lost, every write a core asks for):

    python tests/simulation.py --seed 1234 --verbose
    python tests/simulation.py --seeds 0:20000          # a soak
    python tests/simulation.py --mutate commit-rule     # does it catch a deliberate bug?
"""

from __future__ import annotations

import argparse
import heapq
import pickle
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing import get_context

from sandzmq.protocol import LogWrite, describe
from sandzmq.raft import (
    CoreConfig,
    Entry,
    HardState,
    InstallSnapshotResponse,
    MemoryLog,
    Message,
    NotLeader,
    PersistWrite,
    RaftCore,
    RequestVoteResponse,
    Role,
)


class InvariantViolation(AssertionError):
    """A Raft safety or liveness property failed."""


@dataclass
class Faults:
    """How hostile one run is. Probabilities are per message or per tick."""

    drop: float = 0.0
    duplicate: float = 0.0
    max_delay: float = 1.0  # ticks; a random delay in [0.05, max_delay] reorders messages
    max_disk_delay: float = 1.0  # ticks until a write is durable
    crash: float = 0.0  # per tick, for the whole cluster
    crash_leader: float = 0.0  # per tick: the leader crashes
    crash_after_event: float = 0.0  # per event a node handles: it crashes right after
    # (messages sent, disk write not yet complete)
    late: float = 0.0  # per message: a copy also arrives 5 to 40 ticks later
    new_leader_lost: float = 0.0  # per election: the winner crashes at once, or is cut off
    # alone, its first entries on no other node (Figure 8's S5)
    partition: float = 0.0  # per tick: start a random partition or heal it

    @classmethod
    def draw(cls, rng: random.Random) -> Faults:
        level = rng.choice(["calm", "lossy", "chaotic", "crashy", "storm"])
        if level == "storm":
            # Short-lived leaders and voters that forget: what Figure 8 and a
            # vote lost in a crash need to show up.
            return cls(
                drop=rng.choice([0.0, 0.05]),
                max_delay=rng.choice([0.5, 2.0]),
                max_disk_delay=rng.choice([0.5, 2.0]),
                crash=rng.choice([0.02, 0.05]),
                crash_leader=rng.choice([0.05, 0.1]),
                crash_after_event=rng.choice([0.005, 0.02]),
                late=rng.choice([0.01, 0.05]),
                new_leader_lost=rng.choice([0.2, 0.5]),
            )
        if level == "calm":
            return cls(max_delay=rng.choice([0.5, 1.0]), max_disk_delay=rng.choice([0.2, 1.0]))
        if level == "lossy":
            return cls(
                drop=rng.choice([0.05, 0.2]), duplicate=rng.choice([0.0, 0.05]), max_delay=rng.choice([1.0, 3.0])
            )
        if level == "crashy":
            return cls(
                drop=0.02,
                max_delay=rng.choice([1.0, 3.0]),
                max_disk_delay=rng.choice([0.5, 2.0]),
                crash=rng.choice([0.0, 0.01, 0.03]),
                crash_leader=rng.choice([0.01, 0.03]),
                crash_after_event=rng.choice([0.0, 0.002, 0.01]),
                new_leader_lost=rng.choice([0.0, 0.2]),
            )
        return cls(
            drop=rng.choice([0.05, 0.1, 0.3]),
            duplicate=rng.choice([0.02, 0.1]),
            max_delay=rng.choice([1.0, 3.0, 6.0]),
            max_disk_delay=rng.choice([0.2, 1.0, 2.0]),
            crash=rng.choice([0.0, 0.01, 0.02]),
            crash_leader=rng.choice([0.0, 0.01]),
            crash_after_event=rng.choice([0.0, 0.002]),
            partition=rng.choice([0.0, 0.02, 0.05]),
            late=rng.choice([0.0, 0.01]),
            new_leader_lost=rng.choice([0.0, 0.2]),
        )


@dataclass
class Disk:
    """What survives a crash: the hard state, the log entries after the log's
    base, the snapshots (renamed into place whole) and a partial snapshot
    being received."""

    hard_state: HardState = field(default_factory=HardState)
    entries: list[Entry] = field(default_factory=list)  # (base_index, last_index]
    base_index: int = 0
    base_term: int = 0
    snapshots: dict[tuple[int, int], bytes] = field(default_factory=dict)  # (index, term) -> state
    partial: tuple[int, int, bytearray] | None = None

    @property
    def last_index(self) -> int:
        return self.base_index + len(self.entries)

    @property
    def last_term(self) -> int:
        return self.entries[-1].term if self.entries else self.base_term

    def term_at(self, index: int) -> int | None:
        if index == self.base_index:
            return self.base_term
        if self.base_index < index <= self.last_index:
            return self.entries[index - self.base_index - 1].term
        return None

    def holds(self, index: int, term: int) -> bool:
        """Whether the entry (index, term) is on this disk, or covered by its snapshot."""
        return index <= self.base_index or self.term_at(index) == term

    def newest_snapshot(self) -> tuple[int, int] | None:
        return max(self.snapshots) if self.snapshots else None

    def write(self, w: PersistWrite) -> str | None:
        """Carry out one write; returns what is wrong with it, if anything."""
        if w.base is not None:
            if w.base.index < self.base_index:
                return f"log base moves back from {self.base_index} to {w.base.index}"
            if w.base.discard:
                self.entries = []
            else:
                self.entries = self.entries[max(0, w.base.index - self.base_index) :]
            self.base_index, self.base_term = w.base.index, w.base.term
        if w.entries:
            del self.entries[w.entries[0].index - self.base_index - 1 :]
            self.entries.extend(w.entries)
        if w.hard_state is not None:
            hs = w.hard_state
            self.hard_state = HardState(hs.term, hs.vote, hs.commit)
        for chunk in w.chunks:
            if chunk.offset == 0:
                self.partial = (chunk.index, chunk.term, bytearray())
            partial = self.partial
            if partial is None or partial[:2] != (chunk.index, chunk.term) or len(partial[2]) != chunk.offset:
                return f"snapshot chunk at {chunk.offset} does not continue the partial file"
            partial[2].extend(chunk.data)
        return None


class DiskReader:
    """The cold reader of a node's log: entries trimmed from memory are read
    back from its disk, as the Raft actor reads them from the WAL."""

    def __init__(self, disk: Disk) -> None:
        self.disk = disk

    def entries(self, lo: int, hi: int) -> list[Entry]:
        base = self.disk.base_index
        return self.disk.entries[max(0, lo - base - 1) : max(0, hi - base - 1)]

    def term_at(self, index: int) -> int | None:
        return self.disk.term_at(index)


def snapshot_bytes(applied: list[Entry]) -> bytes:
    """The simulated state machine's snapshot: every entry it applied."""
    return pickle.dumps([(e.index, e.term, e.data, int(e.kind)) for e in applied])


def restore(data: bytes) -> list[Entry]:
    return [Entry(*fields) for fields in pickle.loads(data)]


@dataclass
class SimNode:
    id: str
    disk: Disk
    core: RaftCore | None = None
    incarnation: int = 0
    disk_free_at: float = 0.0  # when the last write issued completes: writes complete in order
    applied: list[Entry] = field(default_factory=list)
    applied_data: set[bytes] = field(default_factory=set)
    leader_log_mark: tuple[int, int, Entry | None] | None = None  # (term, index, entry) seen while leader


class Simulation:
    """One seeded run. `run()` raises InvariantViolation on the first failure."""

    def __init__(
        self,
        seed: int,
        *,
        nodes: int | None = None,
        faults: Faults | None = None,
        fault_ticks: int = 300,
        settle_ticks: int = 1000,
        verbose: bool = False,
        pre_vote: bool | None = None,
        check_quorum: bool | None = None,
    ) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        size = nodes or self.rng.choice([3, 3, 5])
        self.faults = faults or Faults.draw(self.rng)
        self.fault_ticks = fault_ticks
        self.settle_ticks = settle_ticks
        self.verbose = verbose
        self.ids = [f"n{i}" for i in range(1, size + 1)]
        # Snapshots in most runs: how often a node takes one (per Ready), and
        # the core's snapshot settings.
        self.snapshot_rate = self.rng.choice([0.0, 0.02, 0.1])
        self.config = CoreConfig(
            snapshot_trailing=self.rng.choice([0, 3, 20]),
            max_snapshot_chunk=self.rng.choice([64, 400, 1 << 20]),
            max_snapshot_inflight=self.rng.choice([1, 2, 4]),
            election_ticks=(10, 20),
            heartbeat_ticks=2,
            max_batch_entries=self.rng.choice([1, 4, 64]),
            max_inflight=self.rng.choice([1, 2, 4]),
            # Small byte limits in some runs: writes and applies then come in
            # several parts, and the apply window fills.
            max_write_bytes=self.rng.choice([1, 40, 1 << 20]),
            max_apply_bytes=self.rng.choice([1, 40, 1 << 20]),
            max_apply_lag=self.rng.choice([1, 3, 1 << 16]),
            pre_vote=self.rng.random() < 0.8 if pre_vote is None else pre_vote,
            check_quorum=self.rng.random() < 0.8 if check_quorum is None else check_quorum,
        )
        self.nodes = {i: SimNode(i, Disk()) for i in self.ids}
        self.events: list[tuple[float, int, str, tuple]] = []
        self.seq = 0
        self.now = 0.0
        self.partition: dict[str, int] = {}  # node -> side; nodes on different sides cannot talk
        self.link_clock: dict[tuple[str, str], float] = {}  # in-order delivery once faults stop
        self.faulty = True
        # Global knowledge for the invariants.
        self.leaders: dict[int, str] = {}
        self.written: dict[tuple[int, int], tuple[bytes, int, int]] = {}  # (index, term) -> (data, kind, prev term)
        self.committed: dict[int, Entry] = {}  # index -> entry, from every node's applies
        self.checked_commit = 0  # the highest leader commit index checked by _check_commit_survives
        self.committed_data: set[bytes] = set()
        self.outstanding: dict[bytes, float] = {}  # command proposed after the faults -> when last sent
        self.new_commands_left = 20
        self.command_counter = 0
        self.stats = {
            "messages": 0,
            "dropped": 0,
            "crashes": 0,
            "elections": 0,
            "applied": 0,
            "snapshots": 0,
            "installs": 0,
            "install_conflicts": 0,
        }
        for node in self.nodes.values():
            self._start(node)

    # ------------------------------------------------------------------ plumbing

    def log(self, text: str) -> None:
        if self.verbose:
            print(f"[{self.now:8.2f}] {text}")

    def _schedule(self, at: float, kind: str, *payload: object) -> None:
        self.seq += 1
        heapq.heappush(self.events, (at, self.seq, kind, payload))

    def _start(self, node: SimNode) -> None:
        disk = node.disk
        node.incarnation += 1
        # The state machine restarts from the newest snapshot, the rest is replayed.
        snapshot = disk.newest_snapshot() or (0, 0)
        node.applied = restore(disk.snapshots[snapshot]) if snapshot[0] else []
        node.applied_data = {e.data for e in node.applied}
        # Sometimes only a tail of the log is loaded, the rest read from disk on demand.
        base = disk.base_index
        commit = min(max(disk.hard_state.commit, base), disk.last_index)
        in_memory_from = self.rng.randint(base, commit) if self.rng.random() < 0.5 else base
        log = MemoryLog(
            disk.entries[in_memory_from - base :],
            base,
            disk.base_term,
            cold=DiskReader(disk),
            mem_base=in_memory_from,
            mem_base_term=disk.term_at(in_memory_from),
        )
        node.core = RaftCore(
            node.id,
            self.ids,
            config=self.config,
            hard_state=HardState(disk.hard_state.term, disk.hard_state.vote, disk.hard_state.commit),
            log=log,
            applied=snapshot[0],
            seed=self.rng.randrange(1 << 30),
            snapshot=snapshot,
        )
        node.leader_log_mark = None
        node.disk_free_at = self.now
        self._schedule(self.now + self.rng.random(), "tick", node.id, node.incarnation)
        self.log(
            f"{node.id} starts (term {disk.hard_state.term}, log ({base}, {disk.last_index}], snapshot {snapshot})"
        )

    def _crash(self, node: SimNode) -> None:
        self.log(f"{node.id} CRASHES")
        node.core = None
        node.incarnation += 1  # in-flight disk writes and ticks of the old incarnation are void
        self.stats["crashes"] += 1
        self._schedule(self.now + self.rng.uniform(0.5, 30), "restart", node.id, node.incarnation)

    def _connected(self, a: str, b: str) -> bool:
        return self.partition.get(a, 0) == self.partition.get(b, 0)

    def _send(self, m: Message) -> None:
        if isinstance(m, InstallSnapshotResponse) and not m.rejected:
            self._check_snapshot_ack(m)
        self.stats["messages"] += 1
        f = self.faults
        if self.faulty and self.rng.random() < f.drop:
            self.stats["dropped"] += 1
            if self.verbose:
                self.log(f"drop: {describe(m)}")
            return
        if not self.faulty:
            # Once the faults stop the network behaves like ZeroMQ over TCP:
            # each link delivers in order, after a short delay.
            link = (m.src, m.dst)
            at = max(self.link_clock.get(link, 0.0), self.now + self.rng.uniform(0.05, 1.0))
            self.link_clock[link] = at
            self._schedule(at, "deliver", m)
            return
        copies = 2 if self.rng.random() < f.duplicate else 1
        for _ in range(copies):
            self._schedule(self.now + self.rng.uniform(0.05, f.max_delay), "deliver", m)
        if self.rng.random() < f.late:
            self._schedule(self.now + self.rng.uniform(5, 40), "deliver", m)

    # ------------------------------------------------------------------ driving

    def _process_ready(self, node: SimNode) -> None:
        core = node.core
        while core is not None and core.has_ready():
            ready = core.ready()
            for m in ready.messages:
                self._send(m)
            if ready.write is not None:
                if self.verbose:
                    w = ready.write
                    self.log(f"{node.id}: {describe(LogWrite(w.write_id, w.entries, w.hard_state, w.must_sync))}")
                self._check_written(node, ready.write.entries)
                # Group commit: a write is durable after the disk's latency, and
                # never before the writes issued ahead of it.
                latency = self.rng.uniform(0.01, self.faults.max_disk_delay)
                node.disk_free_at = max(node.disk_free_at, self.now + latency)
                self._schedule(node.disk_free_at, "disk", node.id, node.incarnation, ready.write)
            for read in ready.snapshot_reads:
                data = node.disk.snapshots.get((read.index, read.term))
                if data is None:
                    core.snapshot_send_failed(read.peer)  # replaced by a newer one
                    continue
                chunk = data[read.offset : read.offset + self.config.max_snapshot_chunk]
                done = read.offset + len(chunk) >= len(data)
                core.send_snapshot_chunk(read.peer, read.index, read.term, read.offset, chunk, done)
            if ready.install_snapshot is not None:
                self._install(node, *ready.install_snapshot)
                if node.core is not core:
                    return  # it crashed mid-install
            for entry in ready.committed:
                self._check_applied(node, entry)
            if ready.committed:
                # The state machine confirms at once, or a little later (a slow apply actor).
                last = ready.committed[-1].index
                if self.rng.random() < 0.7:
                    core.confirm_applied(last)
                else:
                    self._schedule(self.now + self.rng.uniform(0.1, 3.0), "applied", node.id, node.incarnation, last)
            self._check_leader(node)
            if node.core is not core:
                return  # the nemesis took the new leader down
            self._check_commit_survives(node)
            if self.rng.random() < 0.05:
                # Keep a short tail in memory: older entries must come from disk.
                core.log.trim(min(core.commit, core.durable_index) - self.rng.randint(0, 8))
            if self.rng.random() < self.snapshot_rate:
                self._take_snapshot(node)
        if core is not None and self.faulty and self.rng.random() < self.faults.crash_after_event:
            self._crash(node)

    def _handle(self, kind: str, payload: tuple) -> None:
        if kind == "deliver":
            (m,) = payload
            node = self.nodes[m.dst]
            if node.core is None or not self._connected(m.src, m.dst):
                if self.verbose:
                    self.log(f"lost: {describe(m)}")
                return
            if self.verbose:
                self.log(describe(m))
            node.core.step(m)
            self._process_ready(node)
        elif kind == "tick":
            node_id, incarnation = payload
            node = self.nodes[node_id]
            if node.core is None or incarnation != node.incarnation:
                return
            node.core.tick()
            self._process_ready(node)
            self._schedule(self.now + 1.0, "tick", node_id, incarnation)
        elif kind == "applied":
            node_id, incarnation, index = payload
            node = self.nodes[node_id]
            if node.core is None or incarnation != node.incarnation:
                return
            node.core.confirm_applied(index)
            self._process_ready(node)
        elif kind == "disk":
            node_id, incarnation, write = payload
            node = self.nodes[node_id]
            if node.core is None or incarnation != node.incarnation:
                return  # the crash lost it
            disk = node.disk
            problem = disk.write(write)
            if problem:
                self._fail(f"{node.id}: write {write.write_id}: {problem}")
            if (disk.last_index, disk.last_term) != (write.last_index, write.last_term):
                self._fail(
                    f"{node.id}: write {write.write_id} left the log at ({disk.last_index}, {disk.last_term}), "
                    f"the core expected ({write.last_index}, {write.last_term})"
                )
            if disk.hard_state.commit > disk.last_index:
                self._fail(f"{node.id}: commit {disk.hard_state.commit} on disk beyond its log ({disk.last_index})")
            node.core.persisted(write.write_id)
            self._process_ready(node)
        elif kind == "restart":
            node_id, incarnation = payload
            node = self.nodes[node_id]
            if node.core is None and incarnation == node.incarnation:
                self._start(node)

    # ------------------------------------------------------------------ snapshots

    def _take_snapshot(self, node: SimNode) -> None:
        """The state machine writes its state (every entry applied) to a file,
        renamed into place at once; then the core is told."""
        core = node.core
        index = len(node.applied)
        if index <= core.snapshot_index:
            return
        term = node.applied[-1].term
        if index > core.commit:
            self._fail(f"{node.id} snapshots at {index}, past its commit index {core.commit}")
        for entry in node.applied[-1:]:
            if self.committed.get(entry.index) is not entry and self.committed.get(entry.index) != entry:
                self._fail(f"{node.id} snapshots entry {entry.index} that was never committed")
        disk = node.disk
        disk.snapshots[(index, term)] = snapshot_bytes(node.applied)
        for old in sorted(disk.snapshots)[:-3]:  # keep a few, for streams still reading them
            del disk.snapshots[old]
        self.stats["snapshots"] += 1
        self.log(f"{node.id} snapshot at ({index}, t{term})")
        core.snapshot_taken(index, term)

    def _install(self, node: SimNode, index: int, term: int) -> None:
        """The received snapshot is complete: verify, rename into place,
        restore the state machine, tell the core. Crashes may strike before
        or after the rename; a verification may fail."""
        core = node.core
        disk = node.disk
        partial = disk.partial
        if partial is None or partial[:2] != (index, term):
            self._fail(f"{node.id} asked to install ({index}, {term}) but holds no such partial file")
        state = restore(bytes(partial[2]))
        if not state or len(state) != index or state[-1].term != term:
            self._fail(f"{node.id}: the received snapshot ({index}, {term}) holds {len(state)} entries")
        if index <= len(node.applied):
            self._fail(f"{node.id}: installing ({index}, {term}) would move applied back from {len(node.applied)}")
        for entry in state:
            first = self.committed.setdefault(entry.index, entry)
            if (first.term, first.data, first.kind) != (entry.term, entry.data, entry.kind):
                self._fail(f"state machine safety: {node.id} installs a snapshot disagreeing at {entry.index}")
        if self.faulty and self.rng.random() < 0.05:
            self.log(f"{node.id}: snapshot ({index}, t{term}) fails verification")
            core.snapshot_failed(index, term)
            return
        if self.faulty and self.rng.random() < 0.05:
            self._crash(node)  # before the rename: the partial file is worthless
            return
        disk.snapshots[(index, term)] = bytes(partial[2])
        disk.partial = None
        if self.faulty and self.rng.random() < 0.05:
            self._crash(node)  # after the rename, before the log was rewritten
            return
        held = core.log.term(index)
        if held is not None and held != term:
            self.stats["install_conflicts"] += 1  # the log contradicts the snapshot: discarded
        node.applied = state
        node.applied_data = {e.data for e in state}
        self.committed_data.update(node.applied_data)
        self.stats["installs"] += 1
        self.log(f"{node.id} installs snapshot ({index}, t{term})")
        core.snapshot_installed(index, term)

    def _check_snapshot_ack(self, m: InstallSnapshotResponse) -> None:
        """The durability rule for snapshots: what a response acknowledges is on disk."""
        disk = self.nodes[m.src].disk
        if m.installed:
            if disk.last_index < m.snapshot_index and (disk.newest_snapshot() or (0, 0))[0] < m.snapshot_index:
                self._fail(f"{m.src} reports snapshot {m.snapshot_index} installed before it is on disk")
            return
        if (m.snapshot_index, m.snapshot_term) in disk.snapshots or disk.base_index >= m.snapshot_index:
            return  # (an acknowledgement of a chunk of what is installed by now)
        partial = disk.partial
        if partial is None or partial[:2] != (m.snapshot_index, m.snapshot_term) or len(partial[2]) < m.next_offset:
            held = len(partial[2]) if partial is not None else 0
            self._fail(f"{m.src} acknowledges snapshot bytes up to {m.next_offset} with {held} on disk")

    def _inject_faults(self) -> None:
        f = self.faults
        live = [n for n in self.nodes.values() if n.core is not None]
        if live and self.rng.random() < f.crash:
            self._crash(self.rng.choice(live))
        if self.rng.random() < f.crash_leader:
            leaders = [n for n in live if n.core is not None and n.core.role is Role.LEADER]
            if leaders:
                self._crash(leaders[0])
        if self.rng.random() < f.partition:
            if self.partition:
                self.log("partition heals")
                self.partition = {}
            else:
                side = self.rng.sample(self.ids, self.rng.randint(1, len(self.ids) // 2 + 1))
                self.partition = {i: 1 for i in side}
                self.log(f"partition: {sorted(side)} | rest")

    def _propose(self, commands: list[bytes]) -> bool:
        """Propose at a random live node, following one redirect as a client
        does; True if a leader accepted the commands (they may still be lost)."""
        live = [n for n in self.nodes.values() if n.core is not None]
        if not live:
            return False
        node = self.rng.choice(live)
        for _ in range(2):
            try:
                node.core.propose(commands)
            except NotLeader as refused:
                node = self.nodes.get(refused.leader or "")
                if node is None or node.core is None:
                    return False
                continue
            self._process_ready(node)
            return True
        return False

    def _new_commands(self, count: int) -> list[bytes]:
        commands = []
        for _ in range(count):
            self.command_counter += 1
            commands.append(f"{self.seed}:{self.command_counter}".encode())
        return commands

    def _lose_new_leader(self, node: SimNode) -> None:
        """Right after winning, the leader crashes or is cut off alone, so its
        no-op (and anything proposed to it) exists on it alone: the divergent
        logs of Figure 8 come from exactly this."""
        if self.rng.random() < 0.5:
            self._crash(node)
        else:
            self.log(f"partition: [{node.id}] | rest")
            self.partition = {node.id: 1}

    def _heal(self) -> None:
        self.faulty = False
        self.partition = {}
        for node in self.nodes.values():
            if node.core is None:
                node.incarnation += 1
                self._start(node)
        self.log("faults stop")

    def _on_clock(self, t: float) -> None:
        """Whole-tick work between events: faults while faulty, then a client
        that sends new commands and retries those that did not commit (a
        command a deposed leader accepted is legitimately lost)."""
        self.now = t
        if self.faulty and t >= self.fault_ticks:
            self._heal()
        if self.faulty:
            self._inject_faults()
            if self.rng.random() < 0.3:
                self._propose(self._new_commands(self.rng.randint(1, 5)))
            return
        if self.new_commands_left > 0 and self.rng.random() < 0.5:
            commands = self._new_commands(self.rng.randint(1, 3))
            if self._propose(commands):
                self.new_commands_left -= 1
                for command in commands:
                    self.outstanding[command] = t
        stale = [c for c, sent in self.outstanding.items() if t - sent > 40 and c not in self.committed_data]
        if stale and self._propose(stale):
            for command in stale:
                self.outstanding[command] = t

    def run(self) -> dict:
        """Run the faulty phase, then the settling phase; check liveness at the end."""
        end = self.fault_ticks + self.settle_ticks
        next_tick = 1.0
        while self.events and self.events[0][0] <= end:
            if self.events[0][0] >= next_tick:
                self._on_clock(next_tick)
                next_tick += 1.0
                if not self.faulty and self._settled():
                    break
                continue
            at, _, kind, payload = heapq.heappop(self.events)
            self.now = at
            self._handle(kind, payload)
        self._check_liveness()
        return self.stats

    # ------------------------------------------------------------------ invariants

    def _fail(self, text: str) -> None:
        raise InvariantViolation(
            f"seed {self.seed}: {text} (at t={self.now:.2f}; replay: python tests/simulation.py --seed {self.seed} --verbose)"
        )

    def _check_leader(self, node: SimNode) -> None:
        core = node.core
        if core.role is not Role.LEADER:
            node.leader_log_mark = None
            return
        term = core.term
        holder = self.leaders.setdefault(term, node.id)
        if holder != node.id:
            self._fail(f"election safety: {holder} and {node.id} both lead term {term}")
        mark = node.leader_log_mark
        if mark is None or mark[0] != term:
            # A new leader: it must hold every entry known committed.
            self.stats["elections"] += 1
            self.log(f"{node.id} leads term {term}")
            base = core.log.base_index  # (entries up to it are in the leader's snapshot)
            for index, entry in self.committed.items():
                if index > base and core.log.term(index) != entry.term:
                    self._fail(f"leader completeness: {node.id} leads term {term} without committed entry {index}")
            if self.faulty and self.rng.random() < self.faults.new_leader_lost:
                self._lose_new_leader(node)
                return
        elif mark[2] is not None and mark[1] > core.log.base_index:
            index = mark[1]
            current = core.log.entries(index, index + 1)
            if not current or current[0] is not mark[2]:
                self._fail(f"leader append-only: {node.id} changed its entry {index} in term {term}")
        last = core.log.last_index
        node.leader_log_mark = (term, last, core.log.entries(last, last + 1)[0] if last > core.log.base_index else None)

    def _check_commit_survives(self, node: SimNode) -> None:
        """Leader completeness, checked ahead of time: when the commit index
        advances, no node lacking the newest committed entry may be able to
        collect a quorum of votes from the durable logs (what any crash leaves).
        In Raft the committing quorum holds a current-term entry durably and so
        refuses such a candidate; counting replicas of an older term's entry
        (Figure 8) breaks exactly this, before any crash has to happen."""
        core = node.core
        commit = core.commit
        if core.role is not Role.LEADER or commit <= self.checked_commit:
            return
        self.checked_commit = commit
        term = core.log.term(commit)
        durable_last = {n.id: (n.disk.last_index, n.disk.last_term) for n in self.nodes.values()}
        quorum = len(self.ids) // 2 + 1
        for x in self.nodes.values():
            campaign_logs = []
            if not x.disk.holds(commit, term):
                campaign_logs.append(durable_last[x.id])
            if x.core is not None and commit > x.core.log.base_index and x.core.log.term(commit) != term:
                campaign_logs.append((x.core.log.last_index, x.core.log.last_term))
            for last_index, last_term in campaign_logs:
                votes = sum(
                    1
                    for v_index, v_term in durable_last.values()
                    if last_term > v_term or (last_term == v_term and last_index >= v_index)
                )
                if votes >= quorum:
                    self._fail(
                        f"leader completeness: {node.id} committed {commit} (term {term}) but {x.id}, "
                        f"lacking it, could still win {votes} votes"
                    )

    def _check_written(self, node: SimNode, entries: list[Entry]) -> None:
        core = node.core
        for entry in entries:
            prev_term = core.log.term(entry.index - 1)
            key = (entry.index, entry.term)
            seen = self.written.setdefault(key, (entry.data, entry.kind, prev_term))
            if seen != (entry.data, entry.kind, prev_term):
                self._fail(f"log matching: {node.id} holds a different entry at index {entry.index}, term {entry.term}")

    def _check_applied(self, node: SimNode, entry: Entry) -> None:
        expected_index = len(node.applied) + 1
        if entry.index != expected_index:
            self._fail(f"{node.id} applied index {entry.index}, expected {expected_index}")
        node.applied.append(entry)
        node.applied_data.add(entry.data)
        self.committed_data.add(entry.data)
        self.stats["applied"] += 1
        first = self.committed.setdefault(entry.index, entry)
        if (first.term, first.data, first.kind) != (entry.term, entry.data, entry.kind):
            self._fail(f"state machine safety: index {entry.index} applied as term {first.term} and term {entry.term}")

    def _settled(self) -> bool:
        """Every command sent after the faults, and everything committed, is
        applied on every node."""
        if self.new_commands_left > 0:
            return False
        if not all(self.outstanding.keys() <= n.applied_data for n in self.nodes.values()):
            return False
        commit = max(n.core.commit for n in self.nodes.values())
        return all(len(n.applied) == commit for n in self.nodes.values())

    def _check_liveness(self) -> None:
        leaders = [n.id for n in self.nodes.values() if n.core is not None and n.core.role is Role.LEADER]
        if not leaders:
            self._fail("liveness: no leader after the faults stopped")
        if self.new_commands_left > 0:
            self._fail(f"liveness: {self.new_commands_left} proposals never reached a leader after the faults stopped")
        for node in self.nodes.values():
            missing = self.outstanding.keys() - node.applied_data
            if missing:
                self._fail(
                    f"liveness: {node.id} never applied {len(missing)} commands proposed after the faults stopped"
                )
        lengths = {len(n.applied) for n in self.nodes.values()}
        if len(lengths) != 1:
            commits = {n.id: n.core.commit for n in self.nodes.values()}
            self._fail(f"liveness: nodes applied different counts {lengths} (commits {commits})")
        states = {tuple((e.index, e.term, e.data, int(e.kind)) for e in n.applied) for n in self.nodes.values()}
        if len(states) != 1:
            self._fail("the replicas' states differ at the end")


# ---------------------------------------------------------------------- mutations
# Deliberate bugs, to show that the simulation catches them. Each patches the
# core in this process (and in forked pool workers) and returns an undo.


def _mutate_commit_rule() -> Callable[[], None]:
    """Commit by counting replicas whatever the entry's term (Figure 8)."""
    original = RaftCore._maybe_commit

    def broken(self: RaftCore) -> None:
        matches = sorted([self.durable_index, *(pr.match for pr in self.progress.values())], reverse=True)
        candidate = matches[self.quorum - 1]
        if candidate > self.commit:
            self.commit = candidate

    RaftCore._maybe_commit = broken
    return lambda: setattr(RaftCore, "_maybe_commit", original)


def _mutate_vote_check() -> Callable[[], None]:
    """Grant votes without the up-to-date log check (paper 5.4.1)."""
    original = MemoryLog.is_up_to_date
    MemoryLog.is_up_to_date = lambda self, last_index, last_term: True
    return lambda: setattr(MemoryLog, "is_up_to_date", original)


def _mutate_vote_persistence() -> Callable[[], None]:
    """Send a vote before it is durable."""
    original = RaftCore._send

    def hasty(self: RaftCore, m: Message) -> None:
        if isinstance(m, RequestVoteResponse) and m.dst != self.id:
            self._outbox.append(m)
        else:
            original(self, m)

    RaftCore._send = hasty
    return lambda: setattr(RaftCore, "_send", original)


def _mutate_snapshot_ack() -> Callable[[], None]:
    """Acknowledge a snapshot chunk before it is durable."""
    original = RaftCore._send

    def hasty(self: RaftCore, m: Message) -> None:
        if isinstance(m, InstallSnapshotResponse) and not m.installed:
            self._outbox.append(m)
        else:
            original(self, m)

    RaftCore._send = hasty
    return lambda: setattr(RaftCore, "_send", original)


MUTATIONS: dict[str, Callable[[], Callable[[], None]]] = {
    "commit-rule": _mutate_commit_rule,
    "vote-check": _mutate_vote_check,
    "vote-persistence": _mutate_vote_persistence,
    "snapshot-ack": _mutate_snapshot_ack,
}


def run_seed(seed: int) -> tuple[int, str | None, dict]:
    """Run one seed; returns (seed, failure or None, stats). For process pools."""
    try:
        stats = Simulation(seed).run()
        return seed, None, stats
    except InvariantViolation as exc:
        return seed, str(exc), {}


def run_seeds(seeds: range, processes: int = 2, stop_at_first: bool = False) -> tuple[list[tuple[int, str]], dict]:
    """Run many seeds over a process pool; returns the failures and summed stats."""
    failures: list[tuple[int, str]] = []
    totals: dict[str, int] = {}
    # fork, so that a mutation patched into this process reaches the workers
    with get_context("fork").Pool(processes) as pool:
        for seed, failure, stats in pool.imap_unordered(run_seed, seeds, chunksize=16):
            if failure:
                failures.append((seed, failure))
                if stop_at_first:
                    break
            for key, value in stats.items():
                totals[key] = totals.get(key, 0) + value
    failures.sort()
    return failures, totals


def _parse_range(text: str) -> range:
    start, _, stop = text.partition(":")
    return range(int(start), int(stop))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, help="replay one seed")
    parser.add_argument("--seeds", type=_parse_range, default=range(0, 2000), help="START:STOP (default 0:2000)")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--verbose", action="store_true")
    parser.add_argument("--mutate", choices=sorted(MUTATIONS), help="break the core on purpose first")
    args = parser.parse_args()
    if args.mutate:
        MUTATIONS[args.mutate]()
    if args.seed is not None:
        sim = Simulation(args.seed, verbose=args.verbose)
        print(f"seed {args.seed}: {len(sim.ids)} nodes, {sim.faults}, {sim.config}")
        try:
            print(sim.run())
        except InvariantViolation as exc:
            print(f"FAILED: {exc}")
            return 1
        return 0
    started = time.monotonic()
    failures, totals = run_seeds(args.seeds, args.processes)
    elapsed = time.monotonic() - started
    for seed, failure in failures[:20]:
        print(failure)
    print(f"{len(args.seeds)} seeds, {len(failures)} failed, {elapsed:.1f}s; totals {totals}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
