"""sandzmq.Client against fake nodes: real ZeroMQ sockets on 127.0.0.1, scripted answers.

A FakeNode is a ROUTER (transport.Inbox) on a free port, run by a thread,
that records every message it receives and answers it with whatever its
`answer` function returns. That is enough to pin down the client's side of
the protocol: batching, sessions and sequence numbers, retries, leader
following and the promises of its errors.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, wait
from pathlib import Path
from typing import Any

import pytest
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
from sandzmq.replicator.client import discover_cluster
from sandzmq.replicator.retry import RetryPolicy
from sandzmq.transport import Envelope, Inbox, Poller

from sandzmq import Client, ClusterUnavailable, NotLeaderError, ReplicationTimeout, SandzmqError

CLUSTER = "test"
#: How late past its timeout a call may end on a loaded machine (scheduling, not design).
SLACK = 0.3
OK, NOT_LEADER, LOST, ERROR, BUSY = (int(s) for s in ReplyStatus)

Answer = Callable[["FakeNode", Any], list[Any] | None]


def wait_until(predicate: Callable[[], Any], timeout: float = 5.0, what: str = "condition") -> Any:
    """Poll `predicate` until it is truthy; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def unused_address() -> str:
    """A tcp address nothing listens on (connections are refused)."""
    return f"tcp://127.0.0.1:{free_port()}"


def commands(msg: Any) -> list[tuple[int, CommandPayload]]:
    """(request id, decoded payload) for each request of a ClientSubmit."""
    return [(rid, decode_payload(data)) for rid, data in msg.requests]  # type: ignore[misc]


def reply_all(status: int, value: Any = None) -> Answer:
    """Answer every request of every ClientSubmit/ClientQuery with `status`."""

    def answer(node: FakeNode, msg: Any) -> list[Any]:
        if isinstance(msg, ClientSubmit):
            return [ClientReply.of([(rid, status, value) for rid, _ in msg.requests])]
        if isinstance(msg, ClientQuery):
            return [ClientReply.of([(msg.request_id, status, value)])]
        if isinstance(msg, StatusRequest):
            return [StatusReply(msg.request_id, {"id": node.node_id, "role": "leader"})]
        return []

    return answer


def echo_ok(node: FakeNode, msg: Any) -> list[Any]:
    """OK with the command itself as the result; queries get [consistency, query]."""
    if isinstance(msg, ClientSubmit):
        return [ClientReply.of([(rid, OK, p.command) for rid, p in commands(msg)])]
    if isinstance(msg, ClientQuery):
        return [ClientReply.of([(msg.request_id, OK, [msg.consistency, msg.query, node.node_id])])]
    if isinstance(msg, StatusRequest):
        return [StatusReply(msg.request_id, {"id": node.node_id, "role": "leader", "term": 3})]
    return []


def silent(node: FakeNode, msg: Any) -> list[Any]:
    return []


class FakeNode:
    """A client port that records what arrives and answers as scripted."""

    def __init__(self, answer: Answer = echo_ok, node_id: str = "n1", cluster: str = CLUSTER) -> None:
        self.node_id = node_id
        self.answer = answer
        self.inbox = Inbox("tcp://127.0.0.1:0", Envelope(cluster))
        self.address = self.inbox.address
        self.received: list[Any] = []
        self.raw: list[bytes] = []  # frames to send as they are (garbage tests)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"fake-{node_id}", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        poller = Poller([self.inbox])
        try:
            while not self._stop.is_set():
                poller.wait(10)
                for identity, msg in self.inbox.drain():
                    with self._lock:
                        self.received.append(msg)
                        raw, self.raw = self.raw, []
                    for frame in raw:
                        self.inbox.reply_frame(identity, frame)
                    for reply in self.answer(self, msg) or []:
                        self.inbox.reply(identity, reply)
        finally:
            self.inbox.close()

    def messages(self, kind: type) -> list[Any]:
        with self._lock:
            return [m for m in self.received if isinstance(m, kind)]

    def submitted(self) -> list[tuple[int, CommandPayload]]:
        """Every (request id, payload) received, in order."""
        return [pair for msg in self.messages(ClientSubmit) for pair in commands(msg)]

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


@pytest.fixture
def nodes() -> Iterator[Callable[..., FakeNode]]:
    """Factory of FakeNodes, all stopped at the end of the test."""
    made: list[FakeNode] = []

    def make(answer: Answer = echo_ok, node_id: str = "n1") -> FakeNode:
        node = FakeNode(answer, node_id)
        made.append(node)
        return node

    yield make
    for node in made:
        node.stop()


