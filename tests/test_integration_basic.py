"""A healthy 3-node cluster, shared by the tests of this module (none of them
kills a node): election, one leader per term, stable terms, 1,000 replicated
commands seen in the same order by every node, and hostile input on the
nodes' ports (SPEC 3: dropped and counted, never a crash).

Real `sandzmq start` processes, real sockets, real disk (tests/cluster.py).
"""

from __future__ import annotations

import os
import socket
import time
from collections import defaultdict
from concurrent.futures import wait as wait_futures

import msgpack
import pytest
import zmq
from cluster import SPEC_STATUS_KEYS, Cluster, Writer, close_client, history_problems, wait_for
from sandzmq.raft.messages import Heartbeat, RequestVote
from sandzmq.transport import DEFAULT_MAX_MESSAGE_BYTES, PROTOCOL_VERSION, Envelope

import sandzmq

pytestmark = pytest.mark.integration

NODES = ["n1", "n2", "n3"]


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    c = Cluster(tmp_path_factory.mktemp("shared"))
    c.started_at = time.monotonic()
    c.start_all()
    try:
        yield c
    finally:
        c.close()


def all_agree(c: Cluster) -> dict | None:
    """Status rows if every node is up and reports the same leader and term."""
    rows = c.status_all()
    leader = c.leader_of(rows)
    ok = leader is not None and all(r["leader"] == leader and r["term"] == rows[leader]["term"] for r in rows.values())
    return rows if ok else None


def test_leader_within_a_few_seconds_of_start(shared):
    leader = shared.wait_for_leader(timeout=10)
    elected = time.monotonic() - shared.started_at
    rows = wait_for(
        lambda: all_agree(shared), 10, "every node to follow the leader", describe=lambda: str(shared.status_all())
    )
    everyone = time.monotonic() - shared.started_at
    print(
        f"\nleader {leader} elected {elected:.2f}s after `sandzmq start` of 3 nodes; "
        f"all 3 follow it after {everyone:.2f}s"
    )
    roles = sorted(r["role"] for r in rows.values())
    assert roles == ["follower", "follower", "leader"], rows
    assert elected < 10


def test_one_leader_per_term_and_terms_stable_without_faults(shared):
    wait_for(
        lambda: all_agree(shared), 15, "every node to follow one leader", describe=lambda: str(shared.status_all())
    )
    leaders_by_term: dict[int, set[str]] = defaultdict(set)
    seen: list[tuple[float, dict[str, tuple]]] = []
    started = time.monotonic()
    while time.monotonic() - started < 3.0:
        rows = shared.status_all()
        seen.append((time.monotonic() - started, {n: (r["role"], r["term"], r["leader"]) for n, r in rows.items()}))
        for n, r in rows.items():
            if r["role"] == "leader":
                leaders_by_term[r["term"]].add(n)
            if r["leader"] is not None:
                leaders_by_term[r["term"]].add(r["leader"])
        time.sleep(0.1)
    assert len(seen) >= 3, "status was too slow to sample the cluster"
    several = {t: ls for t, ls in leaders_by_term.items() if len(ls) > 1}
    assert not several, f"more than one leader in a term: {several}"
    first = seen[0][1]
    changed = [(t, s) for t, s in seen if s != first]
    assert not changed, (
        f"terms/roles changed with no fault; first {first}, then at {changed[0][0]:.2f}s {changed[0][1]}"
    )


