"""bench/plot.py: which lines the results files give (the drawing itself
needs matplotlib and is checked only when it is installed)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import plot  # noqa: E402

SWEEP = {
    "kind": "sandzmq-sweep",
    "cells": [
        {
            "nodes": 3,
            "size": 128,
            "max_inflight": 4,
            "max_batch": 512,
            "outstanding": 1024,
            "ops_per_s": 30000.0,
            "p50_ms": 20.0,
            "p99_ms": 60.0,
        },
        {
            "nodes": 3,
            "size": 128,
            "max_inflight": 4,
            "max_batch": 512,
            "outstanding": 256,
            "ops_per_s": 20000.0,
            "p50_ms": 10.0,
            "p99_ms": 30.0,
        },
        {
            "nodes": 3,
            "size": 128,
            "max_inflight": 1,
            "max_batch": 512,
            "outstanding": 256,
            "ops_per_s": 12000.0,
            "p50_ms": 19.0,
            "p99_ms": None,
        },
        {
            "nodes": 5,
            "size": 128,
            "max_inflight": 1,
            "max_batch": 512,
            "outstanding": 256,
            "ops_per_s": None,
            "p50_ms": None,
            "p99_ms": None,
        },
    ],
}
COMPARE = {
    "medians": [
        {
            "config": "3x128",
            "outstanding": 256,
            "system": "sandzmq (fsync on)",
            "ops_per_s": 22000.0,
            "p50_ms": 10.8,
            "p99_ms": 30.0,
        },
        {
            "config": "3x128",
            "outstanding": 256,
            "system": "PySyncObj (leader)",
            "ops_per_s": 2400.0,
            "p50_ms": 106.0,
            "p99_ms": 120.0,
        },
        {
            "config": "3x128",
            "outstanding": 1024,
            "system": "PySyncObj (leader)",
            "ops_per_s": 8576.0,
            "p50_ms": 118.0,
            "p99_ms": 130.0,
        },
    ]
}


def test_sweep_lines_per_cluster_setting_sorted_by_load() -> None:
    lines = plot.series_of(SWEEP)
    assert [s.label for s in lines] == ["sandzmq 3x128B win 1 batch 512", "sandzmq 3x128B win 4 batch 512"]
    assert lines[1].sorted_points() == [(256, 20000.0, 10.0, 30.0), (1024, 30000.0, 20.0, 60.0)]
    assert lines[0].points == [(256, 12000.0, 19.0, None)]  # the 5-node cell had no successful run


def test_compare_lines_per_system_and_config() -> None:
    lines = plot.series_of(COMPARE)
    assert [s.label for s in lines] == ["sandzmq (fsync on) 3x128B", "PySyncObj (leader) 3x128B"]
    assert len(lines[1].points) == 2


def test_unknown_files_are_refused() -> None:
    with pytest.raises(ValueError):
        plot.series_of({"ops_per_s": 1.0})


def test_the_same_label_in_two_files_is_told_apart(tmp_path: Path) -> None:
    (tmp_path / "before.json").write_text(json.dumps(COMPARE))
    (tmp_path / "after.json").write_text(json.dumps(COMPARE))
    labels = [s.label for s in plot.load_all([tmp_path / "before.json", tmp_path / "after.json"])]
    assert "PySyncObj (leader) 3x128B (before)" in labels and "PySyncObj (leader) 3x128B (after)" in labels


@pytest.mark.skipif(not plot.have_matplotlib(), reason="matplotlib not installed (pip install -e '.[plots]')")
def test_draws_two_svgs(tmp_path: Path) -> None:
    written = plot.draw(plot.series_of(SWEEP) + plot.series_of(COMPARE), tmp_path / "plots", "test")
    assert [p.name for p in written] == ["throughput.svg", "latency.svg"]
    assert all(p.read_text().lstrip().startswith("<?xml") for p in written)
