"""Unit tests of the sans-I/O client core (replicator/session.py), one rule
each, named for the rule: a fake clock, no sockets, no threads.

A Harness drives one ClientSession as the Client's I/O thread does: calls
are submitted with the harness's clock, every flush's Sends are reported
(sent, by default), answers are fed as decoded ClientReply/StatusReply
messages, and the clock moves only when a test says so. After every step
it checks the schedule's invariant: every live request is in exactly one
place that looks at it again by its deadline.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sandzmq.protocol import (
    ClientQuery,
    ClientReply,
    ClientSubmit,
    CommandPayload,
    ReplyStatus,
    StatusReply,
    StatusRequest,
    decode_payload,
)
from sandzmq.replicator.requests import EARLY_S, Kind, Request, Send, State
from sandzmq.replicator.retry import RetryPolicy, RoundTrip, resend_interval
from sandzmq.replicator.session import MAX_SUBMIT_REQUESTS, ClientSession, chunk_bounds

from sandzmq.errors import ClusterUnavailable, NotLeaderError, ReplicationTimeout, SandzmqError

OK, NOT_LEADER, LOST, ERROR, BUSY = (int(s) for s in ReplyStatus)
A, B, C = "tcp://a:1", "tcp://b:1", "tcp://c:1"
BOOK = {"a": A, "b": B, "c": C}
CLIENT_ID = bytes(range(16))

Outcome = Callable[[Send], str]  # "sent" | "refused" | "unreachable" | "failed"


def all_sent(send: Send) -> str:
    return "sent"


def all_refused(send: Send) -> str:
    return "refused"


class Harness:
    """One ClientSession, a fake clock, and a record of what went out."""

    def __init__(
        self,
        *addresses: str,
        follow: bool = True,
        book: dict[str, str] | None = None,
        policy: RetryPolicy | None = None,
        start: int = 0,
        seed: int = 0,
    ) -> None:
        self.session = ClientSession(
            addresses or (A, B, C),
            client_id=CLIENT_ID,
            follow_leader=follow,
            node_addresses=BOOK if book is None else book,
            policy=policy,
            rng=random.Random(seed),
        )
        self.session.leader.turn = start  # the first node to try: A by default
        self.now = 0.0
        self.resolved: list[Request] = []
        self.resolved_at: dict[int, float] = {}
        self.sent: list[Send] = []  # every Send reported sent, in order

    # --- inputs

    def call(self, body: bytes = b"x", timeout: float = 5.0, kind: Kind = Kind.COMMAND, **kw: Any) -> Request:
        request = Request(kind, body, timeout, self.now, **kw)
        self.session.submit(request)
        return request

    def flush(self, outcome: Outcome = all_sent) -> list[Send]:
        """One driver turn's sending: flush, and report each Send."""
        sends = self.session.flush(self.now)
        for send in sends:
            what = outcome(send)
            if what == "sent":
                self.session.sent(send, self.now)
                self.sent.append(send)
            elif what == "refused":
                self.session.refused(send, self.now)
            elif what == "unreachable":
                self.session.unreachable(send, f"cannot connect to {send.address!r}", self.now)
            else:
                self.session.failed(send, "unencodable")
        self.collect()
        return sends

    def at(self, t: float, outcome: Outcome = all_sent) -> list[Send]:
        """Move the clock to `t`, fire due timers, and flush."""
        assert t >= self.now
        self.now = t
        self.session.tick(t)
        self.collect()
        return self.flush(outcome)

    def wait(self, dt: float, outcome: Outcome = all_sent) -> list[Send]:
        return self.at(self.now + dt, outcome)

    def answer(self, send: Send, status: int, value: Any = None, node: str | None = None) -> None:
        """Every request of `send` answered with `status` (OK: with its body)."""
        rows = [
            (rid, status, r.body if status == OK and value is None else value)
            for rid, r in enumerate(send.requests, send.first_rid)
        ]
        self.receive(node or send.address, ClientReply.of(rows))

    def receive(self, node: str, message: object) -> None:
        self.session.receive(node, message, self.now)
        self.collect()

    def run_out(self, outcome: Outcome = all_sent, limit: int = 10_000) -> None:
        """Nobody answers: follow the session's own deadlines until every call is resolved."""
        for _ in range(limit):
            if not self.session.live:
                return
            deadline = self.session.next_deadline()
            assert deadline is not None, "live requests but no deadline: some call would hang"
            if deadline == -math.inf:  # work at once, again: a turn takes time too
                deadline = self.now + 0.001
            self.at(max(self.now, deadline), outcome)
        raise AssertionError("calls still live")

    def collect(self) -> None:
        """Take what the session resolved, and audit its placement rule."""
        for request in self.session.take_resolved():
            self.resolved.append(request)
            self.resolved_at[id(request)] = self.now
        assert not self.session.audit()

    # --- looking

    @staticmethod
    def payloads(send: Send) -> list[CommandPayload]:
        assert isinstance(send.message, ClientSubmit)
        return [decode_payload(p) for p in send.message.payloads]  # type: ignore[misc]

    def result(self, request: Request) -> Any:
        assert request.state is State.DONE, f"{request!r} is not resolved"
        if request.error is not None:
            raise request.error
        return request.result


