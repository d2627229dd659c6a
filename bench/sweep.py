"""Sweep `sandzmq bench --spawn --json` over a grid of cluster settings and load levels.

    .venv/bin/python bench/sweep.py [--nodes 3,5] [--sizes 128,1024] [--max-inflight 1,2,4,8,16]
        [--max-batch 64,256,512,2048] [--loads 4x64,4x256] [--repeats 3] [--duration 5] [--warmup 1]
        [--json OUT] [--dry-run]

Each cell of the grid is one combination of node count, command size,
`raft.max_inflight` (AppendEntries in flight per follower),
`raft.max_batch_entries` (entries per AppendEntries) and load level
(`CLIENTSxINFLIGHT`: bench clients x commands each keeps in flight). Every
run gets a fresh temp dir with a generated config (free loopback ports,
fsync on, the kv state machine, the WAL under the temp dir) and runs
`sandzmq bench --spawn` on it, which starts the cluster and stops it again.

The cells are run round-robin, --repeats times (round 1 runs every cell
once, then round 2, ...; the order rotates each round), never N runs of one
cell in a row: on a shared machine, a drift of the load then hits every cell
alike. The table shows the medians per cell: committed ops/s, p50/p99
latency, entries per AppendEntries and per fsync on the leader (null when
the nodes report no counters); and the largest resident set of any actor
process in any run of the cell.

Cleanup: each bench runs in its own session. On Ctrl-C or SIGTERM the sweep
sends it SIGTERM, on which it stops its cluster through the supervisor
(SIGTERM, then SIGKILL of the supervisor's process group); if the bench is
gone and its supervisor is not, the supervisor gets the same; a last
backstop kills any process whose command line names the run's temp dir.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from benchlib import (
    cluster_config_text,
    filesystem_of,
    free_ports,
    interrupt_on_sigterm,
    kill_leftovers,
    median_cell,
    write_cluster_config,
    write_json,
)
from sandzmq.benchmark import max_rss

#: The per-run numbers the medians are taken of.
METRICS = ("ops_per_s", "p50_ms", "p99_ms", "entries_per_append", "entries_per_fsync", "max_rss_mib", "errors")
STARTUP_S = 4.0  # rough cost of starting and stopping a cluster, for the first time estimate


@dataclass(frozen=True, slots=True)
class Cell:
    """One point of the grid."""

    nodes: int
    size: int
    max_inflight: int
    max_batch: int
    clients: int
    inflight: int

    @property
    def outstanding(self) -> int:
        """Commands in flight in total: what closed-loop throughput depends on."""
        return self.clients * self.inflight

    @property
    def label(self) -> str:
        return (
            f"{self.nodes}n {self.size}B win {self.max_inflight} batch {self.max_batch} "
            f"load {self.clients}x{self.inflight}"
        )


# ---------------------------------------------------------------- the grid


def int_list(text: str) -> list[int]:
    """ "1,2,4" -> [1, 2, 4] (argparse type)."""
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def load_list(text: str) -> list[tuple[int, int]]:
    """ "4x64,8x128" -> [(4, 64), (8, 128)]: (clients, in flight per client) (argparse type)."""
    loads = []
    for item in (x.strip().lower() for x in text.split(",") if x.strip()):
        clients, sep, inflight = item.partition("x")
        if not sep or not clients.isdigit() or not inflight.isdigit() or min(int(clients), int(inflight)) < 1:
            raise argparse.ArgumentTypeError(f"a load is CLIENTSxINFLIGHT, e.g. 4x64; got {item!r}")
        loads.append((int(clients), int(inflight)))
    if not loads:
        raise argparse.ArgumentTypeError("no load level given")
    return loads


def grid(
    nodes: list[int], sizes: list[int], max_inflight: list[int], max_batch: list[int], loads: list[tuple[int, int]]
) -> list[Cell]:
    """Every combination, in a stable order (the table's order)."""
    return [
        Cell(n, s, w, b, c, i) for n, s, w, b, (c, i) in itertools.product(nodes, sizes, max_inflight, max_batch, loads)
    ]


def schedule(cells: list[Cell], repeats: int) -> list[tuple[int, Cell]]:
    """(round, cell) in run order: every cell once per round, rotated by one
    each round, so that no cell always runs first (or right after a given other)."""
    order = []
    for rnd in range(repeats):
        shift = rnd % len(cells) if cells else 0
        order += [(rnd + 1, cell) for cell in cells[shift:] + cells[:shift]]
    return order


# ---------------------------------------------------------------- configs


def cell_raft_options(cell: Cell) -> dict[str, int]:
    return {"max_inflight": cell.max_inflight, "max_batch_entries": cell.max_batch}


# ---------------------------------------------------------------- one run


def bench_argv(config: Path, cell: Cell, args: argparse.Namespace, out: Path) -> list[str]:
    return [
        sys.executable, "-m", "sandzmq.cli.main", "bench", "--config", str(config), "--spawn",
        "--clients", str(cell.clients), "--inflight", str(cell.inflight), "--size", str(cell.size),
        "--duration", str(args.duration), "--warmup", str(args.warmup), "--timeout", str(args.timeout),
        "--json", str(out),
    ]  # fmt: skip


def run_result(report: dict[str, Any]) -> dict[str, Any]:
    """The numbers of one run, from `sandzmq bench --json`."""
    top = max_rss(report.get("max_rss_mib") or {})
    return {
        "ops_per_s": report["ops_per_s"],
        "p50_ms": report["latency_ms"]["p50"],
        "p99_ms": report["latency_ms"]["p99"],
        "entries_per_append": report.get("entries_per_append"),
        "entries_per_fsync": report.get("entries_per_fsync"),
        "max_rss_mib": None if top is None else top[0],
        "errors": report["errors"],
    }


def run_cell(cell: Cell, args: argparse.Namespace) -> dict[str, Any]:
    """One bench run in a fresh temp dir; never raises for a failed run (the
    others still count), always cleans up."""
    workdir = Path(tempfile.mkdtemp(prefix="sweep-", dir=args.tmp_dir))
    config = write_cluster_config(workdir, cell.nodes, raft=cell_raft_options(cell))
    out = workdir / "bench.json"
    stderr_path = workdir / "bench.stderr"
    proc = None
    try:
        with open(stderr_path, "wb") as err, open(workdir / "bench.stdout", "wb") as so:
            proc = subprocess.Popen(
                bench_argv(config, cell, args, out),
                stdin=subprocess.DEVNULL,
                stdout=so,
                stderr=err,
                start_new_session=True,
            )
            proc.wait(args.warmup + args.duration + args.timeout + 90)
        if proc.returncode != 0 or not out.exists():
            tail = " | ".join(stderr_path.read_text(errors="replace").splitlines()[-3:])
            return {"ok": False, "error": f"bench exit {proc.returncode}: {tail}", **dict.fromkeys(METRICS)}
        return {"ok": True, **run_result(json.loads(out.read_text()))}
    except subprocess.TimeoutExpired:
        return {"ok": False, "error": "bench did not finish in time", **dict.fromkeys(METRICS)}
    finally:
        with _sigint_ignored():
            cleanup(proc, workdir, stderr_path)
        if args.keep:
            log(f"  kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


@contextlib.contextmanager
def _sigint_ignored() -> Iterator[None]:
    """A second Ctrl-C must not interrupt the cleanup of the first."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def cleanup(proc: subprocess.Popen[bytes] | None, workdir: Path, stderr_path: Path) -> None:
    """Stop a bench and the cluster it spawned: first politely (SIGTERM makes
    the bench stop its cluster via the supervisor), then by force."""
    if proc is not None and proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            _killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    supervisor = supervisor_pid(stderr_path.read_text(errors="replace") if stderr_path.exists() else "")
    if supervisor is not None and _cmdline_mentions(supervisor, str(workdir)):
        log(f"  the cluster (supervisor {supervisor}) outlived its bench: stopping it")
        _killpg(supervisor, signal.SIGTERM)  # the supervisor stops its actors in order
        deadline = time.monotonic() + 10
        while _cmdline_mentions(supervisor, str(workdir)) and time.monotonic() < deadline:
            time.sleep(0.1)
        _killpg(supervisor, signal.SIGKILL)
    leftovers = kill_leftovers(str(workdir))
    if leftovers:
        log(f"  killed leftover processes {leftovers}")


def supervisor_pid(bench_stderr: str) -> int | None:
    """The pid `sandzmq bench --spawn` printed for the cluster it started."""
    marker = "supervisor pid "
    at = bench_stderr.find(marker)
    if at < 0:
        return None
    digits = "".join(itertools.takewhile(str.isdigit, bench_stderr[at + len(marker) :]))
    return int(digits) if digits else None


def _cmdline_mentions(pid: int, text: str) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return text.encode() in fh.read()
    except OSError:
        return False


def _killpg(pgid: int, signum: int) -> None:
    try:
        os.killpg(pgid, signum)
    except (ProcessLookupError, PermissionError):
        pass


# ---------------------------------------------------------------- summary


def cell_medians(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians of the successful runs of one cell, per metric; a metric some
    runs could not measure (None) takes the median of those that did. Memory
    is the exception: the largest RSS of any run, since the target is a ceiling."""
    ok = [run for run in runs if run["ok"]]
    complete = [key for key in METRICS if ok and all(run[key] is not None for run in ok)]
    medians: dict[str, Any] = median_cell([{key: run[key] for key in complete} for run in ok]) if complete else {}
    for key in METRICS:
        if key not in medians:
            values = [run[key] for run in ok if run[key] is not None]
            medians[key] = statistics.median(values) if values else None
    rss = [run["max_rss_mib"] for run in ok if run["max_rss_mib"] is not None]
    medians["max_rss_mib"] = max(rss) if rss else None
    return {"runs": len(ok), "failed": len(runs) - len(ok), **medians}


def summarize(cells: list[Cell], runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per cell: its parameters and the medians of its runs."""
    rows = []
    for cell in cells:
        mine = [run for run in runs if run["cell"] == asdict(cell)]
        rows.append({**asdict(cell), "outstanding": cell.outstanding, **cell_medians(mine)})
    return rows


COLUMNS = (  # (title, key, format)
    ("nodes", "nodes", "d"), ("size", "size", "d"), ("win", "max_inflight", "d"), ("batch", "max_batch", "d"),
    ("clients", "clients", "d"), ("inflight", "inflight", "d"), ("outst.", "outstanding", "d"),
    ("runs", "runs", "d"), ("ops/s", "ops_per_s", ",.0f"), ("p50 ms", "p50_ms", ".2f"), ("p99 ms", "p99_ms", ".2f"),
    ("ent/append", "entries_per_append", ".1f"), ("ent/fsync", "entries_per_fsync", ".1f"),
    ("max RSS MiB", "max_rss_mib", ".1f"), ("errors", "errors", ",.0f"),
)  # fmt: skip


def render_table(rows: list[dict[str, Any]]) -> str:
    """The medians as an aligned text table, one line per cell."""
    cells = [[title for title, _, _ in COLUMNS]]
    cells += [["-" if row[key] is None else format(row[key], spec) for _, key, spec in COLUMNS] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(COLUMNS))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(line, widths)) for line in cells]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


# ---------------------------------------------------------------- main


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 2)[2],
    )
    p.add_argument("--nodes", type=int_list, default=[3], help="node counts, e.g. 3,5 (default: 3)")
    p.add_argument("--sizes", type=int_list, default=[128], help="command sizes in bytes, e.g. 128,1024 (default: 128)")
    p.add_argument(
        "--max-inflight",
        type=int_list,
        default=[1, 4, 16],
        help="raft.max_inflight values, e.g. 1,2,4,8,16 (default: 1,4,16)",
    )
    p.add_argument(
        "--max-batch",
        type=int_list,
        default=[512],
        help="raft.max_batch_entries values, e.g. 64,256,512,2048 (default: 512)",
    )
    p.add_argument(
        "--loads",
        type=load_list,
        default=[(4, 64), (4, 256)],
        help="load levels CLIENTSxINFLIGHT, comma-separated (default: 4x64,4x256)",
    )
    p.add_argument("--repeats", type=int, default=3, help="runs per cell, round-robin (default: %(default)s)")
    p.add_argument("--duration", type=float, default=5.0, help="measured seconds per run (default: %(default)s)")
    p.add_argument("--warmup", type=float, default=1.0, help="seconds of load before measuring (default: %(default)s)")
    p.add_argument("--timeout", type=float, default=5.0, help="bench --timeout per command (default: %(default)s)")
    p.add_argument("--tmp-dir", default=None, help="where run directories go (default: the system temp dir)")
    p.add_argument("--keep", action="store_true", help="keep each run's directory (config, logs, data)")
    p.add_argument("--json", metavar="OUT", help="write every run and the medians as JSON ('-': stdout)")
    p.add_argument("--dry-run", action="store_true", help="print the plan and one generated config, run nothing")
    args = p.parse_args(argv)
    if args.repeats < 1 or args.duration <= 0 or args.warmup < 0:
        p.error("--repeats and --duration must be positive, --warmup not negative")
    return args


def machine_info(tmp: str) -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "tmp_dir": tmp,
        "tmp_filesystem": filesystem_of(tmp),
        "loadavg_1m": round(os.getloadavg()[0], 2),
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cells = grid(args.nodes, args.sizes, args.max_inflight, args.max_batch, args.loads)
    plan = schedule(cells, args.repeats)
    machine = machine_info(args.tmp_dir or tempfile.gettempdir())
    per_run = args.warmup + args.duration + STARTUP_S
    log(
        f"sweep: {len(cells)} cell(s) x {args.repeats} round(s) = {len(plan)} runs, "
        f"{args.warmup:g} s warm-up + {args.duration:g} s each, about {_duration(len(plan) * per_run)}"
    )
    log("machine: " + ", ".join(f"{k}={v}" for k, v in machine.items()))
    if machine["tmp_filesystem"] in ("tmpfs", "ramfs"):
        log(f"WARNING: {machine['tmp_dir']} is {machine['tmp_filesystem']}: fsync costs nothing there (--tmp-dir)")
    if args.dry_run:
        for rnd, cell in plan:
            log(f"  round {rnd}: {cell.label}")
        print(cluster_config_text("sweep", free_ports(2 * cells[0].nodes), raft=cell_raft_options(cells[0])))
        return 0

    interrupt_on_sigterm()
    runs: list[dict[str, Any]] = []
    began = time.monotonic()
    try:
        for number, (rnd, cell) in enumerate(plan, 1):
            log(f"[{number}/{len(plan)}] round {rnd}/{args.repeats}: {cell.label} ...")
            result = run_cell(cell, args)
            runs.append({"cell": asdict(cell), "round": rnd, **result})
            left = (time.monotonic() - began) / number * (len(plan) - number)
            log(f"  {_run_line(result)}; about {_duration(left)} left")
    except KeyboardInterrupt:
        log("interrupted: reporting the runs done so far")
    rows = summarize(cells, runs)
    print(
        f"medians of up to {args.repeats} run(s) per cell; 127.0.0.1, fsync on, kv state machine; "
        f"win = raft.max_inflight, batch = raft.max_batch_entries, outst. = clients x inflight"
    )
    print(render_table(rows))
    if args.json:
        params = {k: v for k, v in vars(args).items() if k not in ("json", "dry_run")}
        write_json(
            args.json, {"kind": "sandzmq-sweep", "machine": machine, "params": params, "cells": rows, "runs": runs}
        )
    return 0 if runs and all(run["ok"] for run in runs) else 1


def _run_line(result: dict[str, Any]) -> str:
    if not result["ok"]:
        return f"FAILED: {result['error']}"
    fmt = _fmt
    return (
        f"{result['ops_per_s']:,.0f} ops/s, p50 {fmt(result['p50_ms'], '.2f')} ms, p99 {fmt(result['p99_ms'], '.2f')} ms, "
        f"{fmt(result['entries_per_append'], '.1f')} entries/append, {fmt(result['entries_per_fsync'], '.1f')} "
        f"entries/fsync, max RSS {fmt(result['max_rss_mib'], '.1f')} MiB, errors {result['errors']}"
    )


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


if __name__ == "__main__":
    sys.exit(main())
