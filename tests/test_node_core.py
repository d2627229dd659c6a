"""Unit tests of the node core (node/core.py): the raft actor's bookkeeping
around the Raft core, one rule each, named for the rule.

No sockets, no threads, no wall clock: tests/node_harness.py drives one
NodeCore with a fake clock, an in-memory log-store and apply actor, and
collects what it sends. The transport's part of the trust boundaries (which
socket takes which message) is the actor's, tested in tests/test_raft_actor.py;
what a message that did arrive on the right socket can still lie about is
checked here.
"""

from __future__ import annotations

import pytest
import sandzmq.node.clients as clients_module
import sandzmq.node.core as core_module
from node_harness import CLUSTER_ID, TRANSPORT_DROPS, FakeLogStore, Node, entries, messages_of, three
from sandzmq.node.apply_feed import APPLY_SILENCE_S
from sandzmq.node.bootstrap import DataState, cluster_id_of
from sandzmq.node.log_writes import LOG_RESEND_AFTER_S
from sandzmq.node.startup import HELLO_TICKS
from sandzmq.protocol import (
    ApplyBatch,
    ApplyResults,
    ApplyState,
    ClientQuery,
    ClientReply,
    ClientSubmit,
    ClusterHello,
    ClusterHelloReply,
    LocalQuery,
    LogDurable,
    LogGap,
    LogIdentity,
    LogState,
    LogSync,
    LogWrite,
    PeerHello,
    ReplyStatus,
    StatusReply,
    StatusRequest,
    decode_payload,
)
from sandzmq.raft import AppendEntries, HardState, Heartbeat, RequestVote, Role

OK, NOT_LEADER, LOST, ERROR, BUSY = (
    int(s) for s in (ReplyStatus.OK, ReplyStatus.NOT_LEADER, ReplyStatus.LOST, ReplyStatus.ERROR, ReplyStatus.BUSY)
)
A, B = b"client-a", b"client-b"


def member_hello(src: str, nonce: int, cluster_id: str = CLUSTER_ID, term: int = 1) -> PeerHello:
    return PeerHello(src, "n1", False, int(DataState.MEMBER), cluster_id, 0, term, nonce)


def nonce_of(node: Node, peer: str) -> int:
    return node.core.startup.hello_nonces[peer]


def held_writes(node: Node) -> list[LogWrite]:
    return messages_of(node.to_log, LogWrite)


# ---------------------------------------------------------------- start-up


def test_the_core_asks_the_log_store_what_it_holds_at_start_and_every_tick_until_it_answers() -> None:
    node = Node()
    node.hold_log = True
    node.run()
    node.tick(3)
    syncs = messages_of(node.to_log, LogSync)
    assert len(syncs) == 4 and [s.nonce for s in syncs] == [1, 2, 3, 4]
    assert node.status()["role"] == "unreachable" and node.raft is None


def test_only_the_log_state_answering_the_latest_request_starts_the_node() -> None:
    node = Node()
    node.hold_log = True
    node.run()
    node.tick()  # a second LogSync: nonce 2
    node.deliver(node.disk.state(0))  # the log-store's unprompted hello
    node.deliver(node.disk.state(1))  # an answer to the first request
    assert node.core.startup.phase == "starting" and node.raft is None
    node.deliver(node.disk.state(2))
    assert node.core.startup.phase == "member" and node.raft is not None


def test_a_member_starts_its_raft_core_from_what_the_log_store_reports_durable() -> None:
    disk = FakeLogStore(entries([1, 1, 2]), HardState(term=2, vote="n1", commit=2))
    node = Node(disk=disk).start_member()
    raft = node.raft
    assert (raft.term, raft.vote, raft.commit, raft.log.last_index, raft.log.last_term) == (2, "n1", 2, 3, 2)
    assert [b.entries[0].index for b in node.apply.batches] == [1]  # committed entries replayed from 1


def test_only_a_tail_of_a_long_log_is_read_into_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(core_module, "MEMORY_TAIL_ENTRIES", 10)
    disk = FakeLogStore(entries([1] * 100), HardState(term=1, commit=95))
    node = Node(disk=disk)
    node.hold_apply = True
    node.run()
    assert disk.cold_reads[0] == (86, 101)  # (then 1.. for the apply actor, which starts at 0)
    assert node.raft.log.memory_first_index == 86 and node.raft.log.term(85) == 1