def one(sends: list[Send]) -> Send:
    assert len(sends) == 1, sends
    return sends[0]


# ---------------------------------------------------------------- batching and exactly-once


def test_calls_ready_together_go_out_as_one_submit_numbered_consecutively() -> None:
    h = Harness()
    calls = [h.call(b"c%d" % i) for i in range(300)]
    send = one(h.flush())
    assert send.address == A and isinstance(send.message, ClientSubmit)
    assert send.message.first_request_id == send.first_rid
    assert [(p.client_id, p.seq, p.command) for p in h.payloads(send)] == [
        (CLIENT_ID, i + 1, b"c%d" % i) for i in range(300)
    ]
    h.answer(send, OK)
    assert [h.result(c) for c in calls] == [b"c%d" % i for i in range(300)]
    assert h.session.live == 0 and h.session.attempts_out == 0


def test_a_huge_batch_is_cut_into_submits_within_the_size_limits() -> None:
    h = Harness()
    n = MAX_SUBMIT_REQUESTS + 10
    for i in range(n):
        h.call(b"%d" % i)
    sends = h.flush()
    assert [len(s.requests) for s in sends] == [MAX_SUBMIT_REQUESTS, 10]
    assert sends[1].first_rid == sends[0].first_rid + MAX_SUBMIT_REQUESTS
    assert list(chunk_bounds([b"x" * (3 << 20)] * 5)) == [(0, 2), (2, 4), (4, 5)]  # 8 MiB per submit


def test_every_attempt_at_a_command_carries_its_seq_and_a_new_request_id() -> None:
    """Exactly-once across retries (dissertation 6.3): silence, LOST, BUSY
    and a redirect each cause a new attempt, always with the same seq."""
    h = Harness()
    call = h.call(b"cmd", timeout=30)
    first = one(h.flush())
    second = one(h.wait(resend_interval(30)))  # silence: resent
    h.answer(second, LOST)
    third = one(h.wait(RetryPolicy().election_pause))
    h.answer(third, BUSY)
    fourth = one(h.wait(RetryPolicy().busy_backoff[0] * 1.25))
    assert [s.address for s in (first, second, third, fourth)] == [A, A, B, C]  # LOST, BUSY: moved on
    h.answer(fourth, NOT_LEADER, ["b", B])
    fifth = one(h.flush())
    assert fifth.address == B
    h.answer(fifth, OK)
    attempts = [first, second, third, fourth, fifth]
    assert {(p.client_id, p.seq) for s in attempts for p in h.payloads(s)} == {(CLIENT_ID, 1)}
    assert len({s.first_rid for s in attempts}) == 5
    assert h.result(call) == b"cmd"


def test_first_incomplete_is_the_lowest_seq_still_waiting() -> None:
    h = Harness(policy=RetryPolicy(resend_interval=100))
    stuck = h.call(b"stuck", timeout=1000)
    h.flush()
    second = h.call(b"b")
    s2 = one(h.flush())
    assert [(p.seq, p.first_incomplete) for p in h.payloads(s2)] == [(2, 1)]
    h.answer(s2, OK)
    h.call(b"c")
    s3 = one(h.flush())
    assert [(p.seq, p.first_incomplete) for p in h.payloads(s3)] == [(3, 1)]
    assert h.result(second) == b"b" and stuck.state is State.SENT


