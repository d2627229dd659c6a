"""transport/envelope.py, counters.py, endpoints.py: frames, the type
registry (sandzmq.protocol's), drop counting and ipc naming. No sockets here
(see test_transport.py)."""

from __future__ import annotations

import os
from dataclasses import dataclass

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from message_strategies import message_of
from sandzmq.protocol import checks
from sandzmq.raft.messages import MESSAGE_TYPES, AppendEntries, Entry, Heartbeat, RequestVote
from sandzmq.transport.counters import DROP_REASONS, DropCounters, SendDrops
from sandzmq.transport.endpoints import IPC_PATH_MAX, ipc_endpoint, ipc_path
from sandzmq.transport.envelope import (
    PROTOCOL_VERSION,
    REGISTRY,
    Envelope,
    MessageTooLarge,
    Registry,
)

HB = Heartbeat("n1", "n2", 4, 10)
PEER_TAGS = sorted(REGISTRY.tags_of(*MESSAGE_TYPES))


def frame(*items: object) -> bytes:
    return msgpack.packb(list(items))


def only(drops: DropCounters, reason: str, n: int = 1) -> None:
    """Exactly n drops, all for `reason`."""
    assert getattr(drops, reason) == n, drops
    assert drops.total == n, drops


# -- frames ----------------------------------------------------------------------


def test_round_trip_and_layout() -> None:
    env = Envelope("dev")
    data = env.encode(HB)
    assert msgpack.unpackb(data) == [PROTOCOL_VERSION, "dev", "p.beat", ["n1", "n2", 4, 10, 0]]
    assert env.decode(data) == HB
    assert env.decode(bytearray(data)) == HB
    assert env.decode(memoryview(data)) == HB
    assert env.drops.total == 0


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "malformed"),
        (b"\xc1", "malformed"),  # a byte msgpack never uses
        (b"\x93\x01", "malformed"),  # truncated array
        (frame(PROTOCOL_VERSION, "dev", "p.beat", ["n1", "n2", 4, 10, 0]) + b"\x00", "malformed"),  # trailing bytes
        (msgpack.packb({"v": 1}), "malformed"),
        (msgpack.packb([]), "malformed"),
        (msgpack.packb(7), "malformed"),
        (frame(PROTOCOL_VERSION, "dev", "p.beat"), "malformed"),  # arity
        (frame(PROTOCOL_VERSION, "dev", "p.beat", ["n1", "n2", 4, 10, 0], 0), "malformed"),
        (frame(PROTOCOL_VERSION, "dev", "p.beat", ["n1", "n2", -4, 10, 0]), "malformed"),  # bad body
        (frame(PROTOCOL_VERSION + 1, "dev", "p.beat", ["n1", "n2", 4, 10, 0]), "version"),
        (frame(PROTOCOL_VERSION + 1, "dev"), "version"),  # another version, another layout
        (frame(1, "dev", 4, ["n1", "n2", 4, 10, 0]), "version"),  # version 1: int tags
        (frame(True, "dev", "p.beat", ["n1", "n2", 4, 10, 0]), "malformed"),  # True is not 1
        (frame("1", "dev", "p.beat", ["n1", "n2", 4, 10, 0]), "malformed"),
        (frame(PROTOCOL_VERSION, "prod", "p.beat", ["n1", "n2", 4, 10, 0]), "cluster"),
        (frame(PROTOCOL_VERSION, b"dev", "p.beat", ["n1", "n2", 4, 10, 0]), "cluster"),
        (frame(PROTOCOL_VERSION, "dev", 99, []), "unknown_type"),
        (frame(PROTOCOL_VERSION, "dev", 4, ["n1", "n2", 4, 10, 0]), "unknown_type"),  # the old int tag
        (frame(PROTOCOL_VERSION, "dev", "no.such", []), "unknown_type"),
        (frame(PROTOCOL_VERSION, "dev", True, ["n1", "n2", 4, True, False]), "unknown_type"),
        (frame(PROTOCOL_VERSION, "dev", ["p.beat"], []), "unknown_type"),
        (frame(PROTOCOL_VERSION, "dev", None, []), "unknown_type"),
        (frame(PROTOCOL_VERSION, "dev", b"p.beat", ["n1", "n2", 4, 10, 0]), "unknown_type"),
    ],
)
def test_refused_frames_are_counted_not_raised(data: bytes, reason: str) -> None:
    env = Envelope("dev")
    assert env.decode(data) is None
    only(env.drops, reason)
    assert env.decode(env.encode(HB)) == HB  # and the next good one still decodes