def test_memory_is_trimmed_to_a_tail_of_settled_entries_on_ticks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(core_module, "MEMORY_TAIL_ENTRIES", 10)
    node = Node().lead_alone()
    for i in range(4):
        node.deliver(ClientSubmit(i * 10, [b"x"] * 10), A)
    assert node.raft.commit == 41 and node.raft.log.memory_first_index == 1
    node.tick()
    assert node.raft.log.memory_first_index == 32  # settled 41, less a tail of 10


def test_the_core_starts_from_the_index_the_apply_actor_reported() -> None:
    disk = FakeLogStore(entries([1] * 5), HardState(term=1, commit=5))
    node = Node(disk=disk)
    node.hold_log = True
    node.run()
    node.apply.applied = 4
    node.deliver(node.apply.hello())  # before the core runs
    node.release_log()
    assert node.raft.applied == 5 and [b.entries[0].index for b in node.apply.batches] == [5]


def test_clients_get_busy_while_the_node_starts() -> None:
    node = Node()
    node.hold_log = True
    node.deliver(ClientSubmit(10, [b"a", b"b"]), A)
    node.deliver(ClientQuery(12, "linearizable", b"q"), A)
    assert node.replies_to(A) == [
        (10, BUSY, "node is starting"),
        (11, BUSY, "node is starting"),
        (12, BUSY, "node is starting"),
    ]


def test_raft_messages_are_ignored_until_the_core_runs() -> None:
    node = three()
    node.hold_log = True
    node.deliver(Heartbeat("n2", "n1", 5, commit=0))
    assert node.raft is None and node.status()["dropped"] == 0


def test_status_requests_go_unanswered_until_the_log_store_has_spoken() -> None:
    node = Node()
    node.hold_log = True
    node.deliver(StatusRequest(1), A)
    assert node.answers == []
    node.release_log()
    node.deliver(StatusRequest(2), A)
    [(identity, reply)] = node.answers
    assert identity == A and isinstance(reply, StatusReply) and reply.request_id == 2
    assert reply.status["role"] == "follower"


def test_a_cluster_hello_is_answered_with_the_cluster_name_in_any_phase() -> None:
    node = Node()
    node.hold_log = True
    node.deliver(ClusterHello(99), A)
    assert node.answers == [(A, ClusterHelloReply(99, "coretest"))]


# ---------------------------------------------------------------- the identity handshake


def bootstrapping(**kw: object) -> Node:
    """n1 of three, whose log-store holds no identity: it asks n2 and n3."""
    node = Node(("n1", "n2", "n3"), disk=FakeLogStore(cluster_id=""), **kw)  # type: ignore[arg-type]
    node.run()
    assert node.core.startup.phase == "bootstrapping"
    return node


def test_a_node_without_identity_asks_every_voter_with_a_nonce_of_its_own() -> None:
    node = bootstrapping()
    asks = node.sent(PeerHello, ask=True)
    assert sorted(h.dst for h in asks) == ["n2", "n3"]
    assert {h.nonce for h in asks} == {nonce_of(node, "n2"), nonce_of(node, "n3")}
    assert node.raft is None and node.status()["state"] == "bootstrapping: waiting for n2, n3"


def test_asks_are_repeated_every_few_ticks_to_peers_not_heard() -> None:
    node = bootstrapping()
    node.take_peers()
    node.tick(HELLO_TICKS)
    assert sorted(h.dst for h in node.sent(PeerHello, ask=True)) == ["n2", "n3"]


def test_a_hello_answer_without_our_nonce_is_not_believed() -> None:
    """A blind forger claiming n2 is a member at term 7 would make n1 refuse to start for good."""
    node = bootstrapping()
    node.deliver(member_hello("n2", nonce_of(node, "n2") + 1, term=7))
    assert node.refused is None and "n2" not in node.core.startup.handshake.reports
    assert node.status()["drops"]["unbelievable"] == 1