@pytest.fixture
def clients() -> Iterator[Callable[..., Client]]:
    """Factory of Clients (connect mode by default), all closed at the end of the test."""
    made: list[Client] = []

    def make(
        *addresses: str, follow: bool = False, book: dict[str, str] | None = None, resend: float | None = None
    ) -> Client:
        client = Client(
            list(addresses), cluster=CLUSTER, follow_leader=follow, node_addresses=book, resend_interval=resend
        )
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


def write_config(tmp_path: Path, fakes: list[FakeNode]) -> Path:
    lines = [f'[cluster]\nname = "{CLUSTER}"\nstate_machine = "kv"\ndata_dir = "data"\n']
    for node in fakes:
        lines.append(f'[[nodes]]\nid = "{node.node_id}"\nraft = "{unused_address()}"\nclient = "{node.address}"\n')
    path = tmp_path / "cluster.toml"
    path.write_text("\n".join(lines))
    return path


# --- the basics -------------------------------------------------------------------


def test_replicate_returns_the_result_and_encodes_a_session(nodes, clients) -> None:
    node = nodes()
    client = clients(node.address)
    assert client.replicate(b"one") == b"one"
    assert client.replicate(b"two") == b"two"
    (rid1, first), (rid2, second) = node.submitted()
    assert rid1 != rid2
    assert first.client_id == second.client_id == client.client_id and len(client.client_id) == 16
    assert (first.seq, first.first_incomplete, first.command) == (1, 1, b"one")
    assert (second.seq, second.first_incomplete, second.command) == (2, 2, b"two")


def test_two_clients_are_two_sessions(nodes, clients) -> None:
    node = nodes()
    a, b = clients(node.address), clients(node.address)
    a.replicate(b"x")
    b.replicate(b"y")
    (_, pa), (_, pb) = node.submitted()
    assert pa.client_id != pb.client_id
    assert pa.seq == pb.seq == 1


def test_an_error_reply_raises_sandzmq_error_without_retrying(nodes, clients) -> None:
    node = nodes(reply_all(ERROR, "state machine raised: boom"))
    client = clients(node.address)
    with pytest.raises(SandzmqError, match="boom") as caught:
        client.replicate(b"x")
    assert type(caught.value) is SandzmqError
    assert len(node.submitted()) == 1


def test_bad_arguments_are_refused_in_the_caller(nodes, clients) -> None:
    client = clients(nodes().address)
    with pytest.raises(TypeError):
        client.replicate("text")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        client.replicate(b"x", timeout=0)
    with pytest.raises(ValueError):
        client.query(b"q", consistency="eventual")
    with pytest.raises(ValueError, match="unknown node"):
        client.query(b"q", consistency="local", node="n9")


def test_connect_without_a_cluster_name_asks_the_node_and_fails_clearly_when_none_answers() -> None:
    # Port 1 has no listener: the discovery handshake gets no answer.
    with pytest.raises(ClusterUnavailable, match="no node answered"):
        discover_cluster("tcp://127.0.0.1:1", timeout=0.5)


# --- batching and first_incomplete -------------------------------------------------


def test_calls_in_flight_travel_together_in_one_submit(nodes, clients) -> None:
    node = nodes()
    client = clients(node.address)
    # Hold the I/O thread in a done-callback (they run on it) while 300 calls queue up.
    gate, entered = threading.Event(), threading.Event()
    first = client.replicate_async(b"first")
    first.add_done_callback(lambda f: (entered.set(), gate.wait(5)))
    entered.wait(5)
    futures = [client.replicate_async(b"c%d" % i) for i in range(300)]
    gate.set()
    assert [f.result(5) for f in futures] == [b"c%d" % i for i in range(300)]
    submits = node.messages(ClientSubmit)
    assert len(submits) == 2  # "first", then all 300 at once
    assert [p.command for _, p in commands(submits[1])] == [b"c%d" % i for i in range(300)]
    assert [p.seq for _, p in commands(submits[1])] == list(range(2, 302))


def test_many_async_calls_use_few_messages(nodes, clients) -> None:
    node = nodes()
    client = clients(node.address)
    futures = [client.replicate_async(b"%d" % i) for i in range(2000)]
    assert [f.result(10) for f in futures] == [b"%d" % i for i in range(2000)]
    assert len(node.messages(ClientSubmit)) < 1000
    assert client.stats["requests_sent"] == 2000