def test_oversized_is_refused_before_parsing() -> None:
    env = Envelope("dev", max_message_bytes=100)
    big = AppendEntries("n1", "n2", 1, 0, 0, [Entry(1, 1, b"x" * 200)])
    data = Envelope("dev").encode(big)
    assert env.decode(data) is None
    only(env.drops, "oversized")
    with pytest.raises(MessageTooLarge):
        env.encode(big)  # the sender refuses to build what receivers drop
    assert env.decode(env.encode(HB)) == HB


@settings(max_examples=1000)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_raise(data: bytes) -> None:
    env = Envelope("dev")
    out = env.decode(data)
    assert (out is None) == (env.drops.total == 1)


@settings(max_examples=500)
@given(st.sampled_from(sorted(REGISTRY.tags())), st.binary(max_size=64))
def test_arbitrary_bodies_in_a_good_envelope_never_raise(tag: str, junk: bytes) -> None:
    env = Envelope("dev")
    try:
        body = msgpack.unpackb(junk)
    except Exception:
        body = junk
    out = env.decode(frame(PROTOCOL_VERSION, "dev", tag, body))
    assert out is not None or env.drops.malformed == 1


def test_unregistered_class_cannot_be_sent() -> None:
    with pytest.raises(TypeError):
        Envelope("dev").encode(object())


def test_envelope_arguments_are_checked() -> None:
    with pytest.raises(ValueError):
        Envelope("")
    with pytest.raises(ValueError):
        Envelope("dev", max_message_bytes=0)


# -- the registry ----------------------------------------------------------------


@dataclass
class Ping:
    seq: int
    note: str


def ping_encode(p: Ping) -> list[object]:
    return [p.seq, p.note]


def ping_decode(body: object) -> Ping:
    seq, note = checks.expect_list(body, 2, "Ping")
    return Ping(checks.expect_uint(seq, "seq"), checks.expect_str(note, "note"))


def test_registered_node_message_round_trips_and_is_validated() -> None:
    reg = Registry.with_peer_messages()
    reg.register("test.ping", Ping, ping_encode, ping_decode)
    env = Envelope("dev", registry=reg)
    data = env.encode(Ping(3, "hi"))
    assert msgpack.unpackb(data)[2] == "test.ping"
    assert env.decode(data) == Ping(3, "hi")
    assert env.decode(env.encode(HB)) == HB  # peer messages are still there
    assert env.decode(frame(PROTOCOL_VERSION, "dev", "test.ping", [-1, "hi"])) is None
    assert env.decode(frame(PROTOCOL_VERSION, "dev", "test.ping", [1])) is None
    only(env.drops, "malformed", 2)
    # the process-wide registry did not learn it
    assert REGISTRY.by_tag("test.ping") is None
    assert Envelope("dev").decode(data) is None


def test_registration_rules() -> None:
    reg = Registry.with_peer_messages()
    reg.register("test.ping", Ping, ping_encode, ping_decode)
    reg.register("test.ping", Ping, ping_encode, ping_decode)  # idempotent
    with pytest.raises(ValueError):
        reg.register("test.other", Ping, ping_encode, ping_decode)  # class already has a tag
    with pytest.raises(ValueError):
        reg.register("test.ping", dict, ping_encode, ping_decode)  # tag taken
    for bad in (4, "", "x" * 33, None):
        with pytest.raises(ValueError):
            reg.register(bad, type("X", (), {}), ping_encode, ping_decode)  # type: ignore[arg-type]
    assert set(PEER_TAGS) <= set(reg.tags())


def test_a_decoder_that_raises_something_else_is_contained(caplog: pytest.LogCaptureFixture) -> None:
    def bad_decode(body: object) -> Ping:
        raise KeyError("bug")

    reg = Registry.with_peer_messages()
    reg.register("test.ping", Ping, ping_encode, bad_decode)
    env = Envelope("dev", registry=reg)
    assert env.decode(env.encode(Ping(1, "x"))) is None
    only(env.drops, "malformed")
    assert "test.ping" in caplog.text


def test_counters() -> None:
    d = DropCounters()
    for i, reason in enumerate(DROP_REASONS, start=1):
        setattr(d, reason, i)
    d.disconnects = 100
    d.handshake_failed = 100
    expected = sum(range(1, len(DROP_REASONS) + 1))
    assert d.total == expected  # connection events are not message drops
    assert d.as_dict()["total"] == expected and d.as_dict()["disconnects"] == 100
    s = SendDrops(hwm=1, unroutable=2, closed=3, unencodable=4)
    assert s.total == 10 and s.as_dict()["total"] == 10