def test_an_ask_is_answered_with_its_nonce_but_its_claims_are_not_believed() -> None:
    node = bootstrapping()
    node.take_peers()
    node.deliver(PeerHello("n2", "n1", True, int(DataState.MEMBER), "c0ffee", 0, 7, 12345))
    [answer] = node.take_peers()
    assert isinstance(answer, PeerHello) and not answer.ask and answer.dst == "n2" and answer.nonce == 12345
    assert answer.state == int(DataState.UNKNOWN)
    assert node.refused is None and node.core.startup.handshake.reports == {}


def test_hellos_from_non_voters_or_for_another_node_are_counted_foreign() -> None:
    node = bootstrapping()
    node.deliver(member_hello("n9", 1))
    node.deliver(PeerHello("n2", "n3", False, int(DataState.UNKNOWN), "", 0, 0, nonce_of(node, "n2")))
    assert node.status()["drops"]["foreign"] == 2 and node.core.startup.handshake.reports == {}


def test_a_bootstrapping_node_proposes_then_takes_the_smallest_proposal_as_cluster_id() -> None:
    node = bootstrapping()
    for peer in ("n2", "n3"):
        node.deliver(PeerHello(peer, "n1", False, int(DataState.UNKNOWN), "", 0, 0, nonce_of(node, peer)))
    node.tick()  # (decisions are taken on ticks)
    [proposal] = node.disk.identities
    assert proposal.cluster_id == "" and proposal.proposal % 2 == 1
    node.deliver(PeerHello("n2", "n1", False, int(DataState.PROPOSED), "", 5, 0, nonce_of(node, "n2")))
    node.deliver(PeerHello("n3", "n1", False, int(DataState.PROPOSED), "", 9, 0, nonce_of(node, "n3")))
    node.tick()
    assert node.disk.identities[-1].cluster_id == cluster_id_of(min(5, proposal.proposal))
    assert node.core.startup.phase == "member" and node.raft is not None


def test_a_node_without_data_refuses_to_start_once_its_cluster_has_elected() -> None:
    node = bootstrapping()
    node.deliver(member_hello("n2", nonce_of(node, "n2"), term=3))
    node.tick()
    assert node.refused is not None and "members remove n1" in node.refused
    assert node.core.startup.phase == "refused" and node.raft is None


def test_an_unanswered_identity_write_is_sent_again_after_a_second() -> None:
    node = Node(disk=FakeLogStore(cluster_id=""))
    node.hold_log = True
    node.run()
    node.deliver(node.disk.state(1))  # no identity; one node: it proposes at once
    # The LogIdentity is held, as if a restarting log-store lost it.
    assert len(messages_of(node.to_log, LogIdentity)) == 1
    node.tick(50)  # 0.5 s
    assert len(messages_of(node.to_log, LogIdentity)) == 1
    node.tick(60)
    assert len(messages_of(node.to_log, LogIdentity)) == 2


def test_a_join_node_waits_as_a_learner_and_asks_nobody() -> None:
    node = Node(("n1", "n2", "n3"), "n3", join=["n3"], disk=FakeLogStore(cluster_id=""))
    node.run()
    node.tick(2 * HELLO_TICKS)
    status = node.status()
    assert status["role"] == "learner" and status["state"] == "waiting to be added (join = true)"
    assert node.to_peers == [] and node.raft is None


def test_a_member_at_term_zero_campaigns_only_once_every_peer_is_a_member_of_its_cluster() -> None:
    node = Node(("n1", "n2", "n3")).start_member()
    assert node.core.ineligible == {"bootstrap"}
    node.tick(100)
    assert node.raft.role is Role.FOLLOWER and node.raft.term == 0
    node.deliver(member_hello("n2", nonce_of(node, "n2"), term=0))
    node.tick()
    assert node.core.ineligible == {"bootstrap"}
    node.deliver(member_hello("n3", nonce_of(node, "n3"), term=0))
    node.tick()
    assert node.core.ineligible == frozenset()
    node.tick_until(lambda: node.sent(RequestVote), "a campaign")


def test_a_member_stops_listening_to_a_peer_of_another_cluster_until_a_genuine_answer_heals_it() -> None:
    node = three().start_member()
    node.deliver(member_hello("n2", nonce_of(node, "n2"), cluster_id="0000000000000bad"))
    node.deliver(Heartbeat("n2", "n1", 1, commit=0))
    assert node.raft.leader is None and node.status()["drops"]["foreign"] == 1
    node.take_peers()
    node.tick(HELLO_TICKS)
    assert [h.dst for h in node.sent(PeerHello, ask=True)] == ["n2", "n3"]  # n2 is still asked
    node.deliver(member_hello("n2", nonce_of(node, "n2")))
    node.deliver(Heartbeat("n2", "n1", 1, commit=0))
    assert node.raft.leader == "n2"