def test_first_incomplete_moves_past_answered_and_given_up_commands() -> None:
    h = Harness(policy=RetryPolicy(resend_interval=100))
    never = h.call(b"never", timeout=0.2)
    h.flush()
    h.run_out()
    with pytest.raises(ReplicationTimeout):
        h.result(never)
    h.call(b"next")
    assert [(p.seq, p.first_incomplete) for p in h.payloads(one(h.flush()))] == [(2, 2)]


# ---------------------------------------------------------------- the resend rule and the round trip


def test_silence_longer_than_the_resend_interval_resends_and_not_before() -> None:
    h = Harness()
    call = h.call(timeout=5.0)
    first = one(h.flush())
    interval = resend_interval(5.0)  # no round trip measured yet: the floor, 1 s
    assert interval == 1.0
    assert h.wait(interval - 0.001) == []
    again = one(h.at(interval))
    assert again.first_rid != first.first_rid and h.session.stats["resends"] == 1
    assert [p.seq for p in h.payloads(again)] == [call.seq]


def test_the_resend_interval_follows_the_measured_round_trip() -> None:
    """A deep queue answers slowly: requests merely waiting are not resent."""
    h = Harness()
    for _ in range(4):
        h.call(timeout=10.0)
        send = one(h.flush())
        h.now += 2.0  # each answered after 2 s
        h.answer(send, OK)
    srtt, rttvar = h.session.rtt.srtt, h.session.rtt.rttvar
    assert srtt == pytest.approx(2.0) and rttvar < 1.0
    h.call(timeout=10.0)
    h.flush()
    interval = resend_interval(10.0, srtt, rttvar)
    assert interval == pytest.approx(srtt + 4 * rttvar) and interval > resend_interval(10.0)
    assert h.wait(interval - 0.01) == []
    assert len(h.wait(0.01)) == 1


def test_resend_interval_follows_the_round_trip_between_its_floor_and_half_the_timeout() -> None:
    assert resend_interval(5.0) == 1.0  # nothing measured yet: the floor
    assert resend_interval(5.0, srtt=0.003, rttvar=0.001) == 1.0  # a fast cluster: the floor
    assert resend_interval(5.0, srtt=1.2, rttvar=0.2) == pytest.approx(2.0)  # a deep queue: no premature resend
    assert resend_interval(5.0, srtt=4.0, rttvar=1.0) == 2.5  # never beyond half the timeout
    assert resend_interval(0.4) == 0.25


def test_round_trip_samples_are_smoothed_as_rfc_6298_says() -> None:
    rtt = RoundTrip()
    rtt.observe(1.0)
    assert (rtt.srtt, rtt.rttvar) == (1.0, 0.5)
    rtt.observe(2.0)
    assert rtt.srtt == pytest.approx(1.125) and rtt.rttvar == pytest.approx(0.625)


def test_karn_an_answer_to_a_resent_request_is_no_round_trip_sample() -> None:
    h = Harness()
    h.call(timeout=5.0)
    one(h.flush())
    again = one(h.at(1.0))
    h.now = 1.01
    h.answer(again, OK)  # which attempt does it answer? unknowable: no sample
    assert h.session.rtt.srtt == 0.0
    h.call(timeout=5.0)
    send = one(h.flush())
    h.now += 0.004
    h.answer(send, OK)
    assert h.session.rtt.srtt == pytest.approx(0.004)


def test_one_round_trip_sample_per_reply_message() -> None:
    h = Harness()
    h.call()
    early = one(h.flush())
    h.now = 0.5
    h.call()
    late = one(h.flush())
    h.now = 0.6
    rows = [(early.first_rid, OK, 1), (late.first_rid, OK, 2)]
    h.receive(A, ClientReply.of(rows))
    assert h.session.rtt.srtt == pytest.approx(0.1)  # the last answered request of the message


def test_an_answer_to_an_older_attempt_after_a_resend_succeeds_once() -> None:
    h = Harness()
    call = h.call(b"x", timeout=5.0)
    first = one(h.flush())
    second = one(h.at(1.0))
    h.answer(first, OK, "from the first")
    h.answer(second, OK, "from the second")
    assert h.result(call) == "from the first"
    assert h.session.stats["stale_replies"] == 1
    assert h.session.attempts_out == 0 and h.session.live == 0