def test_1000_commands_every_node_applies_the_same_sequence(shared):
    leader = shared.wait_for_leader(timeout=10)
    before = shared.status_all()
    client = shared.client()

    # 100 sequential writes: acknowledgement order is the order.
    writer = Writer(client, "seq")
    writer.write(100, deadline=60)

    # 900 concurrent writes, 100 in flight: apply() returns each command's index,
    # which must be where every node has it.
    commands = [f"async-{i}".encode() for i in range(900)]
    positions: dict[bytes, int] = {}
    pending = {}
    window = 100
    for cmd in commands:
        if len(pending) >= window:
            done, _ = wait_futures(list(pending), timeout=30, return_when="FIRST_COMPLETED")
            assert done, "no replicate_async future resolved within 30 s"
            for f in done:
                positions[pending.pop(f)] = f.result()
        pending[client.replicate_async(cmd, timeout=10.0)] = cmd
    done, not_done = wait_futures(list(pending), timeout=30)
    assert not not_done, f"{len(not_done)} futures unresolved 30 s after their 10 s timeout"
    for f in done:
        positions[pending.pop(f)] = f.result()

    all_positions = {**writer.results, **positions}
    assert all(isinstance(p, int) for p in all_positions.values()), "apply() results did not come back as ints"
    assert len(set(all_positions.values())) == 1000, "two commands got the same index from apply()"
    needed = max(all_positions.values()) + 1

    lists = {n: shared.wait_records(n, lambda r: len(r) >= needed, 30, f"{needed} applied commands") for n in NODES}
    reference = lists[leader]
    for n in NODES:
        assert lists[n][:needed] == reference[:needed], f"{n} applied another sequence than {leader}"
        problems = history_problems(lists[n], writer.acked, positions=writer.results, prefix=b"seq-")
        problems += history_problems(lists[n], list(positions), positions=positions, prefix=b"async-", ordered=False)
        assert not problems, f"{n}: {problems}"

    after = shared.status_all()
    assert {n: r["term"] for n, r in after.items()} == {n: r["term"] for n, r in before.items()}, (
        f"the term changed during 1,000 writes with no fault: before {before}, after {after}"
    )
    assert shared.leader_of(after) == leader


def test_status_indexes_reflect_what_was_applied(shared):
    """After writes stop, every node's status shows commit_index and applied_index
    at least as far as the commands its state machine has applied (SPEC 5)."""
    leader = shared.wait_for_leader(timeout=10)
    Writer(shared.client(), "status-check").write(10, deadline=30)
    counts = {
        n: len(
            shared.wait_records(
                n, lambda r: any(x.startswith(b"status-check-10") for x in r[-10:]), 20, "the last write"
            )
        )
        for n in NODES
    }

    def caught_up():
        rows = shared.status_all()
        return (
            all(
                rows[n]["applied_index"] is not None
                and rows[n]["applied_index"] >= counts[n]
                and rows[n]["commit_index"] >= counts[n]
                for n in NODES
            )
            and rows
        )

    # Indexes count Raft's own entries too, so they are at least the number of commands.
    wait_for(
        caught_up,
        10,
        f"status applied_index/commit_index >= commands applied {counts} (leader {leader})",
        describe=lambda: str(
            {
                n: {k: r.get(k) for k in ("role", "commit_index", "applied_index", "last_index")}
                for n, r in shared.status_all().items()
            }
        ),
    )


# --------------------------------------------------------------------------- hostile input


def _dealer(ctx: zmq.Context, address: str) -> zmq.Socket:
    s = ctx.socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 2000)
    s.setsockopt(zmq.SNDTIMEO, 5000)
    s.connect(address)
    return s


