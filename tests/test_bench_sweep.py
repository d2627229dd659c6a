"""bench/sweep.py's pure parts: the grid, the round-robin order, the
generated configs, the medians and the table. No cluster is started."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import sweep  # noqa: E402

from sandzmq.config import load_config  # noqa: E402


def run(cell: sweep.Cell, ok: bool = True, **values) -> dict:
    base = dict.fromkeys(sweep.METRICS)
    base.update(values)
    return {"cell": sweep.asdict(cell), "round": 1, "ok": ok, **base}


def test_grid_is_the_product_of_the_options() -> None:
    cells = sweep.grid([3, 5], [128], [1, 4], [512], [(4, 64), (8, 32)])
    assert len(cells) == 8
    assert cells[0] == sweep.Cell(3, 128, 1, 512, 4, 64) and cells[0].outstanding == 256


def test_schedule_is_round_robin_and_rotates() -> None:
    a, b, c = sweep.grid([3], [128], [1, 2, 4], [512], [(4, 64)])
    order = sweep.schedule([a, b, c], 3)
    assert [rnd for rnd, _ in order] == [1, 1, 1, 2, 2, 2, 3, 3, 3]
    assert [cell for _, cell in order] == [a, b, c, b, c, a, c, a, b]
    assert all(x != y for (_, x), (_, y) in zip(order, order[1:]))  # never twice in a row


def test_generated_config_loads_with_the_cells_raft_options(tmp_path: Path) -> None:
    cell = sweep.Cell(5, 1024, 8, 2048, 4, 64)
    config = load_config(sweep.write_cluster_config(tmp_path, cell.nodes, raft=sweep.cell_raft_options(cell)))
    assert [n.id for n in config.nodes] == ["n1", "n2", "n3", "n4", "n5"]
    assert (config.raft.max_inflight, config.raft.max_batch_entries, config.raft.fsync) == (8, 2048, True)
    assert config.state_machine == "kv" and config.data_dir == (tmp_path / "data").resolve()
    addresses = [n.raft for n in config.nodes] + [n.client for n in config.nodes]
    assert len(set(addresses)) == 10 and all(a.startswith("tcp://127.0.0.1:") for a in addresses)


def test_parse_options() -> None:
    assert sweep.int_list("1,2, 4") == [1, 2, 4]
    assert sweep.load_list("4x64, 8X32") == [(4, 64), (8, 32)]
    for bad in ("4", "x64", "4x0", ""):
        with pytest.raises(argparse.ArgumentTypeError):
            sweep.load_list(bad)
    with pytest.raises(argparse.ArgumentTypeError):
        sweep.int_list("1,0")


def test_medians_skip_failed_runs_and_missing_values() -> None:
    cell = sweep.Cell(3, 128, 4, 512, 4, 64)
    runs = [
        run(cell, ops_per_s=100.0, p50_ms=1.0, p99_ms=9.0, errors=0, max_rss_mib=40.0, entries_per_append=10.0),
        run(cell, ops_per_s=300.0, p50_ms=3.0, p99_ms=7.0, errors=2, max_rss_mib=44.0, entries_per_append=None),
        run(cell, ops_per_s=200.0, p50_ms=2.0, p99_ms=8.0, errors=0, max_rss_mib=42.0, entries_per_append=30.0),
        run(cell, ok=False),
    ]
    medians = sweep.cell_medians(runs)
    assert (medians["runs"], medians["failed"]) == (3, 1)
    assert (medians["ops_per_s"], medians["p50_ms"], medians["p99_ms"], medians["errors"]) == (200.0, 2.0, 8.0, 0)
    assert medians["entries_per_append"] == 20.0  # of the two runs that measured it
    assert medians["entries_per_fsync"] is None
    assert medians["max_rss_mib"] == 44.0  # memory: the largest of any run, not the median


def test_summary_table_has_one_line_per_cell() -> None:
    cells = sweep.grid([3], [128], [1, 4], [512], [(4, 64)])
    rows = sweep.summarize(cells, [run(cells[0], ops_per_s=12345.0, p50_ms=1.5, p99_ms=9.25, errors=0)])
    table = sweep.render_table(rows).splitlines()
    assert table[0].split()[:3] == ["nodes", "size", "win"] and len(table) == 4
    assert "12,345" in table[2] and "9.25" in table[2]
    assert table[3].split()[7:9] == ["0", "-"]  # no run of the second cell: no numbers


def test_supervisor_pid_from_the_bench_output() -> None:
    text = "bench: 3 node(s)\nbench: started the cluster (supervisor pid 4242, log /tmp/x)\n"
    assert sweep.supervisor_pid(text) == 4242
    assert sweep.supervisor_pid("bench: no leader\n") is None


def test_run_result_from_a_bench_report() -> None:
    report = {
        "ops_per_s": 9.5,
        "errors": 0,
        "latency_ms": {"p50": 1.0, "p99": 2.0},
        "entries_per_append": 12.5,
        "entries_per_fsync": None,
        "max_rss_mib": {"n1": {"raft": 40.0, "log": 30.0}, "n2": {"raft": 41.5}},
    }
    assert sweep.run_result(report) == {
        "ops_per_s": 9.5,
        "p50_ms": 1.0,
        "p99_ms": 2.0,
        "entries_per_append": 12.5,
        "entries_per_fsync": None,
        "max_rss_mib": 41.5,
        "errors": 0,
    }