def test_requests_with_different_timeouts_in_one_message_keep_their_own_deadlines() -> None:
    h = Harness(A)
    short = [h.call(b"s", timeout=0.3) for _ in range(3)]
    long = h.call(b"long", timeout=2.0)
    one(h.flush())
    h.run_out()
    for request in short:
        assert h.resolved_at[id(request)] == pytest.approx(short[0].deadline)
        assert isinstance(request.error, ReplicationTimeout)
    assert h.resolved_at[id(long)] == pytest.approx(long.deadline)
    assert long.attempts >= 3  # resent every 0.5 s meanwhile


# ---------------------------------------------------------------- following the leader


def test_not_leader_with_a_hint_goes_to_the_hinted_leader_at_once() -> None:
    h = Harness()
    call = h.call()
    h.answer(one(h.flush()), NOT_LEADER, ["b", B])
    redirected = one(h.flush())  # no pause
    assert redirected.address == B and h.session.leader.current == B
    h.answer(redirected, OK)
    assert h.result(call) == b"x"
    h.call()
    assert one(h.flush()).address == B  # the next call goes straight there


def test_a_hint_with_only_an_id_is_looked_up_in_the_address_book() -> None:
    h = Harness()
    h.call()
    h.answer(one(h.flush()), NOT_LEADER, ["c", None])
    assert one(h.flush()).address == C


def test_not_leader_without_a_hint_tries_the_next_node_after_the_election_pause() -> None:
    h = Harness()
    call = h.call()
    h.answer(one(h.flush()), NOT_LEADER, [None, None])
    assert h.flush() == []
    pause = RetryPolicy().election_pause
    assert h.wait(pause - 0.001) == []
    retry = one(h.wait(0.001))
    assert retry.address == B
    h.answer(retry, OK)
    assert h.result(call) == b"x" and h.session.leader.current == B  # found by rotation: it answered


def test_lost_is_retried_elsewhere_after_the_election_pause_and_counts_as_maybe_proposed() -> None:
    h = Harness()
    call = h.call(timeout=1.0)
    h.answer(one(h.flush()), LOST)
    assert call.maybe_proposed and h.flush() == []
    retry = one(h.wait(RetryPolicy().election_pause))
    assert retry.address == B
    h.answer(retry, NOT_LEADER, [None, None])  # refused before proposing, but the LOST attempt may commit
    h.run_out(all_refused)
    with pytest.raises(ReplicationTimeout):
        h.result(call)


def test_busy_backs_off_exponentially_with_jitter() -> None:
    h = Harness(A)
    h.call(timeout=30)
    send = one(h.flush())
    pauses = []
    for _ in range(6):
        h.answer(send, BUSY)
        sent_at = h.now
        while not (sends := h.wait(0.001)):
            pass
        pauses.append(h.now - sent_at)
        send = one(sends)
    low, high = RetryPolicy().busy_backoff
    for n, pause in enumerate(pauses):
        nominal = min(high, low * 2**n)
        assert nominal * 0.75 - 0.001 <= pause <= nominal * 1.25 + 0.001, (n, pauses)


def test_busy_from_a_node_not_known_to_lead_moves_on_but_the_leader_is_kept() -> None:
    h = Harness()
    h.call()
    h.answer(one(h.flush()), BUSY)  # A is not known to lead: perhaps starting
    assert one(h.wait(0.02)).address == B
    h.answer(h.sent[-1], OK)
    assert h.session.leader.current == B
    h.call()
    h.answer(one(h.flush()), BUSY)  # the leader itself is busy: wait for it
    assert one(h.wait(0.02)).address == B


def test_a_silent_node_is_suspected_after_two_resend_intervals() -> None:
    h = Harness()
    h.call(timeout=10)
    assert one(h.flush()).address == A
    interval = resend_interval(10)
    assert one(h.wait(interval)).address == A  # silence once: resent to the same node
    assert one(h.wait(interval)).address == B  # twice: the next node


def test_an_ok_answer_makes_its_node_the_believed_leader() -> None:
    h = Harness(start=2)
    h.call()
    send = one(h.flush())
    assert send.address == C
    h.answer(send, OK)
    assert h.session.leader.current == C


def test_a_refused_send_is_retried_shortly_at_the_next_node_and_is_no_attempt() -> None:
    h = Harness()
    call = h.call()
    refused = one(h.flush(all_refused))
    assert refused.address == A and call.attempts == 0 and h.session.stats["unsent"] == 1
    assert h.wait(RetryPolicy().unsent_retry - 0.001) == []
    retry = one(h.wait(0.001))
    assert retry.address == B and [p.seq for p in h.payloads(retry)] == [call.seq]