def test_first_incomplete_is_the_lowest_unanswered_seq(nodes, clients) -> None:
    def answer(node: FakeNode, msg: Any) -> list[Any]:
        if not isinstance(msg, ClientSubmit):
            return []
        # seq 1 is never answered; the others are.
        return [ClientReply.of([(rid, OK, p.seq) for rid, p in commands(msg) if p.seq != 1])]

    node = nodes(answer)
    client = clients(node.address, resend=10.0)
    stuck = client.replicate_async(b"stuck", timeout=5.0)
    wait_until(lambda: node.submitted(), what="the first submit")
    assert client.replicate(b"b") == 2
    assert client.replicate(b"c") == 3
    payloads = [p for _, p in node.submitted()]
    assert [(p.seq, p.first_incomplete) for p in payloads] == [(1, 1), (2, 1), (3, 1)]
    client.close()
    with pytest.raises(ReplicationTimeout):
        stuck.result(1)


def test_first_incomplete_moves_past_answered_and_given_up_commands(nodes, clients) -> None:
    def answer(node: FakeNode, msg: Any) -> list[Any]:
        if not isinstance(msg, ClientSubmit):
            return []
        return [ClientReply.of([(rid, OK, p.seq) for rid, p in commands(msg) if p.command != b"never"])]

    node = nodes(answer)
    client = clients(node.address, resend=10.0)
    with pytest.raises(ReplicationTimeout):
        client.replicate(b"never", timeout=0.2)
    assert client.replicate(b"next") == 2
    assert [(p.seq, p.first_incomplete) for _, p in node.submitted()] == [(1, 1), (2, 2)]


# --- retries keep the seq ----------------------------------------------------------


def scripted(*statuses: int | None, value: Any = None) -> Answer:
    """Answer the k-th command attempt with statuses[k] (None: silence); OK after the script."""
    attempts: list[int] = []

    def answer(node: FakeNode, msg: Any) -> list[Any]:
        if not isinstance(msg, ClientSubmit):
            return []
        out = []
        for rid, payload in commands(msg):
            k = len(attempts)
            attempts.append(rid)
            status = statuses[k] if k < len(statuses) else OK
            if status is not None:
                out.append((rid, status, payload.command if status == OK else value))
        return [ClientReply.of(out)] if out else []

    return answer


@pytest.mark.parametrize(
    "script",
    [(None,), (LOST,), (BUSY,), (BUSY, BUSY, BUSY), (None, LOST, BUSY)],
    ids=["silence", "lost", "busy", "busy-thrice", "silence-lost-busy"],
)
def test_a_retry_resends_the_same_seq(nodes, clients, script: tuple[int | None, ...]) -> None:
    node = nodes(scripted(*script))
    client = clients(node.address, resend=0.1)
    assert client.replicate(b"cmd", timeout=5) == b"cmd"
    sent = node.submitted()
    assert len(sent) == len(script) + 1
    assert {p.seq for _, p in sent} == {1}
    assert {p.client_id for _, p in sent} == {client.client_id}
    assert len({rid for rid, _ in sent}) == len(sent)  # each attempt has its own request id


def test_busy_backs_off_before_retrying(nodes, clients) -> None:
    node = nodes(scripted(BUSY, BUSY, BUSY, BUSY))
    client = clients(node.address)
    start = time.monotonic()
    assert client.replicate(b"x") == b"x"
    # 10 + 20 + 40 + 80 ms, each +-25%: the client did not hammer the node.
    assert time.monotonic() - start >= 0.1


# --- connect mode and NotLeaderError ----------------------------------------------


def test_connect_mode_raises_not_leader_with_the_hint(nodes, clients) -> None:
    node = nodes(reply_all(NOT_LEADER, ["n2", "tcp://10.0.0.2:7102"]))
    client = clients(node.address)
    with pytest.raises(NotLeaderError) as caught:
        client.replicate(b"x")
    assert (caught.value.leader_id, caught.value.leader_address) == ("n2", "tcp://10.0.0.2:7102")
    assert len(node.submitted()) == 1  # not retried elsewhere


def test_connect_mode_not_leader_with_the_leader_unknown(nodes, clients) -> None:
    node = nodes(reply_all(NOT_LEADER, [None, None]))
    with pytest.raises(NotLeaderError) as caught:
        clients(node.address).replicate(b"x")
    assert caught.value.leader_id is None and caught.value.leader_address is None


