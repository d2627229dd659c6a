"""Unit tests of the sans-I/O Raft core, one rule each, named for the rule.

Single messages are stepped into bare RaftCores (raft_harness.make_core);
anything that needs a leader and its followers uses raft_harness.Cluster, which
also checks election safety and apply order/durability after every step.
"""

from __future__ import annotations

import pytest
from raft_harness import Cluster, entries, log_terms, make_config, make_core, settle
from sandzmq.raft import (
    AppendEntries,
    AppendEntriesResponse,
    Entry,
    HardState,
    Heartbeat,
    HeartbeatResponse,
    MemoryLog,
    Message,
    NotLeader,
    RaftCore,
    RequestVote,
    RequestVoteResponse,
    Role,
    SafetyViolation,
)

ABC = ("a", "b", "c")


def of(messages: list[Message], cls: type, **fields) -> list:
    return [m for m in messages if isinstance(m, cls) and all(getattr(m, k) == v for k, v in fields.items())]


def tick_until(core: RaftCore, role: Role, limit: int = 100) -> None:
    for _ in range(limit):
        if core.role is role:
            return
        core.tick()
    assert core.role is role, f"{core.id} is {core.role}, not {role}"


def queued(cluster: Cluster, cls: type, **fields) -> list:
    return of(cluster.queue, cls, **fields)


def leader_of_three(config=None, **kw) -> Cluster:
    """a leads b and c, every follower acknowledged (replicate state), nothing queued."""
    c = Cluster(ABC, config, **kw)
    c.elect("a")
    c.deliver_all()
    return c


# ---------------------------------------------------------------- vote granting


def test_one_vote_per_term_even_after_hearing_the_leader_and_across_a_restart():
    b = make_core("b", hard_state=HardState(term=1))
    b.step(RequestVote("a", "b", 2, last_index=0, last_term=0))
    assert of(settle(b), RequestVoteResponse, dst="a", term=2, granted=True)

    b.step(RequestVote("c", "b", 2, last_index=0, last_term=0))
    assert of(settle(b), RequestVoteResponse, dst="c", granted=False)
    b.step(RequestVote("a", "b", 2, last_index=0, last_term=0))  # a retry is answered again
    assert of(settle(b), RequestVoteResponse, dst="a", term=2, granted=True)

    # a wins and b hears from it; later a dies and b times out: still a's vote in term 2
    b.step(Heartbeat("a", "b", 2, commit=0))
    settle(b)
    tick_until(b, Role.PRE_CANDIDATE)
    b.step(RequestVote("c", "b", 2, last_index=0, last_term=0))
    assert of(settle(b), RequestVoteResponse, dst="c", granted=False)

    restarted = RaftCore("b", ABC, hard_state=b.hard_state, log=MemoryLog())
    restarted.step(RequestVote("c", "b", 2, last_index=0, last_term=0))
    assert of(settle(restarted), RequestVoteResponse, dst="c", granted=False)
    assert restarted.vote == "a"


@pytest.mark.parametrize(
    ("last_index", "last_term", "granted"),
    [
        (1, 3, True),  # higher last term wins, though the log is shorter
        (9, 1, False),  # lower last term loses, though the log is longer
        (4, 2, True),  # same last term, longer log wins
        (3, 2, True),  # same last term, equal length
        (2, 2, False),  # same last term, shorter log loses
    ],
    ids=["higher-term-shorter", "lower-term-longer", "same-term-longer", "same-term-equal", "same-term-shorter"],
)
def test_vote_only_for_a_candidate_whose_log_is_at_least_as_up_to_date(last_index, last_term, granted):
    b = make_core("b", terms=[1, 1, 2], hard_state=HardState(term=2))
    b.step(RequestVote("a", "b", 3, last_index=last_index, last_term=last_term))
    [answer] = of(settle(b), RequestVoteResponse, dst="a")
    assert answer.granted is granted
    assert (b.term, b.vote) == (3, "a" if granted else None)