def test_a_refused_send_whose_retry_is_already_due_is_sent_again_not_lost() -> None:
    """Regression: a refused send whose retry was already due (a flush slower
    than the retry pause) stayed READY out of the ready list and under no
    timer, and the call hung until the caller's 10 s guard."""
    h = Harness(A, policy=RetryPolicy(unsent_retry=-1.0))
    call = h.call(timeout=0.3)
    h.flush(all_refused)
    assert call.state is State.READY and h.session.next_deadline() == float("-inf")
    h.run_out(all_refused)
    assert isinstance(call.error, ClusterUnavailable)
    assert h.resolved_at[id(call)] <= call.deadline + 0.001  # (the harness's turns take 1 ms)


def test_a_hint_that_cannot_be_connected_to_is_no_hint() -> None:
    h = Harness()
    call = h.call(timeout=2)
    h.answer(one(h.flush()), NOT_LEADER, ["x", "bogus://x"])
    bad = one(h.flush(lambda send: "unreachable"))
    assert bad.address == "bogus://x"
    assert "bogus://x" not in h.session.leader.rotation and h.session.leader.current is None
    assert h.flush() == []  # the election pause, then the node after the one that named it
    retry = one(h.wait(RetryPolicy().election_pause))
    assert retry.address == B
    h.answer(retry, OK)
    assert h.result(call) == b"x"


# ---------------------------------------------------------------- connect mode


def test_connect_mode_not_leader_raises_not_leader_error_with_the_hint_and_no_retry() -> None:
    h = Harness(A, follow=False)
    call = h.call()
    h.answer(one(h.flush()), NOT_LEADER, ["b", "tcp://10.0.0.2:7102"])
    with pytest.raises(NotLeaderError) as caught:
        h.result(call)
    assert (caught.value.leader_id, caught.value.leader_address) == ("b", "tcp://10.0.0.2:7102")
    h.run_out()
    assert len(h.sent) == 1


def test_connect_mode_not_leader_with_an_id_only_takes_the_address_from_the_book() -> None:
    h = Harness(A, follow=False)
    call = h.call()
    h.answer(one(h.flush()), NOT_LEADER, ["c", None])
    assert isinstance(call.error, NotLeaderError) and call.error.leader_address == C


def test_connect_mode_not_leader_with_the_leader_unknown() -> None:
    h = Harness(A, follow=False)
    call = h.call()
    h.answer(one(h.flush()), NOT_LEADER, [None, None])
    assert isinstance(call.error, NotLeaderError)
    assert call.error.leader_id is None and call.error.leader_address is None


def test_connect_mode_not_leader_after_lost_is_an_unknown_outcome() -> None:
    h = Harness(A, follow=False)
    call = h.call()
    h.answer(one(h.flush()), LOST)
    h.answer(one(h.wait(RetryPolicy().election_pause)), NOT_LEADER, ["b", B])
    with pytest.raises(ReplicationTimeout, match="outcome is unknown"):
        h.result(call)


def test_connect_mode_not_leader_after_an_unanswered_attempt_is_an_unknown_outcome() -> None:
    h = Harness(A, follow=False)
    call = h.call(timeout=5)
    h.flush()
    h.answer(one(h.at(1.0)), NOT_LEADER, [None, None])  # the resend is refused; the first attempt is open
    assert isinstance(call.error, ReplicationTimeout)


def test_connect_mode_never_moves_to_another_node() -> None:
    h = Harness(A, follow=False)
    h.call(timeout=3)
    h.flush(all_refused)
    h.answer(one(h.wait(0.02)), BUSY)
    h.run_out()
    assert {s.address for s in h.sent} == {A}


# ---------------------------------------------------------------- deadlines and honest errors


def test_silence_is_a_replication_timeout_at_the_deadline() -> None:
    h = Harness(A)
    call = h.call(timeout=0.5)
    h.flush()
    h.run_out()
    assert isinstance(call.error, ReplicationTimeout) and "may still commit" in str(call.error)
    assert h.resolved_at[id(call)] == pytest.approx(0.5 - min(EARLY_S, 0.05))


