"""transport/sockets.py over real sockets: tcp on 127.0.0.1 and ipc in tmp_path.

No sleeps as synchronisation: every wait is a poll with a deadline. Every
socket is closed by the `net` fixture, and the process context is destroyed
after each test (and checked to have no socket left open).
"""

from __future__ import annotations

import errno
import socket as pysocket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest
from sandzmq.raft.messages import (
    AppendEntries,
    AppendEntriesResponse,
    Entry,
    EntryKind,
    Heartbeat,
    HeartbeatResponse,
    RequestVote,
    RequestVoteResponse,
)
from sandzmq.transport import (
    PROTOCOL_VERSION,
    Envelope,
    Inbox,
    PeerLink,
    Peers,
    Poller,
    context,
    ipc_endpoint,
    terminate_context,
)

pytestmark = [pytest.mark.timeout(60), pytest.mark.integration]

DEADLINE_S = 10.0


class Net:
    """Makes sockets and closes them all at teardown."""

    def __init__(self, tmp_path: Path, transport: str) -> None:
        self.tmp_path = tmp_path
        self.transport = transport
        self._open: list[Any] = []
        self._n = 0

    def endpoint(self) -> str:
        self._n += 1
        if self.transport == "tcp":
            return "tcp://127.0.0.1:0"
        return ipc_endpoint(self.tmp_path, f"inbox{self._n}")

    def inbox(self, env: Envelope, **kw: Any) -> Inbox:
        return self._keep(Inbox(self.endpoint(), env, **kw))

    def link(self, address: str, env: Envelope, identity: str | None = None, **kw: Any) -> PeerLink:
        return self._keep(PeerLink(address, env, identity, **kw))

    def peers(self, env: Envelope, identity: str, addresses: dict[str, str], **kw: Any) -> Peers:
        return self._keep(Peers(env, identity, addresses, **kw))

    def _keep(self, obj: Any) -> Any:
        self._open.append(obj)
        return obj

    def close(self) -> None:
        for obj in reversed(self._open):
            obj.close()


@pytest.fixture(autouse=True)
def fresh_context() -> Iterator[None]:
    """Each test gets a new process context; at the end every socket must
    have been closed by its owner, and the context is destroyed."""
    terminate_context()
    yield
    ctx = context()
    leaked = [s for s in list(getattr(ctx, "_sockets", ())) if not s.closed]
    terminate_context()
    assert not leaked, f"sockets left open: {leaked}"


@pytest.fixture(params=["tcp", "ipc"])
def net(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Net]:
    n = Net(tmp_path, request.param)
    try:
        yield n
    finally:
        n.close()


def receive(inbox: Inbox, n: int, deadline_s: float = DEADLINE_S) -> list[tuple[bytes, Any]]:
    """At least n messages from inbox, waiting with a deadline."""
    poller = Poller([inbox])
    out: list[tuple[bytes, Any]] = []
    end = time.monotonic() + deadline_s
    while len(out) < n:
        left = end - time.monotonic()
        if left <= 0:
            raise AssertionError(f"got {len(out)} of {n} messages before the deadline: {out[-3:]}")
        if poller.wait(left * 1000):
            out.extend(inbox.drain())
    return out


def until(cond: Callable[[], bool], step: Callable[[], object] = lambda: None, deadline_s: float = DEADLINE_S) -> None:
    """Poll cond() (running step() between checks) until true or the deadline."""
    end = time.monotonic() + deadline_s
    while not cond():
        if time.monotonic() > end:
            raise AssertionError("condition not met before the deadline")
        step()


def connected(peers: Peers, node_id: str, inbox: Inbox) -> None:
    """Wait until `peers` reaches `inbox`. IMMEDIATE links drop whatever is
    sent before the connection is up (Raft retries), so retry a heartbeat."""
    poller = Poller([inbox])

    def step() -> None:
        peers.send(node_id, Heartbeat("probe", node_id, 0, 0))
        poller.wait(10)

    until(lambda: bool(inbox.drain()), step)


