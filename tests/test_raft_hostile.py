"""The Raft core under messages that decode but lie (SPEC 3, issue 8).

Each test is an attack a hostile network can make with one well-formed frame,
or a size the core must split so that the actors' messages fit a frame. The
core must refuse the lie (counted in `refused`), change nothing, and never
raise: a raise outside the actor's dispatch guard ends the actor, and a term
adopted from a forgery is written to disk for good.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from raft_harness import Cluster, entries, log_terms, make_core, settle
from sandzmq.raft import (
    AppendEntries,
    AppendEntriesResponse,
    Entry,
    HardState,
    Heartbeat,
    MemoryLog,
    RaftCore,
    RequestVote,
    RequestVoteResponse,
    Role,
)
from sandzmq.raft.messages import MAX_TERM

ABC = ("a", "b", "c")


def leader_with_followers(**overrides) -> Cluster:
    c = Cluster(ABC, **overrides)
    c.elect("a")
    c.deliver_all()
    return c


# ---------------------------------------------------------------- terms


def test_a_heartbeat_with_term_2_64_minus_1_is_refused_and_changes_nothing():
    """The attack of issue 8: adopted, this term is written to the WAL and the
    next election's term cannot be encoded."""
    b = make_core("b", hard_state=HardState(term=3))
    b.step(Heartbeat("a", "b", 2**64 - 1, 0))
    assert settle(b) == []
    assert (b.term, b.role, b.leader) == (3, Role.FOLLOWER, None)
    assert b.refused == {"term out of range": 1}


def test_a_term_jump_beyond_the_bound_is_refused_one_within_it_is_adopted():
    b = make_core("b", hard_state=HardState(term=3), max_term_jump=1000)
    b.step(Heartbeat("a", "b", 3 + 1001, 0))
    assert b.term == 3 and b.refused == {"term jumps too far ahead": 1}
    b.step(Heartbeat("a", "b", 3 + 1000, 0))
    assert (b.term, b.leader) == (1003, "a")


def test_a_node_at_the_largest_term_never_campaigns_and_never_raises():
    """Reachable only through max_term_jump-sized forgeries, 2**30 of them: the
    node then waits to be led rather than sending a term peers would refuse."""
    b = make_core("b", hard_state=HardState(term=MAX_TERM))
    for _ in range(200):
        b.tick()
        assert not [m for m in settle(b) if isinstance(m, RequestVote)]
    assert b.role is Role.FOLLOWER and b.term == MAX_TERM


def test_a_candidate_whose_last_term_is_above_its_term_gets_no_vote():
    b = make_core("b", hard_state=HardState(term=1))
    b.step(RequestVote("c", "b", 2, last_index=5, last_term=9))
    assert settle(b) == [] and b.vote is None
    assert b.refused == {"candidate's last term above its term": 1}


# ---------------------------------------------------------------- entries


def test_entries_with_a_term_above_the_message_term_are_refused():
    b = make_core("b", terms=[1], hard_state=HardState(term=2))
    b.step(AppendEntries("a", "b", 2, 1, 1, [Entry(2, 7, b"x")], commit=0))
    assert settle(b) == [] and log_terms(b) == [1]
    assert b.refused == {"entries do not follow prev_index/prev_term or exceed the term": 1}


def test_entries_with_a_term_below_prev_term_are_refused():
    """A log whose terms go down would be refused by the write-ahead log,
    after the core already counted it as written."""
    b = make_core("b", terms=[1, 2], hard_state=HardState(term=2))
    b.step(AppendEntries("a", "b", 2, 2, 2, [Entry(3, 1, b"x")], commit=0))
    assert settle(b) == [] and log_terms(b) == [1, 2]
    assert sum(b.refused.values()) == 1


def test_entries_that_do_not_follow_prev_index_are_refused():
    b = make_core("b", terms=[1], hard_state=HardState(term=1))
    b.step(AppendEntries("a", "b", 1, 1, 1, [Entry(5, 1, b"x")], commit=0))
    assert settle(b) == [] and log_terms(b) == [1]
    assert sum(b.refused.values()) == 1


# ---------------------------------------------------------------- acknowledgements


def test_an_acknowledgement_of_entries_never_sent_is_refused_and_ready_does_not_raise():
    """Regression: the forged index became the follower's match, and the next
    ready() raised SafetyViolation (no term for the index before its `next`)
    outside the actor's dispatch guard, killing the leader's raft actor."""
    c = leader_with_followers()
    a = c.core("a")
    before = (a.progress["b"].match, a.progress["b"].next, a.commit)
    a.step(AppendEntriesResponse("b", "a", a.term, success=True, index=10**9))
    a.ready()
    assert (a.progress["b"].match, a.progress["b"].next, a.commit) == before
    assert a.refused == {"acknowledges entries never sent": 1}
    c.propose("a", b"still works")
    c.deliver_all()
    assert c.applied("b")[-1:] == [b"still works"]


def test_a_rejection_beyond_what_was_sent_is_refused():
    c = leader_with_followers()
    a = c.core("a")
    next_before = a.progress["b"].next
    a.step(AppendEntriesResponse("b", "a", a.term, success=False, index=10**6, hint_index=3, hint_term=1))
    assert a.progress["b"].next == next_before and a.refused == {"acknowledges entries never sent": 1}
    a.step(AppendEntriesResponse("b", "a", a.term, success=False, index=1, hint_index=5, hint_term=1))
    assert a.refused["append response out of range"] == 1  # a hint beyond the rejected index


# ---------------------------------------------------------------- conflict search


