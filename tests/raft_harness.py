"""A small, deterministic, hand-driven Raft cluster for scenario tests.

Nothing happens unless the test says so: messages wait in one FIFO queue until
`deliver`, `deliver_all` or `drop`; time passes only through `tick`; each node
has a simulated disk (hard state + entries) that takes the core's PersistWrites
either at once (`auto_persist`, the default) or only when the test calls
`persist(node)`. `crash(node)` loses everything not yet on disk, `restart(node)`
builds a new RaftCore from the disk alone (applied=0, so the state machine is
replayed).

Everything that happens is written to `trace`, one line per event, as a
protocol trace (sandzmq.protocol.describe): each message as it is sent
("n1->n2 AppendEntries t1 prev=(1,t1) entries=2(t1) commit=1"), dropped or lost
with a crashed node, each write a core asks for ("n1: raft->log LogWrite #3 ..."),
each batch of entries handed to a state machine ("n2: apply 1..2(t1,1 noop)"),
crashes, restarts and partitions. Failures of the harness's own checks end
with the trace's tail; tests/golden/ holds whole traces of short scenarios.

The cluster checks, after every step, the safety properties a test should never
have to repeat:
- at most one leader per term;
- each node is handed committed entries once, in index order, and only when the
  entry is on its own disk;
- no two nodes (nor two lives of one node) apply different entries at one index.

Helpers for unit tests that drive one RaftCore by hand: `entries`, `make_core`,
`settle`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable

from sandzmq.protocol import LogWrite, describe
from sandzmq.protocol.logdata import describe_entries
from sandzmq.raft import (
    CoreConfig,
    Entry,
    EntryKind,
    HardState,
    MemoryLog,
    Message,
    PersistWrite,
    RaftCore,
    Role,
)

MessageFilter = Callable[[Message], bool]


class ElectionFailed(AssertionError):
    """Cluster.elect could not make the node leader."""


def entries(terms: Iterable[int], start: int = 1) -> list[Entry]:
    """Entries with the given terms from index `start`; the data names them ("3@2"),
    so equal (index, term) means equal data, as the Log Matching property says."""
    return [Entry(start + i, term, f"{start + i}@{term}".encode()) for i, term in enumerate(terms)]


def make_config(config: CoreConfig | None = None, **overrides) -> CoreConfig:
    return dataclasses.replace(config or CoreConfig(), **overrides)


def make_core(
    node_id: str = "a",
    voters: Iterable[str] = ("a", "b", "c"),
    *,
    terms: Iterable[int] = (),
    hard_state: HardState | None = None,
    config: CoreConfig | None = None,
    **overrides,
) -> RaftCore:
    """One RaftCore restarted from a "disk" holding entries of the given terms."""
    return RaftCore(
        node_id,
        list(voters),
        config=make_config(config, **overrides),
        hard_state=hard_state,
        log=MemoryLog(entries(terms)),
    )


def settle(core: RaftCore) -> list[Message]:
    """ready() until quiet, reporting each write durable at once; returns every
    message the core emitted meanwhile (committed entries are dropped)."""
    sent: list[Message] = []
    for _ in range(100):
        rd = core.ready()
        sent += rd.messages
        if rd.write:
            core.persisted(rd.write.write_id)
        elif not rd:
            return sent
    raise AssertionError("the core never went quiet")


def log_terms(core: RaftCore) -> list[int]:
    return [e.term for e in core.log.entries(1, core.log.last_index + 1)]


class Disk:
    """What survives a crash: the hard state and the log entries."""

    def __init__(self, hard_state: HardState | None = None, log: Iterable[Entry] = ()) -> None:
        self.hard_state = dataclasses.replace(hard_state or HardState())
        self.entries: list[Entry] = list(log)

    def write(self, w: PersistWrite) -> None:
        if w.entries:
            first = w.entries[0].index
            assert first <= len(self.entries) + 1, f"write {w.write_id} leaves a gap before index {first}"
            del self.entries[first - 1 :]  # replaces the suffix from `first` on
            self.entries.extend(w.entries)
        if w.hard_state is not None:
            self.hard_state = dataclasses.replace(w.hard_state)

    def term(self, index: int) -> int | None:
        return self.entries[index - 1].term if 0 < index <= len(self.entries) else None


class Node:
    def __init__(self, node_id: str, disk: Disk) -> None:
        self.id = node_id
        self.disk = disk
        self.core: RaftCore | None = None
        self.auto_persist = True
        self.unpersisted: list[PersistWrite] = []  # issued by ready(), not yet durable
        self.applied: list[Entry] = []  # this life's state machine, every kind of entry

    @property
    def alive(self) -> bool:
        return self.core is not None


class Cluster:
    """A Raft cluster under the test's complete control; see the module docstring."""

    def __init__(
        self,
        ids: Iterable[str],
        config: CoreConfig | None = None,
        *,
        pre_vote: bool | None = None,
        check_quorum: bool | None = None,
        auto_persist: bool = True,
        logs: dict[str, Iterable[int]] | None = None,
        hard_states: dict[str, HardState] | None = None,
    ) -> None:
        """`logs` gives a node's initial log as a list of entry terms, `hard_states`
        its initial hard state (by default: the last log term, no vote, commit 0)."""
        self.ids = list(ids)
        overrides = {k: v for k, v in (("pre_vote", pre_vote), ("check_quorum", check_quorum)) if v is not None}
        self.config = make_config(config, **overrides)
        self.nodes: dict[str, Node] = {}
        self.queue: list[Message] = []
        self.sent: list[Message] = []  # every message any node ever emitted, in order
        self.leaders: dict[int, str] = {}  # term -> the one leader it ever had
        self.committed: dict[int, Entry] = {}  # index -> the entry every node must apply there
        self.apply_history: list[tuple[str, Entry]] = []  # every (node, entry) applied, across lives
        self.trace: list[str] = []  # what happened, one line each (see the module docstring)
        self._group = {n: 0 for n in self.ids}  # nodes in different groups cannot talk
        logs, hard_states = logs or {}, hard_states or {}
        for n in self.ids:
            log = entries(logs.get(n, ()))
            hs = hard_states.get(n) or HardState(term=log[-1].term if log else 0)
            node = self.nodes[n] = Node(n, Disk(hs, log))
            node.auto_persist = auto_persist
            self._boot(node)

    # ------------------------------------------------------------ inspection

    def core(self, n: str) -> RaftCore:
        core = self.nodes[n].core
        assert core is not None, f"{n} is crashed"
        return core

    def alive(self) -> list[str]:
        return [n for n in self.ids if self.nodes[n].alive]

    def leader(self) -> str | None:
        """The live leader of the highest term, if any."""
        leaders = [n for n in self.alive() if self.core(n).role is Role.LEADER]
        return max(leaders, key=lambda n: self.core(n).term, default=None)

    def applied(self, n: str) -> list[bytes]:
        """The commands node n's state machine applied in this life, in order."""
        return [e.data for e in self.nodes[n].applied if e.kind == EntryKind.NORMAL]

    def log_terms(self, n: str) -> list[int]:
        return log_terms(self.core(n))

    def log_entries(self, n: str) -> list[Entry]:
        core = self.core(n)
        return core.log.entries(1, core.log.last_index + 1)

    def trace_tail(self, n: int = 25) -> str:
        """The last n lines of the trace, for a failure message."""
        lines = self.trace[-n:]
        skipped = len(self.trace) - len(lines)
        return "\n".join(([f"... ({skipped} earlier lines)"] if skipped else []) + [f"  {line}" for line in lines])

    def status(self) -> str:
        rows = []
        for n in self.ids:
            if not self.nodes[n].alive:
                rows.append(f"{n}: crashed")
                continue
            c = self.core(n)
            rows.append(
                f"{n}: {c.role.value} term={c.term} vote={c.vote} leader={c.leader} "
                f"commit={c.commit} log={log_terms(c)}"
            )
        return "\n".join(rows)

    # ------------------------------------------------------------ network

    def connected(self, a: str, b: str) -> bool:
        return self._group[a] == self._group[b]

    def isolate(self, *nodes: str) -> None:
        """Cut each of `nodes` off from every other node."""
        for n in nodes:
            self._group[n] = max(self._group.values()) + 1
        self.trace.append(f"isolate {' '.join(nodes)}")
        self._drop_unreachable()

    def partition(self, *groups: Iterable[str]) -> None:
        """Nodes talk only inside their group; nodes not named form one more group."""
        groups = tuple(list(g) for g in groups)
        self._group = {n: 0 for n in self.ids}
        for i, group in enumerate(groups, start=1):
            for n in group:
                self._group[n] = i
        self.trace.append("partition " + " | ".join(" ".join(g) for g in groups))
        self._drop_unreachable()

    def heal(self) -> None:
        self._group = {n: 0 for n in self.ids}
        self.trace.append("heal")

    def _reachable(self, m: Message) -> bool:
        return self.nodes[m.dst].alive and self.connected(m.src, m.dst)

    def _drop_unreachable(self) -> None:
        lost = [m for m in self.queue if not self._reachable(m)]
        self.trace += [f"lost: {describe(m)}" for m in lost]
        self.queue = [m for m in self.queue if self._reachable(m)]

    def deliver(self, match: MessageFilter | None = None) -> list[Message]:
        """Deliver every queued message that `match`es (all by default), in order.
        What they cause is queued, not delivered. Returns the delivered messages."""
        batch = [m for m in self.queue if match is None or match(m)]
        self.queue = [m for m in self.queue if not (match is None or match(m))]
        delivered = []
        for m in batch:
            if self._reachable(m):
                delivered.append(m)
                self.core(m.dst).step(m)
                self._collect(m.dst)
        return delivered

    def drop(self, match: MessageFilter | None = None) -> list[Message]:
        """Lose every queued message that `match`es (all by default)."""
        dropped = [m for m in self.queue if match is None or match(m)]
        self.queue = [m for m in self.queue if not (match is None or match(m))]
        self.trace += [f"drop: {describe(m)}" for m in dropped]
        return dropped

    def deliver_all(self, drop: MessageFilter | None = None, max_rounds: int = 500) -> None:
        """Deliver until no message is left, losing those that `drop` matches."""
        for _ in range(max_rounds):
            if drop is not None:
                self.drop(drop)
            if not self.queue:
                return
            self.deliver()
        raise AssertionError(f"the network never went quiet\n{self.status()}\n{self.trace_tail()}")

    # ------------------------------------------------------------ time

    def tick(self, node: str | Iterable[str] | None = None, n: int = 1) -> None:
        """Tick one node, some nodes or (by default) every live node, n times.
        Messages are queued, not delivered."""
        targets = self.alive() if node is None else [node] if isinstance(node, str) else list(node)
        for _ in range(n):
            for t in targets:
                self.core(t).tick()
                self._collect(t)

    def run(self, ticks: int) -> None:
        """Let time pass on every live node, delivering everything after each tick."""
        for _ in range(ticks):
            self.tick()
            self.deliver_all()

    def elect(self, node: str, max_ticks: int | None = None) -> None:
        """Make `node` win an election: time passes on it alone, past its
        timeout, until it is leader; after each tick all messages are delivered
        (until it wins: the new leader's first messages stay queued).

        The other followers are first taken past their leader lease, as if they
        had not heard from a leader for a minimum election timeout while `node`'s
        timer fired first; otherwise, with check_quorum, they would rightly ignore
        it. `node` must be able to win: its log up to date for a majority."""
        low, high = self.config.election_ticks
        for other in self.alive():
            core = self.core(other)
            if other != node and core.role is not Role.LEADER:
                core.election_elapsed = max(core.election_elapsed, low)
        for _ in range(max_ticks or 4 * high):
            self.tick(node)
            for _ in range(100):
                if self.core(node).role is Role.LEADER or not self.queue:
                    break
                self.deliver()
            if self.core(node).role is Role.LEADER:
                return
        raise ElectionFailed(f"{node} did not win an election\n{self.status()}\n{self.trace_tail()}")

    # ------------------------------------------------------------ proposals and disks

    def propose(self, node: str, *commands: bytes | str) -> list[int]:
        """Propose each command (one core.propose call each) between two ready()
        calls; returns their log indexes. Raises NotLeader like the core."""
        core = self.core(node)
        data = [c.encode() if isinstance(c, str) else c for c in commands]
        indexes = [core.propose([d]) for d in data]
        self._collect(node)
        return indexes

    def hold_writes(self, node: str, hold: bool = True) -> None:
        """From now on node's writes complete only when `persist` says so
        (hold=False: at once again)."""
        self.nodes[node].auto_persist = not hold

    def persist(self, node: str, write_id: int | None = None) -> None:
        """Complete node's pending writes up to write_id (all by default)."""
        self._flush(self.nodes[node], write_id)
        self._collect(node)

    def crash(self, node: str) -> None:
        """The node stops; writes not yet durable and everything in memory are lost."""
        n = self.nodes[node]
        n.core = None
        n.unpersisted.clear()
        self.trace.append(f"crash {node}")
        self.trace += [f"lost: {describe(m)}" for m in self.queue if node in (m.src, m.dst)]
        self.queue = [m for m in self.queue if node not in (m.src, m.dst)]

    def restart(self, node: str) -> None:
        """A new RaftCore from the node's disk alone, state machine empty (applied=0)."""
        n = self.nodes[node]
        assert not n.alive, f"{node} is running"
        self.trace.append(f"restart {node}")
        self._boot(n)
        self._collect(node)

    def _boot(self, n: Node) -> None:
        n.core = RaftCore(
            n.id,
            self.ids,
            config=self.config,
            hard_state=dataclasses.replace(n.disk.hard_state),
            log=MemoryLog(n.disk.entries),
            applied=0,
        )
        n.applied = []

    def _flush(self, n: Node, write_id: int | None = None) -> None:
        done = [w for w in n.unpersisted if write_id is None or w.write_id <= write_id]
        if not done:
            return
        for w in done:
            n.disk.write(w)
        n.unpersisted = n.unpersisted[len(done) :]
        n.core.persisted(done[-1].write_id)

    def _collect(self, node: str) -> None:
        """Carry out what node's Ready asks, and check the invariants."""
        n = self.nodes[node]
        for _ in range(100):
            rd = n.core.ready()
            for m in rd.messages:
                assert m.src == node and m.dst != node, f"{node} emitted {describe(m)}"
                self.sent.append(m)
                if self._reachable(m):
                    self.queue.append(m)
                    self.trace.append(describe(m))
                else:
                    self.trace.append(f"lost: {describe(m)}")
            if rd.write:
                n.unpersisted.append(rd.write)
                w = rd.write
                self.trace.append(f"{node}: {describe(LogWrite(w.write_id, w.entries, w.hard_state, w.must_sync))}")
            if rd.committed:
                self.trace.append(f"{node}: apply {describe_entries(rd.committed)}")
            for e in rd.committed:
                self._apply(n, e)
            core = n.core
            if core.role is Role.LEADER:
                first = self.leaders.setdefault(core.term, node)
                assert first == node, f"two leaders in term {core.term}: {first} and {node}\n{self.trace_tail()}"
            if n.auto_persist and n.unpersisted:
                self._flush(n)
            elif not rd:
                return
        raise AssertionError(f"{node} never went quiet")

    def _apply(self, n: Node, e: Entry) -> None:
        last = n.applied[-1].index if n.applied else 0
        assert e.index == last + 1, f"{n.id} was handed entry {e.index} after {last}\n{self.trace_tail()}"
        assert n.disk.term(e.index) == e.term, (
            f"{n.id} was handed entry {e.index} before it was on its disk\n{self.trace_tail()}"
        )
        known = self.committed.setdefault(e.index, e)
        assert (known.term, known.data) == (e.term, e.data), (
            f"{n.id} applied {e} at index {e.index} where {known} was applied\n{self.trace_tail()}"
        )
        n.applied.append(e)
        self.apply_history.append((n.id, e))