def raft_messages(src: str, dst: str) -> list[Any]:
    entries = [Entry(11 + i, 3, bytes([i]) * 128) for i in range(64)]
    entries[0] = Entry(11, 2, b"", EntryKind.NOOP)
    return [
        RequestVote(src, dst, 3, 10, 2, pre_vote=True),
        RequestVoteResponse(src, dst, 3, True),
        AppendEntries(src, dst, 3, 10, 2, entries, commit=9),
        AppendEntries(src, dst, 3, 10, 2, [], commit=10),
        AppendEntriesResponse(src, dst, 3, False, 10, hint_index=7, hint_term=2),
        Heartbeat(src, dst, 3, 9, context=42),
        HeartbeatResponse(src, dst, 3, context=42),
    ]


def good_after(inbox: Inbox, link: PeerLink, marker: int) -> None:
    """The inbox still delivers a good message after whatever came before."""
    hb = Heartbeat("n2", "n1", 1, marker)
    link.send(hb)
    got = [m for _, m in receive(inbox, 1)]
    assert got == [hb]


# -- delivery ------------------------------------------------------------------


def test_raft_messages_round_trip_between_two_nodes(net: Net) -> None:
    env = Envelope("dev")
    inbox1, inbox2 = net.inbox(env), net.inbox(env)
    peers1 = net.peers(env, "n1", {"n2": inbox2.address})
    peers2 = net.peers(env, "n2", {"n1": inbox1.address})
    connected(peers1, "n2", inbox2)
    connected(peers2, "n1", inbox1)

    to2, to1 = raft_messages("n1", "n2"), raft_messages("n2", "n1")
    for m in to2:
        assert peers1.send("n2", m)
    for m in to1:
        assert peers2.send("n1", m)
    got2 = receive(inbox2, len(to2))
    got1 = receive(inbox1, len(to1))
    assert [m for _, m in got2] == to2  # in order, intact
    assert [m for _, m in got1] == to1
    assert {ident for ident, _ in got2} == {b"n1"}
    assert {ident for ident, _ in got1} == {b"n2"}
    assert env.drops.total == 0


def test_drain_returns_everything_waiting(net: Net) -> None:
    env = Envelope("dev")
    inbox = net.inbox(env)
    link = net.link(inbox.address, env, "n2", sndhwm=10_000)
    n = 2000
    for i in range(n):
        assert link.send(Heartbeat("n2", "n1", 1, i))
    poller = Poller([inbox])
    got: list[Any] = []
    calls = 0
    end = time.monotonic() + DEADLINE_S
    while len(got) < n and time.monotonic() < end:
        if poller.wait(100):
            calls += 1
            got.extend(m for _, m in inbox.drain())
    assert [m.commit for m in got] == list(range(n))
    assert calls < n / 10, f"{calls} drains for {n} messages: not batching"
    assert inbox.drain() == []

    # max_messages caps one drain; the rest stays for the next.
    for i in range(50):
        link.send(Heartbeat("n2", "n1", 1, i))
    got = []
    while len(got) < 50:
        assert poller.wait(DEADLINE_S * 1000)
        batch = inbox.drain(max_messages=7)
        assert 1 <= len(batch) <= 7
        got.extend(m.commit for _, m in batch)
    assert got == list(range(50))


def test_client_request_and_reply_through_the_router(net: Net) -> None:
    env = Envelope("dev")
    inbox = net.inbox(env)
    client = net.link(inbox.address, env)  # no identity: libzmq assigns one
    client.send(Heartbeat("c", "n1", 0, 1))
    [(ident, msg)] = receive(inbox, 1)
    assert inbox.reply(ident, HeartbeatResponse("n1", "c", 0, 1))
    poller = Poller([client])
    assert poller.wait(DEADLINE_S * 1000) == [client]
    assert client.drain() == [HeartbeatResponse("n1", "c", 0, 1)]


def test_restarted_peer_takes_over_its_identity_where_handover_is_on(net: Net) -> None:
    """ROUTER_HANDOVER (a node's private ipc sockets): a process that comes
    back under the same identity while its predecessor's connection is
    still up is not refused."""
    env = Envelope("dev")
    inbox = net.inbox(env, handover=True)
    old = net.link(inbox.address, env, "n2")
    old.send(Heartbeat("n2", "n1", 1, 1))
    receive(inbox, 1)
    new = net.link(inbox.address, env, "n2")
    new.send(Heartbeat("n2", "n1", 2, 2))
    [(ident, msg)] = receive(inbox, 1)
    assert ident == b"n2" and msg.term == 2
    assert inbox.reply(b"n2", HeartbeatResponse("n1", "n2", 2))
    assert Poller([new]).wait(DEADLINE_S * 1000) == [new]
    assert new.drain() == [HeartbeatResponse("n1", "n2", 2)]


