"""Raft scenarios on a hand-driven cluster (raft_harness.Cluster), named for what
they prove: the Raft paper's Figures 7 and 8, leader changes, partitions, and
quorum loss.

Besides each test's own assertions the cluster checks, after every step, that
no term has two leaders and that no two nodes (nor two lives of one node) apply
different entries at one index.
"""

from __future__ import annotations

import pytest
from raft_harness import Cluster, ElectionFailed, make_config
from sandzmq.raft import AppendEntries, AppendEntriesResponse, HardState, NotLeader, RequestVote, Role


def applied_anywhere(c: Cluster, data: bytes) -> bool:
    return any(e.data == data for _, e in c.apply_history)


def assert_logs_equal(c: Cluster, nodes) -> None:
    first, *rest = nodes
    for n in rest:
        assert c.log_entries(n) == c.log_entries(first), f"{n} and {first} differ\n{c.status()}"


# ---------------------------------------------------------------- Figure 7

FIGURE_7 = {
    "leader": [1, 1, 1, 4, 4, 5, 5, 6, 6, 6],
    "a": [1, 1, 1, 4, 4, 5, 5, 6, 6],  # missing entries
    "b": [1, 1, 1, 4],  # missing entries
    "c": [1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 6],  # an extra uncommitted entry
    "d": [1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7],  # extra uncommitted entries of a later term
    "e": [1, 1, 1, 4, 4, 4, 4],  # missing and extra
    "f": [1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3],  # missing and extra, over several terms
}


def test_figure7_every_follower_converges_to_the_term8_leader_log():
    hard_states = {n: HardState(term=terms[-1]) for n, terms in FIGURE_7.items()}
    hard_states["leader"] = HardState(term=7)  # it campaigns for term 8
    c = Cluster(FIGURE_7, logs=FIGURE_7, hard_states=hard_states)
    c.elect("leader")
    assert c.core("leader").term == 8
    c.deliver_all()

    expected = FIGURE_7["leader"] + [8]
    for n in FIGURE_7:
        assert c.log_terms(n) == expected, n
        assert c.core(n).commit == 11
    assert_logs_equal(c, list(FIGURE_7))  # the same entries, not just the same terms
    for n in FIGURE_7:
        assert c.applied(n) == [f"{i}@{t}".encode() for i, t in enumerate(FIGURE_7["leader"], start=1)]
    for n, terms in FIGURE_7.items():  # at most one round trip per term the follower diverged in
        divergent = {t for i, t in enumerate(terms) if i >= len(expected) or expected[i] != t}
        rejected = {m.index for m in c.sent if isinstance(m, AppendEntriesResponse) and m.src == n and not m.success}
        assert len(rejected) <= max(1, len(divergent)), (n, rejected)


# ---------------------------------------------------------------- Figure 8

S = ("S1", "S2", "S3", "S4", "S5")


def _figure8_c() -> Cluster:
    """The paper's Figure 8 (c): S1, leader in term 4 after S5 led term 3, has
    replicated its term-2 entry at index 2 to S2 and S3 (a majority, and it knows
    it), but its own term-4 entry (the new leader's no-op at index 3) is on S1 only.
    S4 heard nothing, S5 is down holding its term-3 entry at index 2.
    (In the paper S2 already held index 2 from term 2; here S1 sends it, so that
    S1 learns the majority from the acknowledgements.)"""
    c = Cluster(
        S,
        make_config(max_batch_entries=1),
        logs={"S1": [1, 2], "S2": [1], "S3": [1], "S4": [1], "S5": [1, 3]},
        hard_states={
            "S1": HardState(2, "S1", 1),
            "S2": HardState(2, "S1", 1),
            "S3": HardState(3, "S5", 1),
            "S4": HardState(3, "S5", 1),
            "S5": HardState(3, "S5", 1),
        },
    )
    c.crash("S5")
    c.elect("S1")
    assert c.core("S1").term == 4 and c.log_terms("S1") == [1, 2, 4]
    c.isolate("S4")
    for _ in range(10):  # time passes; every copy of the term-4 entry is lost
        c.deliver_all(drop=_would_store_term4_entry(c))
        c.tick(["S1", "S2", "S3"])
    c.deliver_all(drop=_would_store_term4_entry(c))
    return c


