"""The client's cheap per-request bookkeeping: one timer entry per sent
message, payloads packed by hand-off to a reused Packer, and nothing kept
alive after a request is answered. Real sockets against the FakeNodes of
test_client.py."""

from __future__ import annotations

import gc
import time
import weakref
from typing import Any

from sandzmq.protocol import ClientReply, ClientSubmit, encode_command
from test_client import OK, SLACK, FakeNode, clients, commands, nodes, silent, wait_until  # noqa: F401 (fixtures)

from sandzmq import ClusterUnavailable, ReplicationTimeout


def test_payloads_are_byte_identical_to_encode_command(nodes, clients) -> None:
    node = nodes()
    client = clients(node.address)
    blobs = [b"", b"x", bytes(range(256)) * 300, b"y" * 70_000]  # bin8, bin16 and bin32 lengths
    futures = [client.replicate_async(blob) for blob in blobs]
    assert [f.result(5) for f in futures] == blobs
    for msg in node.messages(ClientSubmit):
        for (rid, payload), data in zip(commands(msg), msg.payloads):
            assert data == encode_command(client.client_id, payload.seq, payload.first_incomplete, payload.command)
            assert rid >= msg.first_request_id


def test_every_request_of_a_silent_batch_is_resent_then_expires(nodes, clients) -> None:
    node = nodes(silent)
    client = clients(node.address, resend=0.1)
    started = time.monotonic()
    futures = [client.replicate_async(b"c%d" % i, timeout=0.55) for i in range(50)]
    for future in futures:
        assert isinstance(future.exception(timeout=5), ReplicationTimeout)
    assert time.monotonic() - started < 0.55 + SLACK
    counts: dict[int, int] = {}
    for _, payload in node.submitted():
        counts[payload.seq] = counts.get(payload.seq, 0) + 1
    assert sorted(counts) == list(range(1, 51))
    assert all(n >= 3 for n in counts.values()), counts  # sent, then resent every 0.1 s
    assert client.stats["resends"] >= 100


def test_requests_with_different_timeouts_in_one_message_keep_their_own_deadlines(nodes, clients) -> None:
    node = nodes(silent)
    client = clients(node.address)
    short = [client.replicate_async(b"s%d" % i, timeout=0.3) for i in range(5)]
    long = client.replicate_async(b"long", timeout=2.0)  # resend interval 0.5 s
    started = time.monotonic()
    for future in short:
        assert isinstance(future.exception(timeout=5), ReplicationTimeout)
    assert time.monotonic() - started < 0.3 + SLACK
    assert not long.done()
    wait_until(lambda: sum(p.command == b"long" for _, p in node.submitted()) >= 2, what="the long one resent")
    assert isinstance(long.exception(timeout=5), ReplicationTimeout)
    assert time.monotonic() - started < 2.0 + SLACK


def test_a_request_answered_late_after_a_resend_still_succeeds_once(nodes, clients) -> None:
    """The first attempt is answered only after the resend: either answer
    resolves the future, and the other one is a stale reply."""
    held: list[ClientSubmit] = []

    def answer_second(node: FakeNode, msg: Any) -> list[Any]:
        if isinstance(msg, ClientSubmit):
            held.append(msg)
            if len(held) == 2:  # answer both attempts, the older one first
                return [ClientReply.of([(rid, OK, b"r%d" % rid) for m in held for rid, _ in m.requests])]
        return []

    node = nodes(answer_second)
    client = clients(node.address, resend=0.05)
    result = client.replicate(b"x", timeout=3)
    # The older attempt's answer comes first and wins. (Its id is not always 1:
    # a send before the TCP connection is up is refused and retried with a new id.)
    assert result == b"r%d" % held[0].first_request_id
    wait_until(lambda: client.stats["stale_replies"] == 1, what="the second answer counted as stale")
    assert not client._session.attempts_out and not client._session.live


def test_answered_requests_are_not_kept_alive(nodes, clients) -> None:
    node = nodes()
    client = clients(node.address)
    futures = [client.replicate_async(b"%d" % i) for i in range(200)]
    for future in futures:
        future.result(5)
    refs = [weakref.ref(f) for f in futures]
    del futures, future
    gc.collect()
    wait_until(lambda: all(r() is None for r in refs), what="answered futures freed")
    assert not client._session.attempts_out and not client._session.live


def test_no_node_at_all_fails_a_batch_as_unavailable(clients) -> None:
    from test_client import unused_address

    client = clients(unused_address())
    futures = [client.replicate_async(b"%d" % i, timeout=0.3) for i in range(20)]
    for future in futures:
        assert isinstance(future.exception(timeout=5), ClusterUnavailable)


def test_a_call_from_a_done_callback_while_the_client_closes_is_answered(nodes, clients) -> None:
    """The closed loop's pattern (a done-callback issues the next call, on the
    I/O thread) at close(): the new call must fail at once, not join the
    requests the closing thread has already failed and wait forever."""
    node = nodes(silent)
    client = clients(node.address)
    follow_ups: list[Any] = []
    first = client.replicate_async(b"first", timeout=30)
    first.add_done_callback(lambda _f: follow_ups.append(client.replicate_async(b"next", timeout=30)))
    wait_until(lambda: node.submitted(), what="the submit")
    client.close()
    assert isinstance(first.exception(timeout=5), ReplicationTimeout)
    assert len(follow_ups) == 1
    assert isinstance(follow_ups[0].exception(timeout=5), ClusterUnavailable)
