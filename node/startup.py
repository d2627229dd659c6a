"""Where a node is in start-up, and the identity handshake's messages, with no I/O.

node/bootstrap.py decides, from what the peers report, whether a node may
vote; this module runs the exchange that feeds it and carries its decisions
out. The phases:

    starting       the log-store has not yet said what it holds (LogState)
    bootstrapping  no identity: ask every voter what data it holds (PeerHello),
                   then write a proposal and later the cluster id (LogIdentity)
    joining        join = true and no identity: wait to be added (SPEC 7)
    member         an identity: the Raft core runs
    refused        the handshake found that this node lost its data: it must not run

PeerHello: an ask carries a random nonce per peer, and only an answer that
echoes it is believed (a blind forger cannot know it); what an ask claims
counts for nothing, it is only answered. Members keep asking the peers not
yet heard as members of their cluster, and a peer that claims another
cluster id is not listened to (`foreign_peers`) until a genuine answer
says otherwise: a forged verdict heals. A member at term 0 may not campaign
until every peer is a member of its cluster (the first-election gate).

Messages go to the Output; writes of the identity go through LogWrites
(their LogState answers carry its nonces); the time is the caller's.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from sandzmq.protocol import LogState, PeerHello

from .bootstrap import Become, DataState, Handshake, PeerReport, Propose, Refuse, Wait
from .log_writes import LogWrites
from .output import Output

log = logging.getLogger(__name__)

#: Hellos go to the peers not yet heard from every this many ticks.
HELLO_TICKS = 5
#: A LogIdentity not answered this long (seconds) is sent again (a restarted log-store never got it).
IDENTITY_RESEND_S = 1.0


class Startup:
    """One node's start-up phase and its half of the identity handshake."""

    def __init__(self, node_id: str, peers: list[str], join: bool, randbits: Callable[[int], int]) -> None:
        """`peers`: the other voters of the config file; `join`: the node's
        join = true; `randbits(k)`: k random bits (nonces, proposals)."""
        self.node_id = node_id
        self.join = join
        self.randbits = randbits
        self.phase = "starting"  # starting | bootstrapping | joining | member | refused
        self.handshake = Handshake(node_id, peers)
        self.cluster_id = ""
        self.proposal = 0
        self.log_state: LogState | None = None  # the last one taken, for status before the core runs
        self.has_data = False  # a log with a term or entries but no identity (data from before identities)
        self.identity_nonce = 0  # a LogIdentity awaiting its LogState
        self.identity_sent = 0.0
        self.waiting_for: tuple[str, ...] = ()
        self.foreign_peers: set[str] = set()  # members of another cluster id: not listened to
        # The nonce this node's asks to each peer carry: only an answer echoing it is believed.
        self.hello_nonces = {peer: randbits(62) for peer in self.handshake.peers}
        self.forged_hellos = 0  # answers that did not echo our nonce (counted as unbelievable)
        self.ticks = 0

    @property
    def peers(self) -> list[str]:
        return self.handshake.peers

    def first_election_allowed(self) -> bool:
        """Whether a member at term 0 may campaign (every peer is a member of its cluster)."""
        return self.handshake.first_election_allowed(self.cluster_id)

    # ------------------------------------------------------------------ hellos

    def report(self, core_term: int | None) -> PeerReport:
        """What this node says of its data; `core_term` is the Raft core's
        term, None while it does not run (then the log-store's is reported)."""
        if core_term is None:
            core_term = self.log_state.hard_state.term if self.log_state is not None else 0
        if self.phase == "member":
            return PeerReport(DataState.MEMBER, self.cluster_id, self.proposal, core_term)
        if self.phase == "joining":
            return PeerReport(DataState.JOINING, "", 0, core_term)
        state = DataState.PROPOSED if self.proposal else DataState.UNKNOWN
        return PeerReport(state, "", self.proposal, core_term)

    def hello(self, peer: str, ask: bool, nonce: int, core_term: int | None, out: Output) -> None:
        r = self.report(core_term)
        out.peers.append(PeerHello(self.node_id, peer, ask, int(r.state), r.cluster_id, r.proposal, r.term, nonce))

    def hello_unheard(self, core_term: int | None, out: Output) -> None:
        """Ask the peers this node still needs to hear from: all of them while
        bootstrapping, and those not heard as members of its cluster after
        (a peer that looked like another cluster's is asked again: the
        verdict must be able to heal)."""
        for peer in self.handshake.peers:
            report = self.handshake.reports.get(peer)
            if (
                report is None
                or self.phase == "bootstrapping"
                or report.state is not DataState.MEMBER
                or peer in self.foreign_peers
            ):
                self.hello(peer, True, self.hello_nonces[peer], core_term, out)

    def on_hello(self, m: PeerHello, core_term: int | None, out: Output) -> None:
        """A PeerHello that names a voter as its source and this node as its
        destination (the caller checked), once the log-store has spoken."""
        if m.ask:
            self.hello(m.src, False, m.nonce, core_term, out)  # what an ask claims is not believed
            return
        if m.nonce != self.hello_nonces[m.src]:
            self.forged_hellos += 1  # not an answer to any ask of ours
            return
        self.handshake.heard(m.src, PeerReport(DataState(m.state), m.cluster_id, m.proposal, m.term))
        if self.phase != "member":
            return
        other = self.handshake.other_cluster(m.src, self.cluster_id)
        if other and m.src not in self.foreign_peers:
            log.error(
                "%s belongs to cluster %s, this node to %s: one of them holds another cluster's data; "
                "not listening to it",
                m.src,
                other,
                self.cluster_id,
            )
            self.foreign_peers.add(m.src)
        elif not other:
            self.foreign_peers.discard(m.src)

    # ------------------------------------------------------------------ identity

    def identity(self, state: LogState, now: float, writes: LogWrites, out: Output) -> bool:
        """The log-store said whose data it holds (the LogState answering our
        latest request). True: the node is a member, the caller starts Raft;
        otherwise it waits to be added, or finds out first."""
        self.log_state = state
        self.identity_nonce = 0
        self.cluster_id, self.proposal = state.cluster_id, state.proposal
        if state.cluster_id:
            self.phase = "member"
            return True
        if self.join:
            if self.phase != "joining":
                log.info(
                    "no data, and join = true: waiting to be added to the cluster (sandzmq members add %s)",
                    self.node_id,
                )
            self.phase = "joining"
        else:
            if self.phase != "bootstrapping":
                log.info(
                    "no identity yet: asking %s whose data they hold before this node may vote",
                    ", ".join(self.handshake.peers) or "nobody (one node)",
                )
            self.phase = "bootstrapping"
            self.has_data = state.hard_state.term > 0 or state.last_index > 0
            self.advance(now, writes, out)
        return False

    def advance(self, now: float, writes: LogWrites, out: Output) -> None:
        """While bootstrapping (each tick and each LogState): ask, decide, write."""
        if self.identity_nonce:
            if now - self.identity_sent > IDENTITY_RESEND_S:  # a restarted log-store never got it
                self.write_identity(self.cluster_id, self.proposal, now, writes, out)
            return
        if self.ticks % HELLO_TICKS == 0:
            self.hello_unheard(None, out)
        decision = self.handshake.decide(self.proposal, self.has_data)
        if isinstance(decision, Wait):
            self.waiting_for = decision.peers
        elif isinstance(decision, Refuse):
            log.error("%s", decision.reason)
            self.phase = "refused"
            out.refuse = decision.reason
        elif isinstance(decision, Propose):
            self.write_identity("", self.randbits(62) | 1, now, writes, out)
        elif isinstance(decision, Become):
            log.info(
                "joining cluster %s (the handshake with %s is complete)",
                decision.cluster_id,
                ", ".join(self.handshake.peers) or "nobody",
            )
            self.write_identity(decision.cluster_id, self.proposal, now, writes, out)

    def write_identity(self, cluster_id: str, proposal: int, now: float, writes: LogWrites, out: Output) -> None:
        """Have the log-store record it; its LogState answer moves start-up on."""
        self.cluster_id, self.proposal = cluster_id, proposal
        self.identity_nonce = writes.record_identity(cluster_id, proposal, out.log_store)
        self.identity_sent = now