def test_nothing_ever_sent_is_cluster_unavailable_naming_why() -> None:
    h = Harness()
    call = h.call(timeout=0.5)
    h.flush(all_refused)
    h.run_out(all_refused)
    assert isinstance(call.error, ClusterUnavailable) and "not reachable" in str(call.error)
    assert h.resolved_at[id(call)] == pytest.approx(call.deadline)


@pytest.mark.parametrize("status,value", [(NOT_LEADER, [None, None]), (BUSY, None)], ids=["not-leader", "busy"])
def test_refused_everywhere_is_cluster_unavailable(status: int, value: Any) -> None:
    h = Harness(A, B)
    call = h.call(timeout=0.5)
    h.flush()
    while h.session.live:
        h.answer(h.sent[-1], status, value)
        deadline = h.session.next_deadline()
        if deadline is not None:
            h.at(max(h.now, deadline))
    assert isinstance(call.error, ClusterUnavailable)
    assert h.resolved_at[id(call)] <= call.deadline


def test_a_refusal_after_an_unanswered_attempt_is_still_a_timeout() -> None:
    h = Harness(A, policy=RetryPolicy(resend_interval=0.1))
    call = h.call(timeout=0.6)
    h.flush()  # never answered: it may have been proposed
    h.answer(one(h.wait(0.1)), BUSY)
    h.run_out(all_refused)
    assert isinstance(call.error, ReplicationTimeout)


def test_a_status_request_unanswered_is_cluster_unavailable() -> None:
    h = Harness(A, follow=False)
    call = h.call(b"", timeout=0.3, kind=Kind.STATUS, fixed=A)
    assert isinstance(one(h.flush()).message, StatusRequest)
    h.run_out()
    assert isinstance(call.error, ClusterUnavailable)


def test_a_request_whose_deadline_passed_before_its_flush_is_not_sent() -> None:
    h = Harness()
    call = h.call(timeout=0.1)
    h.now = 1.0
    assert h.flush() == []
    assert isinstance(call.error, ClusterUnavailable)


def test_an_error_answer_fails_the_call_without_retrying() -> None:
    h = Harness()
    call = h.call()
    h.answer(one(h.flush()), ERROR, "state machine raised: boom")
    assert type(call.error) is SandzmqError and "boom" in str(call.error)
    h.run_out()
    assert len(h.sent) == 1


def test_close_fails_what_may_have_been_proposed_as_a_timeout_and_the_rest_as_unavailable() -> None:
    h = Harness()
    sent = h.call(b"sent")
    h.flush()
    unsent = h.call(b"unsent")
    query = h.call(b"q", kind=Kind.QUERY, consistency="linearizable")
    h.flush(all_refused)
    h.session.close()
    h.collect()
    assert isinstance(sent.error, ReplicationTimeout)
    assert isinstance(unsent.error, ClusterUnavailable) and isinstance(query.error, ClusterUnavailable)


def test_no_timeout_waits_for_the_answer() -> None:
    h = Harness(A)
    call = h.call(timeout=float("inf"))
    h.flush()
    for _ in range(5):
        h.wait(100.0)
    h.answer(h.sent[-1], OK)
    assert h.result(call) == b"x"


# ---------------------------------------------------------------- queries, status, odd answers


def test_queries_and_status_requests_go_one_per_message_where_they_must() -> None:
    h = Harness(follow=False)
    query = h.call(b"q", kind=Kind.QUERY, consistency="lease")
    local = h.call(b"l", kind=Kind.QUERY, consistency="local", fixed=C)
    status = h.call(b"", kind=Kind.STATUS, fixed=B)
    sends = h.flush()
    assert [(s.address, type(s.message)) for s in sends] == [(A, ClientQuery), (C, ClientQuery), (B, StatusRequest)]
    assert (sends[0].message.consistency, sends[0].message.query) == ("lease", b"q")  # type: ignore[union-attr]
    h.answer(sends[0], OK, "qv")
    h.answer(sends[1], OK, "lv")
    h.receive(B, StatusReply(sends[2].first_rid, {"id": "b"}))
    assert (h.result(query), h.result(local), h.result(status)) == ("qv", "lv", {"id": "b"})


def test_answers_that_are_not_answers_are_counted_and_leave_the_attempt_open() -> None:
    h = Harness()
    command = h.call()
    status = h.call(b"", kind=Kind.STATUS, fixed=B)
    c_send, s_send = h.flush()
    h.receive(A, ClientReply.of([(c_send.first_rid + 1000, OK, "unknown id")]))
    h.receive(A, ClientReply.of([(c_send.first_rid, 99, "unknown status")]))
    h.receive(A, StatusReply(c_send.first_rid, {"not": "an answer to a command"}))
    h.receive(B, ClientReply.of([(s_send.first_rid, OK, "not a status report")]))
    h.receive(A, object())
    stats = h.session.stats
    assert (stats["stale_replies"], stats["bad_replies"]) == (1, 4)
    assert command.state is State.SENT and status.state is State.SENT
    h.answer(c_send, OK)
    assert h.result(command) == b"x"


def test_a_send_that_cannot_be_encoded_fails_its_calls() -> None:
    h = Harness()
    call = h.call()
    h.flush(lambda send: "failed")
    assert type(call.error) is SandzmqError and "cannot send" in str(call.error)


def test_a_fixed_address_that_cannot_be_connected_to_fails_the_call() -> None:
    h = Harness()
    call = h.call(b"", kind=Kind.STATUS, fixed="bogus://x")
    h.flush(lambda send: "unreachable")
    assert type(call.error) is SandzmqError and "bogus://x" in str(call.error)


def test_the_driver_must_report_every_send_before_going_on() -> None:
    h = Harness()
    h.call()
    sends = h.session.flush(0.0)
    with pytest.raises(RuntimeError, match="not reported"):
        h.session.flush(0.0)
    h.session.sent(sends[0], 0.0)
    with pytest.raises(RuntimeError, match="twice"):
        h.session.sent(sends[0], 0.0)


# ---------------------------------------------------------------- random event sequences


TIMEOUTS = (0.05, 0.3, 1.0, 3.0)
STATUSES = (OK, OK, NOT_LEADER, LOST, ERROR, BUSY, 99)
HINTS = ([None, None], ["b", B], ["c", None], ["x", "bogus://x"], "garbage")


class Model:
    """What the test itself knows of each call, to judge the session's answers."""

    def __init__(self) -> None:
        self.open: dict[int, set[int]] = {}  # id(request) -> its attempts out and unanswered
        self.lost: set[int] = set()
        self.ok_answered: set[int] = set()
        self.seqs: dict[int, int] = {}

    def outcome(self, choose: Callable[[], str]) -> Outcome:
        """What becomes of each Send (a bad address is unreachable), recorded."""

        def outcome(send: Send) -> str:
            what = "unreachable" if send.address.startswith("bogus") else choose()
            if what == "sent":
                for rid, request in enumerate(send.requests, send.first_rid):
                    self.open.setdefault(id(request), set()).add(rid)
                    if isinstance(send.message, ClientSubmit):
                        seq = decode_payload(send.message.payloads[rid - send.first_rid]).seq  # type: ignore[union-attr]
                        assert self.seqs.setdefault(id(request), seq) == seq, "a retry changed the seq"
            return what

        return outcome


def _random_turn(h: Harness, model: Model, rng: random.Random, requests: list[Request]) -> str:
    """One turn of a driver that may see anything: a call, an answer (right,
    wrong, stale or malformed), or time passing; then a flush whose Sends
    may be refused or fail. Returns what happened, for a failure's trace."""
    event = rng.choice(["call", "call", "answer", "answer", "answer", "time"])
    if event == "call":
        kind = rng.choice([Kind.COMMAND, Kind.COMMAND, Kind.QUERY, Kind.STATUS])
        fixed = rng.choice([None, None, B, "bogus://y"]) if kind is not Kind.COMMAND else None
        requests.append(
            h.call(
                b"r%d" % len(requests),
                timeout=rng.choice(TIMEOUTS),
                kind=kind,
                fixed=fixed,
                consistency="local" if fixed else "linearizable",
            )
        )
        trace = f"call {requests[-1]!r} fixed={fixed}"
    elif event == "answer" and h.sent:
        send = rng.choice(h.sent)
        index = rng.randrange(len(send.requests))
        request, rid = send.requests[index], send.first_rid + index
        status = rng.choice(STATUSES)
        value = rng.choice(HINTS) if status == NOT_LEADER else "v"
        node = rng.choice([send.address, A, B, C])
        as_status_reply = status == OK and rng.random() < 0.5
        live_attempt = request.state is not State.DONE and rid in model.open.get(id(request), set())
        shaped = as_status_reply is (request.kind is Kind.STATUS)
        if live_attempt and status != 99 and (status != OK or shaped):
            model.open[id(request)].discard(rid)
            if status == OK:
                model.ok_answered.add(id(request))
            if status == LOST:
                model.lost.add(id(request))
        if as_status_reply:
            h.receive(node, StatusReply(rid, {"id": "n"}))
        else:
            h.receive(node, ClientReply.of([(rid, status, value)]))
        trace = f"answer rid {rid} of {request!r} from {node}: {status} {value!r}{' (StatusReply)' * as_status_reply}"
    else:
        dt = rng.choice([0.0, 0.001, 0.02, 0.1, 0.4, 1.0])
        deadline = h.session.next_deadline()
        target = h.now + dt
        if deadline is not None and deadline < target:
            target = max(h.now, deadline)  # a driver never sleeps past the session's deadline
        h.now = target
        h.session.tick(target)
        h.collect()
        trace = f"time {target:.3f}"
    choices = ["sent", "sent", "sent", "refused", "failed"] if rng.random() < 0.5 else ["sent"]
    sends = h.flush(model.outcome(lambda: rng.choice(choices)))
    return trace + "".join(f"\n    send {len(s.requests)} to {s.address}" for s in sends)


def _check_resolution(h: Harness, model: Model, request: Request) -> None:
    """Resolved by its deadline, and honestly: success only on an OK answer,
    ClusterUnavailable only when no attempt may have been proposed."""
    key = id(request)
    assert h.resolved_at[key] <= request.deadline, f"{request!r} resolved after its deadline"
    error = request.error
    may_be_proposed = bool(model.open.get(key)) or key in model.lost
    if error is None:
        assert key in model.ok_answered, f"{request!r} succeeded without an OK answer"
    elif isinstance(error, ClusterUnavailable) and request.kind is not Kind.STATUS:
        assert not may_be_proposed, f"{request!r}: ClusterUnavailable, but an attempt may have been proposed"
    elif isinstance(error, ReplicationTimeout):
        assert may_be_proposed and request.kind is not Kind.STATUS, f"{request!r}: a timeout, but nothing was proposed"
    elif isinstance(error, NotLeaderError) and request.kind is Kind.COMMAND:
        assert not may_be_proposed, f"{request!r}: NotLeaderError, but an attempt may have been proposed"


@settings(max_examples=200, deadline=None)
@given(seed=st.integers(0, 2**32), steps=st.integers(1, 40), follow=st.booleans(), slow_flush=st.booleans())
def test_random_events_never_lose_a_request_and_every_call_resolves_by_its_deadline_honestly(
    seed: int, steps: int, follow: bool, slow_flush: bool
) -> None:
    """Any interleaving of calls, answers (right, wrong, stale, malformed),
    refused and failed sends, bad hints and time: after every step each live
    request is in exactly one place that looks at it again by its deadline
    (Harness.collect audits it), and each call resolves by its deadline
    with an honest answer. The events come from a seeded generator (many
    more sequences per second than drawing each from hypothesis); a failure
    prints the trace. `slow_flush`: a refused send's retry is due at once,
    as when a flush outlasts the retry pause."""
    rng = random.Random(seed)
    policy = RetryPolicy(unsent_retry=0.0) if slow_flush else None
    h = Harness(follow=follow, seed=seed, start=seed % 3, policy=policy)
    model = Model()
    requests: list[Request] = []
    trace: list[str] = []
    try:
        for _ in range(steps):
            trace.append(_random_turn(h, model, rng, requests))
            live = [r for r in requests if r.state is not State.DONE]
            deadline = h.session.next_deadline()
            assert not live or (deadline is not None and deadline <= min(r.deadline for r in live))
        h.run_out(model.outcome(lambda: "sent"))
        assert sorted(map(id, h.resolved)) == sorted(map(id, requests)), "a call resolved twice, or never"
        for request in requests:
            _check_resolution(h, model, request)
    except AssertionError as exc:
        raise AssertionError(
            f"{exc}\n  at step {len(trace) + 1} of (seed {seed}, follow={follow}, "
            f"slow_flush={slow_flush}):\n  " + "\n  ".join(trace)
        ) from None