def test_raft_messages_not_for_this_node_or_from_non_voters_are_counted_foreign() -> None:
    node = three().start_member()
    node.deliver(Heartbeat("n9", "n1", 1, commit=0))
    node.deliver(Heartbeat("n2", "n3", 1, commit=0))
    assert node.raft.leader is None and node.status()["drops"]["foreign"] == 2


# ---------------------------------------------------------------- the log-store protocol


def test_a_write_counts_as_durable_only_if_its_acknowledgement_names_the_expected_log_end() -> None:
    node = Node().start_member()
    node.hold_log = True
    node.tick_until(lambda: held_writes(node), "a campaign")
    [vote] = held_writes(node)
    assert vote.hard_state is not None and vote.hard_state.vote == "n1"
    node.to_log.clear()
    node.deliver(LogDurable(vote.write_id, 5, 1, vote.epoch))  # "durable, and my log ends at 5": it cannot
    assert node.raft.role is not Role.LEADER and node.status()["stats"]["log_mismatches"] == 1
    sync, resent = node.to_log
    assert isinstance(sync, LogSync) and (sync.epoch, sync.next_write_id) == (vote.epoch, vote.write_id)
    assert resent == vote
    node.to_log.clear()
    node.deliver(LogDurable(vote.write_id, 0, 0, vote.epoch))
    assert node.raft.role is Role.LEADER


def test_mismatched_acknowledgements_resend_at_most_once_a_second() -> None:
    node = Node().start_member()
    node.hold_log = True
    node.tick_until(lambda: held_writes(node), "a campaign")
    [vote] = held_writes(node)
    for _ in range(3):
        node.deliver(LogDurable(vote.write_id, 5, 1, vote.epoch))
    assert len(messages_of(node.to_log, LogSync)) == 1 and node.status()["stats"]["log_mismatches"] == 3
    node.clock.advance(1.5)
    node.deliver(LogDurable(vote.write_id, 5, 1, vote.epoch))
    assert len(messages_of(node.to_log, LogSync)) == 2


def test_an_acknowledgement_of_a_write_never_sent_counts_nothing() -> None:
    node = Node().start_member()
    node.hold_log = True
    node.tick_until(lambda: held_writes(node), "a campaign")
    [vote] = held_writes(node)
    node.deliver(LogDurable(vote.write_id + 10, 0, 0, vote.epoch))
    assert node.raft.role is not Role.LEADER and node.raft.durable_index == 0
    assert node.status()["stats"]["log_mismatches"] == 1


def test_acknowledgements_of_another_epoch_count_nothing() -> None:
    """A previous raft actor's write ids are not this one's."""
    node = Node().start_member()
    node.hold_log = True
    node.tick_until(lambda: held_writes(node), "a campaign")
    [vote] = held_writes(node)
    node.deliver(LogDurable(vote.write_id, 0, 0, vote.epoch + 2))
    assert node.raft.role is not Role.LEADER and node.status()["stats"]["log_mismatches"] == 0


def test_a_log_gap_resends_every_unacknowledged_write_from_the_first() -> None:
    node = Node().lead_alone()
    node.hold_log = True
    node.deliver(ClientSubmit(1, [b"a"]), A)
    node.deliver(ClientSubmit(2, [b"b"]), A)
    first, second = held_writes(node)
    node.to_log.clear()
    node.deliver(LogGap(sync_nonce=node.core.writes.nonce, expected=first.write_id))
    sync, *resent = node.to_log
    assert isinstance(sync, LogSync) and sync.next_write_id == first.write_id and resent == [first, second]
    assert node.status()["stats"]["log_resyncs"] == 1


def test_a_log_gap_older_than_the_last_sync_is_ignored() -> None:
    node = Node().lead_alone()
    node.hold_log = True
    node.deliver(ClientSubmit(1, [b"a"]), A)
    node.deliver(LogGap(sync_nonce=node.core.writes.nonce - 1, expected=1))
    assert messages_of(node.to_log, LogSync) == [] and node.status()["stats"]["log_resyncs"] == 0


