"""The node core: a node's bookkeeping around the Raft core, with no I/O.

The raft actor (actors/raft_actor.py) owns the sockets and the clock; this
object owns everything it decides. The actor feeds it every message it
takes, with the time where time matters, and after each loop turn calls
flush(now), which answers with an Output: messages for the peers, the
log-store, the apply actor and each client, and whether the node must not
run. It reads no clock, touches no socket, file or thread: the one read of
durable entries it needs (the log's tail, when the Raft core starts, and
older entries a lagging follower asks for) goes through the `cold` reader
the actor provides (raft/log.py's ColdReader; the actor passes a reader of
the write-ahead log). It logs what an operator should see through the
standard logging module. So it is tested like the Raft core: with a fake
clock and no sockets (tests/test_node_core.py).

One loop turn: every message waiting on the sockets is handed in; flush()
proposes all client commands of the turn as ONE batch, and it and the
following flush() calls take the Raft core's Readies one at a time until it
is idle: AppendEntries for the followers and the same entries as a write
for the local log-store at once (the leader's disk write runs in parallel
with replication, dissertation 10.2.1), committed entries for the apply
actor, and the turn's answers to clients.

What it keeps, each in its own module:
- start-up and the identity handshake (node/startup.py, node/bootstrap.py):
  the Raft core starts only once the log-store has said whose data it holds,
  and a node without an identity asks its peers first; until then clients
  get BUSY and the Raft core's messages are ignored;
- the log-store protocol (node/log_writes.py): epochs, unacknowledged writes
  and where the log must end after each, resends;
- the apply hand-off (node/apply_feed.py): generations, rewinds, and the
  apply actor's silence, which makes the node ineligible to lead;
- client requests (node/clients.py): refusals, the turn's proposal, pending
  proposals answered from results or LOST on a role change, local reads;
- status (SPEC 5: the dict `sandzmq status` prints), stats and drop counters.

Per-command work stays in columns, as the wire carries it: a ClientSubmit
is one queued run, a proposal one call, results are matched run by run
(node/proposals.py) and answers extend a ClientReply's columns.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from typing import Any

from sandzmq.protocol import (
    ApplyResults,
    ApplyState,
    ClientQuery,
    ClientSubmit,
    ClusterHello,
    ClusterHelloReply,
    LocalQueryResult,
    LogDurable,
    LogGap,
    LogState,
    PeerHello,
    StatusReply,
    StatusRequest,
)
from sandzmq.raft import CoreConfig, MemoryLog, Message, RaftCore, Ready, Role
from sandzmq.raft.log import ColdReader
from sandzmq.raft.messages import AppendEntries

from sandzmq.config import ClusterConfig

from .apply_feed import ApplyFeed
from .clients import ClientRequests
from .log_writes import LogWrites
from .output import Output
from .startup import HELLO_TICKS, Startup

log = logging.getLogger(__name__)

#: Committed entries kept in memory; older ones are read through the cold reader.
MEMORY_TAIL_ENTRIES = 50_000
#: Cumulative counters for `status` and `sandzmq bench` (batching at each hop).
STATS = (
    "append_messages",
    "append_entries",
    "fsyncs",
    "fsync_entries",
    "log_resyncs",
    "log_mismatches",
    "apply_entries",
    "apply_rewinds",
)


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


class NodeCore:
    """One node's bookkeeping around its RaftCore. See the module docstring.
    Not thread-safe; owned by the raft actor."""

    def __init__(
        self,
        config: ClusterConfig,
        node_id: str,
        *,
        cold: ColdReader,
        pid: int = 0,
        randbits: Callable[[int], int] = secrets.randbits,
    ) -> None:
        """`cold`: durable entries by index (the write-ahead log); `pid`: the
        raft actor's, for status; `randbits(k)`: k random bits (the epoch of
        this life's writes, handshake nonces, the bootstrap proposal)."""
        self.node_id = node_id
        self.cluster_name = config.name
        self.voters = [n.id for n in config.nodes if not n.join]
        self.core_config = core_config(config)
        self.cold = cold
        self.raft: RaftCore | None = None  # runs once the node is a member
        self.stats: dict[str, int] = dict.fromkeys(STATS, 0)
        self.writes = LogWrites(randbits(48) | 1, self.stats)
        self.apply = ApplyFeed()
        self.clients = ClientRequests({n.id: n.client for n in config.nodes}, config.raft.max_batch_bytes)
        peers = [v for v in self.voters if v != node_id]
        self._peers = frozenset(peers)  # the only sources a peer message may claim
        self.startup = Startup(node_id, peers, config.node(node_id).join, randbits)
        self.pids: dict[str, int | None] = {"raft": pid, "log": None, "apply": None}
        self.foreign_messages = 0  # peer messages not addressed to this node, from a non-member, or unexpected
        self.failed_messages = 0  # inputs whose handling raised (the actor reports them)
        self._ineligible: set[str] = set()  # why this node must not lead now
        self._last_role: tuple[Role, int] | None = None
        self._out = Output()

    # ------------------------------------------------------------------ life cycle

    def start(self, now: float) -> None:
        """The actor's sockets are open: ask the log-store what it holds."""
        self.apply.heard(now)
        self.writes.request_state(self._out.log_store)

    def tick(self, now: float) -> None:
        """One tick of the actor's clock (config raft.tick_ms)."""
        startup = self.startup
        startup.ticks += 1
        out = self._out
        if startup.phase == "starting":
            self.writes.request_state(out.log_store)  # the log-store may still be starting
            return
        if startup.phase == "bootstrapping":
            startup.advance(now, self.writes, out)
            return
        raft = self.raft
        if raft is None:
            return  # joining, or refused
        if startup.ticks % HELLO_TICKS == 0:
            startup.hello_unheard(raft.term, out)
        if "bootstrap" in self._ineligible and (raft.term > 0 or startup.first_election_allowed()):
            self._set_ineligible("bootstrap", False)  # every peer is a member (or someone already campaigned)
        self.writes.check_silence(now, out.log_store)
        if "apply" not in self._ineligible and self.apply.silent(now):
            log.error("the apply actor has been silent for %.0f s", now - self.apply.heard_at)
            self._set_ineligible("apply", True)
        raft.tick()
        settled = min(raft.commit, raft.durable_index)
        if settled - raft.log.memory_first_index > 2 * MEMORY_TAIL_ENTRIES:
            raft.log.trim(settled - MEMORY_TAIL_ENTRIES)  # bounded memory; the cold reader serves laggards

    def flush(self, now: float) -> Output | None:
        """After a batch of inputs: what to do now, or None when there is
        nothing. Call it again until it returns None, carrying out each
        Output before the next call: each call proposes the turn's commands
        (if any) and takes at most one of the Raft core's Readies, so the
        messages of one Ready (heartbeats, say) leave before the next Ready
        is built (a long hand-off of committed entries, read back from the
        write-ahead log in a replay, must not hold them up)."""
        raft = self.raft
        out = self._out
        if raft is not None:
            clients = self.clients
            if clients.queued:
                clients.propose(raft, out)
            if raft.has_ready():
                self._carry_out(raft.ready(), now, out)
        if not out:
            return None
        self._out = Output()
        return out

    # ------------------------------------------------------------------ peers

    def peer_message(self, m: Message) -> None:
        """A Raft message from the raft port."""
        raft = self.raft
        if raft is None or not self._from_peer(m):
            return  # not started yet (Raft retries), or not a peer's
        if m.src in self.startup.foreign_peers:
            self.foreign_messages += 1  # a member of another cluster (see Startup.on_hello)
            return
        raft.step(m)

    def peer_hello(self, m: PeerHello) -> None:
        """The identity handshake (node/startup.py)."""
        if self.startup.phase == "starting" or not self._from_peer(m):
            return
        self.startup.on_hello(m, self._core_term(), self._out)

    def _from_peer(self, m: Message | PeerHello) -> bool:
        """Whether `m` claims to come from a voter of the config file, for this
        node. (A claim: without authentication any sender can make it, and
        CURVE is what will bind a peer's key to its node id.)"""
        if m.dst != self.node_id or m.src not in self._peers:
            self.foreign_messages += 1
            return False
        return True

    def _core_term(self) -> int | None:
        return self.raft.term if self.raft is not None else None

    # ------------------------------------------------------------------ clients

    def client_submit(self, identity: bytes | None, submit: ClientSubmit) -> None:
        if identity is not None:
            self.clients.submit(identity, submit, self.raft, self._out)

    def client_query(self, identity: bytes | None, query: ClientQuery) -> None:
        if identity is not None:
            self.clients.query(identity, query, self.raft, self._out)

    def status_request(self, identity: bytes, request: StatusRequest, transport_drops: dict[str, int]) -> None:
        """Until the log-store has said what is durable the node serves
        nothing; it stays silent, so `sandzmq status` shows it unreachable
        rather than a role with unknown term and indexes."""
        if self.startup.phase != "starting":
            self._out.answers.append((identity, StatusReply(request.request_id, self.status(transport_drops))))

    def cluster_hello(self, identity: bytes | None, hello: ClusterHello) -> None:
        if identity is None:
            self.foreign_messages += 1
            return
        self._out.answers.append((identity, ClusterHelloReply(hello.nonce, self.cluster_name)))

    # ------------------------------------------------------------------ log-store

    def log_state(self, state: LogState, now: float) -> None:
        self.pids["log"] = state.pid
        if self.raft is not None:
            self.writes.state(state, now, self._out.log_store)
            return
        writes = self.writes
        if not writes.answers_latest(state):
            return  # an answer to an older request, or the unprompted hello: wait for ours
        writes.incarnation = state.incarnation
        out = self._out
        if self.startup.identity(state, now, writes, out):
            raft = self._start_raft(state)
            if raft.term == 0 and self.startup.peers:
                self._set_ineligible("bootstrap", True)  # the first election waits for every peer to be a member
            self.startup.hello_unheard(raft.term, out)

    def log_durable(self, ack: LogDurable, now: float) -> None:
        write_id = self.writes.durable(ack, now, self._out.log_store)
        if write_id and self.raft is not None:
            self.raft.persisted(write_id)

    def log_gap(self, gap: LogGap, now: float) -> None:
        self.writes.gap(gap, now, self._out.log_store)

    def _start_raft(self, state: LogState) -> RaftCore:
        """The Raft core, from what the log-store reports durable. Only a tail
        of the log is loaded: entries up to `memory_from` are committed and
        durable, so the cold reader can serve them if ever needed."""
        cold = self.cold
        base_index = state.first_index - 1
        memory_from = max(base_index, min(state.hard_state.commit, state.last_index) - MEMORY_TAIL_ENTRIES)
        entries = cold.entries(memory_from + 1, state.last_index + 1) if state.last_index > memory_from else []
        memory_log = MemoryLog(
            entries,
            base_index=base_index,
            base_term=0,
            cold=cold,
            mem_base=memory_from,
            mem_base_term=(cold.term_at(memory_from) or 0) if memory_from > base_index else 0,
        )
        # Entries the apply actor (if it already spoke) applied are committed: start from there.
        applied = self.apply.applied_index if self.apply.has_spoken else 0
        raft = self.raft = RaftCore(
            self.node_id,
            self.voters,
            config=self.core_config,
            hard_state=state.hard_state,
            log=memory_log,
            applied=applied,
        )
        raft.set_eligible(not self._ineligible)
        log.info(
            "recovered: term %d, vote %s, commit %d, log (%d, %d]",
            state.hard_state.term,
            state.hard_state.vote,
            state.hard_state.commit,
            base_index,
            state.last_index,
        )
        return raft

    # ------------------------------------------------------------------ apply

    def apply_state(self, state: ApplyState, now: float) -> None:
        """A (re)started apply actor, or one that refused a batch (node/apply_feed.py)."""
        self.pids["apply"] = state.pid
        rewind = self.apply.state(state, now)
        self._heard_from_apply()
        if rewind and self.raft is not None:
            self.apply.rewind()
            self.stats["apply_rewinds"] += 1
            self.raft.set_applied(state.applied_index)

    def apply_results(self, results: ApplyResults, now: float) -> None:
        self.apply.results(results, now)
        self._heard_from_apply()
        if self.raft is not None:
            self.raft.confirm_applied(results.applied_index)
        self.clients.results(results, self._out)

    def local_query_result(self, result: LocalQueryResult) -> None:
        self.clients.local_result(result, self._out)

    def _heard_from_apply(self) -> None:
        if "apply" in self._ineligible:
            self._set_ineligible("apply", False)

    # ------------------------------------------------------------------ other inputs

    def unexpected(self, message: Any) -> None:
        """A message this node takes from nobody (counted as foreign)."""
        self.foreign_messages += 1

    def failed(self, message: Any) -> None:
        """Handling `message` raised (the actor logged it): counted as dropped."""
        self.failed_messages += 1

    # ------------------------------------------------------------------ the Raft core's output

    def _carry_out(self, ready: Ready, now: float, out: Output) -> None:
        messages = ready.messages
        if messages:
            stats = self.stats
            for m in messages:
                if type(m) is AppendEntries:
                    stats["append_messages"] += 1
                    stats["append_entries"] += len(m.entries)
            out.peers.extend(messages)
        w = ready.write
        if w is not None:
            self.writes.issue(w, now, out.log_store)
        committed = ready.committed
        if committed:
            out.apply.append(self.apply.batch(committed, bool(self.clients.pending)))
            self.stats["apply_entries"] += len(committed)
        if ready.role_changed:
            self._on_role_change(out)

    def _on_role_change(self, out: Output) -> None:
        raft = self.raft
        assert raft is not None
        role = (raft.role, raft.term)
        if role != self._last_role:
            log.info("%s in term %d (leader: %s)", raft.role.value, raft.term, raft.leader)
        self._last_role = role
        self.clients.leadership_changed(raft, out)

    def _set_ineligible(self, reason: str, ineligible: bool) -> None:
        """This node must not lead while any reason holds (see RaftCore.set_eligible)."""
        before = bool(self._ineligible)
        if ineligible:
            self._ineligible.add(reason)
        else:
            self._ineligible.discard(reason)
        if self.raft is not None:
            self.raft.set_eligible(not self._ineligible)
        if bool(self._ineligible) != before:
            log.warning(
                "%s", f"may not lead: {', '.join(sorted(self._ineligible))}" if self._ineligible else "may lead again"
            )

    @property
    def ineligible(self) -> frozenset[str]:
        """Why this node must not lead now ("bootstrap", "apply"), if at all."""
        return frozenset(self._ineligible)

    # ------------------------------------------------------------------ status

    def status(self, transport_drops: dict[str, int]) -> dict[str, Any]:
        """What `sandzmq status` shows (SPEC 5), plus detail for the human
        view. `transport_drops`: the transport's drop counters
        (DropCounters.as_dict(), `total` included)."""
        drops = dict(transport_drops)
        drops["failed"] = self.failed_messages
        drops["foreign"] = self.foreign_messages
        raft = self.raft
        # Messages the Raft core refused as unbelievable (RaftCore.refused, by reason).
        refused = dict(raft.refused) if raft is not None else {}
        drops["unbelievable"] = sum(refused.values()) + self.startup.forged_hellos
        dropped = drops["total"] + self.failed_messages + self.foreign_messages + drops["unbelievable"]
        startup = self.startup
        state = startup.log_state
        if raft is None and (state is None or startup.phase == "starting"):
            return {
                "id": self.node_id,
                "role": "unreachable",
                "term": None,
                "leader": None,
                "commit_index": None,
                "applied_index": None,
                "last_index": None,
                "snapshot_index": None,
                "dropped": dropped,
                "pids": dict(self.pids),
                "followers": {},
                "drops": drops,
            }
        if raft is None:
            assert state is not None
            # Up, but not a member yet: it neither votes nor leads.
            waiting = ", ".join(startup.waiting_for) or "its log-store"
            return {
                "id": self.node_id,
                "role": "learner" if startup.phase == "joining" else "follower",
                "term": state.hard_state.term,
                "leader": None,
                "commit_index": state.hard_state.commit,
                "applied_index": self.apply.applied_index,
                "last_index": state.last_index,
                "snapshot_index": state.first_index - 1,
                "dropped": dropped,
                "pids": dict(self.pids),
                "followers": {},
                "drops": drops,
                "state": "waiting to be added (join = true)"
                if startup.phase == "joining"
                else f"{startup.phase}: waiting for {waiting}",
            }
        role = raft.role.value if raft.role is not Role.PRE_CANDIDATE else "candidate"
        return {
            "id": self.node_id,
            "role": role,
            "term": raft.term,
            "leader": raft.leader,
            "commit_index": raft.commit,
            "applied_index": self.apply.applied_index,
            "last_index": raft.log.last_index,
            "snapshot_index": raft.log.base_index,
            "dropped": dropped,
            "pids": dict(self.pids),
            "followers": raft.status()["followers"],
            "drops": drops,
            "durable_index": raft.durable_index,
            "refused": refused,
            "stats": dict(self.stats),
        }
