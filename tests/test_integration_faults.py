"""Crashes and freezes of real nodes: kill -9 of one node, two nodes, the
leader, every node; SIGSTOP/SIGCONT of the leader; kill -9 of one actor
process inside a node. Each test has its own 3-node cluster.

What a client saw is the reference: every acknowledged command must be
applied exactly once, in acknowledgement order, on every node; a command
whose outcome was unknown (ReplicationTimeout, in flight at a crash) at most
once; one refused with ClusterUnavailable/NotLeaderError never (SPEC 6).
"""

from __future__ import annotations

import time

import pytest
from cluster import Writer, history_problems, wait_for

import sandzmq

pytestmark = pytest.mark.integration

NODES = ["n1", "n2", "n3"]


def check_all(cluster, writers, nodes=NODES, timeout=30.0):
    """Wait until every node has every acknowledged command, then check each history."""
    acked = [c for w in writers for c in w.acked]
    lists = cluster.wait_caught_up(acked, nodes=nodes, timeout=timeout)
    for n, recs in lists.items():
        problems = [f"writer {w.prefix}: {p}" for w in writers for p in w.problems(recs)]
        assert not problems, f"{n}: {problems}"
    # Same sequence everywhere (a node may still be applying the tail).
    shortest = min(len(r) for r in lists.values())
    first = next(iter(lists.values()))
    for n, recs in lists.items():
        assert recs[:shortest] == first[:shortest], f"{n} applied another sequence than {next(iter(lists))}"
    return lists


def test_kill9_follower_writes_go_on_and_it_catches_up(make_cluster):
    c = make_cluster()
    c.start_all()
    leader = c.wait_for_leader(10)
    follower = next(n for n in NODES if n != leader)
    w = Writer(c.client(), "w")
    w.write(50)

    c.kill9(follower)
    w.write(100, deadline=30)  # a majority is left: writes go on
    assert c.status(follower, via="cli")["role"] == "unreachable"  # SPEC 5: the CLI reports it

    c.start(follower)
    c.wait_role(follower, ["follower"], timeout=15)
    lists = check_all(c, [w])
    assert len(lists[follower]) >= 150
    assert c.leader_of(c.status_all()) == leader, "the restarted follower disturbed the leader"


def test_kill9_two_of_three_writes_fail_then_succeed_after_restart(make_cluster):
    c = make_cluster()
    c.start_all()
    leader = c.wait_for_leader(10)
    w = Writer(c.client(), "w", timeout=2.0)
    w.write(30)

    followers = [n for n in NODES if n != leader]
    c.kill9_many(followers)

    # No majority: each write must end in an error within its timeout, never in success.
    unknown, refused = [], []
    for i in range(3):
        cmd = f"no-quorum-{i}".encode()
        started = time.monotonic()
        with pytest.raises((sandzmq.ReplicationTimeout, sandzmq.ClusterUnavailable)) as info:
            w.client.replicate(cmd, timeout=2.0)
        took = time.monotonic() - started
        assert took < 2.0 + 2.0, f"replicate(timeout=2) without a majority took {took:.1f}s"
        print(f"\nno majority, write {i}: {type(info.value).__name__} after {took:.2f}s: {info.value}")
        (unknown if isinstance(info.value, sandzmq.ReplicationTimeout) else refused).append(cmd)
    # The same through replicate_async: the future resolves with an error within its timeout.
    fut = w.client.replicate_async(b"no-quorum-async", timeout=2.0)
    with pytest.raises((sandzmq.ReplicationTimeout, sandzmq.ClusterUnavailable)) as info:
        fut.result(timeout=2.0 + 2.0)
    (unknown if isinstance(info.value, sandzmq.ReplicationTimeout) else refused).append(b"no-quorum-async")

    c.start(followers[0])
    c.start(followers[1])
    c.wait_for_leader(15)
    w.write(30, deadline=30)  # writes succeed again (retries are new commands, see Writer)
    check_all(c, [w])
    for n in NODES:
        recs = c.records(n)
        for cmd in unknown:  # outcome unknown: it may have committed after the restart, at most once
            assert recs.count(cmd) <= 1, f"{n} applied {cmd!r} {recs.count(cmd)} times"
        for cmd in refused:  # ClusterUnavailable: never accepted, so never applied (SPEC 6)
            assert cmd not in recs, f"{n} applied {cmd!r}, which the client reported ClusterUnavailable"