def test_peer_messages_are_registered() -> None:
    env = Envelope("dev")
    rv = RequestVote("a", "b", 1, 0, 0, pre_vote=True)
    assert env.decode(env.encode(rv)) == rv


# -- ipc endpoints ----------------------------------------------------------------


def test_ipc_endpoint_short_path(tmp_path: os.PathLike[str]) -> None:
    ep = ipc_endpoint(tmp_path, "raft")
    assert ep == f"ipc://{os.path.join(os.path.abspath(tmp_path), 'raft.ipc')}"
    assert ipc_path(ep) == os.path.join(os.path.abspath(tmp_path), "raft.ipc")


def test_ipc_endpoint_long_path_falls_back_to_a_stable_short_one(tmp_path: os.PathLike[str]) -> None:
    deep = os.path.join(os.fspath(tmp_path), *(["d" * 30] * 5))
    ep = ipc_endpoint(deep, "raft")
    assert len(os.fsencode(ipc_path(ep) or "")) <= IPC_PATH_MAX
    assert ep == ipc_endpoint(deep, "raft")  # every process computes the same
    assert ep != ipc_endpoint(deep, "log")
    assert ep != ipc_endpoint(deep + "x", "raft")


def test_ipc_endpoint_rejects_odd_names(tmp_path: os.PathLike[str]) -> None:
    for bad in ("", "a/b", "../x", "x" * 65):
        with pytest.raises(ValueError):
            ipc_endpoint(tmp_path, bad)
    assert ipc_path("tcp://127.0.0.1:1") is None
    assert ipc_path("ipc://@abstract") is None


def test_open_tags_pass_whatever_cluster_they_name_and_nothing_else_does() -> None:
    """The discovery handshake (Client.connect without a cluster name) is the
    one message a node accepts from any cluster."""
    from sandzmq.protocol import HELLO_TAG, ClusterHello, StatusRequest

    node = Envelope("prod", open_tags=frozenset({HELLO_TAG}))
    stranger = Envelope("?")
    assert node.decode(stranger.encode(ClusterHello(7))) == ClusterHello(7)
    assert node.decode(stranger.encode(StatusRequest(7))) is None
    assert node.drops.cluster == 1


def test_a_tag_the_socket_does_not_take_is_dropped_as_wrong_socket_before_decoding() -> None:
    env = Envelope("dev")
    hb = Heartbeat("a", "b", 1, 0)
    peer_tags = env.registry.tags_of(Heartbeat)
    assert env.decode(env.encode(hb), peer_tags) == hb
    bad_body = msgpack.packb([PROTOCOL_VERSION, "dev", "p.vote", "not a RequestVote body"])
    assert env.decode(bad_body, peer_tags) is None
    assert env.drops.wrong_socket == 1 and env.drops.malformed == 0  # refused before the body was read


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(sorted(REGISTRY.tags())), st.data())
def test_every_registered_type_goes_through_the_envelope(tag: str, data: st.DataObject) -> None:
    """Every declared message, encoded and decoded by an Envelope (the body
    round trips themselves: tests/test_codec.py)."""
    cls = REGISTRY.by_tag(tag).cls
    msg = data.draw(message_of(cls))
    env = Envelope("dev")
    frame_bytes = env.encode(msg)
    assert msgpack.unpackb(frame_bytes)[:3] == [PROTOCOL_VERSION, "dev", tag]
    assert env.decode(frame_bytes, frozenset({tag})) == msg
    assert env.decode(frame_bytes, frozenset(REGISTRY.tags()) - {tag}) is None
    only(env.drops, "wrong_socket")


def test_an_unencodable_message_leaves_the_next_frame_whole_in_every_thread() -> None:
    """A failed encode leaves nothing behind, and threads may share one Envelope."""
    import threading

    from sandzmq.protocol import ClientReply

    env = Envelope("dev")
    with pytest.raises(TypeError):
        env.encode(ClientReply([1], [0], [object()]))
    assert env.decode(env.encode(HB)) == HB
    failures: list[object] = []

    def worker(i: int) -> None:
        for term in range(2000):
            msg = Heartbeat(f"n{i}", "n0", term, i)
            if env.decode(env.encode(msg)) != msg:
                failures.append(msg)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures
