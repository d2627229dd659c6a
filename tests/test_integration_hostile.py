"""Real clusters against hostile input and hostile sizes (issue 8, SPEC 3): one
frame must never crash, brick or corrupt a cluster.

Each test first does the attack as the issue describes it, then checks what
matters: no actor process died or restarted (its pids did not change), the
cluster still elects and takes writes, nothing acknowledged was lost.
"""

from __future__ import annotations

import msgpack
import pytest
import zmq
from cluster import Writer, wait_for
from sandzmq.transport import PROTOCOL_VERSION

pytestmark = pytest.mark.integration

NODES = ["n1", "n2", "n3"]


def all_pids(c) -> dict[str, dict[str, int]]:
    return {n: c.pids(n) for n in NODES}


def send_raw(address: str, frame: bytes, identity: bytes | None = None) -> None:
    """One frame from a plain DEALER, as anyone on the network can send it."""
    ctx = zmq.Context.instance()
    sock = ctx.socket(zmq.DEALER)
    try:
        sock.setsockopt(zmq.LINGER, 2000)
        if identity is not None:
            sock.setsockopt(zmq.ROUTING_ID, identity)
        sock.connect(address)
        sock.send(frame)
    finally:
        sock.close()  # LINGER: the frame leaves before the socket goes


def test_a_heartbeat_with_term_2_64_minus_1_is_refused_and_the_cluster_lives_on(make_cluster):
    """The issue's attack: this frame was adopted and written to every WAL; the
    next election's term could not be encoded, every raft actor died with
    OverflowError, and the cluster never came back."""
    c = make_cluster()
    c.start_all()
    leader = c.wait_for_leader(15)
    w = Writer(c.client(), "w")
    w.write(20)
    before = all_pids(c)
    dropped_before = sum(c.status(n)["dropped"] for n in NODES)
    for n in NODES:
        other = next(p for p in NODES if p != n)
        frame = msgpack.packb([PROTOCOL_VERSION, c.name, "p.beat", [other, n, 2**64 - 1, 0, 0]])
        send_raw(c.raft_addresses[n], frame)  # an outsider
        send_raw(c.raft_addresses[n], frame, identity=other.encode())  # posing as the peer it names
    wait_for(
        lambda: sum(c.status(n)["dropped"] for n in NODES) >= dropped_before + 6, 10, "the frames counted as dropped"
    )
    w.write(20)
    rows = c.status_all()
    assert all(r["term"] is not None and r["term"] < 1000 for r in rows.values()), rows
    assert all_pids(c) == before, "an actor died or restarted"
    # It still elects: kill the leader, a new one takes over and writes go on.
    c.kill9(leader)
    c.wait_for_leader(15, exclude=[leader])
    w.write(20, deadline=30)
    survivors = [n for n in NODES if n != leader]
    lists = c.wait_caught_up(w.acked, nodes=survivors, timeout=30)
    for n, records in lists.items():
        assert not w.problems(records), f"{n}: {w.problems(records)}"