def _would_store_term4_entry(c: Cluster):
    def match(m) -> bool:
        return (
            isinstance(m, AppendEntries)
            and any(e.term == 4 for e in m.entries)
            and c.core(m.dst).log.match_term(m.prev_index, m.prev_term)
        )

    return match


def test_figure8_leader_does_not_commit_an_old_term_entry_by_counting_replicas():
    c = _figure8_c()
    followers = c.core("S1").status()["followers"]
    assert followers["S2"]["match"] == followers["S3"]["match"] == 2  # on S1, S2, S3: a majority
    assert [c.log_terms(n) for n in ("S1", "S2", "S3", "S4")] == [[1, 2, 4], [1, 2], [1, 2], [1]]
    for n in ("S1", "S2", "S3", "S4"):
        assert c.core(n).commit < 2

    # (d): S1 crashes, S5 comes back and wins with S2, S3, S4: its term-3 entry replaces index 2
    c.crash("S1")
    c.restart("S5")
    c.heal()
    c.elect("S5")
    c.deliver_all()
    c.propose("S5", "after")
    c.deliver_all()
    c.restart("S1")
    c.run(3 * c.config.heartbeat_ticks)
    for n in S:
        assert c.log_terms(n)[:2] == [1, 3], n
        assert c.applied(n) == [b"1@1", b"2@3", b"after"], n
    assert_logs_equal(c, S)
    assert not applied_anywhere(c, b"2@2")  # the entry S1 replicated to a majority was never applied


def test_figure8_old_term_entry_commits_once_a_current_term_entry_is_on_a_majority():
    c = _figure8_c()
    assert c.core("S1").commit < 2
    c.run(2 * c.config.heartbeat_ticks)  # (e): now the term-4 entry reaches S2 and S3
    assert c.core("S1").commit == 3
    for n in ("S1", "S2", "S3"):
        assert c.applied(n) == [b"1@1", b"2@2"]

    # ... and S5, whose log lacks it, can no longer win
    c.crash("S1")
    c.restart("S5")
    c.heal()
    with pytest.raises(ElectionFailed):
        c.elect("S5", max_ticks=60)
    c.elect("S2")
    c.deliver_all()
    c.run(3 * c.config.heartbeat_ticks)
    for n in ("S2", "S3", "S4", "S5"):
        assert c.log_terms(n)[:3] == [1, 2, 4] and c.applied(n) == [b"1@1", b"2@2"], n
    assert not applied_anywhere(c, b"2@3")


# ---------------------------------------------------------------- leader changes


@pytest.mark.parametrize("winner", ["B", "C"], ids=["new-leader-has-the-entries", "new-leader-lacks-them"])
def test_leader_change_mid_replication_keeps_committed_entries(winner):
    nodes = ("A", "B", "C", "D", "E")
    c = Cluster(nodes)
    c.elect("A")
    c.deliver_all()
    c.propose("A", "x")
    c.deliver_all()
    c.propose("A", "y1", "y2")
    c.deliver_all(drop=lambda m: isinstance(m, AppendEntries) and m.dst != "B")  # only B gets them
    assert c.log_terms("B") == c.log_terms("A") == [1, 1, 1, 1]
    assert c.core("A").commit == 2  # y1, y2 on two of five: not committed

    c.crash("A")
    c.elect(winner)
    c.deliver_all()
    c.propose(winner, "z")
    c.deliver_all()
    c.restart("A")
    c.run(3 * c.config.heartbeat_ticks)

    survived = winner == "B"  # B's log wins, with them; C's log replaces them
    expected = [b"x"] + ([b"y1", b"y2"] if survived else []) + [b"z"]
    for n in nodes:
        assert c.applied(n) == expected, n
    assert_logs_equal(c, nodes)
    assert applied_anywhere(c, b"y1") is survived