def test_a_restarted_log_store_gets_every_unacknowledged_write_again() -> None:
    node = Node().lead_alone()
    node.hold_log = True
    node.deliver(ClientSubmit(1, [b"a"]), A)
    [write] = held_writes(node)
    node.to_log.clear()
    node.disk.restart()
    node.deliver(node.disk.state(0))  # its unprompted hello, from a new incarnation
    sync, resent = node.to_log
    assert isinstance(sync, LogSync) and sync.next_write_id == write.write_id and resent == write
    node.release_log()
    assert node.replies_to(A) == [(1, OK, b"a")]


def test_writes_unacknowledged_for_long_are_resent() -> None:
    node = Node().lead_alone()
    node.hold_log = True
    node.deliver(ClientSubmit(1, [b"a"]), A)
    node.tick(int(LOG_RESEND_AFTER_S * 100) - 10)  # (its disk looks stuck: it steps down, and campaigns in vain)
    assert messages_of(node.to_log, LogSync) == []
    node.tick(20)
    assert len(messages_of(node.to_log, LogSync)) == 1 and node.status()["stats"]["log_resyncs"] == 1


def test_each_acknowledgement_of_entries_counts_one_fsync() -> None:
    node = Node().lead_alone()
    before = node.status()["stats"]
    node.hold_log = True
    node.deliver(ClientSubmit(1, [b"a", b"b"]), A)
    node.deliver(ClientSubmit(3, [b"c"]), A)
    assert len(held_writes(node)) == 2
    node.hold_log = False
    for write in held_writes(node):
        node.disk.take(write)
    node.to_log.clear()
    node.deliver(LogDurable(node.disk.durable, node.disk.last_index, node.disk.last_term, node.core.writes.epoch))
    stats = node.status()["stats"]
    assert stats["fsyncs"] - before["fsyncs"] == 1 and stats["fsync_entries"] - before["fsync_entries"] == 3


# ---------------------------------------------------------------- the apply hand-off


def test_committed_entries_go_to_the_apply_actor_with_the_current_generation() -> None:
    node = Node().lead_alone()
    node.deliver(ClientSubmit(1, [b"a"]), A)
    last = node.apply.batches[-1]
    assert last.generation == node.core.apply.generation and last.want_results
    assert [e.data for e in last.entries] == [b"a"]


def test_a_restarted_apply_actor_is_fed_again_from_its_applied_index_in_a_new_generation() -> None:
    node = Node().lead_alone()
    node.deliver(ClientSubmit(1, [b"a", b"b"]), A)
    generation = node.core.apply.generation
    node.apply.applied, node.apply.incarnation = 0, 8  # restarted, with nothing applied
    node.deliver(node.apply.hello())
    again = node.apply.batches[-1]
    assert again.entries[0].index == 1 and again.generation == generation + 1
    assert node.apply.applied == node.raft.commit == 3


def test_refusals_of_batches_sent_before_a_rewind_do_not_rewind_again() -> None:
    """A restarted apply actor refuses every batch queued for its predecessor:
    one rewind in all, not one each (each would resend the committed log)."""
    node = Node().lead_alone()
    node.hold_apply = True
    node.deliver(ClientSubmit(1, [b"a"]), A)
    node.deliver(ClientSubmit(2, [b"b"]), A)
    old = messages_of(node.to_apply, ApplyBatch)
    node.to_apply.clear()
    node.deliver(ApplyState(4343, 0, 8, 0))  # restarted
    [rewound] = messages_of(node.to_apply, ApplyBatch)
    assert rewound.entries[0].index == 1 and rewound.generation > old[-1].generation
    before = node.status()["stats"]
    for batch in old:  # its refusals of batches sent before the rewind
        node.deliver(ApplyState(4343, 0, 8, batch.generation))
    assert node.status()["stats"] == before and len(messages_of(node.to_apply, ApplyBatch)) == 1


