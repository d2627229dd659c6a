"""node/bootstrap.py: the identity handshake that keeps a node that lost its
data from voting again (issue 8 item 5), without sockets."""

from __future__ import annotations

import random

import pytest
from sandzmq.node.bootstrap import (
    Become,
    DataState,
    Handshake,
    PeerReport,
    Propose,
    Refuse,
    Wait,
    cluster_id_of,
)

UNKNOWN = PeerReport(DataState.UNKNOWN, "", 0, 0)


def proposed(p: int) -> PeerReport:
    return PeerReport(DataState.PROPOSED, "", p, 0)


def member(cluster_id: str, term: int = 0) -> PeerReport:
    return PeerReport(DataState.MEMBER, cluster_id, 0, term)


def test_a_single_node_proposes_then_takes_its_own_proposal() -> None:
    h = Handshake("n1", [])
    assert h.decide(0) == Propose()
    assert h.decide(7) == Become(cluster_id_of(7))
    assert h.first_election_allowed(cluster_id_of(7))


def test_nothing_is_decided_before_every_peer_answered() -> None:
    h = Handshake("n1", ["n2", "n3"])
    assert h.decide(0) == Wait(("n2", "n3"))
    h.heard("n2", UNKNOWN)
    assert h.decide(0) == Wait(("n3",))
    h.heard("n3", UNKNOWN)
    assert h.decide(0) == Propose()
    assert h.decide(5) == Wait(("n2", "n3"))  # they must propose too
    h.heard("n2", proposed(9))
    h.heard("n3", proposed(3))
    assert h.decide(5) == Become(cluster_id_of(3))


def test_a_member_that_has_elected_means_this_node_lost_its_data() -> None:
    """Even before every peer answered: one member above term 0 is enough."""
    h = Handshake("n2", ["n1", "n3"])
    h.heard("n1", member("abc", term=7))
    decision = h.decide(0)
    assert isinstance(decision, Refuse)
    assert "n2 has no data" in decision.reason and "term 7" in decision.reason
    assert "sandzmq members remove n2" in decision.reason and "join = true" in decision.reason


def test_members_at_term_0_are_joined_with_their_cluster_id() -> None:
    """A node that restarted (or lost its data) before any election: safe, it never voted."""
    h = Handshake("n3", ["n1", "n2"])
    h.heard("n1", member("c1"))
    h.heard("n2", proposed(4))
    assert h.decide(0) == Propose()
    assert h.decide(99) == Become("c1")


def test_peers_of_two_clusters_are_refused() -> None:
    h = Handshake("n3", ["n1", "n2"])
    h.heard("n1", member("c1"))
    h.heard("n2", member("c2"))
    assert isinstance(h.decide(5), Refuse)


def test_the_first_election_waits_for_every_peer_to_be_a_member_of_the_same_cluster() -> None:
    h = Handshake("n1", ["n2", "n3"])
    h.heard("n2", member("c1"))
    assert not h.first_election_allowed("c1")
    h.heard("n3", member("c2"))
    assert not h.first_election_allowed("c1") and h.other_cluster("n3", "c1") == "c2"
    h.heard("n3", member("c1"))
    assert h.first_election_allowed("c1") and h.other_cluster("n3", "c1") is None


def test_peers_not_in_the_handshake_are_ignored() -> None:
    h = Handshake("n1", ["n2"])
    h.heard("n9", member("x", term=50))  # a join = true node, or a stranger
    assert h.decide(0) == Wait(("n2",))


@pytest.mark.parametrize("seed", range(200))
def test_every_node_of_a_new_cluster_ends_with_the_same_cluster_id(seed: int) -> None:
    """Random interleavings of hellos, decisions and restarts (a restart keeps
    what is on disk: the proposal, or the identity) of a fresh cluster: every
    node becomes a member, none refuses, and they agree on one cluster id."""
    rng = random.Random(seed)
    ids = [f"n{i}" for i in range(1, rng.randint(1, 5) + 1)]
    disk: dict[str, tuple[int, str]] = {n: (0, "") for n in ids}  # proposal, cluster id
    shakes = {n: Handshake(n, [p for p in ids if p != n]) for n in ids}

    def report(n: str) -> PeerReport:
        proposal, cid = disk[n]
        if cid:
            return PeerReport(DataState.MEMBER, cid, proposal, 0)
        return PeerReport(DataState.PROPOSED, "", proposal, 0) if proposal else UNKNOWN

    for _ in range(2000):
        if all(disk[n][1] for n in ids):
            break
        n = rng.choice(ids)
        action = rng.random()
        if action < 0.6 and len(ids) > 1:
            peer = rng.choice([p for p in ids if p != n])
            shakes[peer].heard(n, report(n))
        elif action < 0.95:
            if disk[n][1]:
                continue
            decision = shakes[n].decide(disk[n][0])
            assert not isinstance(decision, Refuse), decision
            if isinstance(decision, Propose):
                disk[n] = (rng.randrange(1, 1 << 64), "")
            elif isinstance(decision, Become):
                disk[n] = (disk[n][0], decision.cluster_id)
        else:  # a restart: the handshake is forgotten, the disk is not
            shakes[n] = Handshake(n, [p for p in ids if p != n])
    assert all(disk[n][1] for n in ids), disk
    assert len({disk[n][1] for n in ids}) == 1, disk


def test_a_node_whose_log_has_data_but_no_identity_is_not_refused() -> None:
    """Data from before identities existed: its votes are on disk."""
    h = Handshake("n2", ["n1"])
    h.heard("n1", member("c1", term=7))
    assert h.decide(0, has_data=True) == Propose()
    assert h.decide(5, has_data=True) == Become("c1")
