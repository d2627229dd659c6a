"""Failover time after kill -9 of the leader, measured and printed.

Failover time = from the SIGKILL of the leader's process group to the first
successful replicate() through a `Client.from_config` client that was
writing before the kill. Measured over several rounds on one cluster (the
old leader is restarted and catches up between rounds); the test prints each
round and the median, and asserts only a generous sanity bound. It is a
measurement, not a benchmark: run it alone for numbers worth quoting.
"""

from __future__ import annotations

import statistics
import time

import pytest
from cluster import Writer

pytestmark = pytest.mark.integration

ROUNDS = 3
SANITY_BOUND_S = 15.0


def test_failover_time_after_kill9_of_the_leader(make_cluster):
    c = make_cluster()
    c.start_all()
    c.wait_for_leader(10)
    client = c.client()
    w = Writer(client, "w", timeout=2.0)
    w.write(20)
    times = []
    for rnd in range(ROUNDS):
        leader = c.wait_for_leader(10)
        w.write(5)  # the client knows the current leader
        killed_at = time.monotonic()
        c.kill9(leader)
        attempts = 0
        while True:
            attempts += 1
            if w.write_one():
                break
            if time.monotonic() - killed_at > SANITY_BOUND_S:
                pytest.fail(
                    f"round {rnd + 1}: no successful write {SANITY_BOUND_S}s after killing {leader}; "
                    f"errors: {[(type(e).__name__, str(e)) for _, _, e in w.errors[-3:]]}"
                )
        took = w.ack_times[-1] - killed_at
        times.append(took)
        new = c.wait_for_leader(10, exclude=[leader])
        print(
            f"\nround {rnd + 1}: killed leader {leader}; first write acknowledged after {took * 1000:.0f} ms "
            f"({attempts} attempt(s)); new leader {new}"
        )
        c.start(leader)
        c.wait_caught_up(w.acked, nodes=[leader], timeout=30)
    median = statistics.median(times)
    print(
        f"failover after kill -9 of the leader: median {median * 1000:.0f} ms over {ROUNDS} rounds "
        f"({', '.join(f'{t * 1000:.0f}' for t in times)} ms)"
    )
    assert max(times) < SANITY_BOUND_S
    lists = c.wait_caught_up(w.acked, timeout=30)
    for n, recs in lists.items():
        assert not w.problems(recs), f"{n}: {w.problems(recs)}"