def test_a_refusal_of_the_current_generation_rewinds() -> None:
    node = Node().lead_alone()
    node.hold_apply = True
    node.deliver(ClientSubmit(1, [b"a"]), A)
    [batch] = messages_of(node.to_apply, ApplyBatch)
    node.to_apply.clear()
    node.deliver(ApplyState(4343, 0, node.apply.incarnation, batch.generation))
    [again] = messages_of(node.to_apply, ApplyBatch)
    assert again.entries[0].index == 1 and again.generation == batch.generation + 1
    assert node.status()["stats"]["apply_rewinds"] == 2  # (the first at start-up)


def test_a_silent_apply_actor_makes_the_node_step_down_until_it_speaks() -> None:
    node = Node().lead_alone()
    node.deliver(ClientSubmit(1, [b"a"]), A)
    node.tick(int(APPLY_SILENCE_S * 100) + 5)
    assert node.core.ineligible == {"apply"} and node.raft.role is Role.FOLLOWER
    node.tick(100)
    assert node.raft.role is Role.FOLLOWER  # no campaign either
    node.deliver(ApplyResults([], [], [], [], node.apply.applied))
    assert node.core.ineligible == frozenset()
    node.tick_until(lambda: node.raft.role is Role.LEADER, "leadership again")


def test_apply_results_confirm_what_was_applied_and_move_the_window() -> None:
    node = Node(max_batch_entries=512).lead_alone()
    node.hold_apply = True
    node.core.raft.config.max_apply_lag = 4
    node.deliver(ClientSubmit(1, [b"x"] * 8), A)
    [batch] = messages_of(node.to_apply, ApplyBatch)
    assert len(batch.entries) == 4
    node.to_apply.clear()
    node.deliver(ApplyResults.of([(e.index, e.term, OK, b"r") for e in batch.entries], batch.entries[-1].index))
    [more] = messages_of(node.to_apply, ApplyBatch)
    assert more.entries[0].index == batch.entries[-1].index + 1


# ---------------------------------------------------------------- clients


def test_commands_of_one_turn_are_proposed_as_one_batch() -> None:
    node = three().lead_three()
    node.take_peers()
    node.core.client_submit(A, ClientSubmit(1, [b"a1", b"a2"]))
    node.core.client_submit(B, ClientSubmit(50, [b"b1"]))
    node.run()
    appends = node.sent(AppendEntries)
    assert [len(m.entries) for m in appends] == [3, 3]
    assert [e.data for e in appends[0].entries] == [b"a1", b"a2", b"b1"]


def test_results_answer_each_client_in_one_reply_per_turn() -> None:
    node = Node().lead_alone()
    node.hold_apply = True
    node.deliver(ClientSubmit(1, [b"a1", b"a2"]), A)
    node.deliver(ClientSubmit(50, [b"b1"]), B)
    batches = messages_of(node.to_apply, ApplyBatch)
    node.to_apply.clear()
    results = ApplyResults.of([(e.index, e.term, OK, e.data) for b in batches for e in b.entries], node.raft.commit)
    node.core.apply_results(results, node.clock.now)
    out = node.core.flush(node.clock.now)
    assert out is not None and set(out.replies) == {A, B}
    assert out.replies[A] == ClientReply([1, 2], [OK, OK], [b"a1", b"a2"])
    assert out.replies[B] == ClientReply([50], [OK], [b"b1"])


def test_a_follower_refuses_writes_with_not_leader_and_the_leaders_client_address() -> None:
    node = three().start_member()
    node.deliver(Heartbeat("n2", "n1", 1, commit=0))
    node.deliver(ClientSubmit(7, [b"a", b"b"]), A)
    hint = ["n2", "tcp://127.0.0.1:7101"]
    assert node.replies_to(A) == [(7, NOT_LEADER, hint), (8, NOT_LEADER, hint)]


