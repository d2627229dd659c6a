"""Golden traces: short deterministic scenarios of tests/raft_harness.py's
Cluster, whose protocol trace (one describe() line per message sent, write
asked for, entries applied; see raft_harness) must match a file under
tests/golden/ line for line, as etcd-io/raft's datadriven testdata does.

A difference is either a bug or a deliberate change in what the core sends.
After a deliberate change, regenerate the files and review the diff:

    SANDZMQ_REGOLD=1 .venv/bin/pytest tests/test_golden_trace.py
    git diff tests/golden/
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from raft_harness import Cluster

GOLDEN = Path(__file__).parent / "golden"


def election_and_one_command() -> Cluster:
    """n1 wins the first election (pre-vote, then vote), commits its no-op,
    then one command; one more heartbeat round tells the followers."""
    c = Cluster(["n1", "n2", "n3"])
    c.elect("n1")
    c.deliver_all()
    c.propose("n1", "x=1")
    c.deliver_all()
    c.tick("n1", c.config.heartbeat_ticks)
    c.deliver_all()
    assert [c.applied(n) for n in c.ids] == [[b"x=1"]] * 3
    return c


def failover_with_a_lagging_follower() -> Cluster:
    """n3 misses a command while cut off; the leader crashes; n2 (which has
    it) wins, and brings n3 up to date before committing a command of its own."""
    c = Cluster(["n1", "n2", "n3"])
    c.elect("n1")
    c.deliver_all()
    c.isolate("n3")
    c.propose("n1", "a")
    c.deliver_all()
    c.crash("n1")
    c.heal()
    c.elect("n2")
    c.deliver_all()
    c.propose("n2", "b")
    c.deliver_all()
    c.tick("n2", c.config.heartbeat_ticks)
    c.deliver_all()
    assert c.applied("n2") == c.applied("n3") == [b"a", b"b"]
    return c


SCENARIOS: dict[str, Callable[[], Cluster]] = {
    "election": election_and_one_command,
    "failover": failover_with_a_lagging_follower,
}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_trace_matches_the_golden_file(name: str) -> None:
    trace = "\n".join(SCENARIOS[name]().trace) + "\n"
    path = GOLDEN / f"{name}.txt"
    if os.environ.get("SANDZMQ_REGOLD"):
        GOLDEN.mkdir(exist_ok=True)
        path.write_text(trace)
    expected = path.read_text()
    if trace != expected:
        diff = "".join(difflib.unified_diff(expected.splitlines(True), trace.splitlines(True), str(path), "this run"))
        pytest.fail(f"the {name} trace differs from {path} (SANDZMQ_REGOLD=1 regenerates it):\n{diff}", pytrace=False)