def test_connect_mode_not_leader_after_lost_is_an_unknown_outcome(nodes, clients) -> None:
    # LOST: the command was proposed, so "not appended anywhere" would be false.
    node = nodes(scripted(LOST, NOT_LEADER, value=["n2", "tcp://10.0.0.2:7102"]))
    with pytest.raises(ReplicationTimeout, match="outcome is unknown"):
        clients(node.address).replicate(b"x")


def test_connect_mode_queries_and_status(nodes, clients) -> None:
    node = nodes(node_id="n7")
    client = clients(node.address)
    assert client.query(b"q") == ["linearizable", b"q", "n7"]
    assert client.query(b"q", consistency="lease") == ["lease", b"q", "n7"]
    assert client.query(b"q", consistency="local") == ["local", b"q", "n7"]
    assert client.status(timeout=1.0) == {"id": "n7", "role": "leader", "term": 3}
    assert [m.consistency for m in node.messages(ClientQuery)] == ["linearizable", "lease", "local"]


def test_status_of_an_unreachable_node_is_cluster_unavailable(clients) -> None:
    client = clients(unused_address())
    start = time.monotonic()
    with pytest.raises(ClusterUnavailable):
        client.status(timeout=0.3)
    assert time.monotonic() - start < 0.3 + SLACK


# --- from_config: finding and following the leader -------------------------------


def test_from_config_follows_the_leader_hint(nodes, tmp_path: Path) -> None:
    n2 = nodes(echo_ok, "n2")
    n1 = nodes(reply_all(NOT_LEADER, ["n2", n2.address]), "n1")
    with Client.from_config(write_config(tmp_path, [n1, n2])) as client:
        for i in range(5):
            assert client.replicate(b"%d" % i) == b"%d" % i
        assert client.leader_address == n2.address
        assert client.query(b"q") == ["linearizable", b"q", "n2"]
    assert len(n1.submitted()) <= 1  # asked at most once, then the client went to n2 directly
    assert len(n2.submitted()) == 5
    assert {p.seq for _, p in n2.submitted()} == {1, 2, 3, 4, 5}


def test_from_config_hint_with_an_id_only_uses_the_address_book(nodes, clients) -> None:
    n2 = nodes(echo_ok, "n2")
    n1 = nodes(reply_all(NOT_LEADER, ["n2", None]), "n1")
    client = clients(n1.address, n2.address, follow=True, book={"n1": n1.address, "n2": n2.address})
    for _ in range(3):
        assert client.replicate(b"x") == b"x"
    assert client.leader_address == n2.address


def test_leader_change_keeps_the_seq_across_nodes(nodes, clients) -> None:
    # n1 proposes, loses leadership (LOST), then points at n2; n2 commits it.
    n2 = nodes(echo_ok, "n2")
    n1 = nodes(scripted(LOST, NOT_LEADER, NOT_LEADER, NOT_LEADER, value=["n2", n2.address]), "n1")
    client = clients(n1.address, n2.address, follow=True)
    client._session.leader.turn = 0  # start at n1
    assert client.replicate(b"move") == b"move"
    seqs = {p.seq for _, p in n1.submitted() + n2.submitted()}
    assert seqs == {1}
    assert len(n2.submitted()) == 1


def test_connect_with_follow_leader_follows_hints_but_reads_locally_at_home(nodes) -> None:
    leader = nodes(echo_ok, "n2")
    home = nodes(
        lambda node, msg: (
            reply_all(NOT_LEADER, ["n2", leader.address])(node, msg)
            if not (isinstance(msg, ClientQuery) and msg.consistency == "local")
            else echo_ok(node, msg)
        ),
        "n1",
    )
    with Client.connect(home.address, follow_leader=True, cluster=CLUSTER) as client:
        assert client.replicate(b"x") == b"x"
        assert client.leader_address == leader.address
        assert client.query(b"q", consistency="local") == ["local", b"q", "n1"]
        assert client.query(b"q") == ["linearizable", b"q", "n2"]
        assert client.status()["id"] == "n1"


def test_busy_from_a_node_not_known_to_lead_moves_on(nodes, clients) -> None:
    starting = nodes(reply_all(BUSY, "node is starting"), "n1")
    live = nodes(echo_ok, "n2")
    client = clients(starting.address, live.address, follow=True, book={"n1": starting.address})
    # Connected first: links use ZMQ_IMMEDIATE, so a send before the TCP
    # handshake is refused and the command would go to n2 without asking n1.
    assert client.status(node="n1", timeout=5)["id"] == "n1"
    client._session.leader.turn = 0
    assert client.replicate(b"x", timeout=2) == b"x"
    assert len(starting.submitted()) == 1


