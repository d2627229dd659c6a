"""The Raft consensus core: a deterministic state machine with no I/O.

Drive it with four inputs and one output, like etcd-io/raft's RawNode:

    core.tick()                 one logical clock tick (the actor owns the clock)
    core.step(message)          a message from a peer
    core.propose([cmd, ...])    new commands, leader only; one call is one batch
    core.persisted(write_id)    the log-store made that write durable
    core.snapshot_taken(i, t)   the owner made a snapshot at applied index i durable

    ready = core.ready()        what to do now (see Ready)

The persistence rule, which the simulation checks by crashing nodes: a message
that depends on durable state (a vote, an append acknowledgement, a candidate's
own vote request) is held inside the core until every write issued before it is
reported durable. A leader's AppendEntries and heartbeats go out at once, in
parallel with its own disk write (the Raft dissertation, section 10.2.1): they
depend only on its term, which was durable before it could win, and the leader
counts itself towards a commit quorum only up to what its disk has made durable.

Snapshots (docs/ARCHITECTURE.md, "Snapshots in the core"). The owner makes
a snapshot durable and calls snapshot_taken(index, term); the log is
compacted behind a trailing window (PersistWrite.base). A leader streams its
snapshot to a follower behind the log's base: it asks the owner for chunks
(Ready.snapshot_reads) and stamps them (send_snapshot_chunk). A follower
writes chunks through the ordinary write stream (PersistWrite.chunks), so
its acknowledgements obey the durability rule above, and once the whole file
is durable asks the owner to install it (Ready.install_snapshot ->
snapshot_installed / snapshot_failed). The bytes never pass through the core
in one piece.

Where this differs from etcd-io/raft, on purpose:
- Durability is acknowledged by write id rather than (index, term): the
  log-store applies writes in order, so one integer says exactly which
  entries and which hard state are on disk, truncations included.
- A leader propagates a commit index advance with a heartbeat (no log check,
  not counted against the pipeline window) instead of an empty AppendEntries.
- A leader whose own log write is not durable within `persist_timeout_ticks`
  steps down (HashiCorp raft issue 503, etcd issue 15247: a leader with a
  stuck disk must not keep the cluster hostage while it heartbeats).

Believability. Every port faces a hostile network (SPEC 3), and a message
that decodes can still lie. step() refuses, and counts in `refused` by
reason, a message whose term is out of range or jumps implausibly far ahead,
whose entries' terms cannot follow its prev_term or exceed its own term, or
that acknowledges entries this leader never sent that follower. What is
left is what no check can tell from the truth without authentication (a
forged vote, or a forged leader of the current term): CURVE closes that.
Refusals happen before any state changes, so no message can make ready()
raise or leave on disk a term from which the cluster cannot elect.

Sizes. One PersistWrite carries at most max_write_bytes of entries (the
rest follow in the next writes) and one Ready at most max_apply_bytes of
committed entries, so every message an actor builds from a Ready fits a
frame. Committed entries handed out but not yet confirmed applied
(confirm_applied) are bounded too, so a state machine that falls behind, or
restarts and replays the log, is fed in a window rather than all at once.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass, field
from enum import Enum
from itertools import repeat

from .log import MemoryLog
from .messages import (
    MAX_INDEX,
    MAX_TERM,
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
from .progress import Progress, ProgressState


class Role(str, Enum):
    FOLLOWER = "follower"
    PRE_CANDIDATE = "pre-candidate"
    CANDIDATE = "candidate"
    LEADER = "leader"


class NotLeader(Exception):
    """A proposal reached a node that is not the leader; `leader` is who is, if known."""

    def __init__(self, leader: str | None) -> None:
        super().__init__(f"not the leader (leader: {leader or 'unknown'})")
        self.leader = leader


class SafetyViolation(AssertionError):
    """The core was asked to do something Raft forbids (such as dropping a
    committed entry). It means a bug or a corrupted disk, never bad luck."""


@dataclass(slots=True)
class CoreConfig:
    """Timing in logical ticks; sizes in entries and bytes."""

    election_ticks: tuple[int, int] = (10, 20)  # each election timeout is drawn from [min, max]
    heartbeat_ticks: int = 2
    max_batch_entries: int = 512  # entries per AppendEntries
    max_batch_bytes: int = 1 << 20  # data bytes per AppendEntries
    max_inflight: int = 4  # AppendEntries in flight per follower
    max_inflight_bytes: int = 8 << 20
    max_apply_entries: int = 4096  # committed entries handed out per Ready
    max_apply_bytes: int = 16 << 20  # data bytes of committed entries per Ready
    max_apply_lag: int = 1 << 16  # entries handed out and not yet confirmed applied
    max_apply_lag_bytes: int = 64 << 20  # ... and their data bytes
    max_write_bytes: int = 16 << 20  # data bytes of entries per PersistWrite
    max_term_jump: int = 1 << 32  # a message more terms ahead than this is refused
    pre_vote: bool = True
    check_quorum: bool = True
    persist_timeout_ticks: int | None = None  # None: the election timeout's maximum
    snapshot_trailing: int = 1024  # entries kept below a snapshot, so a briefly absent follower needs no snapshot
    max_snapshot_chunk: int = 1 << 20  # data bytes per InstallSnapshot
    max_snapshot_inflight: int = 4  # InstallSnapshot chunks unacknowledged per follower

    def __post_init__(self) -> None:
        low, high = self.election_ticks
        if not 0 < self.heartbeat_ticks < low <= high:
            raise ValueError("need 0 < heartbeat_ticks < election_ticks[0] <= election_ticks[1]")
        if self.max_inflight < 1 or self.max_batch_entries < 1:
            raise ValueError("max_inflight and max_batch_entries must be at least 1")
        if (
            min(
                self.max_apply_entries,
                self.max_apply_bytes,
                self.max_apply_lag,
                self.max_apply_lag_bytes,
                self.max_write_bytes,
                self.max_term_jump,
            )
            < 1
        ):
            raise ValueError("the apply, write and term-jump limits must be at least 1")
        if self.snapshot_trailing < 0 or self.max_snapshot_chunk < 1 or self.max_snapshot_inflight < 1:
            raise ValueError("need snapshot_trailing >= 0, max_snapshot_chunk >= 1, max_snapshot_inflight >= 1")


@dataclass(slots=True)
class LogBase:
    """The log now starts after (index, term), which a durable snapshot covers.

    The log-store drops every entry at or below `index`; with `discard` it
    drops every entry after it too (an installed snapshot that the log
    contradicts, or runs past): the log is then empty after (index, term).
    """

    index: int
    term: int
    discard: bool = False


@dataclass(slots=True)
class SnapshotChunk:
    """Bytes of an incoming snapshot (index, term) for the log-store's
    partial snapshot file: `data` at `offset` (offset 0 starts the file
    afresh, dropping any other partial one); `done`: the file is complete."""

    index: int
    term: int
    offset: int
    data: bytes
    done: bool = False


@dataclass(slots=True)
class SnapshotRead:
    """A leader's request to its owner: read up to max_snapshot_chunk bytes
    at `offset` of snapshot (index, term) and hand them to
    RaftCore.send_snapshot_chunk (an offset at the end reads b"", done)."""

    peer: str
    index: int
    term: int
    offset: int


@dataclass(slots=True)
class PersistWrite:
    """One write for the log-store, to be applied in write-id order.

    If entries[0].index is at or below the log's last index, the log from that
    index on is replaced. `hard_state` is None when it did not change.
    `must_sync`: the write carries entries, or a new term or vote, which
    messages wait for; a write that only moves the commit index need not be
    fsync'd (commit can be learned again; etcd's MustSync). After the write,
    the log ends at (last_index, last_term): the log-store reports that with
    its acknowledgement, and the caller checks it.
    """

    write_id: int
    entries: list[Entry]
    hard_state: HardState | None
    must_sync: bool = True
    last_index: int = 0
    last_term: int = 0
    #: Applied first: the log's new base (compaction, or an installed snapshot).
    base: LogBase | None = None
    #: Chunks of an incoming snapshot, for its partial file (independent of the log).
    chunks: list[SnapshotChunk] = field(default_factory=list)


@dataclass(slots=True)
class Ready:
    """What the actor must do after a batch of inputs.

    - send `messages` now;
    - hand `write` (if any) to the log-store, and call persisted(write_id) once
      it is durable;
    - apply `committed` in order (they are committed and locally durable),
      and call confirm_applied() as the state machine gets through them;
    - `role_changed` is set when role, term or leader changed, for the actor's
      bookkeeping (failing proposals, redirecting clients);
    - `snapshot_reads` (leader): read these chunks of a snapshot file and
      hand each to send_snapshot_chunk();
    - `install_snapshot` (follower): the received snapshot (index, term) is
      complete and durable: verify it, restore the state machine from it,
      then call snapshot_installed() (or snapshot_failed()). No committed
      entries are handed out meanwhile.
    """

    messages: list[Message] = field(default_factory=list)
    write: PersistWrite | None = None
    committed: list[Entry] = field(default_factory=list)
    role_changed: bool = False
    snapshot_reads: list[SnapshotRead] = field(default_factory=list)
    install_snapshot: tuple[int, int] | None = None

    def __bool__(self) -> bool:
        return bool(
            self.messages
            or self.write
            or self.committed
            or self.role_changed
            or self.snapshot_reads
            or self.install_snapshot
        )


@dataclass(slots=True)
class _Receiving:
    """A snapshot a follower is receiving: from whom (leader, term), which,
    how many bytes were accepted, and the write carrying its last chunk."""

    leader: str
    leader_term: int
    index: int
    term: int
    offset: int = 0
    done_write: int = 0  # 0: the last chunk has not arrived


@dataclass(slots=True)
class _PendingWrite:
    write_id: int
    last_index: int  # the last log index this write makes durable
    issued_tick: int


class RaftCore:
    """One Raft node's consensus state. Not thread-safe; owned by one actor."""

    def __init__(
        self,
        node_id: str,
        voters: list[str] | tuple[str, ...] | frozenset[str],
        *,
        config: CoreConfig | None = None,
        hard_state: HardState | None = None,
        log: MemoryLog | None = None,
        applied: int = 0,
        seed: int | None = None,
        snapshot: tuple[int, int] = (0, 0),
    ) -> None:
        """Start (or restart) a node from what its log-store recovered.

        Everything in `log` and `hard_state` is durable. `applied` is how far
        the state machine already is; committed entries after it are handed
        out again (that is how a restarted node replays its state machine).
        `snapshot`: the (index, term) of the newest durable snapshot; the
        state machine restored from it, so `applied` is at least its index.
        A snapshot newer than the log's base (a crash between installing a
        snapshot and rewriting the log) is installed again here: the log is
        kept after it if it holds the snapshot's last entry, else discarded.
        """
        self.id = node_id
        self.voters = frozenset(voters)
        if node_id not in self.voters:
            raise ValueError(f"{node_id} is not among the voters {sorted(self.voters)}")
        self.config = config or CoreConfig()
        self._rng = random.Random(seed if seed is not None else node_id)
        hs = hard_state or HardState()
        self.log = log if log is not None else MemoryLog()
        snap_index, snap_term = snapshot
        pending_base: LogBase | None = None
        if snap_index > self.log.base_index:
            if self.log.term(snap_index) == snap_term:
                self.log.compact(snap_index)
                pending_base = LogBase(snap_index, snap_term)
            else:
                self.log.reset(snap_index, snap_term)
                pending_base = LogBase(snap_index, snap_term, discard=True)
        elif snap_index < self.log.base_index:
            raise SafetyViolation(f"the log starts after {self.log.base_index}, past the snapshot at {snap_index}")
        if applied < self.log.base_index:
            raise ValueError(f"applied {applied} is below the log's base {self.log.base_index}: restore the snapshot")
        hs = HardState(hs.term, hs.vote, max(hs.commit, snap_index))
        if hs.commit > self.log.last_index:
            raise SafetyViolation(f"commit index {hs.commit} beyond the last log index {self.log.last_index}")
        self.term = hs.term
        self.vote = hs.vote
        self.commit = hs.commit
        self.applied = applied  # entries up to it were applied, so they are committed
        self.role = Role.FOLLOWER
        self.leader: str | None = None

        # Durability: what the log-store has, what is on its way there.
        self.durable_index = self.log.last_index
        self._written = HardState(hs.term, hs.vote, hs.commit)
        self._unpersisted_from: int | None = None  # lowest log index changed since the last write
        self._next_write_id = 1
        self._persisted_id = 0
        self._pending_writes: deque[_PendingWrite] = deque()
        self._held: deque[tuple[int, Message]] = deque()  # (write id it waits for, message)

        # Snapshots: the newest durable one, log bases and incoming chunks for
        # the log-store, reads for the owner (leader), what is being received
        # and installed (follower).
        self.snapshot_index = snap_index
        self.snapshot_term = snap_term
        self._pending_bases: deque[LogBase] = deque([pending_base] if pending_base else [])
        self._pending_chunks: list[SnapshotChunk] = []
        self._snapshot_reads: list[SnapshotRead] = []
        self._receiving: _Receiving | None = None
        self._installing: tuple[int, int] | None = None
        self._install_announced = False

        self._outbox: list[Message] = []
        self._role_changed = False
        self._ticks = 0
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self._election_timeout = 0
        self._reset_election_timeout()
        self._votes: dict[str, bool] = {}
        self.progress: dict[str, Progress] = {}

        # Committed entries handed out but not yet confirmed applied: (last index, data bytes) per Ready.
        self._apply_confirmed = applied
        self._apply_batches: deque[tuple[int, int]] = deque()
        self._apply_lag_bytes = 0
        #: False while this node must not lead (no campaign; a leader steps down): see set_eligible().
        self.eligible = True
        #: Messages step() refused as unbelievable, by reason (see the module docstring).
        self.refused: dict[str, int] = {}

    # ------------------------------------------------------------------ inputs

    def tick(self) -> None:
        """Advance the logical clock by one tick."""
        self._ticks += 1
        if self.role is Role.LEADER:
            self._tick_leader()
        else:
            self.election_elapsed += 1
            if self.election_elapsed >= self._election_timeout:
                self.election_elapsed = 0
                # (Not while a snapshot is being installed: the install rewrites
                # the log, which a leader's log must never see.)
                if self.eligible and self.term < MAX_TERM and self._installing is None:
                    self._start_election()

    def propose(self, commands: list[bytes]) -> int:
        """Append `commands` to the log as one batch; returns the first one's index.

        Raises NotLeader on any node but the leader. The entries are not yet
        committed: the caller learns that from Ready.committed (and must treat
        a different term at the same index as the proposal being lost).
        """
        if self.role is not Role.LEADER:
            raise NotLeader(self.leader)
        first = self.log.last_index + 1
        if not commands:
            return first
        term = self.term
        self._append_local(
            list(map(Entry, range(first, first + len(commands)), repeat(term), commands)), list(map(len, commands))
        )
        return first

    def persisted(self, write_id: int) -> None:
        """The log-store reports every write up to `write_id` durable."""
        if write_id <= self._persisted_id:
            return
        self._persisted_id = write_id
        pending = self._pending_writes
        while pending and pending[0].write_id <= write_id:
            done = pending.popleft()
            if done.last_index > self.durable_index:
                self.durable_index = done.last_index
        held = self._held
        while held and held[0][0] <= write_id:
            _, message = held.popleft()
            if message.dst == self.id:
                self.step(message)
            else:
                self._outbox.append(message)
        receiving = self._receiving
        if receiving is not None and 0 < receiving.done_write <= write_id and not self._install_announced:
            self._snapshot_received(receiving)
        if self.role is Role.LEADER:
            self._maybe_commit()

    def set_applied(self, index: int) -> None:
        """The state machine is at `index`: hand out committed entries after it.

        For an apply actor that restarted (it is behind what was handed out) or
        that outlived a restart of the node's Raft actor (it is ahead; entries
        up to `index` are committed, since they were applied). Whatever was
        handed out after `index` is forgotten: it is handed out again.
        Never below the log's base: those entries exist only in the snapshot.
        """
        if index < self.log.base_index:
            raise ValueError(f"applied {index} is below the log's base {self.log.base_index}: restore the snapshot")
        self.applied = self._apply_confirmed = index
        self._apply_batches.clear()
        self._apply_lag_bytes = 0

    def confirm_applied(self, index: int) -> None:
        """The state machine got through every entry up to `index`: hand out more."""
        if index <= self._apply_confirmed:
            return
        self._apply_confirmed = min(index, self.applied)
        batches = self._apply_batches
        while batches and batches[0][0] <= self._apply_confirmed:
            self._apply_lag_bytes -= batches.popleft()[1]

    def set_eligible(self, eligible: bool) -> None:
        """Whether this node may lead. An ineligible node still votes and
        follows, but never campaigns, and a leader steps down at once: for a
        node whose state machine is gone (it could commit but never answer a
        client) or that is still finding out whether it may vote at all."""
        self.eligible = eligible
        if not eligible and self.role is not Role.FOLLOWER:
            self._become_follower(self.term, None)

    # ------------------------------------------------------------------ snapshots

    def snapshot_taken(self, index: int, term: int) -> None:
        """The owner made a snapshot of the state machine at `index` (the
        entry there has `term`) durable. Entries up to index minus the
        trailing window leave the log (PersistWrite.base tells the
        log-store), and a follower that needs any of them gets the snapshot.

        Only applied (hence committed) state may be snapshotted: a snapshot
        of anything else is a caller's bug, raised as ValueError.
        """
        if index <= self.snapshot_index:
            return  # an older snapshot than one we have: nothing to do
        if index > self.applied:
            raise ValueError(f"snapshot at {index} is past the applied index {self.applied}")
        if self.log.term(index) not in (term, None):
            raise ValueError(f"snapshot at {index} has term {term}, the log {self.log.term(index)}")
        self.snapshot_index, self.snapshot_term = index, term
        compact_to = index - self.config.snapshot_trailing
        if compact_to > self.log.base_index:
            self.log.compact(compact_to)
            self._pending_bases.append(LogBase(compact_to, self.log.base_term))

    def send_snapshot_chunk(self, peer: str, index: int, term: int, offset: int, data: bytes, done: bool) -> bool:
        """The owner read what a SnapshotRead asked for: send it to `peer` as
        an InstallSnapshot stamped with the current term. False (nothing sent)
        when the read is stale: leadership, the stream or its offset moved on.
        A chunk larger than max_snapshot_chunk is a caller's bug (ValueError)."""
        if len(data) > self.config.max_snapshot_chunk:
            raise ValueError(f"a snapshot chunk of {len(data)} bytes exceeds max_snapshot_chunk")
        pr = self.progress.get(peer) if self.role is Role.LEADER else None
        if (
            pr is None
            or pr.state is not ProgressState.SNAPSHOT
            or (pr.snap_index, pr.snap_term) != (index, term)
            or pr.snap_reading != offset
        ):
            return False
        pr.snap_reading = None
        pr.snap_started = True
        pr.snap_sent = offset + len(data)
        pr.snap_chunks.append(pr.snap_sent)
        pr.snap_done_sent = done
        self._outbox.append(InstallSnapshot(self.id, peer, self.term, index, term, offset, data, done))
        self._request_snapshot_read(peer, pr)
        return True

    def snapshot_send_failed(self, peer: str) -> None:
        """The owner cannot read the snapshot a SnapshotRead named (it was
        replaced by a newer one): the follower starts over, from the newest."""
        pr = self.progress.get(peer) if self.role is Role.LEADER else None
        if pr is not None and pr.state is ProgressState.SNAPSHOT:
            pr.become_probe()

    def snapshot_installed(self, index: int, term: int) -> None:
        """The owner verified the received snapshot (index, term) (Ready.
        install_snapshot), made it the node's snapshot and restored the state
        machine from it. The log keeps what follows the snapshot if it holds
        the snapshot's last entry, else it is discarded (Raft paper section
        7; HashiCorp raft issue 697: keeping a conflicting entry makes the
        follower reject the leader forever); commit and applied move to index.
        """
        if self._installing != (index, term):
            raise ValueError(f"snapshot ({index}, {term}) was not handed out for installing ({self._installing})")
        self._installing = None
        self._install_announced = False
        receiving, self._receiving = self._receiving, None
        self._install(index, term)
        if receiving is not None and (receiving.index, receiving.term) == (index, term):
            self._send(
                InstallSnapshotResponse(self.id, receiving.leader, self.term, index, term, receiving.offset, True)
            )

    def snapshot_failed(self, index: int, term: int) -> None:
        """The received snapshot failed verification (checksum) or restore:
        nothing changes; the leader is asked to send it again from offset 0."""
        if self._installing != (index, term):
            raise ValueError(f"snapshot ({index}, {term}) was not handed out for installing ({self._installing})")
        self._installing = None
        self._install_announced = False
        receiving, self._receiving = self._receiving, None
        if receiving is not None:
            self._send(InstallSnapshotResponse(self.id, receiving.leader, self.term, index, term, 0, rejected=True))

    def _install(self, index: int, term: int) -> None:
        if self.log.term(index) == term:
            self.log.compact(index)
            self._pending_bases.append(LogBase(index, term))
            self.durable_index = max(self.durable_index, index)
            if self._unpersisted_from is not None and self._unpersisted_from <= index:
                self._unpersisted_from = index + 1 if index < self.log.last_index else None
        else:
            self.log.reset(index, term)
            self._pending_bases.append(LogBase(index, term, discard=True))
            self.durable_index = index
            for pending in self._pending_writes:
                pending.last_index = min(pending.last_index, index)
            self._unpersisted_from = None
        self.snapshot_index, self.snapshot_term = index, term
        self._commit_to(index)
        self.set_applied(index)

    def _snapshot_received(self, receiving: _Receiving) -> None:
        """The last chunk is durable: install, unless the log got there first."""
        if receiving.index <= self.commit:
            self._receiving = None
            self._send(
                InstallSnapshotResponse(
                    self.id, receiving.leader, self.term, receiving.index, receiving.term, receiving.offset, True
                )
            )
            return
        self._installing = (receiving.index, receiving.term)
        self._install_announced = True

    def _request_snapshot_read(self, peer: str, pr: Progress) -> None:
        """Ask the owner for the next chunk while the window has room."""
        if (
            pr.snap_reading is None
            and not pr.snap_done_sent
            and len(pr.snap_chunks) < self.config.max_snapshot_inflight
        ):
            pr.snap_reading = pr.snap_sent
            self._snapshot_reads.append(SnapshotRead(peer, pr.snap_index, pr.snap_term, pr.snap_sent))

    def _become_snapshot(self, peer: str, pr: Progress) -> None:
        if self.snapshot_index < self.log.base_index or self.snapshot_index == 0:
            raise SafetyViolation(
                f"the log starts after {self.log.base_index} but the snapshot is at {self.snapshot_index}"
            )
        pr.become_snapshot(self.snapshot_index, self.snapshot_term)
        self._request_snapshot_read(peer, pr)

    def _handle_snapshot(self, m: InstallSnapshot) -> None:
        """A chunk from the leader: accept it if it continues what we hold
        durably, and acknowledge once it is durable (_send holds the answer
        until the write carrying the chunk is done)."""
        index, term = m.snapshot_index, m.snapshot_term
        if index <= self.commit:
            # Every entry it covers is committed here already (held until durable).
            self._send(InstallSnapshotResponse(self.id, m.src, self.term, index, term, m.offset, installed=True))
            return
        r = self._receiving
        if r is None or (r.leader, r.leader_term, r.index, r.term) != (m.src, m.term, index, term):
            if self._installing is not None:
                return  # one install at a time; the leader resends
            if m.offset != 0:
                self._send(InstallSnapshotResponse(self.id, m.src, self.term, index, term, 0, rejected=True))
                return
            r = self._receiving = _Receiving(m.src, m.term, index, term)
        if m.offset != r.offset or r.done_write:
            # A duplicate (acknowledge what we hold) or a gap (ask for it).
            gap = m.offset > r.offset and not r.done_write
            self._send(InstallSnapshotResponse(self.id, m.src, self.term, index, term, r.offset, rejected=gap))
            return
        r.offset += len(m.data)
        self._pending_chunks.append(SnapshotChunk(index, term, m.offset, m.data, m.done))
        if m.done:
            r.done_write = self._next_write_id  # the write _take_write issues next carries it
        self._send(InstallSnapshotResponse(self.id, m.src, self.term, index, term, r.offset))

    def step(self, m: Message) -> None:
        """Process one message from a peer (or a released message to self).
        An unbelievable message is counted in `refused` and changes nothing."""
        problem = self._unbelievable(m)
        if problem is not None:
            self.refused[problem] = self.refused.get(problem, 0) + 1
            return
        if m.term > self.term:
            if isinstance(m, RequestVote) and self._in_lease():
                return  # a live leader exists: do not let a disruptive node depose it
            if isinstance(m, RequestVote) and m.pre_vote:
                self._handle_vote_request(m)  # a pre-vote never changes our term
                return
            if not (isinstance(m, RequestVoteResponse) and m.pre_vote and m.granted):
                # (A granted pre-vote carries the term the pre-candidate asked
                # for, not a newer one.)
                leader = m.src if isinstance(m, (AppendEntries, Heartbeat, InstallSnapshot)) else None
                self._become_follower(m.term, leader)
        elif m.term < self.term:
            if isinstance(m, (AppendEntries, Heartbeat)):
                # A stale leader: tell it our term so it steps down. Without this,
                # pre-vote and check-quorum could leave it leading a minority forever.
                self._send(AppendEntriesResponse(self.id, m.src, self.term, success=False, index=0))
            elif isinstance(m, InstallSnapshot):
                self._send(
                    InstallSnapshotResponse(
                        self.id, m.src, self.term, m.snapshot_index, m.snapshot_term, 0, rejected=True
                    )
                )
            elif isinstance(m, RequestVote) and m.pre_vote:
                self._send(RequestVoteResponse(self.id, m.src, self.term, granted=False, pre_vote=True))
            return

        if isinstance(m, RequestVote):
            self._handle_vote_request(m)
        elif self.role is Role.LEADER:
            self._step_leader(m)
        elif self.role is Role.FOLLOWER:
            self._step_follower(m)
        else:
            self._step_candidate(m)

    def ready(self) -> Ready:
        """Collect everything to do since the last call. Call it after each
        batch of inputs, and again while has_ready() says so (a large write or
        backlog of committed entries is handed out over several Readies)."""
        if self.role is Role.LEADER:
            self._replicate()
        write = self._take_write()
        committed = self._take_committed()
        messages, self._outbox = self._outbox, []
        role_changed, self._role_changed = self._role_changed, False
        if not self._snapshot_reads and not self._install_announced:
            return Ready(messages, write, committed, role_changed)
        reads, self._snapshot_reads = self._snapshot_reads, []
        install = None
        if self._install_announced and self._installing is not None:
            install = self._installing
            self._install_announced = False
        return Ready(messages, write, committed, role_changed, reads, install)

    def has_ready(self) -> bool:
        """Whether ready() would return anything: call ready() until this is False."""
        return bool(
            self._outbox
            or self._role_changed
            or self._unpersisted_from is not None
            or self._hard_state_changed()
            or bool(self._pending_bases or self._pending_chunks or self._snapshot_reads)
            or (self._install_announced and self._installing is not None)
            or (
                min(self.commit, self.durable_index) > self.applied
                and self._apply_room() > 0
                and self._installing is None
            )
            or (self.role is Role.LEADER and self._has_replication_work())
        )

    def _apply_room(self) -> int:
        """How many more committed entries may be handed out before the state
        machine confirms some (0 while its window is full)."""
        cfg = self.config
        if self._apply_lag_bytes >= cfg.max_apply_lag_bytes:
            return 0
        return max(0, cfg.max_apply_lag - (self.applied - self._apply_confirmed))

    def _take_committed(self) -> list[Entry]:
        last_applicable = min(self.commit, self.durable_index)
        if last_applicable <= self.applied or self._installing is not None:
            return []
        room = self._apply_room()
        if room <= 0:
            return []
        cfg = self.config
        committed = self.log.entries(
            self.applied + 1,
            last_applicable + 1,
            max_entries=min(cfg.max_apply_entries, room),
            max_bytes=cfg.max_apply_bytes,
        )
        if committed:
            size = self.log.data_bytes(self.applied + 1, committed[-1].index + 1)
            self.applied = committed[-1].index
            self._apply_batches.append((self.applied, size))
            self._apply_lag_bytes += size
        return committed

    def _has_replication_work(self) -> bool:
        """Would _replicate() send anything: entries a follower lacks and its
        window allows, or a commit index it has not been told?"""
        last = self.log.last_index
        commit = self.commit
        for pr in self.progress.values():
            if pr.next <= last and not pr.is_paused():
                return True
            if pr.commit_sent < min(pr.match, commit):
                return True
        return False

    # ------------------------------------------------------------------ queries

    @property
    def hard_state(self) -> HardState:
        return HardState(self.term, self.vote, self.commit)

    @property
    def quorum(self) -> int:
        return len(self.voters) // 2 + 1

    def status(self) -> dict:
        """A plain snapshot of the core's state for `sandzmq status` and tests."""
        followers = {
            peer: {
                "match": pr.match,
                "next": pr.next,
                "state": pr.state.value,
                "inflight": len(pr.inflights),
                "lag": self.log.last_index - pr.match,
            }
            for peer, pr in sorted(self.progress.items())
        }
        return {
            "id": self.id,
            "role": self.role.value,
            "term": self.term,
            "leader": self.leader,
            "commit_index": self.commit,
            "applied_index": self.applied,
            "last_index": self.log.last_index,
            "durable_index": self.durable_index,
            "snapshot_index": self.snapshot_index,
            "followers": followers,
            "refused": dict(self.refused),
        }

    # ------------------------------------------------------------------ believability

    def _unbelievable(self, m: Message) -> str | None:
        """Why `m` cannot be true, or None. Cheap checks, O(1) per message: the
        codec has already checked what needs a pass over a column (terms of a
        batch never decrease) and the ranges of every integer."""
        term = m.term
        if term > MAX_TERM:
            return "term out of range"
        if term > self.term + self.config.max_term_jump:
            # Terms grow by one per election: a jump this large is a forgery, and
            # adopting it would bring every node that much closer to MAX_TERM.
            return "term jumps too far ahead"
        if isinstance(m, AppendEntries):
            if m.prev_term > term or m.commit > MAX_INDEX or m.prev_index > MAX_INDEX - len(m.entries):
                return "append out of range"
            entries = m.entries
            if entries and (
                entries[0].index != m.prev_index + 1
                or entries[-1].index != m.prev_index + len(entries)
                or entries[0].term < m.prev_term
                or entries[-1].term > term
            ):
                return "entries do not follow prev_index/prev_term or exceed the term"
        elif isinstance(m, RequestVote):
            if m.last_term > term or m.last_index > MAX_INDEX:
                return "candidate's last term above its term"
        elif isinstance(m, AppendEntriesResponse):
            if m.index > MAX_INDEX or m.hint_term > term or (not m.success and m.hint_index > m.index):
                return "append response out of range"
            if self.role is Role.LEADER and term == self.term:
                pr = self.progress.get(m.src)
                if pr is not None and m.index > pr.sent:
                    return "acknowledges entries never sent"
        elif isinstance(m, Heartbeat):
            if m.commit > MAX_INDEX:
                return "heartbeat out of range"
        elif isinstance(m, InstallSnapshot):
            if not (0 < m.snapshot_index <= MAX_INDEX and 0 < m.snapshot_term <= term):
                return "snapshot out of range"
            if m.offset > MAX_INDEX or len(m.data) > self.config.max_snapshot_chunk:
                return "snapshot chunk out of range"
        elif isinstance(m, InstallSnapshotResponse):
            if m.snapshot_index > MAX_INDEX or m.snapshot_term > term or m.next_offset > MAX_INDEX:
                return "snapshot response out of range"
            if self.role is Role.LEADER and term == self.term:
                pr = self.progress.get(m.src)
                if (
                    pr is not None
                    and pr.state is ProgressState.SNAPSHOT
                    and (pr.snap_index, pr.snap_term) == (m.snapshot_index, m.snapshot_term)
                    and (m.next_offset > pr.snap_sent or (m.installed and not pr.snap_started))
                ):
                    return "acknowledges snapshot bytes never sent"
        return None

    # ------------------------------------------------------------------ elections

    def _in_lease(self) -> bool:
        """True while this node has heard from a live leader within the minimum
        election timeout: it then ignores vote requests (leader stickiness,
        the Raft dissertation section 4.2.3, as etcd-io/raft does with CheckQuorum)."""
        return (
            self.config.check_quorum
            and self.leader is not None
            and self.election_elapsed < self.config.election_ticks[0]
        )

    def _reset_election_timeout(self) -> None:
        low, high = self.config.election_ticks
        self._election_timeout = self._rng.randint(low, high)

    def _start_election(self) -> None:
        # A fresh random timeout per campaign, or two nodes that split a vote
        # once would split it forever.
        self._reset_election_timeout()
        if self.config.pre_vote:
            self._become_pre_candidate()
        else:
            self._become_candidate()

    def _become_pre_candidate(self) -> None:  # (never at MAX_TERM: tick() checks)
        """Ask whether we could win before disturbing anyone's term (dissertation 9.6)."""
        self._set_role(Role.PRE_CANDIDATE, None)
        self._votes = {self.id: True}
        request_term = self.term + 1
        for peer in self._others():
            self._outbox.append(
                RequestVote(self.id, peer, request_term, self.log.last_index, self.log.last_term, pre_vote=True)
            )
        self._check_votes()

    def _become_candidate(self) -> None:
        self.term += 1
        self.vote = self.id
        self._set_role(Role.CANDIDATE, None)
        self._votes = {}
        # Our own vote counts only once it is durable: it travels the held queue too.
        self._send(RequestVoteResponse(self.id, self.id, self.term, granted=True))
        for peer in self._others():
            self._send(RequestVote(self.id, peer, self.term, self.log.last_index, self.log.last_term))

    def _handle_vote_request(self, m: RequestVote) -> None:
        can_vote = (
            self.vote == m.src or (self.vote is None and self.leader is None) or (m.pre_vote and m.term > self.term)
        )
        if can_vote and self.log.is_up_to_date(m.last_index, m.last_term):
            if not m.pre_vote:
                # Record the vote first: _send then holds the grant until it is durable.
                self.election_elapsed = 0
                self.vote = m.src
            self._send(RequestVoteResponse(self.id, m.src, m.term, granted=True, pre_vote=m.pre_vote))
        else:
            self._send(RequestVoteResponse(self.id, m.src, self.term, granted=False, pre_vote=m.pre_vote))

    def _step_candidate(self, m: Message) -> None:
        if isinstance(m, (AppendEntries, Heartbeat, InstallSnapshot)):
            # A leader of our own term exists (a pre-candidate's term is the current one).
            self._become_follower(self.term, m.src)
            self._step_follower(m)
        elif isinstance(m, RequestVoteResponse):
            if m.pre_vote != (self.role is Role.PRE_CANDIDATE):
                return  # an answer to an earlier campaign
            self._votes.setdefault(m.src, m.granted)
            self._check_votes()

    def _check_votes(self) -> None:
        granted = sum(1 for v in self._votes.values() if v)
        rejected = len(self._votes) - granted
        if granted >= self.quorum:
            if self.role is Role.PRE_CANDIDATE:
                self._become_candidate()
            else:
                self._become_leader()
        elif rejected >= self.quorum:
            self._become_follower(self.term, None)

    # ------------------------------------------------------------------ roles

    def _set_role(self, role: Role, leader: str | None) -> None:
        if role is not self.role or leader != self.leader:
            self._role_changed = True
        self.role = role
        self.leader = leader

    def _become_follower(self, term: int, leader: str | None) -> None:
        if term != self.term:
            self.term = term
            self.vote = None
            self._role_changed = True
        self._set_role(Role.FOLLOWER, leader)
        self.election_elapsed = 0
        self._reset_election_timeout()
        self.progress = {}

    def _become_leader(self) -> None:
        self._set_role(Role.LEADER, self.id)
        self.heartbeat_elapsed = 0
        self.election_elapsed = 0
        next_index = self.log.last_index + 1
        cfg = self.config
        self.progress = {
            peer: Progress(next_index, cfg.max_inflight, cfg.max_inflight_bytes) for peer in self._others()
        }
        # An entry of the new term, so that earlier entries can commit (paper 5.4.2).
        self._append_local([Entry(next_index, self.term, b"", EntryKind.NOOP)])
        self._broadcast_heartbeat()

    def _others(self) -> list[str]:
        return sorted(self.voters - {self.id})

    # ------------------------------------------------------------------ follower

    def _step_follower(self, m: Message) -> None:
        if isinstance(m, AppendEntries):
            self.election_elapsed = 0
            self._set_role(Role.FOLLOWER, m.src)
            self._handle_append(m)
        elif isinstance(m, Heartbeat):
            self.election_elapsed = 0
            self._set_role(Role.FOLLOWER, m.src)
            self._commit_to(min(m.commit, self.log.last_index))
            self._send(HeartbeatResponse(self.id, m.src, self.term, m.context))
        elif isinstance(m, InstallSnapshot):
            self.election_elapsed = 0
            self._set_role(Role.FOLLOWER, m.src)
            self._handle_snapshot(m)

    def _handle_append(self, m: AppendEntries) -> None:
        if m.prev_index < self.commit:
            # Everything up to our commit index is settled: acknowledge what we
            # hold (as etcd-io/raft does). A leader of this term cannot disagree
            # with a committed entry (leader completeness): one that does is a
            # forgery (or a bug), refused like any other unbelievable message.
            base = self.log.base_index
            for entry in m.entries:
                if entry.index > self.commit:
                    break
                if entry.index > base and self.log.term(entry.index) != entry.term:
                    reason = "contradicts a committed entry"
                    self.refused[reason] = self.refused.get(reason, 0) + 1
                    return
            self._send(AppendEntriesResponse(self.id, m.src, self.term, success=True, index=self.commit))
            return
        if not self.log.match_term(m.prev_index, m.prev_term):
            hint_index, hint_term = self.log.find_conflict_by_term(min(m.prev_index, self.log.last_index), m.prev_term)
            self._send(
                AppendEntriesResponse(
                    self.id,
                    m.src,
                    self.term,
                    success=False,
                    index=m.prev_index,
                    hint_index=hint_index,
                    hint_term=hint_term,
                )
            )
            return
        last_new = m.prev_index + len(m.entries)
        conflict = self.log.find_conflict(m.entries)
        if conflict:  # (always past prev_index >= commit: committed entries are never replaced)
            skip = conflict - m.entries[0].index
            self._append_local(m.entries[skip:], m.sizes[skip:] if m.sizes is not None else None)
        self._commit_to(min(m.commit, last_new))
        self._send(AppendEntriesResponse(self.id, m.src, self.term, success=True, index=last_new))

    def _commit_to(self, index: int) -> None:
        if index > self.commit:
            self.commit = index

    # ------------------------------------------------------------------ leader

    def _tick_leader(self) -> None:
        self.heartbeat_elapsed += 1
        self.election_elapsed += 1
        if self.election_elapsed >= self.config.election_ticks[0]:
            self.election_elapsed = 0
            if self.config.check_quorum and not self._quorum_active():
                self._become_follower(self.term, None)
                return
            for pr in self.progress.values():
                pr.recent_active = False
        if self._persist_stalled():
            self._become_follower(self.term, None)
            return
        if self.heartbeat_elapsed >= self.config.heartbeat_ticks:
            self.heartbeat_elapsed = 0
            self._broadcast_heartbeat()

    def _quorum_active(self) -> bool:
        active = 1 + sum(1 for pr in self.progress.values() if pr.recent_active)
        return active >= self.quorum

    def _persist_stalled(self) -> bool:
        if not self._pending_writes:
            return False
        limit = self.config.persist_timeout_ticks
        if limit is None:
            limit = self.config.election_ticks[1]
        return self._ticks - self._pending_writes[0].issued_tick > limit

    def _broadcast_heartbeat(self) -> None:
        for peer, pr in self.progress.items():
            self._send_heartbeat(peer, pr)

    def _send_heartbeat(self, peer: str, pr: Progress) -> None:
        commit = min(pr.match, self.commit)
        pr.commit_sent = max(pr.commit_sent, commit)
        self._outbox.append(Heartbeat(self.id, peer, self.term, commit))

    def _step_leader(self, m: Message) -> None:
        pr = self.progress.get(m.src)
        if pr is None:
            return
        if isinstance(m, AppendEntriesResponse):
            pr.recent_active = True
            if m.success:
                if pr.maybe_update(m.index):
                    if pr.state is ProgressState.PROBE:
                        pr.become_replicate()
                    elif pr.state is ProgressState.SNAPSHOT:
                        if pr.match >= pr.snap_index:
                            pr.become_probe()  # the log caught it up: the snapshot is moot
                    else:
                        pr.inflights.free_to(m.index)
                    self._maybe_commit()
            elif pr.state is ProgressState.SNAPSHOT:
                return  # an answer to an AppendEntries from before the snapshot
            else:
                hint = m.hint_index
                if m.hint_term > 0:
                    hint, _ = self.log.find_conflict_by_term(m.hint_index, m.hint_term)
                if pr.maybe_decrease(m.index, hint) and pr.state is ProgressState.REPLICATE:
                    pr.become_probe()
        elif isinstance(m, InstallSnapshotResponse):
            pr.recent_active = True
            if pr.state is not ProgressState.SNAPSHOT or (pr.snap_index, pr.snap_term) != (
                m.snapshot_index,
                m.snapshot_term,
            ):
                return  # about another stream: stale
            if m.installed:
                pr.maybe_update(pr.snap_index)
                pr.become_probe()
                self._maybe_commit()
                return
            if m.rejected:
                if m.next_offset < pr.snap_sent:
                    pr.snapshot_go_back(m.next_offset)
            else:
                pr.snapshot_acked(m.next_offset)
            self._request_snapshot_read(m.src, pr)
        elif isinstance(m, HeartbeatResponse):
            pr.recent_active = True
            if pr.state is ProgressState.SNAPSHOT:
                # No acknowledgement for a few heartbeats: chunks (or the answer
                # to the last one) were lost. Resend from the follower's offset.
                pr.snap_stall += 1
                if pr.snap_stall >= 3 and pr.snap_reading is None:
                    pr.snapshot_go_back(pr.snap_acked)
                    self._request_snapshot_read(m.src, pr)
                return
            pr.probe_sent = False
            if pr.state is ProgressState.REPLICATE and pr.inflights.full():
                pr.inflights.free_first()
            if pr.match < self.log.last_index:
                # The follower lags: make sure something carries it forward even if
                # an AppendEntries was lost (an empty one draws a rejection and a probe).
                self._send_append(m.src, pr, allow_empty=True)

    def _maybe_commit(self) -> None:
        matches = sorted([self.durable_index, *(pr.match for pr in self.progress.values())], reverse=True)
        candidate = matches[self.quorum - 1]
        # Only an entry of the current term is committed by counting replicas
        # (paper 5.4.2, Figure 8); earlier ones commit with it.
        if candidate > self.commit and self.log.term(candidate) == self.term:
            self.commit = candidate

    def _replicate(self) -> None:
        """Send every follower what it lacks, up to its window: all proposals and
        acknowledgements stepped since the last Ready travel together."""
        for peer, pr in self.progress.items():
            while self._send_append(peer, pr):
                if pr.state is ProgressState.PROBE:
                    break
            if pr.commit_sent < min(pr.match, self.commit):
                self._send_heartbeat(peer, pr)

    def _send_append(self, peer: str, pr: Progress, allow_empty: bool = False) -> bool:
        if pr.is_paused():
            return False
        prev_index = pr.next - 1
        prev_term = self.log.term(prev_index)
        if prev_term is None:
            # Compacted away: the follower needs the snapshot (etcd-io/raft's StateSnapshot).
            self._become_snapshot(peer, pr)
            return False
        cfg = self.config
        entries = self.log.entries(pr.next, self.log.last_index + 1, cfg.max_batch_entries, cfg.max_batch_bytes)
        if not entries and not allow_empty:
            return False
        last_offered = prev_index + len(entries)
        if last_offered > pr.sent:
            pr.sent = last_offered
        if entries:
            if pr.state is ProgressState.REPLICATE:
                pr.next = entries[-1].index + 1
                pr.inflights.add(entries[-1].index, self.log.data_bytes(entries[0].index, entries[-1].index + 1))
            else:
                pr.probe_sent = True
        else:
            pr.probe_sent = pr.state is ProgressState.PROBE
        pr.commit_sent = max(pr.commit_sent, min(pr.match, self.commit))
        self._outbox.append(AppendEntries(self.id, peer, self.term, prev_index, prev_term, entries, self.commit))
        return bool(entries)

    # ------------------------------------------------------------------ persistence

    def _append_local(self, entries: list[Entry], sizes: list[int] | None = None) -> None:
        """Put entries in the log and schedule them for the log-store
        (`sizes`: their data lengths, if the caller has them)."""
        first = entries[0].index
        if first <= self.log.last_index:
            # A suffix is replaced: nothing from `first` on is durable any more,
            # whatever writes in flight say.
            self.durable_index = min(self.durable_index, first - 1)
            for pending in self._pending_writes:
                pending.last_index = min(pending.last_index, first - 1)
        self.log.append(entries, sizes)
        if self._unpersisted_from is None or first < self._unpersisted_from:
            self._unpersisted_from = first

    def _durability_pending(self) -> bool:
        """Whether the next write must carry something messages depend on:
        new entries, or a new term or vote. (A commit index alone does not count:
        no message depends on it being durable.)"""
        w = self._written
        return (
            self._unpersisted_from is not None
            or w.term != self.term
            or w.vote != self.vote
            or bool(self._pending_chunks or self._pending_bases)
        )

    def _hard_state_changed(self) -> bool:
        w = self._written
        return w.term != self.term or w.vote != self.vote or w.commit != self.commit

    def _take_write(self) -> PersistWrite | None:
        """The next write: every unpersisted entry up to max_write_bytes of
        data, and the hard state if it changed. When entries remain (a large
        backlog), they go in the next write, the hard state with the last one
        (a commit index must never be on disk ahead of its entries), and the
        messages held for "the next write" wait for that last one instead."""
        if (
            self._unpersisted_from is None
            and not self._hard_state_changed()
            and not self._pending_bases
            and not self._pending_chunks
        ):
            return None
        write_id = self._next_write_id
        self._next_write_id += 1
        entries: list[Entry] = []
        # A log base goes first in its write (one per write, in order); chunks
        # travel with the next write, whose id their acknowledgements wait for.
        base = self._pending_bases.popleft() if self._pending_bases else None
        chunks, self._pending_chunks = self._pending_chunks, []
        must_sync = bool(chunks) or (base is not None and self._installed_base(base))
        last_index = self.log.last_index
        if self._unpersisted_from is not None:
            entries = self.log.entries(self._unpersisted_from, last_index + 1, max_bytes=self.config.max_write_bytes)
            must_sync = True
            if entries[-1].index < last_index:
                self._unpersisted_from = entries[-1].index + 1
                self._pending_writes.append(_PendingWrite(write_id, entries[-1].index, self._ticks))
                self._defer_held(write_id)
                return PersistWrite(write_id, entries, None, True, entries[-1].index, entries[-1].term, base, chunks)
            self._unpersisted_from = None
        hard_state = None
        if self._hard_state_changed():
            w = self._written
            must_sync = must_sync or w.term != self.term or w.vote != self.vote
            hard_state = HardState(self.term, self.vote, self.commit)
            self._written = HardState(self.term, self.vote, self.commit)
        self._pending_writes.append(_PendingWrite(write_id, last_index, self._ticks))
        if self._pending_bases:
            self._defer_held(write_id)  # (messages may wait for the next base too)
        return PersistWrite(write_id, entries, hard_state, must_sync, last_index, self.log.last_term, base, chunks)

    def _installed_base(self, base: LogBase) -> bool:
        """Whether a log base comes from an installed snapshot (messages wait
        for it) rather than a compaction (nothing depends on it)."""
        return base.discard or base.index == self.snapshot_index

    def _defer_held(self, write_id: int) -> None:
        """Messages held until "the next write" (`write_id`) now wait for the
        one after it: `write_id` turned out to carry only part of what they
        depend on. Held messages are in write-id order, so they are at the end."""
        held = self._held
        for position in range(len(held) - 1, -1, -1):
            needed, message = held[position]
            if needed != write_id:
                break
            held[position] = (write_id + 1, message)

    def _send(self, m: Message) -> None:
        """Send `m` once everything it depends on is durable.

        A leader's replication traffic needs only its term, already durable.
        Everything else waits for the writes issued so far, and for the write
        the next Ready will issue if term, vote or entries changed.
        """
        if self.role is Role.LEADER and isinstance(m, (AppendEntries, Heartbeat)):
            self._outbox.append(m)
            return
        needed = self._next_write_id if self._durability_pending() else self._next_write_id - 1
        if needed <= self._persisted_id:
            self._outbox.append(m)  # (messages to self always wait: they carry a new vote)
        else:
            self._held.append((needed, m))