def test_kill9_leader_new_leader_writes_go_on_old_one_rejoins(make_cluster):
    c = make_cluster()
    c.start_all()
    old = c.wait_for_leader(10)
    w = Writer(c.client(), "w")
    w.write(50)

    c.kill9(old)
    new = c.wait_for_leader(10, exclude=[old])
    w.write(100, deadline=30)

    c.start(old)
    c.wait_role(old, ["follower"], timeout=15)
    lists = check_all(c, [w])
    assert len(lists[old]) >= 150
    rows = c.status_all()
    assert rows[old]["leader"] in (new, c.leader_of(rows)), rows


def test_sigstop_leader_new_leader_then_sigcont_old_steps_down_nothing_lost_or_doubled(make_cluster):
    c = make_cluster()
    c.start_all()
    old = c.wait_for_leader(10)
    w = Writer(c.client(), "w")
    w.write(20)
    w.start()  # keeps writing through the freeze: commands are in flight at the old leader
    w.wait_acked(40, timeout=20)

    c.sigstop(old)
    frozen_at = len(w.acked)
    new = c.wait_for_leader(15, exclude=[old])
    w.wait_acked(frozen_at + 50, timeout=30)  # writes go on with the new leader
    started = time.monotonic()
    rows = c.status_cli()  # SPEC 5: a node that does not answer is "unreachable", the rest answer
    took = time.monotonic() - started
    assert rows[old]["role"] == "unreachable" and rows[old]["term"] is None, rows[old]
    assert rows[new]["role"] == "leader", rows[new]
    assert took < 10, f"`sandzmq status` took {took:.1f}s with one node frozen"

    c.sigcont(old)
    row = c.wait_role(old, ["follower"], timeout=15)
    assert row["term"] >= c.status(new)["term"], row
    w.wait_acked(len(w.acked) + 20, timeout=20)
    w.stop()

    check_all(c, [w])
    rows = c.status_all()
    leaders = [n for n, r in rows.items() if r["role"] == "leader"]
    assert len(leaders) == 1 and leaders[0] == c.leader_of(rows), rows


def test_kill9_every_node_at_once_every_acknowledged_write_survives(make_cluster):
    c = make_cluster()
    c.start_all()
    c.wait_for_leader(10)
    client = c.client()
    w = Writer(client, "seq")
    w.write(30)
    w.start()  # sequential writes, in flight when the whole cluster dies

    # Concurrent writes too, so that batches (many entries per fsync) are in flight
    # (another client: the writer thread owns the first one).
    other = c.client()
    futures = {}
    for i in range(300):
        cmd = f"async-{i}".encode()
        futures[other.replicate_async(cmd, timeout=10.0)] = cmd
    w.wait_acked(150, timeout=30)

    c.kill9_many(NODES)
    w.stop()
    acked_async = {}
    for f, cmd in futures.items():
        try:
            acked_async[cmd] = f.result(timeout=15)
        except sandzmq.SandzmqError:
            pass  # outcome unknown: at most once
    print(f"\nacknowledged before the crash: {len(w.acked)} sequential, {len(acked_async)} concurrent")

    c.start_all()
    c.wait_for_leader(15)
    lists = check_all(c, [w])
    for n, recs in lists.items():
        counts = {cmd: recs.count(cmd) for cmd in futures.values()}
        problems = [f"{cmd!r} acknowledged at {i}, missing" for cmd, i in acked_async.items() if counts[cmd] == 0]
        problems += [f"{cmd!r} applied {k} times" for cmd, k in counts.items() if k > 1]
        problems += [
            f"{cmd!r} acknowledged at {i}, the node has {recs[i] if i < len(recs) else None!r} there"
            for cmd, i in acked_async.items()
            if counts[cmd] == 1 and not (i < len(recs) and recs[i] == cmd)
        ]
        assert not problems, f"{n}: {problems[:5]} ({len(problems)} problems)"
    # Writes go on after the restart; and a second whole-cluster crash, of logs
    # that were themselves recovered, loses nothing either.
    w2 = Writer(c.client(), "second")
    w2.write(20, deadline=30)
    w2.start()
    w2.wait_acked(60, timeout=30)
    c.kill9_many(NODES)
    w2.stop()
    c.start_all()
    c.wait_for_leader(15)
    w2.write(10, deadline=30)
    lists = check_all(c, [w, w2])
    for n, recs in lists.items():
        missing = [cmd for cmd in acked_async if recs.count(cmd) != 1]
        assert not missing, f"{n}: after the second crash, {len(missing)} acknowledged commands are not there once"