def test_no_hint_rotates_through_the_nodes(nodes, clients) -> None:
    n1 = nodes(reply_all(NOT_LEADER, [None, None]), "n1")
    n2 = nodes(reply_all(NOT_LEADER, [None, None]), "n2")
    n3 = nodes(echo_ok, "n3")
    client = clients(n1.address, n2.address, n3.address, follow=True)
    assert client.replicate(b"x") == b"x"
    assert client.leader_address == n3.address  # found by rotation: nobody named it, it answered
    assert len(n3.submitted()) == 1


def test_a_dead_node_is_skipped(nodes, clients) -> None:
    live = nodes(echo_ok, "n2")
    client = clients(unused_address(), live.address, follow=True)
    client._session.leader.turn = 0
    assert client.replicate(b"x", timeout=3) == b"x"


def test_a_silent_leader_is_left_for_the_next_node(nodes, clients) -> None:
    stuck = nodes(silent, "n1")
    live = nodes(echo_ok, "n2")
    client = clients(stuck.address, live.address, follow=True, resend=0.1)
    client._session.leader.turn = 0
    assert client.replicate(b"x", timeout=5) == b"x"
    assert {p.seq for _, p in stuck.submitted() + live.submitted()} == {1}


# --- the promises of the errors ----------------------------------------------------


def test_silence_is_a_replication_timeout_within_the_timeout(nodes, clients) -> None:
    node = nodes(silent)
    client = clients(node.address, resend=0.1)
    start = time.monotonic()
    with pytest.raises(ReplicationTimeout, match="may still commit"):
        client.replicate(b"x", timeout=0.5)
    elapsed = time.monotonic() - start
    assert 0.45 <= elapsed < 0.5 + SLACK
    assert len(node.submitted()) >= 2  # resent meanwhile


def test_lost_then_silence_is_a_replication_timeout(nodes, clients) -> None:
    node = nodes(scripted(LOST, *([None] * 50)))
    with pytest.raises(ReplicationTimeout):
        clients(node.address, resend=0.1).replicate(b"x", timeout=0.5)


def test_no_reachable_node_is_cluster_unavailable(clients) -> None:
    client = clients(unused_address(), unused_address(), follow=True)
    start = time.monotonic()
    with pytest.raises(ClusterUnavailable, match="not reachable"):
        client.replicate(b"x", timeout=0.5)
    assert time.monotonic() - start < 0.5 + SLACK


@pytest.mark.parametrize("status,value", [(NOT_LEADER, [None, None]), (BUSY, None)], ids=["not-leader", "busy"])
def test_refused_everywhere_is_cluster_unavailable(nodes, clients, status: int, value: Any) -> None:
    a, b = nodes(reply_all(status, value), "n1"), nodes(reply_all(status, value), "n2")
    client = clients(a.address, b.address, follow=True)
    with pytest.raises(ClusterUnavailable):
        client.replicate(b"x", timeout=0.5)
    assert a.submitted() or b.submitted()


def test_a_refusal_after_an_unanswered_attempt_is_still_a_timeout(nodes, clients) -> None:
    # The first attempt went unanswered: it may have been proposed, whatever came later.
    node = nodes(scripted(None, *([BUSY] * 100)))
    with pytest.raises(ReplicationTimeout):
        clients(node.address, resend=0.1).replicate(b"x", timeout=0.6)


def test_futures_resolve_within_their_timeout(nodes, clients) -> None:
    node = nodes(silent)
    client = clients(node.address, unused_address(), follow=True)
    start = time.monotonic()
    futures = [client.replicate_async(b"%d" % i, timeout=0.3 + (i % 3) * 0.1) for i in range(60)]
    for i, future in enumerate(futures):
        timeout = 0.3 + (i % 3) * 0.1
        with pytest.raises((ReplicationTimeout, ClusterUnavailable)):
            future.result(timeout=max(0.0, start + timeout - time.monotonic()) + SLACK)
    assert time.monotonic() - start < 0.5 + SLACK


def test_timeout_none_waits_for_the_answer(nodes, clients) -> None:
    node = nodes(scripted(None, None))
    assert clients(node.address, resend=0.05).replicate(b"x", timeout=None) == b"x"


# --- robustness and closing ---------------------------------------------------------