@given(
    terms=st.lists(st.integers(1, 6), min_size=0, max_size=40).map(sorted),
    index=st.integers(0, 45),
    term=st.integers(0, 7),
)
def test_find_conflict_by_term_bisects_to_the_linear_answer(terms: list[int], index: int, term: int):
    """Bisection (one forged hint must not cost a walk over the whole log)
    gives what the obvious walk gives."""
    log = MemoryLog(entries(terms))
    i = min(index, log.last_index)
    while i > 0 and log.term(i) > term:
        i -= 1
    assert log.find_conflict_by_term(index, term) == (i, log.term(i) if i else 0)


# ---------------------------------------------------------------- sizes


def test_a_large_backlog_is_written_in_parts_and_the_acknowledgement_waits_for_the_last():
    b = make_core("b", hard_state=HardState(term=1), max_write_bytes=25)
    batch = [Entry(i, 1, b"x" * 10) for i in range(1, 8)]
    b.step(AppendEntries("a", "b", 1, 0, 0, batch, commit=3))
    writes = []
    while b.has_ready():
        rd = b.ready()
        assert not rd.messages, "acknowledged before the entries are durable"
        if rd.write:
            writes.append(rd.write)
    assert [[e.index for e in w.entries] for w in writes] == [[1, 2], [3, 4], [5, 6], [7]]
    assert [w.hard_state is not None for w in writes] == [
        False,
        False,
        False,
        True,
    ]  # commit never ahead of its entries
    assert [(w.last_index, w.must_sync) for w in writes] == [(2, True), (4, True), (6, True), (7, True)]
    for w in writes[:-1]:
        b.persisted(w.write_id)
        assert not b.ready().messages
    b.persisted(writes[-1].write_id)
    (ack,) = b.ready().messages
    assert isinstance(ack, AppendEntriesResponse) and ack.success and ack.index == 7


def test_a_write_that_only_moves_commit_need_not_sync():
    b = make_core("b", terms=[1, 1], hard_state=HardState(term=1, commit=0))
    settle(b)
    b.step(Heartbeat("a", "b", 1, 2))
    w = b.ready().write
    assert w is not None and not w.entries and w.hard_state.commit == 2 and not w.must_sync
    assert (w.last_index, w.last_term) == (2, 1)


def test_committed_entries_are_handed_out_by_bytes_and_within_the_apply_window():
    core = RaftCore(
        "a", ["a"], log=MemoryLog(entries([1] * 10)), hard_state=HardState(term=1, commit=10), applied=0, config=None
    )
    core.config.max_apply_bytes = 10  # each entry holds 3 bytes ("3@1")
    core.config.max_apply_lag = 5
    first = core.ready().committed
    assert [e.index for e in first] == [1, 2, 3]  # cut by bytes
    assert [e.index for e in core.ready().committed] == [4, 5]  # the window of 5 is full
    assert not core.has_ready() and not core.ready().committed
    core.confirm_applied(3)
    assert [e.index for e in core.ready().committed] == [6, 7, 8]
    core.set_applied(0)  # the state machine restarted: a rewind, and a fresh window
    assert [e.index for e in core.ready().committed] == [1, 2, 3]


# ---------------------------------------------------------------- eligibility


def test_an_ineligible_node_steps_down_and_never_campaigns_but_still_votes():
    c = leader_with_followers()
    a = c.core("a")
    a.set_eligible(False)
    assert a.role is Role.FOLLOWER
    for _ in range(100):
        a.tick()
        assert not [m for m in a.ready().messages if isinstance(m, RequestVote)]
    a.step(RequestVote("b", "a", a.term + 1, a.log.last_index, a.log.last_term))
    assert [m for m in settle(a) if isinstance(m, RequestVoteResponse) and m.granted]


@given(
    sizes=st.lists(st.integers(0, 50), min_size=1, max_size=30),
    lo=st.integers(1, 30),
    span=st.integers(0, 30),
    max_bytes=st.integers(0, 200),
    trim=st.integers(0, 10),
    rewrite=st.integers(0, 30),
)
def test_byte_cuts_and_sizes_match_a_pass_over_the_entries(sizes, lo, span, max_bytes, trim, rewrite):
    """The log's running totals (a bisection instead of a pass per cut) give
    what a pass over the entries gives, across appends, supersedes and trims."""
    from sandzmq.raft import Entry

    class Cold:
        def __init__(self) -> None:
            self.store: dict[int, Entry] = {}

        def entries(self, a: int, b: int) -> list[Entry]:
            return [self.store[i] for i in range(a, b)]

        def term_at(self, i: int) -> int | None:
            return self.store[i].term if i in self.store else None

    cold = Cold()
    all_entries = [Entry(i, 1, b"x" * n) for i, n in enumerate(sizes, 1)]
    log = MemoryLog(all_entries, cold=cold)
    cold.store = {e.index: e for e in all_entries}
    if rewrite and rewrite <= log.last_index:
        tail = [Entry(i, 2, b"y" * ((i * 7) % 13)) for i in range(rewrite, rewrite + 3)]
        log.append(tail)
        all_entries = all_entries[: rewrite - 1] + tail
        cold.store = {e.index: e for e in all_entries}
    log.trim(min(trim, log.last_index))
    hi = min(lo + span, log.last_index + 1)
    if lo > log.last_index:
        return
    expected = all_entries[lo - 1 : hi - 1]
    assert log.data_bytes(lo, hi) == sum(len(e.data) for e in expected)
    cut = log.entries(lo, hi, max_bytes=max_bytes)
    size, want = 0, []
    for e in expected:
        size += len(e.data)
        if size > max_bytes and want:
            break
        want.append(e)
    assert cut == want