def test_without_handover_a_second_connection_cannot_take_an_identity_over(net: Net) -> None:
    """A public port: a sender claiming a connected peer's identity must not
    cut that peer's link (issue 8: the displaced connection's messages were
    lost, and libzmq later aborted the process)."""
    env = Envelope("dev")
    inbox = net.inbox(env)
    real = net.link(inbox.address, env, "n2")
    real.send(Heartbeat("n2", "n1", 1, 1))
    receive(inbox, 1)
    thief = net.link(inbox.address, env, "n2")
    thief.send(Heartbeat("n2", "n1", 9, 9))
    real.send(Heartbeat("n2", "n1", 2, 2))
    [(ident, msg)] = receive(inbox, 1)
    assert ident == b"n2" and msg.term == 2  # the real peer's link still delivers
    assert Poller([inbox]).wait(300) == []  # and the thief's message never arrives


# -- refusals: dropped, counted, and the inbox keeps working ----------------------


def test_garbage_bytes_are_dropped(net: Net) -> None:
    env = Envelope("dev")
    inbox = net.inbox(env)
    link = net.link(inbox.address, env, "n2")
    for junk in (b"", b"\xc1", b"\x93\x01", b"not msgpack at all", msgpack.packb({"a": 1})):
        assert link.send_frame(junk)
    good_after(inbox, link, 1)
    assert env.drops.malformed == 5 and env.drops.total == 5


def test_multi_frame_message_is_dropped(net: Net) -> None:
    env = Envelope("dev")
    inbox = net.inbox(env)
    link = net.link(inbox.address, env, "n2")
    good = env.encode(Heartbeat("n2", "n1", 1, 0))
    link.socket.send_multipart([good, good])
    link.socket.send_multipart([b"", good])  # a REQ-style empty delimiter
    good_after(inbox, link, 1)
    assert env.drops.malformed == 2 and env.drops.total == 2


def test_frame_beyond_the_envelope_limit_is_dropped(net: Net) -> None:
    # The socket lets a bigger frame through, so Python sees and counts it.
    env = Envelope("dev", max_message_bytes=1000)
    inbox = net.inbox(env, max_frame_bytes=1_000_000)
    link = net.link(inbox.address, Envelope("dev"), "n2")
    assert link.send(AppendEntries("n2", "n1", 1, 0, 0, [Entry(1, 1, b"x" * 5000)]))
    good_after(inbox, link, 1)
    assert env.drops.oversized == 1 and env.drops.total == 1


def test_frame_beyond_maxmsgsize_never_reaches_python(net: Net) -> None:
    """libzmq discards it and closes that connection: seen as a disconnect.
    The sender reconnects on its own, and the inbox keeps serving."""
    env = Envelope("dev", max_message_bytes=1000)
    inbox = net.inbox(env)
    other = net.link(inbox.address, env, "n3")
    link = net.link(inbox.address, Envelope("dev"), "n2")
    link.send(Heartbeat("n2", "n1", 1, 0))
    receive(inbox, 1)
    assert link.send_frame(b"\x00" * 100_000)
    until(lambda: inbox.drops.disconnects >= 1, lambda: Poller([inbox]).wait(10) and inbox.drain())
    assert env.drops.total == 0  # nothing reached the decoder
    good_after(inbox, other, 2)  # other senders are unaffected
    good_after(inbox, link, 3)  # and the offender's link reconnected


def test_another_clusters_message_is_dropped(net: Net) -> None:
    env = Envelope("dev")
    inbox = net.inbox(env)
    stranger = net.link(inbox.address, Envelope("prod"), "x1")
    link = net.link(inbox.address, env, "n2")
    assert stranger.send(Heartbeat("x1", "n1", 1, 0))
    until(lambda: env.drops.cluster == 1, lambda: Poller([inbox]).wait(10) and inbox.drain())
    good_after(inbox, link, 1)
    assert env.drops.total == 1


