"""Issue 8's hostile-frame fuzzer, as a CI test (tests/hostile_fuzz.py does the work).

Real frames of every peer and client message type are captured from a running
3-node cluster, mutated (seeded) and sent with the routing ids of real peers
to every raft and client port while a client writes. Then: no actor died or
restarted, every node answers, `dropped` rose, the cluster elects a leader,
and another after kill -9 of that one, writes go on, and every acknowledged
write is applied on every live node exactly once, in one order.

    SANDZMQ_FUZZ_SECONDS=18   how long to fuzz (default 18: a connection taken over
                              must outlive the 10 s ZMTP heartbeat timeout, see
                              hostile_fuzz.py)
    SANDZMQ_FUZZ_SEED=N       the mutation sequence (default: random, printed;
                              a failure names it, to replay the same sequence)
    SANDZMQ_FUZZ_RATE=150     mutated frames per second

A long run without pytest: `python tests/hostile_fuzz.py --seconds 600 --seed 7`.
"""

from __future__ import annotations

import os
import random

import pytest
from cluster import RECORDING_SM
from hostile_fuzz import DEFAULT_RATE, run_scenario

pytestmark = pytest.mark.integration


def test_hostile_frames_neither_crash_nor_brick_nor_corrupt_the_cluster(make_cluster):
    seconds = float(os.environ.get("SANDZMQ_FUZZ_SECONDS") or 18)
    rate = float(os.environ.get("SANDZMQ_FUZZ_RATE") or DEFAULT_RATE)
    env_seed = os.environ.get("SANDZMQ_FUZZ_SEED")
    seed = int(env_seed) if env_seed else random.SystemRandom().randrange(2**32)
    print(f"\nhostile fuzz seed {seed} (replay: SANDZMQ_FUZZ_SEED={seed})")

    cluster = make_cluster(state_machine=RECORDING_SM)
    report = run_scenario(cluster, seconds, seed, rate)

    sent = sum(report.frames_by_kind.values())
    assert sent > 0, "no hostile frame was sent"
    if report.problems:  # pytest.fail: the summary once, not the report's repr as well
        pytest.fail(
            f"{len(report.problems)} problem(s) with seed {seed} (replay: SANDZMQ_FUZZ_SEED={seed}):\n{report.summary()}",
            pytrace=False,
        )
    print(report.summary())