@pytest.mark.parametrize("actor", ["log", "apply", "raft"])
def test_kill9_one_actor_process_the_supervisor_restarts_it(make_cluster, actor):
    c = make_cluster()
    c.start_all()
    leader = c.wait_for_leader(10)
    follower = next(n for n in NODES if n != leader)
    w = Writer(c.client(), "w")
    w.write(30)

    for node in (follower, leader):
        old_pids = c.pids(node)
        killed = c.kill_actor(node, actor)
        assert c.is_running(node), f"{node}'s supervisor died when its {actor} actor was killed"

        wait_for(
            lambda: (p := c.pids(node))[actor] != killed and p,
            15,
            f"{node}'s supervisor to restart its {actor} actor (killed pid {killed})",
            describe=c.describe,
        )
        now = c.pids(node)
        others = {k: (old_pids[k], now[k]) for k in now if k != actor and now[k] != old_pids[k]}
        if others:
            print(f"\n{node}: killing {actor} also restarted {others}")
        w.write(30, deadline=30)  # the cluster and this node carry on
        check_all(c, [w])
    assert all(c.is_running(n) for n in NODES)


def test_sigterm_stops_a_node_gracefully_and_it_restarts(make_cluster):
    """SPEC 3: on SIGTERM `sandzmq start` stops its actors and exits 0; the node
    then restarts from its data directory and catches up."""
    c = make_cluster()
    c.start_all()
    leader = c.wait_for_leader(10)
    w = Writer(c.client(), "w")
    w.write(30)
    for node in (next(n for n in NODES if n != leader), leader):
        assert c.stop(node) == 0, f"{node}: `sandzmq start` did not exit 0 on SIGTERM"
        w.write(20, deadline=30)
        c.start(node)
        c.wait_role(node, ["follower", "leader"], timeout=15)
    check_all(c, [w])


def test_kill9_leader_with_many_commands_in_flight_each_applied_at_most_once(make_cluster):
    """The client retries in-flight commands at the new leader with the same session
    sequence numbers (SPEC 6): none may be applied twice, every acknowledged one
    is where apply() said it is, on every node."""
    c = make_cluster()
    c.start_all()
    old = c.wait_for_leader(10)
    client = c.client()
    futures: dict = {}
    sent = 0

    def pump(count: int) -> None:
        nonlocal sent
        for _ in range(count):
            cmd = f"inflight-{sent}".encode()
            sent += 1
            futures[client.replicate_async(cmd, timeout=10.0)] = cmd

    pump(200)
    # Kill the leader while a window of commands is in flight.
    wait_for(lambda: sum(f.done() for f in futures) >= 100, 20, "100 commands acknowledged")
    pump(200)
    c.kill9(old)
    pump(200)
    results, failed = {}, []
    for f, cmd in futures.items():
        try:
            results[cmd] = f.result(timeout=20)
        except sandzmq.SandzmqError as exc:
            failed.append((cmd, exc))
    print(f"\n{len(results)} acknowledged, {len(failed)} failed: {sorted({type(e).__name__ for _, e in failed})}")
    assert len(results) >= 400, f"only {len(results)} of 600 acknowledged; e.g. {failed[:3]}"
    c.start(old)
    c.wait_role(old, ["follower"], timeout=15)
    lists = c.wait_caught_up(list(results), timeout=30)
    for n, recs in lists.items():
        problems = history_problems(
            recs, list(results), maybe=[cmd for cmd, _ in failed], positions=results, prefix=b"inflight-", ordered=False
        )
        assert not problems, f"{n}: {problems}"


def test_leader_whose_log_store_stalls_steps_down_and_the_cluster_moves_on(make_cluster):
    """A leader whose disk stops acknowledging must not keep the cluster hostage
    (HashiCorp raft issue 503, etcd issue 15247): its log-store is frozen with
    SIGSTOP; the leader steps down within about an election timeout, another
    node leads and takes writes; thawed, the old leader catches up."""
    import os
    import signal

    c = make_cluster()
    c.start_all()
    stuck = c.wait_for_leader(10)
    w = Writer(c.client(), "w", timeout=5.0)
    w.write(20)

    frozen = c.signal_actor(stuck, "log", signal.SIGSTOP)
    try:
        # The first of these reach the frozen leader: its write never becomes
        # durable, so it must step down and the writes go on elsewhere.
        w.write(50, deadline=40)
        new = c.wait_for_leader(15, exclude=[stuck])
        assert c.status_all()[stuck]["role"] != "leader"
    finally:
        os.kill(frozen, signal.SIGCONT)

    lists = check_all(c, [w])
    assert len(lists[stuck]) >= 70
    assert c.status_all()[stuck]["leader"] == new