def test_bad_replies_are_counted_and_ignored(nodes, clients) -> None:
    def answer(node: FakeNode, msg: Any) -> list[Any]:
        if not isinstance(msg, ClientSubmit):
            return []
        ((rid, payload),) = commands(msg)
        return [
            ClientReply.of([(rid + 1000, OK, "unknown request id")]),
            ClientReply.of([(rid, 99, "unknown status")]),
            StatusReply(rid, {"not": "an answer to a command"}),
            ClientReply.of([(rid, OK, payload.command)]),
        ]

    node = nodes(answer)
    node.raw = [b"\xc1 not msgpack", b"\x94\x01\xa4test\xa1?\x90"]  # garbage, unknown tag
    client = clients(node.address)
    assert client.replicate(b"x") == b"x"
    assert client.stats["stale_replies"] >= 1
    assert client.stats["bad_replies"] >= 2
    assert client.replicate(b"y") == b"y"  # the I/O thread is alive


def test_replies_from_another_cluster_are_ignored(nodes, clients) -> None:
    other = FakeNode(echo_ok, "n1", cluster="other")
    try:
        client = clients(other.address)
        with pytest.raises(ReplicationTimeout):  # delivered, but the node drops it: outcome unknown
            client.replicate(b"x", timeout=0.3)
        assert not other.received
    finally:
        other.stop()


def test_close_fails_pending_calls_honestly(nodes, clients) -> None:
    node = nodes(silent)
    client = clients(node.address)
    sent = client.replicate_async(b"sent", timeout=30)
    wait_until(lambda: node.submitted(), what="the submit")
    unreachable = clients(unused_address())
    never_sent = unreachable.replicate_async(b"never", timeout=30)
    time.sleep(0.05)  # let the unreachable client try (and fail) to send
    client.close()
    unreachable.close()
    with pytest.raises(ReplicationTimeout):
        sent.result(1)
    with pytest.raises(ClusterUnavailable):
        never_sent.result(1)
    assert not client._thread.is_alive() and not unreachable._thread.is_alive()
    with pytest.raises(ClusterUnavailable):
        client.replicate(b"after")
    client.close()  # idempotent


def test_context_manager_closes(nodes) -> None:
    node = nodes()
    with Client.connect(node.address, cluster=CLUSTER) as client:
        assert client.replicate(b"x") == b"x"
    assert client.closed and not client._thread.is_alive()


def test_hand_offs_never_wait_for_a_timer(nodes, clients) -> None:
    # Every call must wake the I/O thread by itself: with resends 60 s away and
    # no deadline, a lost wake-up would show as a call that never returns.
    node = nodes()
    client = clients(node.address, resend=60.0)
    errors: list[BaseException] = []

    def caller(k: int) -> None:
        try:
            for i in range(300):
                assert client.replicate(b"%d-%d" % (k, i), timeout=None) == b"%d-%d" % (k, i)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=caller, args=(k,), daemon=True) for k in range(3)]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert not any(t.is_alive() for t in threads), "a call waited for a wake-up that never came"
    assert not errors
    assert time.monotonic() - start < 20
    closer = threading.Thread(target=client.close, daemon=True)
    closer.start()
    closer.join(2)  # an idle client closes at once
    assert not closer.is_alive()


def test_concurrent_callers(nodes, clients) -> None:
    node = nodes()
    client = clients(node.address)
    results: list[Future[Any]] = []
    lock = threading.Lock()

    def caller(k: int) -> None:
        for i in range(200):
            f = client.replicate_async(b"%d-%d" % (k, i))
            with lock:
                results.append(f)

    threads = [threading.Thread(target=caller, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    done, _ = wait(results, timeout=10)
    assert len(done) == 800 and all(f.exception() is None for f in done)
    seqs = sorted(p.seq for _, p in node.submitted())
    assert seqs == list(range(1, 801))


def test_a_refused_send_due_again_at_once_is_retried_not_lost(clients) -> None:
    """Regression, through real sockets (the rule itself is tested in
    test_client_session.py): a send refused for want of a connection whose
    retry is already due (a flush slower than the retry pause, under CPU
    load while nodes start) must be sent again, not left in no list and
    under no timer until the caller's 10 s guard ("the client's I/O thread
    is stuck")."""
    client = clients(unused_address())
    client._session.policy = RetryPolicy(unsent_retry=-1.0)  # every retry is already due: the slow flush, always
    started = time.monotonic()
    with pytest.raises(ClusterUnavailable):
        client.status(timeout=0.3)
    assert time.monotonic() - started < 2.0
