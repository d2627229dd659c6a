"""How `sandzmq bench` (cli/bench.py) shows a run: the header, one line per
event of the run, the summary table, the --json file and the exit status.
The run itself is the library's (tests/test_bench_lib.py); here it is
replaced by canned events and a canned report."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from sandzmq.benchmark import BenchOptions, ClusterStarted, ClusterStopped, LeaderFound, NoLeaderError, Progress
from sandzmq.cli import bench

from sandzmq.config import load_config

REPORT: dict[str, Any] = {
    "ops_per_s": 1234.5, "ops": 12345, "errors": 2,
    "latency_ms": {"p50": 1.5, "p90": 2.25, "p99": 10.0, "max": 123.456},
    "clients": 4, "size": 128, "duration_s": 10.0, "nodes": 3, "fsync": True,
    "errors_by_type": {"ReplicationTimeout": 1, "ClusterUnavailable": 1},
    "leader": "n2", "entries_per_append": 64.0, "entries_per_fsync": 160.25,
    "max_rss_mib": {"n1": {"raft": 40.0, "log": 30.0}, "n2": {"apply": 55.5}},
}  # fmt: skip


@pytest.fixture
def config(tmp_path: Path):
    path = tmp_path / "c.toml"
    path.write_text(
        '[cluster]\nname = "dev"\nstate_machine = "kv"\ndata_dir = "data"\n[raft]\nfsync = false\n'
        '[[nodes]]\nid = "n1"\nraft = "tcp://127.0.0.1:7001"\nclient = "tcp://127.0.0.1:7002"\n'
    )
    return load_config(path)


def test_header_names_what_changes_the_numbers(config) -> None:
    options = BenchOptions(clients=2, inflight=8, size=64, duration=2.5, warmup=0)
    assert bench.header(config, options) == (
        "bench: 1 node(s) of 'dev' (fsync OFF), 2 client(s) x 8 in flight, 64-byte values, 2.5 s after a 0 s warm-up"
    )


def test_progress_lines() -> None:
    assert bench.progress_line(Progress(None, 1234.4, 3, 0.0015, None)) == (
        "   warm-up       1234 ops/s  errors 3      p50 1.50 ms  p99 - ms"
    )
    assert bench.progress_line(Progress(2.04, 10.0, 0, 0.1, 0.25)) == (
        "     2.0 s         10 ops/s  errors 0      p50 100.00 ms  p99 250.00 ms"
    )


def test_one_line_per_event() -> None:
    err = io.StringIO()
    for event in (ClusterStarted(77, Path("data/bench-cluster.log")), LeaderFound("n3"), ClusterStopped(0)):
        bench.show_event(event, err)
    assert err.getvalue().splitlines() == [
        "bench: started the cluster (supervisor pid 77, log data/bench-cluster.log)",
        "bench: n3 leads",
        "bench: stopped the cluster (exit status 0)",
    ]


def test_table() -> None:
    assert bench.table(REPORT).splitlines() == [
        " ops/s    ops  errors  p50 ms  p90 ms  p99 ms  max ms",
        "1234.5  12345       2    1.50    2.25   10.00  123.46",
        "errors: ClusterUnavailable 1, ReplicationTimeout 1",
        "batching on the leader (n2): 64.0 entries per AppendEntries, 160.2 entries per fsync",
        "max RSS: 55.5 MiB (n2 apply, of 3 actor processes sampled)",
    ]


def test_table_of_an_empty_run() -> None:
    empty = {**REPORT, "ops": 0, "ops_per_s": 0.0, "errors": 0, "errors_by_type": {}, "max_rss_mib": {},
             "latency_ms": dict.fromkeys(("p50", "p90", "p99", "max")), "entries_per_append": None,
             "entries_per_fsync": None}  # fmt: skip
    assert bench.table(empty).splitlines()[1:] == [
        "  0.0    0       0       -       -       -       -",
        "batching: - (the leader reported no stats for the window)",
        "max RSS: - (no actor process on this host)",
    ]


def test_run_prints_the_events_then_the_table_and_writes_the_json(config, tmp_path: Path, monkeypatch) -> None:
    def fake_run_bench(cfg, options, on_event):
        on_event(LeaderFound("n2"))
        on_event(Progress(0.5, 100.0, 0, 0.001, 0.002))
        return REPORT

    monkeypatch.setattr(bench, "run_bench", fake_run_bench)
    out, err, json_out = io.StringIO(), io.StringIO(), tmp_path / "r.json"
    assert bench.run(config, BenchOptions(), str(json_out), out=out, err=err) == 0
    assert [line.split()[:2] for line in err.getvalue().splitlines()] == [
        ["bench:", "1"],
        ["bench:", "n2"],
        ["0.5", "s"],
    ]
    assert out.getvalue() == bench.table(REPORT) + "\n"
    assert json.loads(json_out.read_text()) == REPORT


def test_a_run_that_committed_nothing_fails(config, monkeypatch) -> None:
    monkeypatch.setattr(bench, "run_bench", lambda cfg, options, on_event: {**REPORT, "ops": 0})
    assert bench.run(config, BenchOptions(), out=io.StringIO(), err=io.StringIO()) == 1


@pytest.mark.parametrize(
    "error,line",
    [(NoLeaderError("no node became leader within 10 s", None),
      "sandzmq: no node became leader within 10 s (is it running? --spawn starts it)"),
     (NoLeaderError("no node became leader within 30 s; see x.log", Path("x.log")),
      "sandzmq: no node became leader within 30 s; see x.log")],
)  # fmt: skip
def test_no_leader_is_one_error_line(config, monkeypatch, error: NoLeaderError, line: str) -> None:
    def no_leader(cfg, options, on_event):
        raise error

    monkeypatch.setattr(bench, "run_bench", no_leader)
    out, err = io.StringIO(), io.StringIO()
    assert bench.run(config, BenchOptions(), out=out, err=err) == 1
    assert err.getvalue().splitlines()[1:] == [line] and out.getvalue() == ""