@pytest.mark.parametrize(
    ("pre_vote", "check_quorum"),
    [(True, True), (True, False), (False, True), (False, False)],
    ids=["prevote+checkquorum", "prevote", "checkquorum", "neither"],
)
def test_partitioned_old_leader_comes_back_steps_down_and_loses_its_uncommitted_entries(pre_vote, check_quorum):
    nodes = ("A", "B", "C", "D", "E")
    c = Cluster(nodes, pre_vote=pre_vote, check_quorum=check_quorum)
    c.elect("A")
    c.deliver_all()
    c.propose("A", "before")
    c.deliver_all()

    c.partition(["A", "B"], ["C", "D", "E"])
    c.propose("A", "lost1", "lost2")  # reaches B only: two of five
    c.deliver_all()
    c.elect("C")
    c.deliver_all()
    c.propose("C", "kept")
    c.run(3 * c.config.election_ticks[1])  # time passes on both sides
    assert c.applied("D") == [b"before", b"kept"]
    assert [e.data for e in c.log_entries("B")[-2:]] == [b"lost1", b"lost2"]  # B took A's new entries
    assert (c.core("A").role is Role.LEADER) is not check_quorum  # check-quorum made it step down
    c_term = c.core("C").term

    c.heal()
    c.run(6 * c.config.election_ticks[1])
    leader = c.leader()
    assert leader is not None and leader not in ("A", "B")  # their logs lack "kept"
    if pre_vote:  # the healthy leader was not even disturbed
        assert leader == "C" and c.core("C").term == c_term
    c.propose(leader, "after")
    c.run(3 * c.config.heartbeat_ticks)
    for n in nodes:
        assert c.applied(n) == [b"before", b"kept", b"after"], n
    assert_logs_equal(c, nodes)
    assert not applied_anywhere(c, b"lost1") and not applied_anywhere(c, b"lost2")


# ---------------------------------------------------------------- quorum


@pytest.mark.parametrize("lost", [("D", "E"), ("A", "B")], ids=["two-followers", "leader-and-a-follower"])
def test_five_node_cluster_commits_with_two_nodes_down_but_not_with_three(lost):
    nodes = ("A", "B", "C", "D", "E")
    c = Cluster(nodes)
    c.elect("A")
    c.deliver_all()
    for n in lost:
        c.crash(n)
    if "A" in lost:
        c.elect("C")
    leader = c.leader()
    c.deliver_all()
    c.propose(leader, "three-up")
    c.run(3 * c.config.heartbeat_ticks)
    up = [n for n in nodes if n not in lost]
    for n in up:
        assert c.applied(n) == [b"three-up"], n

    third = next(n for n in up if n != leader)
    c.crash(third)
    c.propose(leader, "two-up")
    commit = c.core(leader).commit
    c.run(5 * c.config.election_ticks[1])
    for n in c.alive():
        assert c.core(n).commit == commit and c.applied(n) == [b"three-up"], n
    assert not applied_anywhere(c, b"two-up")

    c.restart(third)  # a majority again: the cluster recovers
    c.run(5 * c.config.election_ticks[1])
    new_leader = c.leader()
    assert new_leader is not None
    c.propose(new_leader, "recovered")
    c.run(3 * c.config.heartbeat_ticks)
    for n in c.alive():
        assert c.applied(n)[-1] == b"recovered" and c.applied(n)[0] == b"three-up", n


# ---------------------------------------------------------------- durability of votes


def test_a_vote_lost_in_a_crash_never_counted():
    """b's vote for a in term 1 is not durable when b crashes: it must not have
    reached a, or a and c could both lead term 1 (the cluster checks that)."""
    c = Cluster(("a", "b", "c"))
    c.isolate("c")
    c.hold_writes("b")
    c.tick("a", n=c.config.election_ticks[1])  # a campaigns; b grants a pre-vote, then a vote it cannot persist
    for _ in range(5):
        c.deliver_all()
    assert c.core("a").role is Role.CANDIDATE and c.core("a").term == 1
    assert c.core("b").vote == "a" and c.nodes["b"].disk.hard_state.vote is None

    c.crash("b")
    c.restart("b")
    c.hold_writes("b", False)
    c.heal()
    c.isolate("a")
    c.elect("c")  # b, back at term 0 with no vote, may now vote for c in term 1
    assert c.core("c").term == 1
    c.heal()
    c.deliver_all()
    assert c.core("a").role is not Role.LEADER


def test_cut_off_leader_steps_down_rejects_proposals_and_keeps_its_term_with_pre_vote():
    c = Cluster(("a", "b", "c"))
    c.elect("a")
    c.deliver_all()
    c.isolate("a")
    before = len(c.sent)
    c.tick("a", n=c.config.election_ticks[1])
    with pytest.raises(NotLeader):
        c.propose("a", "x")
    c.tick("a", n=5 * c.config.election_ticks[1])  # it keeps timing out, with pre-votes only
    assert c.core("a").term == 1
    assert not [m for m in c.sent[before:] if isinstance(m, RequestVote) and not m.pre_vote]