def test_wrong_version_and_unknown_type_are_dropped(net: Net) -> None:
    env = Envelope("dev")
    inbox = net.inbox(env)
    link = net.link(inbox.address, env, "n2")
    link.send_frame(msgpack.packb([PROTOCOL_VERSION + 1, "dev", "p.beat", ["n2", "n1", 1, 0, 0]]))
    link.send_frame(msgpack.packb([PROTOCOL_VERSION, "dev", 77, []]))
    link.send_frame(msgpack.packb([PROTOCOL_VERSION, "dev", "client.nope", []]))
    good_after(inbox, link, 1)
    assert env.drops.version == 1 and env.drops.unknown_type == 2 and env.drops.total == 3


def test_non_zmtp_bytes_on_the_port_are_counted(tmp_path: Path) -> None:
    """Bytes that start like a ZMTP greeting but are not one fail the
    handshake. (Text such as HTTP does not: libzmq takes its first byte for a
    ZMTP 1.0 length and waits for more, which costs a connection, nothing else.)"""
    env = Envelope("dev")
    with Inbox("tcp://127.0.0.1:0", env) as inbox, PeerLink(inbox.address, env, "n2") as link:
        host, port = inbox.address.rsplit("//", 1)[1].rsplit(":", 1)
        with pysocket.create_connection((host, int(port))) as raw:
            raw.sendall(b"\xff" * 64)
            until(lambda: inbox.drops.handshake_failed >= 1, lambda: Poller([inbox]).wait(10))
        good_after(inbox, link, 1)
        assert env.drops.total == 0


# -- sending never blocks ----------------------------------------------------------


def dead_address(net: Net) -> str:
    """An address with nothing listening. (Not a just-closed Inbox: libzmq
    closes listeners asynchronously, so a connect may still get through.)"""
    if net.transport == "ipc":
        return ipc_endpoint(net.tmp_path, "nobody")
    with pysocket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"tcp://127.0.0.1:{port}"


@pytest.mark.parametrize("immediate", [True, False])
def test_send_to_a_peer_that_is_not_listening_never_blocks(net: Net, immediate: bool) -> None:
    env = Envelope("dev")
    link = net.link(dead_address(net), env, "n1", immediate=immediate, sndhwm=100)
    msg = AppendEntries("n1", "n2", 1, 0, 0, [Entry(1, 1, b"x" * 128)])
    n = 5000
    start = time.monotonic()
    sent = sum(link.send(msg) for _ in range(n))
    elapsed = time.monotonic() - start
    assert elapsed < 2.0, f"{n} sends took {elapsed:.2f}s"
    assert sent + link.send_drops.hwm == n
    if immediate:
        assert sent == 0  # no connection: nothing is queued for a dead peer
    else:
        assert 0 < sent < n  # queued up to the HWM, then dropped


def test_peers_send_and_unknown_peer(net: Net) -> None:
    env = Envelope("dev")
    inbox = net.inbox(env)
    peers = net.peers(env, "n1", {"n2": inbox.address, "n3": dead_address(net)})
    assert set(peers) == {"n2", "n3"} and len(peers) == 2 and "n2" in peers
    assert peers.send("n9", Heartbeat("n1", "n9", 1, 0)) is False
    assert peers.send_drops.unroutable == 1
    assert peers.send("n3", Heartbeat("n1", "n3", 1, 0)) is False  # IMMEDIATE: nobody there
    connected(peers, "n2", inbox)
    peers.disconnect("n3")
    assert "n3" not in peers


def test_reply_to_an_unknown_identity_is_counted(net: Net) -> None:
    env = Envelope("dev")
    inbox = net.inbox(env)
    assert inbox.reply(b"nobody", Heartbeat("n1", "x", 1, 0)) is False
    assert inbox.send_drops.unroutable == 1


def test_send_after_close_is_counted(net: Net) -> None:
    env = Envelope("dev")
    inbox = net.inbox(env)
    link = net.link(inbox.address, env, "n2")
    link.close()
    link.close()  # idempotent
    assert link.send(Heartbeat("n2", "n1", 1, 0)) is False
    assert link.send_drops.closed == 1
    inbox.close()
    inbox.close()
    assert inbox.reply(b"n2", Heartbeat("n1", "n2", 1, 0)) is False
    assert inbox.send_drops.closed == 1


# -- the poller --------------------------------------------------------------------