def _hostile_frames(node: str, term: int) -> list[tuple[str, list[bytes]]]:
    cluster = "itest"
    other = Envelope("other-cluster")
    return [
        ("garbage", [os.urandom(200)]),
        ("garbage msgpack-looking", [b"\x94\x01\xa5itest\x04\xc1\xc1"]),
        ("empty", [b""]),
        ("multi-frame garbage", [b"\xff" * 10, b"\x00" * 10, os.urandom(50)]),
        ("a msgpack string", [msgpack.packb("hello")]),
        (
            "other protocol version",
            [msgpack.packb([PROTOCOL_VERSION + 1, cluster, "p.beat", [node, node, term, 0, 0]])],
        ),
        ("unknown tag", [msgpack.packb([PROTOCOL_VERSION, cluster, "no.such.tag", []])]),
        ("right tag, malformed body", [msgpack.packb([PROTOCOL_VERSION, cluster, "p.beat", ["x"]])]),
        ("an old int tag", [msgpack.packb([PROTOCOL_VERSION, cluster, 4, [node, node, term, 0, 0]])]),
        # Another cluster's messages with a huge term: honoured, they would depose the leader.
        ("other cluster's Heartbeat", [other.encode(Heartbeat(src="intruder", dst=node, term=term + 1000, commit=0))]),
        # Client.connect's discovery handshake ("c.hello") is taken from any cluster
        # name on the client port: malformed ones must still be dropped.
        ("malformed hello, other cluster", [msgpack.packb([PROTOCOL_VERSION, "other-cluster", "c.hello", ["x"]])]),
        ("hello with a negative nonce", [msgpack.packb([PROTOCOL_VERSION, "other-cluster", "c.hello", [-1]])]),
        ("hello with an extra field", [msgpack.packb([PROTOCOL_VERSION, cluster, "c.hello", [1, 2]])]),
        ("hello, other version", [msgpack.packb([PROTOCOL_VERSION + 1, "other-cluster", "c.hello", [1]])]),
        (
            "other cluster's RequestVote",
            [other.encode(RequestVote(src="n1", dst=node, term=term + 1000, last_index=10**9, last_term=term + 1000))],
        ),
    ]


@pytest.mark.parametrize("port", ["raft", "client"])
def test_garbage_oversized_and_foreign_messages_are_dropped_and_counted(shared, port):
    leader = shared.wait_for_leader(timeout=10)
    before = shared.status_all()
    term = before[leader]["term"]
    ctx = zmq.Context()
    oversized = b"\x00" * (DEFAULT_MAX_MESSAGE_BYTES + 1024)
    try:
        for node in NODES:
            address = (shared.raft_addresses if port == "raft" else shared.client_addresses)[node]
            s = _dealer(ctx, address)
            for _, frames in _hostile_frames(node, term):
                s.send_multipart(frames)
            s.close()
            # The oversized frame on its own connection: the receiver may cut it.
            s = _dealer(ctx, address)
            s.send(oversized, copy=False)
            s.close()
            # Bytes that are not even ZMTP, on a plain TCP connection.
            host, tcp_port = address.removeprefix("tcp://").rsplit(":", 1)
            with socket.create_connection((host, int(tcp_port)), timeout=5) as raw:
                raw.sendall(b"GET / HTTP/1.0\r\n\r\n" + os.urandom(4096))
    finally:
        ctx.term()  # waits (LINGER) until the frames are handed to the kernel

    def dropped_rose():
        rows = shared.status_all()
        return all((rows[n]["dropped"] or 0) > (before[n]["dropped"] or 0) for n in NODES) and rows

    rows = wait_for(
        dropped_rose,
        10,
        f"`dropped` to rise on every node after hostile input to the {port} ports",
        describe=lambda: f"before: {before}\nnow: {shared.status_all()}",
    )
    print(
        f"\ndropped on {port} ports: " + ", ".join(f"{n} {before[n]['dropped']} -> {rows[n]['dropped']}" for n in NODES)
    )
    for n in NODES:
        assert rows[n]["role"] in ("leader", "follower"), f"{n} is not up: {rows[n]}"
        assert rows[n]["pids"] == before[n]["pids"], (
            f"an actor of {n} restarted (crashed?): {before[n]['pids']} -> {rows[n]['pids']}"
        )
        assert rows[n]["term"] < term + 1000, f"{n} took the term of another cluster's message: {rows[n]}"
    assert shared.leader_of(rows) == leader, f"the hostile input changed the leader: {rows}"
    for n in NODES:
        bad = [line for line in shared.log_text(n).splitlines() if "Traceback" in line or " ERROR " in line]
        assert not bad, f"{n} logged errors on hostile input: {bad[:5]}"

    writer = Writer(shared.client(), f"after-{port}-garbage")
    writer.write(20, deadline=30)
    for n in NODES:
        recs = shared.wait_records(n, lambda r: set(writer.acked) <= set(r), 20, "the writes after the garbage")
        assert not writer.problems(recs), writer.problems(recs)


