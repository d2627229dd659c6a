"""The deterministic simulation, as tests: many seeds, and deliberate bugs it must catch.

Replay any failing seed with `python tests/simulation.py --seed N --verbose`.
SANDZMQ_SOAK=N runs N more seeds (after the CI's) in test_soak.
"""

from __future__ import annotations

import os

import pytest
from simulation import MUTATIONS, InvariantViolation, Simulation, run_seeds

CI_SEEDS = range(0, 2000)


def _report(failures: list[tuple[int, str]]) -> str:
    return "\n".join(text for _, text in failures[:10])


def test_simulation_keeps_raft_safe_and_live_over_ci_seeds() -> None:
    failures, totals = run_seeds(CI_SEEDS)
    assert not failures, _report(failures)
    # The runs must actually have been hostile and busy, or passing means little.
    assert totals["crashes"] > 1000 and totals["dropped"] > 10_000
    assert totals["elections"] > len(CI_SEEDS) and totals["applied"] > 100 * len(CI_SEEDS)


@pytest.mark.slow
def test_soak() -> None:
    count = int(os.environ.get("SANDZMQ_SOAK", "0") or 0)
    failures, _ = run_seeds(range(CI_SEEDS.stop, CI_SEEDS.stop + count))
    assert not failures, _report(failures)


def test_a_seed_replays_identically() -> None:
    first = Simulation(123).run()
    second = Simulation(123).run()
    assert first == second


@pytest.mark.parametrize("mutation", sorted(MUTATIONS))
def test_simulation_catches_a_deliberately_broken_core(mutation: str) -> None:
    """Each mutation breaks one rule the Raft paper proves safety with; the CI
    seed budget must expose it (python tests/simulation.py --mutate NAME lists
    every failing seed)."""
    undo = MUTATIONS[mutation]()
    try:
        failures, _ = run_seeds(CI_SEEDS, stop_at_first=True)
    finally:
        undo()
    assert failures, f"the simulation did not notice the {mutation} mutation in {len(CI_SEEDS)} seeds"


def test_mutation_is_undone() -> None:
    undo = MUTATIONS["vote-check"]()
    undo()
    Simulation(0).run()  # the real core again: no violation


def test_an_invariant_violation_names_its_seed() -> None:
    undo = MUTATIONS["vote-check"]()
    try:
        with pytest.raises(InvariantViolation, match=r"seed 0: .*--seed 0"):
            Simulation(0).run()
    finally:
        undo()