def test_poller_times_out_and_wakes(net: Net) -> None:
    env = Envelope("dev")
    a, b = net.inbox(env), net.inbox(env)
    poller = Poller([a, b])
    start = time.monotonic()
    assert poller.wait(50) == []
    assert time.monotonic() - start >= 0.04
    assert poller.wait(-5) == []  # a passed deadline: no wait
    link = net.link(b.address, env, "n2")
    link.send(Heartbeat("n2", "n1", 1, 0))
    assert poller.wait(DEADLINE_S * 1000) == [b]
    poller.unregister(b)
    assert poller.wait(0) == []


def test_bind_and_connect_errors_are_os_errors(net: Net) -> None:
    env = Envelope("dev")
    inbox = net.inbox(env)
    with pytest.raises(OSError) as e:
        Inbox(inbox.address, env)  # the same node started twice
    assert e.value.errno == errno.EADDRINUSE
    with pytest.raises(OSError):
        PeerLink("nosuch://x", env, "n1")
    with pytest.raises(ValueError):
        PeerLink(inbox.address, env, "\x00reserved")


def test_stale_ipc_file_is_taken_over(tmp_path: Path) -> None:
    """A crashed process leaves its socket file behind; the restart binds anyway."""
    address = ipc_endpoint(tmp_path, "stale")
    stale = pysocket.socket(pysocket.AF_UNIX, pysocket.SOCK_STREAM)
    stale.bind(address[len("ipc://") :])
    stale.close()  # the file stays, nobody listens
    env = Envelope("dev")
    with Inbox(address, env) as inbox, PeerLink(address, env, "n2") as link:
        good_after(inbox, link, 1)


def test_security_is_a_seam_for_now(net: Net) -> None:
    with pytest.raises(NotImplementedError):
        net.inbox(Envelope("dev"), security=object())
    with pytest.raises(NotImplementedError):
        PeerLink("tcp://127.0.0.1:1", Envelope("dev"), "n1", security=object())


def test_context_is_one_per_process() -> None:
    ctx = context()
    assert context() is ctx
    terminate_context()
    assert ctx.closed
    fresh = context()
    assert fresh is not ctx and not fresh.closed


def test_an_inbox_takes_only_its_message_set_by_sender_identity(tmp_path) -> None:
    """SPEC 3 trust boundaries: a ROUTER decodes only the types it takes from
    each sender; the rest is counted as wrong_socket, never handed out."""
    from sandzmq.raft.messages import Heartbeat, RequestVote
    from sandzmq.transport import ANY_SENDER, Envelope, Inbox, PeerLink, Poller

    env = Envelope("dev")
    hb, rv = Heartbeat("a", "b", 1, 0), RequestVote("a", "b", 1, 0, 0)
    accept = {b"log": env.registry.tags_of(Heartbeat), ANY_SENDER: env.registry.tags_of(RequestVote)}
    with (
        Inbox(f"ipc://{tmp_path}/in", env, accept=accept) as inbox,
        PeerLink(inbox.address, Envelope("dev"), "log") as log_link,
        PeerLink(inbox.address, Envelope("dev"), "other") as other_link,
    ):
        for link in (log_link, other_link):
            assert link.send(hb) and link.send(rv)
        got: list = []
        poller = Poller([inbox])
        deadline = time.monotonic() + 10
        while len(got) < 2 or inbox.envelope.drops.wrong_socket < 2:
            assert time.monotonic() < deadline, (got, inbox.envelope.drops)
            if poller.wait(100):
                got += inbox.drain()
        assert sorted((ident, type(m).__name__) for ident, m in got) == [
            (b"log", "Heartbeat"),
            (b"other", "RequestVote"),
        ]


def test_a_message_that_cannot_be_encoded_is_counted_not_raised(tmp_path) -> None:
    from sandzmq.protocol import ClientReply
    from sandzmq.transport import Envelope, Inbox, PeerLink

    env = Envelope("dev", max_message_bytes=1000)
    with Inbox(f"ipc://{tmp_path}/in2", env) as inbox, PeerLink(inbox.address, env, "x") as link:
        assert not link.send(ClientReply([1], [0], [b"x" * 2000]))  # above the frame limit
        assert not link.send(ClientReply([1], [0], [{1, 2}]))  # a set is not msgpack-able
        assert link.send_drops.unencodable == 2
        assert not inbox.reply(b"x", ClientReply([1], [0], [b"x" * 2000]))
        assert inbox.send_drops.unencodable == 1