def test_a_leader_refuses_with_busy_beyond_its_pending_requests(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(clients_module, "MAX_PENDING_REQUESTS", 3)
    node = Node().lead_alone()
    node.hold_log = True  # nothing commits: the proposals stay pending
    node.deliver(ClientSubmit(1, [b"a", b"b", b"c"]), A)
    node.deliver(ClientSubmit(4, [b"d"]), A)
    assert node.replies_to(A) == [(4, BUSY, "too many requests in flight")]


def test_oversized_commands_are_refused_and_the_rest_proposed_in_runs_of_consecutive_ids() -> None:
    node = Node(max_batch_bytes=1000).lead_alone()
    big = b"x" * 1001
    node.deliver(ClientSubmit(10, [b"a", big, b"b", b"c", big]), A)
    replies = sorted(node.replies_to(A))
    assert [(rid, status) for rid, status, _ in replies] == [(10, OK), (11, ERROR), (12, OK), (13, OK), (14, ERROR)]
    assert "exceeds max_batch_bytes (1000)" in replies[1][2]
    assert [run.count for run in node.core.clients.pending.take_all()] == []  # all answered


def test_oversized_queries_are_refused() -> None:
    node = Node(max_batch_bytes=1000).lead_alone()
    node.deliver(ClientQuery(3, "linearizable", b"q" * 1001), A)
    [(rid, status, message)] = node.replies_to(A)
    assert (rid, status) == (3, ERROR) and "query of 1001 bytes exceeds" in message


def test_an_unknown_consistency_is_an_error() -> None:
    node = Node().lead_alone()
    node.deliver(ClientQuery(3, "eventual", b"q"), A)
    assert node.replies_to(A) == [(3, ERROR, "unknown consistency 'eventual'")]


def test_linearizable_queries_go_through_the_log() -> None:
    node = Node().lead_alone()
    node.deliver(ClientQuery(3, "lease", b"q"), A)
    entry = node.apply.batches[-1].entries[-1]
    assert decode_payload(entry.data).query == b"q"
    assert node.replies_to(A) == [(3, OK, entry.data)]  # (the fake apply actor answers with the entry's bytes)


def test_local_queries_go_to_the_apply_actor_and_back_to_their_client() -> None:
    node = three().start_member()  # any node, leader or not
    node.deliver(ClientQuery(3, "local", b"q"), A)
    assert node.replies_to(A) == [(3, OK, b"local q")]
    assert node.core.clients.local_queries == {}


def test_local_queries_beyond_the_limit_get_busy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(clients_module, "MAX_PENDING_LOCAL_QUERIES", 1)
    node = Node().start_member()
    node.hold_apply = True
    node.deliver(ClientQuery(3, "local", b"q"), A)
    node.deliver(ClientQuery(4, "local", b"q"), A)
    assert len(messages_of(node.to_apply, LocalQuery)) == 1
    assert node.replies_to(A) == [(4, BUSY, "too many local queries in flight")]


def test_pending_proposals_are_answered_lost_when_leadership_is_lost() -> None:
    node = three().lead_three()
    node.deliver(ClientSubmit(1, [b"a", b"b"]), A)  # proposed, not yet acknowledged by the followers
    node.deliver(Heartbeat("n2", "n1", node.raft.term + 1, commit=0))
    assert node.raft.role is Role.FOLLOWER
    assert node.replies_to(A) == [(1, LOST, None), (2, LOST, None)]
    assert not node.core.clients.pending


def test_results_of_entries_another_leader_overwrote_are_answered_lost() -> None:
    node = Node().lead_alone()
    node.hold_apply = True
    node.deliver(ClientSubmit(1, [b"a"]), A)
    [batch] = messages_of(node.to_apply, ApplyBatch)
    index = batch.entries[-1].index
    node.deliver(ApplyResults.of([(index, batch.entries[-1].term + 1, OK, b"someone else's")], index))
    assert node.replies_to(A) == [(1, LOST, None)]


# ---------------------------------------------------------------- status and counters


RUNNING_KEYS = [
    "id",
    "role",
    "term",
    "leader",
    "commit_index",
    "applied_index",
    "last_index",
    "snapshot_index",
    "dropped",
    "pids",
    "followers",
    "drops",
    "durable_index",
    "refused",
    "stats",
]
DROPS_KEYS = [*TRANSPORT_DROPS, "failed", "foreign", "unbelievable"]


def test_status_is_unreachable_with_null_fields_until_the_log_store_has_spoken() -> None:
    node = Node()
    node.hold_log = True
    node.run()
    assert node.status() == {
        "id": "n1",
        "role": "unreachable",
        "term": None,
        "leader": None,
        "commit_index": None,
        "applied_index": None,
        "last_index": None,
        "snapshot_index": None,
        "dropped": 0,
        "pids": {"raft": 4141, "log": None, "apply": None},
        "followers": {},
        "drops": dict.fromkeys(DROPS_KEYS, 0),
    }


def test_status_of_a_running_node_has_the_spec_fields_and_the_detail() -> None:
    node = three().lead_three()
    status = node.status()
    assert list(status) == RUNNING_KEYS and list(status["drops"]) == DROPS_KEYS
    assert (status["role"], status["leader"], status["term"]) == ("leader", "n1", 2)
    assert status["pids"] == {"raft": 4141, "log": 4242, "apply": 4343}
    assert set(status["followers"]) == {"n2", "n3"}
    assert list(status["stats"]) == list(core_module.STATS)


def test_a_pre_candidate_shows_as_a_candidate() -> None:
    node = three().start_member()
    node.tick_until(lambda: node.raft.role is Role.PRE_CANDIDATE, "a pre-vote")
    assert node.status()["role"] == "candidate"


def test_dropped_counts_transport_drops_failed_inputs_foreign_and_unbelievable_messages() -> None:
    node = three().start_member()
    node.deliver(Heartbeat("n9", "n1", 1, commit=0))  # foreign
    node.deliver(Heartbeat("n2", "n1", 2**40, commit=0))  # a term that jumps too far: unbelievable
    node.core.failed(object())
    node.core.unexpected(object())
    status = node.core.status({**TRANSPORT_DROPS, "wrong_socket": 3, "total": 3})
    assert status["drops"]["foreign"] == 2 and status["drops"]["unbelievable"] == 1 and status["drops"]["failed"] == 1
    assert status["dropped"] == 3 + 1 + 2 + 1
    assert status["refused"] == {"term jumps too far ahead": 1}


def test_stats_count_appends_and_entries_at_each_hop() -> None:
    node = three().lead_three()
    before = node.status()["stats"]
    node.deliver(ClientSubmit(1, [b"a", b"b"]), A)
    stats = node.status()["stats"]
    assert stats["append_messages"] - before["append_messages"] == 2  # one per follower
    assert stats["append_entries"] - before["append_entries"] == 4
    assert stats["fsync_entries"] - before["fsync_entries"] == 2
    node.answer_peers()
    assert node.status()["stats"]["apply_entries"] - before["apply_entries"] == 2


def test_each_flush_hands_over_one_ready_so_heartbeats_do_not_wait_for_a_replay() -> None:
    """A replay hands out the committed log in many Readies: the heartbeats of
    the first must leave before the others are built (they read the WAL)."""
    node = three().lead_three()
    node.deliver(ClientSubmit(1, [b"x"] * 9000), A)
    for _ in range(20):  # (the followers' windows take 2,048 entries at a time)
        node.answer_peers()
    assert node.apply.applied == node.raft.commit == 9001
    now = node.clock.now
    node.core.apply_state(ApplyState(4343, 0, 8, 0), now)  # a restarted apply actor: hand out all 9001 again
    for _ in range(node.raft.config.heartbeat_ticks):
        node.core.tick(now)
    first = node.core.flush(now)
    assert first is not None and messages_of(first.peers, Heartbeat) and len(first.apply) == 1
    rest = []
    while (out := node.core.flush(now)) is not None:
        assert not out.peers
        rest += out.apply
    assert sum(len(b.entries) for b in [*first.apply, *rest]) == 9001 and len(rest) >= 2


def test_a_flush_with_nothing_to_do_returns_none() -> None:
    node = Node().lead_alone()
    assert node.core.flush(node.clock.now) is None


def test_the_epoch_of_writes_differs_between_two_lives_of_a_node() -> None:
    first, second = Node(seed=1), Node(seed=2)
    assert first.core.writes.epoch != second.core.writes.epoch
    assert first.core.writes.epoch % 2 == 1  # never 0, the epoch of a log-store no raft actor synced


def test_a_log_state_while_running_from_the_same_incarnation_resends_nothing() -> None:
    node = Node().lead_alone()
    node.hold_log = True
    node.deliver(ClientSubmit(1, [b"a"]), A)
    node.to_log.clear()
    node.deliver(LogState(0, 4242, node.disk.incarnation, HardState(), 1, 0, 0, 0, CLUSTER_ID))
    assert node.to_log == []
