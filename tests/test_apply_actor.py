"""The apply actor over real ipc:// sockets, with the kv state machine and a recording one.

The test plays the raft actor: an Inbox at layout.raft_ipc receives the
apply actor's answers, a DEALER with identity "raft" sends it ApplyBatches
and LocalQueries. Every wait polls with a deadline.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import pykka
import pytest
from actor_partner import DEADLINE_S, write_one_node_config
from actor_partner import FakeRaft as PartnerRaft
from sandzmq.actors.apply import ApplyActor
from sandzmq.actors.layout import NodeLayout
from sandzmq.actors.process import EXIT_REFUSED, requested_exit
from sandzmq.protocol import (
    ApplyBatch,
    ApplyResults,
    ApplyState,
    LocalQuery,
    LocalQueryResult,
    LogSync,
    ReplyStatus,
    encode_command,
    encode_read,
)
from sandzmq.raft.messages import Entry, EntryKind
from sandzmq.statemachines.kv import encode_get, encode_put
from sandzmq.transport import Envelope, context, terminate_context

from sandzmq import StateMachine
from sandzmq.config import ClusterConfig, load_config

OK, ERROR = int(ReplyStatus.OK), int(ReplyStatus.ERROR)
CLIENT = b"client-1"


class RecordingSM(StateMachine):
    """Records every call (class-level, so the test sees the actor's instance).

    apply: b"boom" raises, b"set" returns something msgpack cannot carry,
    anything else returns how many commands were applied so far.
    query: b"boom" raises, b"count" -> commands applied, b"set" -> a set."""

    calls: list[tuple[str, bytes]] = []

    def __init__(self) -> None:
        self.applied = 0

    def apply(self, command: bytes) -> Any:
        RecordingSM.calls.append(("apply", command))
        if command == b"boom":
            raise RuntimeError(f"boom at {object()!r}\nsecond line")
        if command == b"set":
            return {1, 2}
        self.applied += 1
        return self.applied

    def query(self, query: bytes) -> Any:
        RecordingSM.calls.append(("query", query))
        if query == b"boom":
            raise KeyError(query)
        if query == b"set":
            return {3}
        return self.applied

    def snapshot(self, sink: BinaryIO) -> None:
        sink.write(b"")

    def restore(self, source: BinaryIO) -> None:
        self.applied = 0


RECORDING = f"{__name__}:RecordingSM"


# ----------------------------------------------------------------------------- helpers


def write_config(tmp_path: Path, state_machine: str) -> Path:
    return write_one_node_config(tmp_path, name="applytest", state_machine=state_machine)


class FakeRaft(PartnerRaft):
    """The raft actor's side of the apply protocol."""

    def __init__(self, layout: NodeLayout, envelope: Envelope) -> None:
        super().__init__(layout, envelope, "apply")

    def results(self, entries: list[Entry]) -> ApplyResults:
        """Apply `entries` as the leader does (want_results) and return the answer."""
        self.send(ApplyBatch(entries, True))
        return self.report_up_to(entries[-1].index)

    def report_up_to(self, index: int) -> ApplyResults:
        """The ApplyResults that reaches `index`, past the apply actor's
        periodic reports of an earlier index (its sign of life, every 0.5 s)."""
        while True:
            answer = self.expect(ApplyResults)
            if answer.applied_index >= index:
                assert answer.applied_index == index
                return answer
            assert answer.results == [], f"results for an index below {index}: {answer}"


class Node:
    def __init__(self, tmp_path: Path, state_machine: str) -> None:
        self.config: ClusterConfig = load_config(write_config(tmp_path, state_machine))
        self.layout = NodeLayout.of(self.config, "n1")
        self.raft = FakeRaft(self.layout, Envelope(self.config.name))
        self.refs: list[pykka.ActorRef[Any]] = []

    def start(self) -> pykka.ActorRef[Any]:
        ref = ApplyActor.start(self.config, "n1")
        self.refs.append(ref)
        return ref

    def close(self) -> None:
        for ref in self.refs:
            if ref.is_alive():
                ref.stop(block=True, timeout=DEADLINE_S)
        self.raft.close()


@pytest.fixture(autouse=True)
def fresh_context() -> Iterator[None]:
    terminate_context()
    RecordingSM.calls = []
    yield
    leaked = [s for s in list(getattr(context(), "_sockets", ())) if not s.closed]
    terminate_context()
    assert not leaked, f"sockets left open: {leaked}"


def started(tmp_path: Path, state_machine: str) -> Iterator[Node]:
    node = Node(tmp_path, state_machine)
    try:
        node.start()
        first = node.raft.expect(ApplyState)
        assert (first.pid, first.applied_index, first.generation) == (os.getpid(), 0, 0) and first.incarnation
        yield node
    finally:
        node.close()


@pytest.fixture
def kv(tmp_path: Path) -> Iterator[Node]:
    yield from started(tmp_path, "kv")


@pytest.fixture
def rec(tmp_path: Path) -> Iterator[Node]:
    yield from started(tmp_path, RECORDING)


def command(index: int, seq: int, data: bytes, first_incomplete: int | None = None, client: bytes = CLIENT) -> Entry:
    return Entry(index, 1, encode_command(client, seq, seq if first_incomplete is None else first_incomplete, data))


def applied_commands() -> list[bytes]:
    return [data for call, data in RecordingSM.calls if call == "apply"]


# ----------------------------------------------------------------------------- tests


def test_commands_apply_in_order_with_one_result_each(kv: Node) -> None:
    answer = kv.raft.results(
        [
            command(1, 1, encode_put("a", "1")),
            command(2, 2, encode_put("a", "2")),
            command(3, 3, encode_put("b", "x")),
        ]
    )
    assert answer.results == [
        (1, 1, OK, {"ok": True, "prev": None}),
        (2, 1, OK, {"ok": True, "prev": "1"}),
        (3, 1, OK, {"ok": True, "prev": None}),
    ]
    kv.raft.send(LocalQuery(9, encode_get("a")))
    assert kv.raft.expect(LocalQueryResult) == LocalQueryResult(9, OK, {"ok": True, "value": "2"})


def state_of(msg: ApplyState) -> tuple[int, int, int]:
    """(pid, applied index, generation) of an ApplyState (its incarnation is random)."""
    return msg.pid, msg.applied_index, msg.generation


def test_a_batch_that_does_not_follow_on_gets_apply_state_once_per_generation(rec: Node) -> None:
    rec.raft.send(ApplyBatch([command(5, 1, b"x")], True, 1))  # a gap
    assert state_of(rec.raft.expect(ApplyState)) == (os.getpid(), 0, 1)
    # More batches of that generation (queued before the raft actor rewound): no
    # ApplyState each, or each would make the raft actor resend the log again.
    rec.raft.send(ApplyBatch([command(6, 2, b"y")], True, 1))
    rec.raft.results([command(1, 1, b"a"), command(2, 2, b"b")])
    rec.raft.send(ApplyBatch([command(2, 2, b"b"), command(3, 3, b"c")], True, 2))  # overlaps: resent
    assert state_of(rec.raft.expect(ApplyState)) == (os.getpid(), 2, 2)
    # A hole inside a batch (the wire codec cannot carry one; an in-process tell can).
    rec.refs[0].tell(ApplyBatch([command(3, 3, b"c"), command(5, 4, b"d")], True, 3))
    assert state_of(rec.raft.expect(ApplyState)) == (os.getpid(), 2, 3)
    assert applied_commands() == [b"a", b"b"]
    assert rec.raft.results([command(3, 3, b"c")]).results == [(3, 1, OK, 3)]


def test_a_retried_command_returns_its_first_result_and_applies_once(kv: Node) -> None:
    put = encode_put("k", "v")
    answer = kv.raft.results([command(1, 1, put), command(2, 1, put)])  # the retry lands in the same batch
    assert answer.results[0][2:] == answer.results[1][2:] == (OK, {"ok": True, "prev": None})
    # and in a later batch, after a leader change (another term)
    later = kv.raft.results([Entry(3, 2, encode_command(CLIENT, 1, 1, put))])
    assert later.results == [(3, 2, OK, {"ok": True, "prev": None})]  # applied twice would say prev "v"


def test_retry_and_recording_machine_apply_once(rec: Node) -> None:
    rec.raft.results([command(1, 1, b"a"), command(2, 2, b"b", first_incomplete=1)])
    answer = rec.raft.results([command(3, 1, b"a", first_incomplete=1), command(4, 2, b"b", first_incomplete=1)])
    assert [r[2:] for r in answer.results] == [(OK, 1), (OK, 2)]
    assert applied_commands() == [b"a", b"b"]


def test_out_of_order_completion_applies_the_retry_once(rec: Node) -> None:
    # 5 and 6 in flight; 6 commits first, then 5's retry, then duplicates of both.
    answer = rec.raft.results(
        [
            command(1, 6, b"six", first_incomplete=5),
            command(2, 5, b"five", first_incomplete=5),
            command(3, 5, b"five", first_incomplete=5),
            command(4, 6, b"six", first_incomplete=5),
        ]
    )
    assert [r[3] for r in answer.results] == [1, 2, 2, 1]
    assert applied_commands() == [b"six", b"five"]


def test_a_stale_duplicate_is_refused_not_applied(rec: Node) -> None:
    rec.raft.results([command(1, 1, b"a"), command(2, 2, b"b")])  # seq 2 carries first_incomplete 2
    answer = rec.raft.results([command(3, 1, b"a", first_incomplete=1)])
    ((index, term, status, value),) = answer.results
    assert (index, status) == (3, ERROR) and "stale request: already acknowledged" in value
    assert applied_commands() == [b"a", b"b"]


def test_noop_and_config_entries_advance_the_index_but_never_reach_the_machine(rec: Node) -> None:
    answer = rec.raft.results(
        [
            Entry(1, 1, b"", EntryKind.NOOP),
            command(2, 1, b"a"),
            Entry(3, 1, b"membership", EntryKind.CONFIG),
            command(4, 2, b"b"),
            Entry(5, 2, b"", EntryKind.NOOP),
        ]
    )
    assert answer.results == [(2, 1, OK, 1), (4, 1, OK, 2)] and answer.applied_index == 5
    assert RecordingSM.calls == [("apply", b"a"), ("apply", b"b")]


def test_a_raising_state_machine_gives_an_error_result_and_the_actor_lives(rec: Node) -> None:
    answer = rec.raft.results([command(1, 1, b"boom"), command(2, 2, b"ok", first_incomplete=1)])
    (_, _, status, message), second = answer.results
    assert status == ERROR and message.startswith("state machine apply() raised RuntimeError: boom at")
    assert "\n" not in message and "0x" not in message  # one line, the same on every node
    assert second == (2, 1, OK, 1)
    retry = rec.raft.results([command(3, 1, b"boom", first_incomplete=1)])
    assert retry.results[0][2:] == (ERROR, message)  # the error is the command's result: not re-applied
    assert applied_commands() == [b"boom", b"ok"]
    rec.raft.send(LocalQuery(1, b"count"))
    assert rec.raft.expect(LocalQueryResult) == LocalQueryResult(1, OK, 1)


def test_an_unpackable_result_is_an_error_on_every_node(rec: Node) -> None:
    # As a follower (no results wanted): the check still runs, and the session keeps the error.
    rec.raft.send(ApplyBatch([command(1, 1, b"set")], False))
    report = rec.raft.report_up_to(1)
    assert report == ApplyResults.of([], 1)
    answer = rec.raft.results([command(2, 1, b"set")])  # the retry, now as the leader
    ((_, _, status, message),) = answer.results
    assert status == ERROR and message.startswith("result is not msgpack-able")
    # As the leader, within a batch whose other results are fine.
    answer = rec.raft.results([command(3, 2, b"x"), command(4, 3, b"set"), command(5, 4, b"y")])
    assert [r[2] for r in answer.results] == [OK, ERROR, OK]
    assert applied_commands().count(b"set") == 2


def test_an_undecodable_payload_is_an_error_result(rec: Node) -> None:
    answer = rec.raft.results([Entry(1, 1, b"\xc1 not msgpack"), Entry(2, 1, b"\x92\x07\x01"), command(3, 1, b"a")])
    (_, _, s1, m1), (_, _, s2, m2), third = answer.results
    assert (s1, s2) == (ERROR, ERROR) and "undecodable entry payload" in m1 and "undecodable" in m2
    assert third == (3, 1, OK, 1)


def test_reads_through_the_log_see_the_state_at_their_index(rec: Node) -> None:
    answer = rec.raft.results(
        [
            command(1, 1, b"a"),
            Entry(2, 1, encode_read(b"count")),
            command(3, 2, b"b"),
            Entry(4, 1, encode_read(b"count")),
            Entry(5, 1, encode_read(b"boom")),
        ]
    )
    assert [r[2:] for r in answer.results] == [(OK, 1), (OK, 1), (OK, 2), (OK, 2), (ERROR, answer.results[4][3])]
    assert "KeyError" in answer.results[4][3]
    # The same read again is answered again: reads are not deduplicated.
    assert rec.raft.results([Entry(6, 1, encode_read(b"count"))]).results == [(6, 1, OK, 2)]


def test_local_queries(rec: Node) -> None:
    rec.raft.send(LocalQuery(1, b"count"))
    rec.raft.send(LocalQuery(2, b"boom"))
    rec.raft.send(LocalQuery(3, b"set"))
    assert rec.raft.expect(LocalQueryResult) == LocalQueryResult(1, OK, 0)
    failed, unpackable = rec.raft.expect(LocalQueryResult), rec.raft.expect(LocalQueryResult)
    assert (failed.request_id, failed.status) == (2, ERROR) and "KeyError" in failed.value
    assert (unpackable.request_id, unpackable.status) == (3, ERROR) and "msgpack" in unpackable.value


def test_followers_report_their_applied_index_without_results(rec: Node) -> None:
    for i in range(1, 51):
        rec.raft.send(ApplyBatch([command(i, i, b"x")], False))
    while True:  # reports are rate-limited, but the last index is always reported
        report = rec.raft.expect(ApplyResults)
        assert report.results == []
        if report.applied_index == 50:
            break
    assert len(applied_commands()) == 50


def test_unexpected_messages_are_counted(rec: Node) -> None:
    rec.raft.send(LogSync(1))
    rec.raft.send(LocalQuery(4, b"count"))
    assert rec.raft.expect(LocalQueryResult).request_id == 4
    assert rec.refs[0].proxy().envelope.get().drops.wrong_socket == 1  # the socket takes ApplyBatch and LocalQuery only
    assert rec.refs[0].proxy().dropped.get() == 1


def test_a_state_machine_that_cannot_be_built_refuses_to_start(tmp_path: Path) -> None:
    node = Node(tmp_path, "no_such_module_for_sandzmq:Nothing")
    try:
        ref = node.start()
        assert ref.actor_stopped.wait(DEADLINE_S)
        assert requested_exit(ref) == EXIT_REFUSED
    finally:
        node.close()


def test_apply_process_stops_on_sigterm(tmp_path: Path) -> None:
    config_path = write_config(tmp_path, "kv")
    config = load_config(config_path)
    raft = FakeRaft(NodeLayout.of(config, "n1"), Envelope(config.name))
    proc = subprocess.Popen(
        [sys.executable, "-m", "sandzmq.actors", "apply", "--config", str(config_path), "--node", "n1"],
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )
    try:
        assert raft.expect(ApplyState).pid == proc.pid
        assert raft.results([command(1, 1, encode_put("k", "v"))]).results[0][2] == OK
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=5)
        assert proc.returncode == 0, stderr
        assert "Traceback" not in stderr
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        raft.close()
