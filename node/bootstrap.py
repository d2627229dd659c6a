"""Whether a node may vote at all: the identity handshake, with no I/O.

A node that lost its data must not vote again: it would vote with a
forgotten vote and could elect a second leader in a term it already voted
in. A node cannot tell "lost my data" from "never started" by itself, so
it asks its peers (PeerHello) before it votes, and this module decides from
their answers. The rules, and why they are safe:

1. An identity (cluster id) is written to a node's write-ahead log directory
   before its Raft core ever runs; losing the log loses the identity too.
2. A member at term 0 does not campaign until every peer has reported
   itself a member of the same cluster (the first-election gate,
   `first_election_allowed`). So once any node has a term above 0, every
   node of the cluster had an identity.
3. Hence a node without an identity that hears a member with a term above 0
   lost its data (or was never started while the cluster ran): it refuses to
   start and names the procedure of SPEC 7 (remove it, start it empty with
   join = true, add it back).
4. A node without an identity hears every peer before it decides anything:
   an unheard peer could be the one at a higher term. If none has a term
   above 0, it writes a random proposal (a marker: "this node checked the
   cluster before it wrote me") and answers with it from then on. Once every
   peer is a member or has a proposal, it takes the members' cluster id,
   or, if none has one yet, the smallest proposal: every node computes the
   same, because proposals are on disk before anyone sees them.
5. A node with a proposal but no identity never voted (the marker and the
   identity are one file, lost together): it may always go on.

The first start of a new cluster therefore waits until every node of the
config file is up; after that, a majority is enough, as Raft says.
Nodes with join = true take no part: they wait to be added (SPEC 7).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum


class DataState(IntEnum):
    """What a node reports of its data in a PeerHello."""

    UNKNOWN = 0  # no identity, and it has not checked its peers yet
    PROPOSED = 1  # no identity; checked its peers and wrote its proposal
    MEMBER = 2  # has an identity: a cluster id
    JOINING = 3  # join = true: waits to be added, takes no part


@dataclass(frozen=True, slots=True)
class PeerReport:
    state: DataState
    cluster_id: str  # "" unless MEMBER
    proposal: int  # 0 unless PROPOSED (or a MEMBER that bootstrapped with it)
    term: int


@dataclass(frozen=True, slots=True)
class Wait:
    """Not yet: these peers have not answered (or not in the state needed)."""

    peers: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Propose:
    """No peer has a term above 0: write a proposal, then ask again."""


@dataclass(frozen=True, slots=True)
class Become:
    """Write this cluster id as the node's identity, then start Raft."""

    cluster_id: str


@dataclass(frozen=True, slots=True)
class Refuse:
    """Never start: `reason` is one line for the operator."""

    reason: str


Decision = Wait | Propose | Become | Refuse


def cluster_id_of(proposal: int) -> str:
    return f"{proposal:016x}"


class Handshake:
    """What one node has heard from its peers (the voters of the config file)."""

    def __init__(self, node_id: str, peers: list[str]) -> None:
        self.node_id = node_id
        self.peers = sorted(peers)
        self.reports: dict[str, PeerReport] = {}

    def heard(self, peer: str, report: PeerReport) -> None:
        if peer in self.peers:
            self.reports[peer] = report

    def decide(self, proposal: int, has_data: bool = False) -> Decision:
        """For a node without an identity; `proposal` is 0 until it wrote one.
        `has_data`: its log holds a term or entries (data from before
        identities existed): its votes are on disk, so it is never refused."""
        elected = [(p, r.term) for p, r in self.reports.items() if r.state is DataState.MEMBER and r.term > 0]
        if elected and not has_data:
            peer, term = max(elected, key=lambda pt: pt[1])
            return Refuse(
                f"{self.node_id} has no data, but its cluster has already elected a leader ({peer} is at term {term}): "
                f"a node that lost its data must not vote again. Replace it (SPEC 7): `sandzmq members remove "
                f"{self.node_id}`, start it empty with join = true in its [[nodes]] entry, then `sandzmq members add "
                f"{self.node_id}`"
            )
        missing = tuple(p for p in self.peers if p not in self.reports)
        if missing:
            return Wait(missing)
        if not proposal:
            return Propose()
        members = {r.cluster_id for r in self.reports.values() if r.state is DataState.MEMBER}
        if len(members) > 1:
            return Refuse(
                f"{self.node_id}: its peers belong to different clusters ({', '.join(sorted(members))}); "
                "some node holds another cluster's data"
            )
        if members:
            return Become(members.pop())
        waiting = tuple(p for p, r in self.reports.items() if r.state is not DataState.PROPOSED)
        if waiting:
            return Wait(waiting)
        return Become(cluster_id_of(min([proposal, *(r.proposal for r in self.reports.values())])))

    def first_election_allowed(self, cluster_id: str) -> bool:
        """Whether a member at term 0 may campaign: every peer is a member of `cluster_id`."""
        return all(
            (r := self.reports.get(p)) is not None and r.state is DataState.MEMBER and r.cluster_id == cluster_id
            for p in self.peers
        )

    def other_cluster(self, peer: str, cluster_id: str) -> str | None:
        """The cluster id `peer` reported if it is a member of another cluster than `cluster_id`."""
        r = self.reports.get(peer)
        if r is not None and r.state is DataState.MEMBER and r.cluster_id != cluster_id:
            return r.cluster_id
        return None