def test_a_few_hundred_commands_of_1_mb_are_committed_without_a_crash(make_cluster):
    """Regression: proposed in one loop turn, they made one log write of
    hundreds of megabytes, above the frame limit; encoding it raised in the
    raft actor, which then crashed in a loop."""
    c = make_cluster()
    c.start_all()
    c.wait_for_leader(15)
    before = all_pids(c)
    client = c.client()
    size = (1 << 20) - 256  # the largest a command may be (max_batch_bytes), less its framing
    futures = [client.replicate_async(i.to_bytes(4, "big") * (size // 4), timeout=120) for i in range(300)]
    positions = [f.result(timeout=180) for f in futures]
    assert sorted(positions) == list(range(300))
    wait_for(lambda: all(c.count(n) == 300 for n in NODES), 60, "every node to apply all 300")
    assert all_pids(c) == before, "an actor died or restarted"


def test_a_node_restarts_on_a_log_of_large_entries(make_cluster):
    """Regression: the committed entries replayed to a restarted node's apply
    actor went in batches of 4,096 entries whatever their size; over 16 KB
    each that is above the frame limit, and the raft actor crashed in a loop."""
    c = make_cluster()
    c.start_all()
    leader = c.wait_for_leader(15)
    client = c.client()
    futures = [client.replicate_async(b"%06d" % i + b"x" * 20_000, timeout=120) for i in range(4_500)]
    for f in futures:
        f.result(timeout=180)
    victim = next(n for n in NODES if n != leader)
    c.kill9(victim)
    c.start(victim)
    wait_for(lambda: c.count(victim) == 4_500, 120, f"{victim} to replay all 4,500 entries")
    pids = c.pids(victim)
    client.replicate(b"after", timeout=30)
    wait_for(lambda: c.count(victim) == 4_501, 30, f"{victim} to apply a new write")
    assert c.pids(victim) == pids, "an actor of the restarted node died or restarted"
    assert "Traceback" not in c.log_text(victim).split("start #2")[-1]


# ---------------------------------------------------------------- whose data (SPEC 7)


def test_a_node_that_lost_its_data_refuses_to_start_and_names_the_procedure(make_cluster):
    """Regression: a node restarted on an empty data directory granted votes
    with a forgotten vote (it could elect a second leader in a term it had
    already voted in). It must refuse, say how to replace it, and exit non-zero."""
    import shutil

    c = make_cluster()
    c.start_all()
    leader = c.wait_for_leader(15)
    w = Writer(c.client(), "w")
    w.write(20)
    victim = next(n for n in NODES if n != leader)
    c.kill9(victim)
    shutil.rmtree(c.node_data_dir(victim))
    c.start(victim)
    assert c.wait_exit(victim, 30) != 0
    text = c.log_text(victim)
    assert f"{victim} has no data, but its cluster has already elected a leader" in text
    assert f"sandzmq members remove {victim}" in text and "join = true" in text
    assert "Traceback" not in text
    w.write(20, deadline=30)  # the other two go on


def test_a_node_with_another_clusters_data_refuses_to_start(make_cluster):
    import shutil

    a = make_cluster(name="cluster-a")
    a.start_all()
    a.wait_for_leader(15)
    a.kill9("n1")
    b = make_cluster(name="cluster-b")
    shutil.copytree(a.wal_dir("n1"), b.wal_dir("n1"))  # (its run/ holds sockets)
    b.start("n1")
    assert b.wait_exit("n1", 30) != 0
    assert "holds data of cluster 'cluster-a', not 'cluster-b'" in b.log_text("n1")


def test_a_join_node_waits_quietly_to_be_added(make_cluster):
    """Regression: a join = true node's raft actor raised on every tick (it is
    not among the voters), logging a traceback each time."""
    c = make_cluster(nodes=4, join=["n4"])
    c.start_all()
    c.wait_for_leader(15)
    row = c.wait_role("n4", ["learner"], timeout=15)
    assert row["leader"] is None and "waiting to be added" in row.get("state", "")
    pids = c.pids("n4")
    Writer(c.client(), "w").write(10)
    assert c.status("n4")["role"] == "learner" and c.pids("n4") == pids
    assert "Traceback" not in c.log_text("n4")


# ---------------------------------------------------------------- the apply actor


def test_a_leader_whose_apply_actor_is_frozen_steps_down_and_writes_go_on(make_cluster):
    """A dead (or frozen) apply actor behind a live leader: the leader could
    commit but never answer a client. It must stop leading."""
    import signal

    c = make_cluster()
    c.start_all()
    leader = c.wait_for_leader(15)
    w = Writer(c.client(), "w")
    w.write(20)
    c.signal_actor(leader, "apply", signal.SIGSTOP)
    try:
        new = c.wait_for_leader(30, exclude=[leader])
        w.write(20, deadline=30)
        row = c.status(leader)
        assert row["role"] != "leader" and row["leader"] == new
    finally:
        c.signal_actor(leader, "apply", signal.SIGCONT)
    lists = c.wait_caught_up(w.acked, nodes=NODES, timeout=30)
    for n, records in lists.items():
        assert not w.problems(records), f"{n}: {w.problems(records)}"


def test_a_restarted_apply_actor_replays_the_log_once_without_stalling_the_leader(make_cluster):
    """Regression (replay storm): the restarted apply actor refused every batch
    queued for its predecessor, and each refusal made the raft actor resend
    the whole committed log in one loop turn (5 refusals of a 100,000-entry
    log: 500,000 entries), long enough to stop its heartbeats."""
    import time

    c = make_cluster()
    c.start_all()
    leader = c.wait_for_leader(15)
    client = c.client()
    for f in [client.replicate_async(b"%06d" % i, timeout=60) for i in range(100_000)]:
        f.result(timeout=120)
    before = c.status(leader)
    c.kill_actor(leader, "apply")
    # Many small batches committed while it is down: each queued for the dead
    # apply actor, each refused by its successor.
    late = []
    for burst in range(60):
        late += [client.replicate_async(b"late%02d-%03d" % (burst, i), timeout=60) for i in range(20)]
        time.sleep(0.005)  # spread over loop turns, so that they are many batches (not a synchronisation)
    for f in late:
        f.result(timeout=90)
    wait_for(lambda: c.count(leader) >= 101_200, 60, f"{leader}'s new apply actor to replay the log")
    after = c.status(leader)
    assert (after["role"], after["term"]) == ("leader", before["term"]), "the replay stalled the leader"
    replayed = after["stats"]["apply_entries"] - before["stats"]["apply_entries"]
    assert replayed <= 2 * after["commit_index"], (
        f"{replayed} entries handed to the apply actor for a log of {after['commit_index']}"
    )