@pytest.mark.parametrize("voter_term", [1, 2], ids=["vote-in-a-new-term", "vote-in-the-current-term"])
def test_vote_is_not_sent_before_its_write_is_durable(voter_term):
    b = make_core("b", hard_state=HardState(term=voter_term))
    b.step(RequestVote("a", "b", 2, last_index=0, last_term=0))
    rd = b.ready()
    assert not of(rd.messages, RequestVoteResponse)
    assert rd.write is not None and rd.write.hard_state == HardState(2, "a", 0)
    assert not of(b.ready().messages, RequestVoteResponse)

    b.persisted(rd.write.write_id)
    assert of(b.ready().messages, RequestVoteResponse, dst="a", term=2, granted=True)


def test_vote_waits_for_its_own_write_not_only_for_earlier_ones():
    b = make_core("b", terms=[1], hard_state=HardState(term=1))
    b.step(RequestVote("x", "b", 2, last_index=0, last_term=0))  # refused (log), but term 2 must be written
    first = b.ready().write
    b.step(RequestVote("a", "b", 2, last_index=1, last_term=1))  # granted: the vote needs a second write
    second = b.ready().write
    assert first and second and second.hard_state == HardState(2, "a", 0)

    b.persisted(first.write_id)
    sent = b.ready().messages
    assert of(sent, RequestVoteResponse, dst="x", granted=False)
    assert not of(sent, RequestVoteResponse, dst="a")
    b.persisted(second.write_id)
    assert of(b.ready().messages, RequestVoteResponse, dst="a", granted=True)


def test_single_node_candidate_does_not_count_its_own_vote_before_it_is_durable():
    a = make_core("a", voters=["a"])
    tick_until(a, Role.CANDIDATE)  # its pre-vote needs nobody else
    rd = a.ready()
    assert rd.write is not None and rd.write.hard_state == HardState(1, "a", 0)
    assert a.role is Role.CANDIDATE
    assert a.ready().write is None and a.role is Role.CANDIDATE

    a.persisted(rd.write.write_id)
    assert a.role is Role.LEADER and a.term == 1


def test_candidate_sends_request_votes_only_once_its_term_and_vote_are_durable():
    a = make_core("a")
    tick_until(a, Role.PRE_CANDIDATE)
    pre_votes = a.ready().messages
    assert {m.dst for m in of(pre_votes, RequestVote, pre_vote=True, term=1)} == {"b", "c"}  # no write needed
    a.step(RequestVoteResponse("b", "a", 1, granted=True, pre_vote=True))
    assert a.role is Role.CANDIDATE and a.term == 1

    rd = a.ready()
    assert not of(rd.messages, RequestVote)
    a.persisted(rd.write.write_id)
    assert {m.dst for m in of(a.ready().messages, RequestVote, pre_vote=False, term=1)} == {"b", "c"}


# ---------------------------------------------------------------- terms

HIGHER_TERM_MESSAGES = {
    "AppendEntries": (AppendEntries("a", "b", 5, prev_index=1, prev_term=1), "a"),
    "Heartbeat": (Heartbeat("a", "b", 5, commit=0), "a"),
    "AppendEntriesResponse": (AppendEntriesResponse("a", "b", 5, success=False, index=0), None),
    "HeartbeatResponse": (HeartbeatResponse("a", "b", 5), None),
    "RequestVote": (RequestVote("a", "b", 5, last_index=0, last_term=0), None),
    "RequestVoteResponse": (RequestVoteResponse("a", "b", 5, granted=False), None),
    "rejected-PreVoteResponse": (RequestVoteResponse("a", "b", 5, granted=False, pre_vote=True), None),
}


def test_pre_vote_from_a_lower_term_is_refused_with_the_current_term_so_the_pre_candidate_catches_up():
    b = make_core("b", hard_state=HardState(term=5))
    b.step(RequestVote("a", "b", 3, last_index=0, last_term=0, pre_vote=True))
    [refusal] = of(settle(b), RequestVoteResponse, dst="a")
    assert (refusal.granted, refusal.pre_vote, refusal.term) == (False, True, 5) and b.term == 5

    a = make_core("a", hard_state=HardState(term=2))
    tick_until(a, Role.PRE_CANDIDATE)
    a.step(refusal)
    assert (a.role, a.term) == (Role.FOLLOWER, 5)


