"""`sandzmq bench`: run the benchmark (sandzmq.benchmark) and show it.

The run is the library's. This module prints what it is about to measure
and, as the run reports them, its events on stderr (the live progress);
then the human summary on stdout, and the report to --json OUT.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, TextIO

from sandzmq.benchmark import (
    BenchOptions,
    ClusterStarted,
    ClusterStopped,
    Event,
    LeaderFound,
    NoLeaderError,
    Progress,
    max_rss,
    run_bench,
    sigterm_as_interrupt,
)

from sandzmq.config import ClusterConfig


def run(
    config: ClusterConfig,
    options: BenchOptions,
    json_out: str | None = None,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
) -> int:
    """The whole command; returns the exit status: 0 if operations committed,
    1 if none did or no node leads."""
    print(header(config, options), file=err)
    with sigterm_as_interrupt():
        try:
            report = run_bench(config, options, on_event=lambda event: show_event(event, err))
        except NoLeaderError as exc:
            hint = "" if exc.log_path else " (is it running? --spawn starts it)"
            print(f"sandzmq: {exc}{hint}", file=err)
            return 1
    print(table(report), file=out)
    if json_out:
        Path(json_out).write_text(json.dumps(report, indent=2) + "\n")
    return 0 if report["ops"] > 0 else 1


def header(config: ClusterConfig, options: BenchOptions) -> str:
    """What is measured, before any number: the settings that change the numbers."""
    return (
        f"bench: {len(config.nodes)} node(s) of {config.name!r} (fsync {'on' if config.raft.fsync else 'OFF'}), "
        f"{options.clients} client(s) x {options.inflight} in flight, {options.size}-byte values, "
        f"{options.duration:g} s after a {options.warmup:g} s warm-up"
    )


def show_event(event: Event, err: TextIO) -> None:
    """One line on stderr per event of the run."""
    match event:
        case ClusterStarted(pid=pid, log_path=log_path):
            print(f"bench: started the cluster (supervisor pid {pid}, log {log_path})", file=err)
        case LeaderFound(leader=leader):
            print(f"bench: {leader} leads", file=err)
        case Progress():
            print(progress_line(event), file=err, flush=True)
        case ClusterStopped(exit_status=status):
            print(f"bench: stopped the cluster (exit status {status})", file=err)


def progress_line(progress: Progress) -> str:
    """The live line: the rates since the previous one."""
    phase = "warm-up" if progress.measured_s is None else f"{progress.measured_s:5.1f} s"
    return (
        f"  {phase:>8}  {progress.ops_per_s:>9.0f} ops/s  errors {progress.errors:<5}"
        f"  p50 {_ms(progress.p50_s)} ms  p99 {_ms(progress.p99_s)} ms"
    )


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.2f}"


def table(report: dict[str, Any]) -> str:
    """The human summary: the latency table, then batching and memory lines."""
    lat = report["latency_ms"]
    titles = ["ops/s", "ops", "errors", "p50 ms", "p90 ms", "p99 ms", "max ms"]
    row = [
        f"{report['ops_per_s']:.1f}", str(report["ops"]), str(report["errors"]),
        *("-" if lat[k] is None else f"{lat[k]:.2f}" for k in ("p50", "p90", "p99", "max")),
    ]  # fmt: skip
    widths = [max(len(t), len(c)) for t, c in zip(titles, row)]
    lines = ["  ".join(x.rjust(w) for x, w in zip(line, widths)) for line in (titles, row)]
    if report["errors_by_type"]:
        lines.append("errors: " + ", ".join(f"{k} {v}" for k, v in sorted(report["errors_by_type"].items())))
    lines.append(_batching_line(report))
    lines.append(_rss_line(report.get("max_rss_mib") or {}))
    return "\n".join(lines)


def _batching_line(report: dict[str, Any]) -> str:
    per_append, per_fsync = report.get("entries_per_append"), report.get("entries_per_fsync")
    if per_append is None and per_fsync is None:
        return "batching: - (the leader reported no stats for the window)"
    return (
        f"batching on the leader ({report.get('leader')}): {_one_decimal(per_append)} entries per AppendEntries, "
        f"{_one_decimal(per_fsync)} entries per fsync"
    )


def _one_decimal(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _rss_line(max_rss_mib: dict[str, dict[str, float]]) -> str:
    top = max_rss(max_rss_mib)
    if top is None:
        return "max RSS: - (no actor process on this host)"
    mib, node, kind = top
    return f"max RSS: {mib:.1f} MiB ({node} {kind}, of {sum(map(len, max_rss_mib.values()))} actor processes sampled)"