def test_nodes_survive_a_client_that_sends_oversized_frames_and_disconnects_repeatedly(shared):
    """Reconnect storms with oversized and truncated frames must not leak or crash."""
    before = shared.status_all()
    ctx = zmq.Context()
    try:
        for _ in range(5):
            for node in NODES:
                for address in (shared.raft_addresses[node], shared.client_addresses[node]):
                    s = ctx.socket(zmq.DEALER)
                    s.setsockopt(zmq.LINGER, 0)
                    s.connect(address)
                    s.send(b"\x01" * (2 << 20), copy=False)
                    s.close()
    finally:
        ctx.term()
    writer = Writer(shared.client(), "after-storm")
    writer.write(10, deadline=30)
    rows = shared.status_all()
    for n in NODES:
        assert rows[n]["role"] in ("leader", "follower"), rows[n]
        assert rows[n]["pids"] == before[n]["pids"], (
            f"an actor of {n} restarted: {before[n]['pids']} -> {rows[n]['pids']}"
        )


def test_client_connect_to_a_follower_raises_not_leader_with_the_leader(shared):
    leader = shared.wait_for_leader(timeout=10)
    follower = next(n for n in NODES if n != leader)
    c = shared.node_client(follower)
    with pytest.raises(sandzmq.NotLeaderError) as info:
        c.replicate(b"must-not-apply", timeout=5.0)
    assert info.value.leader_id == leader
    assert info.value.leader_address == shared.client_addresses[leader]
    for n in NODES:
        assert b"must-not-apply" not in shared.records(n)


def test_status_cli_json_has_the_spec_fields(shared):
    leader = shared.wait_for_leader(timeout=10)
    rows = shared.status_cli()
    assert sorted(rows) == NODES
    for n, r in rows.items():
        for key in SPEC_STATUS_KEYS:
            assert key in r, f"{n}: no {key!r} in {r}"
        assert r["role"] in ("leader", "follower"), r
        assert r["leader"] == leader, r
        assert set(r["pids"]) >= {"raft", "log", "apply"}, r
        assert all(isinstance(p, int) and p > 0 for p in r["pids"].values()), r


def test_one_client_shared_by_threads(shared):
    """Client is documented thread-safe: several threads calling one Client at
    once must each get their answer within the call's timeout."""
    import threading

    shared.wait_for_leader(timeout=10)
    client = sandzmq.Client.from_config(shared.config_path)  # closed here, not by the fixture
    failures: list[str] = []
    acked: list[list[bytes]] = [[] for _ in range(4)]

    def run(k: int) -> None:
        for i in range(100):
            cmd = f"thread{k}-{i}".encode()
            try:
                client.replicate(cmd, timeout=5.0)
                acked[k].append(cmd)
                client.status(timeout=2.0, node=NODES[i % 3]) if hasattr(client, "status") else None
            except Exception as exc:  # noqa: BLE001 - collected and reported below
                failures.append(f"thread {k}, call {i}: {type(exc).__name__}: {exc}")
                return

    threads = [threading.Thread(target=run, args=(k,), daemon=True) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    closed = close_client(client)
    assert not any(t.is_alive() for t in threads), "a thread is still blocked in the shared Client"
    assert not failures, failures
    assert closed, "Client.close() did not return"
    leader = shared.wait_for_leader(timeout=10)
    recs = shared.wait_records(leader, lambda r: all(set(a) <= set(r) for a in acked), 20, "the threads' writes")
    for k in range(4):
        mine = [r for r in recs if r.startswith(f"thread{k}-".encode())]
        assert mine == acked[k], f"thread {k}'s sequential writes are not applied once each, in order"