@pytest.mark.parametrize("kind", HIGHER_TERM_MESSAGES)
def test_higher_term_in_any_message_makes_the_node_a_follower_with_its_vote_cleared(kind):
    message, leader = HIGHER_TERM_MESSAGES[kind]
    b = make_core("b", terms=[1], hard_state=HardState(term=1), pre_vote=False)
    tick_until(b, Role.CANDIDATE)
    settle(b)
    assert (b.term, b.vote) == (2, "b")

    b.step(message)
    settle(b)
    assert b.role is Role.FOLLOWER
    assert (b.term, b.vote, b.leader) == (5, None, leader)


def test_stale_term_append_entries_is_answered_with_the_current_term_and_the_old_leader_steps_down():
    c = leader_of_three()
    c.isolate("a")
    c.propose("a", "stale")
    c.elect("b")
    c.deliver_all()
    assert c.core("b").term == 2 and c.core("a").role is Role.LEADER

    c.heal()
    c.tick("a", n=c.config.heartbeat_ticks)  # the old leader heartbeats in term 1
    c.deliver(lambda m: m.src == "a")
    answers = queued(c, AppendEntriesResponse, dst="a")
    assert answers and all(m.term == 2 and not m.success for m in answers)
    assert c.core("b").role is Role.LEADER and c.log_terms("c") == [1, 2]  # ignored otherwise

    c.deliver_all()
    assert c.core("a").role is Role.FOLLOWER and c.core("a").term == 2


# ---------------------------------------------------------------- PreVote


@pytest.mark.parametrize("pre_vote", [True, False])
def test_pre_vote_that_fails_changes_nobodys_term(pre_vote):
    c = Cluster(ABC, pre_vote=pre_vote, logs={"a": [1, 1], "b": [1, 1], "c": [1]})
    while c.core("c").role is Role.FOLLOWER:  # c's timer fires; its log is behind
        c.tick("c")
    c.deliver_all()
    terms = [c.core(n).term for n in ABC]
    if pre_vote:
        assert terms == [1, 1, 1]
        assert not of(c.sent, RequestVote, pre_vote=False)
    else:  # the contrast: a real campaign raises everyone's term
        assert terms == [2, 2, 2]
    assert c.leader() is None and {c.core(n).vote for n in "ab"} == {None}


