"""node/proposals.py: matching the apply actor's results to client requests, in runs."""

from __future__ import annotations

from typing import Any

import pytest
from sandzmq.node.proposals import PendingProposals
from sandzmq.protocol import ClientReply, ReplyStatus

OK, LOST = int(ReplyStatus.OK), int(ReplyStatus.LOST)


class Replies:
    """reply_to() for resolve(): one ClientReply per identity, as the raft actor keeps them."""

    def __init__(self) -> None:
        self.by_identity: dict[bytes, ClientReply] = {}

    def __call__(self, identity: bytes) -> ClientReply:
        return self.by_identity.setdefault(identity, ClientReply([], [], []))

    def of(self, identity: bytes) -> list[tuple[int, int, Any]]:
        reply = self.by_identity.get(identity)
        return [] if reply is None else reply.replies


def resolve(pending: PendingProposals, results: list[tuple[int, int, int, Any]], replies: Replies) -> None:
    pending.resolve(
        [r[0] for r in results], [r[1] for r in results], [r[2] for r in results], [r[3] for r in results], replies
    )


def test_a_run_is_answered_with_consecutive_request_ids() -> None:
    pending, replies = PendingProposals(), Replies()
    pending.add(5, 3, 2, b"a", 100)
    resolve(pending, [(5, 2, OK, "x"), (6, 2, OK, "y"), (7, 2, OK, "z")], replies)
    assert replies.of(b"a") == [(100, OK, "x"), (101, OK, "y"), (102, OK, "z")]
    assert len(pending) == 0 and not pending


def test_results_split_across_batches_and_runs_of_two_clients() -> None:
    pending, replies = PendingProposals(), Replies()
    pending.add(2, 3, 1, b"a", 10)  # indexes 2..4
    pending.add(5, 2, 1, b"b", 70)  # indexes 5..6
    resolve(pending, [(1, 1, OK, "noop's neighbour"), (2, 1, OK, 2), (3, 1, OK, 3)], replies)
    assert replies.of(b"a") == [(10, OK, 2), (11, OK, 3)]
    assert len(pending) == 3
    resolve(pending, [(4, 1, OK, 4), (5, 1, OK, 5), (6, 1, OK, 6)], replies)
    assert replies.of(b"a")[-1] == (12, OK, 4)
    assert replies.of(b"b") == [(70, OK, 5), (71, OK, 6)]
    assert len(pending) == 0


def test_an_entry_of_another_term_means_the_proposal_was_lost() -> None:
    pending, replies = PendingProposals(), Replies()
    pending.add(3, 3, 4, b"a", 1)
    resolve(pending, [(3, 4, OK, "kept"), (4, 5, OK, "someone else's"), (5, 5, OK, "someone else's")], replies)
    assert replies.of(b"a") == [(1, OK, "kept"), (2, LOST, None), (3, LOST, None)]


def test_entries_the_results_pass_over_are_answered_lost() -> None:
    pending, replies = PendingProposals(), Replies()
    pending.add(3, 2, 1, b"a", 1)  # 3, 4
    pending.add(6, 3, 1, b"b", 50)  # 6, 7, 8
    # 3 and 4 never get a result, nor does 6: the next result is for 7.
    resolve(pending, [(7, 1, OK, "seven"), (8, 1, OK, "eight")], replies)
    assert replies.of(b"a") == [(1, LOST, None), (2, LOST, None)]
    assert replies.of(b"b") == [(50, LOST, None), (51, OK, "seven"), (52, OK, "eight")]
    assert len(pending) == 0


def test_a_gap_inside_the_results_is_handled_one_by_one() -> None:
    pending, replies = PendingProposals(), Replies()
    pending.add(1, 4, 1, b"a", 1)
    resolve(pending, [(1, 1, OK, 1), (2, 1, OK, 2), (4, 1, OK, 4)], replies)
    assert replies.of(b"a") == [(1, OK, 1), (2, OK, 2), (3, LOST, None), (4, OK, 4)]


def test_take_all_and_term_check() -> None:
    pending = PendingProposals()
    pending.add(1, 2, 3, b"a", 1)
    pending.add(3, 1, 4, b"b", 9)
    assert not pending.all_in_term(4)
    runs = pending.take_all()
    assert [(r.identity, r.count) for r in runs] == [(b"a", 2), (b"b", 1)]
    assert len(pending) == 0


def test_runs_must_be_added_in_log_order() -> None:
    pending = PendingProposals()
    pending.add(5, 2, 1, b"a", 1)
    with pytest.raises(ValueError):
        pending.add(6, 1, 1, b"a", 3)


def test_a_term_that_differs_only_in_the_middle_of_a_run_is_still_lost() -> None:
    pending, replies = PendingProposals(), Replies()
    pending.add(1, 3, 2, b"a", 1)
    resolve(pending, [(1, 2, OK, "x"), (2, 3, OK, "other"), (3, 2, OK, "z")], replies)
    assert replies.of(b"a") == [(1, OK, "x"), (2, LOST, None), (3, OK, "z")]
