"""Client sessions: exactly-once results per (client, sequence number)."""

from __future__ import annotations

import pytest
from sandzmq.node.sessions import STALE, TOO_MANY_RESULTS, Sessions
from sandzmq.protocol import ReplyStatus

A, B = b"client-a", b"client-b"
OK = int(ReplyStatus.OK)


def apply(sessions: Sessions, applied: list[tuple[bytes, int]], client: bytes, seq: int, first_incomplete: int):
    """What the apply actor does for one command entry: admit, else apply and record."""
    result = sessions.admit(client, seq, first_incomplete)
    if isinstance(result, dict):
        applied.append((client, seq))
        result[seq] = (OK, f"{client.decode()}#{seq}")
        return result[seq]
    return result


def test_unknown_client_and_new_seq_are_applied() -> None:
    s = Sessions()
    assert s.lookup(A, 1) is None
    assert s.admit(A, 1, 1) == {}  # apply it: its result goes into that dict
    s.record(A, 1, 1, (OK, "r1"))
    assert s.lookup(A, 1) == (OK, "r1")
    assert s.lookup(A, 2) is None
    assert s.lookup(B, 1) is None  # clients are independent


def test_retry_returns_the_first_result_and_applies_once() -> None:
    s, applied = Sessions(), []
    first = apply(s, applied, A, 1, 1)
    again = apply(s, applied, A, 1, 1)
    assert first == again == (OK, "client-a#1")
    assert applied == [(A, 1)]


def test_acknowledged_results_are_dropped_and_late_duplicates_are_stale() -> None:
    s, applied = Sessions(), []
    apply(s, applied, A, 1, 1)
    apply(s, applied, A, 2, 2)  # the client has the result of 1
    assert s.result_count(A) == 1 and s.first_incomplete(A) == 2
    assert s.lookup(A, 1) == STALE
    assert apply(s, applied, A, 1, 1) == STALE  # a retry that lost the race: not applied again
    assert STALE[0] == ReplyStatus.ERROR and "stale request: already acknowledged" in STALE[1]
    assert applied == [(A, 1), (A, 2)]


def test_out_of_order_completion_applies_each_seq_once() -> None:
    """5 and 6 in flight; 5 is lost in a leader change, 6 commits; then 5's
    retry arrives, then retries of both. Results are kept per seq, so 5 is
    applied exactly once and 6 is not applied again."""
    s, applied = Sessions(), []
    r6 = apply(s, applied, A, 6, 5)
    r5 = apply(s, applied, A, 5, 5)
    assert apply(s, applied, A, 5, 5) == r5
    assert apply(s, applied, A, 6, 5) == r6
    assert applied == [(A, 6), (A, 5)]
    apply(s, applied, A, 7, 7)  # the client has both now
    assert s.result_count(A) == 1
    assert s.lookup(A, 5) == STALE and s.lookup(A, 6) == STALE


def test_acknowledgement_never_goes_back() -> None:
    s, applied = Sessions(), []
    apply(s, applied, A, 10, 10)
    apply(s, applied, A, 3, 3)  # an old entry (delayed) carries an older first_incomplete
    assert s.first_incomplete(A) == 10
    assert s.lookup(A, 3) == STALE and applied == [(A, 10)]


def test_a_duplicate_still_brings_the_acknowledgement() -> None:
    s, applied = Sessions(), []
    for seq in range(1, 6):
        apply(s, applied, A, seq, 1)
    assert s.result_count(A) == 5
    apply(s, applied, A, 5, 5)  # a retry of 5 that says 1..4 are done
    assert s.result_count(A) == 1 and applied == [(A, seq) for seq in range(1, 6)]


@pytest.mark.parametrize("jump", [1, 3, 1000])
def test_forgetting_is_exact_for_small_and_large_jumps(jump: int) -> None:
    s, applied = Sessions(), []
    for seq in range(1, 21):
        apply(s, applied, A, seq, 1)
    target = min(1 + jump, 21)
    apply(s, applied, A, 21, target)
    kept = [seq for seq in range(1, 22) if s.lookup(A, seq) not in (None, STALE)]
    assert kept == list(range(target, 22))


def test_results_per_client_are_capped_and_the_refusal_is_remembered() -> None:
    s, applied = Sessions(max_results=3), []
    for seq in (1, 2, 3):
        apply(s, applied, A, seq, 1)
    assert apply(s, applied, A, 4, 1) == TOO_MANY_RESULTS
    assert apply(s, applied, A, 4, 1) == TOO_MANY_RESULTS  # a retry gets the same answer
    assert TOO_MANY_RESULTS[0] == ReplyStatus.ERROR and "too many" in TOO_MANY_RESULTS[1]
    assert apply(s, applied, B, 1, 1) == (OK, "client-b#1")  # other clients are not affected
    apply(s, applied, A, 5, 4)  # acknowledging frees room
    assert applied == [(A, 1), (A, 2), (A, 3), (B, 1), (A, 5)]


def test_snapshot_restore_round_trip_is_canonical() -> None:
    s1, s2, applied = Sessions(), Sessions(), []
    # The same sessions built in two different orders give the same bytes.
    for client, seq, first in [(A, 1, 1), (B, 7, 7), (A, 2, 1), (A, 4, 1)]:
        apply(s1, applied, client, seq, first)
    for client, seq, first in [(B, 7, 7), (A, 4, 1), (A, 1, 1), (A, 2, 1)]:
        apply(s2, applied, client, seq, first)
    assert s1.snapshot() == s2.snapshot()

    s1.record(A, 9, 1, (OK, {"nested": [1, b"x", None], 5: "int key"}))
    restored = Sessions()
    restored.restore(s1.snapshot())
    assert restored.snapshot() == s1.snapshot()
    for client, seq in [(A, 1), (A, 2), (A, 3), (A, 4), (A, 9), (B, 7), (B, 1)]:
        before, after = s1.lookup(client, seq), restored.lookup(client, seq)
        assert (None if before is None else tuple(before)) == (None if after is None else tuple(after))
    assert restored.first_incomplete(B) == 7


def test_restore_rejects_garbage_and_keeps_the_old_state() -> None:
    s, applied = Sessions(), []
    apply(s, applied, A, 1, 1)
    for junk in (b"", b"\xc1", b"\x93\x02\x01\x90", b"\x92\x01\x02"):
        with pytest.raises(ValueError, match="not a sessions snapshot"):
            s.restore(junk)
    assert s.lookup(A, 1) == (OK, "client-a#1")