def _rejoin_after_isolation(pre_vote: bool, check_quorum: bool) -> Cluster:
    c = leader_of_three(pre_vote=pre_vote, check_quorum=check_quorum)
    c.isolate("c")
    for i in range(5):  # c keeps timing out while the others make progress
        c.propose("a", f"while-c-away-{i}")
        c.run(2 * c.config.election_ticks[1] // 5)
    c.heal()
    return c


def test_rejoining_node_with_pre_vote_does_not_raise_its_term_or_depose_the_leader():
    c = _rejoin_after_isolation(pre_vote=True, check_quorum=True)
    assert c.core("c").term == 1 and not of(c.sent, RequestVote, src="c", pre_vote=False)
    assert of(c.sent, RequestVote, src="c", pre_vote=True)  # it did keep timing out

    c.run(3 * c.config.election_ticks[1])
    assert c.leader() == "a" and {c.core(n).term for n in ABC} == {1}
    assert c.applied("c") == c.applied("a") and len(c.applied("a")) == 5


def test_without_pre_vote_or_check_quorum_a_rejoining_node_deposes_the_leader():
    c = _rejoin_after_isolation(pre_vote=False, check_quorum=False)
    assert c.core("c").term > 1
    c.run(3 * c.config.election_ticks[1])
    assert c.core("a").term > 1  # a lost its term-1 leadership to the rejoining node's term
    assert c.applied("b")[:5] == [f"while-c-away-{i}".encode() for i in range(5)]


# ---------------------------------------------------------------- CheckQuorum


def test_check_quorum_leader_cut_off_from_the_majority_steps_down_within_an_election_timeout():
    c = leader_of_three()
    c.run(3 * c.config.election_ticks[1])
    assert c.leader() == "a"  # while it hears from a majority it stays

    c.isolate("a")
    c.tick("a", n=c.config.election_ticks[1])
    assert c.core("a").role is Role.FOLLOWER and c.core("a").term == 1


def test_without_check_quorum_a_cut_off_leader_stays_leader():
    c = leader_of_three(check_quorum=False)
    c.isolate("a")
    c.tick("a", n=5 * c.config.election_ticks[1])
    assert c.core("a").role is Role.LEADER


@pytest.mark.parametrize("check_quorum", [True, False])
def test_in_lease_follower_ignores_request_vote(check_quorum):
    c = leader_of_three(check_quorum=check_quorum)
    log = c.core("c").log  # c's log is as up to date as anyone's
    c.isolate("c")  # c does not hear what follows; we speak for it
    for target in ("b", "a"):  # a follower that just heard the leader, and the leader itself
        c.queue.append(RequestVote("c", target, 2, log.last_index, log.last_term))
        c.heal()
        c.deliver(lambda m: m.dst == target)
        c.isolate("c")
        if check_quorum:
            assert c.core(target).term == 1 and not of(c.sent, RequestVoteResponse, src=target, dst="c")
        else:  # the contrast: without leases the request raises the term, and b votes
            assert c.core(target).term == 2 and c.core(target).role is Role.FOLLOWER
    assert (c.core("a").role is Role.LEADER) is check_quorum
    assert bool(of(c.sent, RequestVoteResponse, src="b", dst="c", granted=True)) is not check_quorum


# ---------------------------------------------------------------- AppendEntries (follower side)


@pytest.mark.parametrize(
    ("prev_index", "prev_term"), [(3, 3), (5, 2), (2, 2)], ids=["term-differs", "entry-missing", "older-term-differs"]
)
def test_append_entries_is_rejected_unless_the_prev_entry_matches(prev_index, prev_term):
    b = make_core("b", terms=[1, 1, 2], hard_state=HardState(term=2))
    b.step(AppendEntries("a", "b", 3, prev_index, prev_term, [Entry(prev_index + 1, 3, b"x")], commit=0))
    [answer] = of(settle(b), AppendEntriesResponse, dst="a")
    assert not answer.success and answer.index == prev_index and answer.hint_index <= min(prev_index, 3)
    assert log_terms(b) == [1, 1, 2] and b.commit == 0


def test_append_entries_truncates_a_conflicting_suffix_and_keeps_the_matching_prefix():
    b = make_core("b", terms=[1, 1, 2, 2, 2], hard_state=HardState(term=2))
    b.step(AppendEntries("a", "b", 3, 1, 1, [Entry(2, 1, b"2@1"), Entry(3, 3, b"new")], commit=0))
    [answer] = of(settle(b), AppendEntriesResponse, dst="a")
    assert answer.success and answer.index == 3
    assert log_terms(b) == [1, 1, 3]
    assert b.log.entries(3, 4)[0].data == b"new"


def test_follower_commit_is_min_of_leader_commit_and_last_new_entry():
    b = make_core("b", terms=[1, 1, 1, 1, 1], hard_state=HardState(term=1))
    b.step(AppendEntries("a", "b", 2, 1, 1, [Entry(2, 1, b"2@1")], commit=5))
    settle(b)
    assert b.commit == 2  # entries 3..5 were not checked against the leader's log
    b.step(AppendEntries("a", "b", 2, 1, 1, [], commit=5))
    settle(b)
    assert b.commit == 2  # never goes back
    b.step(AppendEntries("a", "b", 2, 5, 1, [], commit=4))
    settle(b)
    assert b.commit == 4


def test_duplicate_and_reordered_append_entries_are_harmless():
    b = make_core("b", hard_state=HardState(term=1))
    first = AppendEntries("a", "b", 1, 0, 0, [Entry(1, 1, b"x"), Entry(2, 1, b"y")], commit=0)
    second = AppendEntries("a", "b", 1, 2, 1, [Entry(3, 1, b"z")], commit=2)
    b.step(second)  # overtook the first: rejected, nothing stored
    assert of(settle(b), AppendEntriesResponse, success=False) and b.log.last_index == 0
    straddling = AppendEntries("a", "b", 1, 0, 0, first.entries + second.entries, commit=2)
    for m in (first, second, first, second, straddling, first):
        b.step(m)
    settle(b)
    assert log_terms(b) == [1, 1, 1] and b.commit == 2  # the late copies truncated nothing

    # the leader side: c starts behind, so its answers include a rejection
    c = Cluster(ABC, logs={"a": [1, 1], "b": [1, 1]}, hard_states={"a": HardState(1), "c": HardState(1)})
    c.elect("a")
    c.deliver_all()
    c.propose("a", "p")
    c.deliver_all()
    replies = [m for m in c.sent if isinstance(m, (AppendEntries, AppendEntriesResponse))]
    assert of(replies, AppendEntriesResponse, src="c", success=False)
    c.queue += replies  # all of it again, late
    c.deliver_all()
    for n in ABC:
        assert c.log_terms(n) == [1, 1, 2, 2] and c.core(n).commit == 4
    assert c.applied("c") == [b"1@1", b"2@1", b"p"]
    followers = c.core("a").status()["followers"]
    assert [(f["match"], f["state"]) for f in followers.values()] == [(4, "replicate")] * 2


def test_fast_backtracking_takes_one_rejection_per_divergent_term_not_per_entry():
    leader_log = [1, 1, 1] + [4] * 20 + [6] * 20
    lower = [1, 1, 1] + [2] * 40 + [3] * 40  # longer, two terms the leader never had
    higher = [1, 1, 1] + [7] * 40  # longer, of a term later than the leader's last
    c = Cluster(ABC, logs={"a": leader_log, "b": lower, "c": higher}, hard_states={"a": HardState(term=7)})
    c.elect("a")
    c.deliver_all()
    # round trips: the distinct positions rejected (a heartbeat answer re-sends a
    # pending probe, so one position may be rejected twice)
    rejections = {n: {m.index for m in of(c.sent, AppendEntriesResponse, src=n, success=False)} for n in "bc"}
    assert len(rejections["b"]) <= 2 and len(rejections["c"]) <= 1, rejections
    for n in "bc":
        assert c.log_terms(n) == leader_log + [8]


# ---------------------------------------------------------------- proposals


def test_proposal_to_a_non_leader_raises_not_leader_naming_the_leader():
    c = Cluster(ABC)
    with pytest.raises(NotLeader) as unknown:
        c.propose("b", "x")
    assert unknown.value.leader is None
    c.elect("a")
    c.deliver_all()
    with pytest.raises(NotLeader) as known:
        c.propose("b", "x")
    assert known.value.leader == "a"
    assert c.core("b").log.last_index == 1


def test_proposals_between_two_readies_go_to_each_follower_as_one_append_entries():
    c = leader_of_three()
    c.propose("a", *(f"cmd{i}" for i in range(5)))
    for follower in "bc":
        [batch] = queued(c, AppendEntries, dst=follower)
        assert [e.data for e in batch.entries] == [f"cmd{i}".encode() for i in range(5)]
    c.deliver_all()
    assert c.applied("b") == [f"cmd{i}".encode() for i in range(5)]


def test_max_batch_entries_splits_a_batch():
    c = leader_of_three(make_config(max_batch_entries=2))
    c.propose("a", *(f"cmd{i}" for i in range(5)))
    assert [len(m.entries) for m in queued(c, AppendEntries, dst="b")] == [2, 2, 1]


def test_max_batch_bytes_splits_a_batch_but_sends_an_oversized_entry_alone():
    c = leader_of_three(make_config(max_batch_bytes=10))
    c.propose("a", "1234", "5678", "abcd", "x" * 25, "efgh")
    sizes = [[len(e.data) for e in m.entries] for m in queued(c, AppendEntries, dst="b")]
    assert sizes == [[4, 4], [4], [25], [4]]
    c.deliver_all()
    assert len(c.applied("c")) == 5


# ---------------------------------------------------------------- pipelining


def test_replicate_state_follower_gets_up_to_max_inflight_append_entries_before_any_ack():
    c = leader_of_three(make_config(max_batch_entries=1, max_inflight=3))
    assert c.core("a").status()["followers"]["b"]["state"] == "replicate"
    c.propose("a", *(f"cmd{i}" for i in range(6)))
    assert len(queued(c, AppendEntries, dst="b")) == 3
    c.propose("a", "more")
    assert len(queued(c, AppendEntries, dst="b")) == 3  # and no more

    oldest = queued(c, AppendEntries, dst="b")[0]
    c.deliver(lambda m: m is oldest)
    c.deliver(lambda m: isinstance(m, AppendEntriesResponse) and m.src == "b")
    assert len(queued(c, AppendEntries, dst="b")) == 3  # one acknowledged, one more sent
    c.deliver_all()
    assert len(c.applied("b")) == 7


def test_max_inflight_bytes_bounds_the_unacknowledged_data_per_follower():
    c = leader_of_three(make_config(max_batch_entries=1, max_inflight_bytes=10))
    c.propose("a", "1234", "5678", "abcd", "efgh")
    assert [len(m.entries[0].data) for m in queued(c, AppendEntries, dst="b")] == [4, 4, 4]  # 12 >= 10: full
    c.deliver_all()
    assert len(c.applied("b")) == 4


def test_probe_state_follower_gets_one_append_entries_at_a_time():
    c = Cluster(ABC, make_config(max_batch_entries=1, max_inflight=3))
    c.elect("a")  # b and c acknowledged nothing yet: probe state
    assert c.core("a").status()["followers"]["b"]["state"] == "probe"
    c.propose("a", "x", "y", "z")
    c.tick("a", n=3 * c.config.heartbeat_ticks)
    assert len(queued(c, AppendEntries, dst="b")) == 1

    c.deliver(lambda m: isinstance(m, AppendEntries) and m.dst == "b")
    c.deliver(lambda m: isinstance(m, AppendEntriesResponse) and m.src == "b")
    assert c.core("a").status()["followers"]["b"]["state"] == "replicate"
    assert len(queued(c, AppendEntries, dst="b")) == 3


def test_has_ready_is_true_whenever_ready_would_send_append_entries():
    """Regression (a core bug found with this test): has_ready() ignored the
    replication ready() itself starts, so after an acknowledgement that reopens a
    follower's window, or a rejection that moves a probe back, it said False while
    ready() would send an AppendEntries; a driver polling has_ready() stalled that
    follower until the next heartbeat answer."""
    # an acknowledgement that only frees c's window (b's already committed x)
    c = leader_of_three(make_config(max_inflight=1, max_batch_entries=1))
    c.propose("a", "x", "y")
    c.deliver(lambda m: isinstance(m, AppendEntries))
    a = c.core("a")
    for ack in of(c.queue, AppendEntriesResponse):
        a.step(ack)
        predicted = a.has_ready()
        assert of(a.ready().messages, AppendEntries, dst=ack.src) and predicted, ack.src

    # a late acknowledgement of an entry already committed: c must be told the commit index
    c = leader_of_three()
    c.propose("a", "x")
    c.deliver(lambda m: isinstance(m, AppendEntries))
    a = c.core("a")
    a.step(queued(c, AppendEntriesResponse, src="b")[0])
    a.ready()
    a.step(queued(c, AppendEntriesResponse, src="c")[0])
    predicted = a.has_ready()
    assert of(a.ready().messages, Heartbeat, dst="c", commit=2) and predicted

    # a rejection that moves the probe back
    c = Cluster(ABC, logs={"a": [1, 1, 2], "b": [1, 1, 2], "c": [1]}, hard_states={"a": HardState(term=2)})
    c.elect("a")
    c.deliver(lambda m: m.dst == "c")
    [rejection] = queued(c, AppendEntriesResponse, src="c", success=False)
    a = c.core("a")
    a.step(rejection)
    predicted = a.has_ready()
    assert of(a.ready().messages, AppendEntries, dst="c") and predicted


# ---------------------------------------------------------------- the leader's own disk


def test_leader_append_entries_leave_before_its_own_write_is_durable():
    c = leader_of_three()
    c.hold_writes("a")
    [index] = c.propose("a", "x")
    assert {m.dst for m in queued(c, AppendEntries)} == {"b", "c"}
    assert c.core("a").durable_index < index and c.nodes["a"].unpersisted


def test_leader_commits_on_two_follower_acks_though_its_own_write_is_not_durable():
    c = leader_of_three()
    c.hold_writes("a")
    [index] = c.propose("a", "x")
    c.deliver_all()
    assert c.core("a").commit == index
    assert c.applied("a") == []  # committed, but not handed out before it is on a's disk
    assert c.applied("b") == c.applied("c") == [b"x"]
    c.persist("a")
    assert c.applied("a") == [b"x"]


def test_leader_does_not_count_itself_towards_commit_before_its_write_is_durable():
    c = leader_of_three()
    c.hold_writes("a")
    [index] = c.propose("a", "x")
    c.drop(lambda m: m.dst == "c")
    c.deliver_all()  # b acknowledges; a's own copy is not durable
    assert c.core("a").status()["followers"]["b"]["match"] == index
    assert c.core("a").commit < index
    c.persist("a")
    assert c.core("a").commit == index and c.applied("a") == [b"x"]


def test_leader_whose_write_is_not_durable_past_persist_timeout_steps_down():
    c = leader_of_three(make_config(persist_timeout_ticks=5))
    c.hold_writes("a")
    c.propose("a", "x")
    for _ in range(5):
        c.tick("a")
        c.deliver_all()
    assert c.core("a").role is Role.LEADER
    c.tick("a")
    assert c.core("a").role is Role.FOLLOWER and c.core("a").term == 1


def test_leader_whose_writes_complete_in_time_keeps_leading():
    c = leader_of_three(make_config(persist_timeout_ticks=5))
    for i in range(10):
        c.propose("a", f"cmd{i}")
        c.run(3)
    assert c.leader() == "a" and c.core("a").term == 1


# ---------------------------------------------------------------- handing out committed entries


def test_committed_entries_are_handed_out_once_and_in_order():
    a = make_core("a", voters=["a"], max_apply_entries=2)
    tick_until(a, Role.CANDIDATE)
    settle(a)
    assert a.role is Role.LEADER
    a.propose([b"1", b"2", b"3"])
    a.propose([b"4", b"5"])
    rd = a.ready()
    assert rd.committed == []  # not durable yet
    a.persisted(rd.write.write_id)
    handed = []
    while batch := a.ready().committed:
        assert len(batch) <= 2
        handed += batch
    assert [e.index for e in handed] == [2, 3, 4, 5, 6]
    assert [e.data for e in handed] == [b"1", b"2", b"3", b"4", b"5"]
    assert a.ready().committed == []


def test_follower_hands_out_committed_entries_only_once_they_are_on_its_disk():
    c = leader_of_three()
    c.hold_writes("b")
    [x] = c.propose("a", "x")
    c.deliver_all()
    c.propose("a", "y")  # carries commit=x to b
    c.deliver_all()
    assert c.core("b").commit >= x
    assert c.applied("b") == []
    c.persist("b")
    c.deliver_all()
    assert c.applied("b") == [b"x", b"y"]


def test_entries_replaced_while_their_write_is_in_flight_count_as_durable_only_with_the_new_write():
    b = make_core("b", hard_state=HardState(term=1))
    b.step(AppendEntries("a", "b", 1, 0, 0, [Entry(1, 1, b"x"), Entry(2, 1, b"old")], commit=0))
    first = b.ready().write
    b.step(AppendEntries("c", "b", 2, 1, 1, [Entry(2, 2, b"new")], commit=2))  # a new leader replaces index 2
    rd = b.ready()
    second = rd.write
    assert second.entries == [Entry(2, 2, b"new")] and not of(rd.messages, AppendEntriesResponse, dst="c")

    b.persisted(first.write_id)  # the old index 2 is durable, the new one is not
    rd = b.ready()
    assert [e.data for e in rd.committed] == [b"x"]
    assert not of(rd.messages, AppendEntriesResponse, dst="c", success=True)
    b.persisted(second.write_id)
    rd = b.ready()
    assert [e.data for e in rd.committed] == [b"new"]
    assert of(rd.messages, AppendEntriesResponse, dst="c", success=True, index=2)


def test_set_applied_moves_where_committed_entries_are_handed_out_from():
    b = RaftCore("b", ABC, hard_state=HardState(1, "a", commit=2), log=MemoryLog(entries([1, 1, 1, 1])))
    assert [e.index for e in b.ready().committed] == [1, 2]
    b.set_applied(4)  # an apply actor ahead of the restarted core: 3 and 4 were committed and applied
    b.step(Heartbeat("a", "b", 1, commit=4))
    assert b.ready().committed == []
    b.set_applied(1)  # an apply actor that restarted from index 1
    assert [e.index for e in b.ready().committed] == [2, 3, 4]


def test_restart_replays_committed_entries_from_disk_in_order():
    c = leader_of_three()
    c.propose("a", "x", "y")
    c.propose("a", "z")
    c.deliver_all()
    c.crash("b")
    c.restart("b")
    assert c.applied("b") == [b"x", b"y", b"z"]
    assert [e.index for e in c.nodes["b"].applied] == [1, 2, 3, 4]


def test_restart_with_applied_beyond_the_persisted_commit_does_not_hand_entries_out_again():
    """Regression (a core bug found with this test): the constructor clamped
    `applied` to the persisted commit index, which is written lazily, so a state
    machine that applied entries 3 and 4 before the write carrying commit=4 was
    durable was handed 3 and 4 again once the commit index was re-learned."""
    b = RaftCore("b", ABC, hard_state=HardState(1, "a", commit=2), log=MemoryLog(entries([1, 1, 1, 1])), applied=4)
    b.step(Heartbeat("a", "b", 1, commit=4))
    handed = []
    while batch := b.ready().committed:
        handed += batch
    assert [e.index for e in handed] == []


def test_crash_loses_writes_that_were_not_durable():
    c = leader_of_three()
    c.hold_writes("b")
    c.propose("a", "x")
    c.deliver_all()
    assert c.core("b").log.last_index == 2
    c.crash("b")
    c.restart("b")
    assert c.core("b").log.last_index == 1
    c.hold_writes("b", False)
    c.run(2 * c.config.heartbeat_ticks)
    assert c.applied("b") == [b"x"]


def test_a_message_contradicting_a_committed_entry_is_refused_not_acknowledged():
    """Regression (a core bug found with this test): _handle_append acknowledged
    any AppendEntries whose prev_index was below the commit index as a success at
    the commit index without looking at its entries. Such a message can only be
    a forgery (or a bug): it is refused and counted, never acknowledged, and it
    must not raise either (one forged frame would stop the actor)."""
    b = make_core("b", terms=[1, 1, 1], hard_state=HardState(term=1, commit=3))
    b.step(AppendEntries("a", "b", 2, 1, 1, [Entry(2, 2, b"other"), Entry(3, 2, b"other")], commit=3))
    sent = settle(b)
    assert not of(sent, AppendEntriesResponse, success=True)
    assert log_terms(b) == [1, 1, 1]
    assert b.refused == {"contradicts a committed entry": 1}


def test_restart_with_a_commit_index_beyond_the_log_raises_safety_violation():
    with pytest.raises(SafetyViolation):
        make_core("b", terms=[1, 1], hard_state=HardState(term=1, commit=3))
