"""sandzmq against PySyncObj, side by side, on this machine.

    pip install -e '.[compare]'          # once: PySyncObj 0.3.17, the version measured
    .venv/bin/python bench/compare_pysyncobj.py [--rounds 3] [--duration 8] [--warmup 2]
        [--configs 3x128] [--also-5x1k] [--outstanding 256,1024,16384] [--pso-modes leader,spread]
        [--sandzmq-fsync on|off|both] [--json OUT]

For each configuration (node count x command size; default 3 nodes x 128
bytes, --also-5x1k adds 5 nodes x 1 KiB) and each load level, it runs,
--rounds times and ALTERNATELY (the order rotates each round, so a drift of
the machine's load hits every system alike), on 127.0.0.1 only:

- sandzmq: `sandzmq bench --config <generated> --spawn --clients C
  --inflight L/C --size S --duration D --warmup W --json OUT`, with a fresh
  config in a temp dir (free ports, data under the temp dir, fsync = true,
  the kv state machine). Committed ops/s and latency come from its JSON.
- PySyncObj (bench/pysyncobj_node.py): one node per process, each with a
  driver that issues @replicated calls with callbacks, as PySyncObj's own
  benchmarks/testobj.py does, in two modes: `leader` (only the leader's
  process issues calls) and `spread` (every node's process does; followers
  forward to the leader). Committed ops/s = successful callbacks in the
  measured window / its length; latency = call -> callback. PySyncObj runs
  with its defaults, which keep the Raft log in memory: no disk writes and
  NO fsync. The table says so.

Load levels (--outstanding): each level L is a closed loop with L commands
outstanding in total for EVERY system (sandzmq: C clients x L/C in flight;
PySyncObj: L on the leader, or L/N on each of N nodes). Closed-loop
throughput is L / latency (Little's law), so one level alone can hide a
system's capacity: the default levels are 256 (sandzmq bench's default, for
latency at equal concurrency), 1024 (about where sandzmq peaks on a small
machine) and 16384 (where PySyncObj peaks, and where its own benchmark
measures: it ramps an open-loop rate until fewer than 90 % of calls succeed).
The "best level" line compares each system at its best level. --pso-rate R switches PySyncObj to that open loop
(R calls/s in total, still capped at L outstanding).

Everything started is stopped afterwards, also on failure or Ctrl-C: each
process group is killed by id, and any process still holding the run's temp
directory on its command line is killed by pid. The temp dirs are removed
unless --keep.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import queue
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from benchlib import filesystem_of, free_ports, interrupt_on_sigterm, kill_group, kill_leftovers, write_cluster_config
from sandzmq.benchmark import percentile

HERE = Path(__file__).resolve().parent
NODE_SCRIPT = HERE / "pysyncobj_node.py"
PSO_VERSION = "0.3.17"


# ---------------------------------------------------------------- helpers


def cpu_busy(interval: float = 0.5) -> float:
    """Percent of the machine's CPU time that was busy over `interval` (Linux /proc/stat)."""

    def read() -> tuple[int, int]:
        with open("/proc/stat") as fh:
            values = [int(v) for v in fh.readline().split()[1:]]
        idle = values[3] + (values[4] if len(values) > 4 else 0)
        return sum(values), idle

    try:
        t0, i0 = read()
        time.sleep(interval)
        t1, i1 = read()
    except OSError:
        return float("nan")
    return 100.0 * (1 - (i1 - i0) / max(1, t1 - t0))


def wait_quiet(limit_pct: float, max_wait: float) -> float:
    """Wait (up to max_wait s) until other work uses less than limit_pct of the
    machine; returns the last busy percentage seen."""
    deadline = time.monotonic() + max_wait
    busy = cpu_busy()
    while busy > limit_pct and time.monotonic() < deadline:
        busy = cpu_busy(1.0)
    return busy


_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def tree_cpu(marker: str) -> tuple[float, int]:
    """CPU seconds (user + system) used so far by the live processes whose
    command line mentions `marker`, and how many there are."""
    total, count = 0.0, 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                if marker.encode() not in fh.read():
                    continue
            with open(f"/proc/{entry}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / _TICK
        count += 1
    return total, count


class CpuWindow:
    """CPU used by a run's processes (found by `marker`) between two moments
    inside its measured window: shows the cores a system keeps busy and, with
    its rate, the CPU it spends per committed operation."""

    def __init__(self, marker: str) -> None:
        self.marker = marker
        self.first: tuple[float, float, int] | None = None  # (monotonic, cpu s, processes)
        self.last: tuple[float, float, int] | None = None

    def snap(self) -> None:
        cpu, count = tree_cpu(self.marker)
        point = (time.monotonic(), cpu, count)
        if self.first is None:
            self.first = point
        else:
            self.last = point

    def result(self, ops_per_s: float | None) -> dict[str, Any]:
        if self.first is None or self.last is None or self.last[0] <= self.first[0]:
            return {"cores_used": None, "cpu_us_per_op": None, "processes": None}
        cores = (self.last[1] - self.first[1]) / (self.last[0] - self.first[0])
        return {
            "cores_used": round(cores, 2),
            "cpu_us_per_op": round(cores / ops_per_s * 1e6, 1) if ops_per_s else None,
            "processes": self.last[2],
        }


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- sandzmq


def run_sandzmq(
    args: argparse.Namespace, nodes: int, size: int, fsync: bool, level: int, workdir: Path
) -> dict[str, Any]:
    config = write_cluster_config(workdir, nodes, fsync=fsync, name="compare")
    out = workdir / "bench.json"
    argv = [
        sys.executable,
        "-m",
        "sandzmq.cli.main",
        "bench",
        "--config",
        str(config),
        "--spawn",
        "--clients",
        str(args.clients),
        "--inflight",
        str(max(1, level // args.clients)),
        "--size",
        str(size),
        "--duration",
        str(args.duration),
        "--warmup",
        str(args.warmup),
        "--timeout",
        str(args.timeout),
        "--json",
        str(out),
    ]
    stderr_path = workdir / "bench.stderr"
    proc = None
    supervisor: int | None = None
    cpu = CpuWindow(str(workdir))
    try:
        with open(stderr_path, "wb") as err, open(workdir / "bench.stdout", "wb") as so:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=so, stderr=err, start_new_session=True)
            # Wait for it, sampling the CPU of its processes inside the measured
            # window (which starts when it prints that a leader leads).
            deadline = time.monotonic() + args.warmup + args.duration + args.timeout + 60
            leads_at = None
            while proc.poll() is None:
                now = time.monotonic()
                if now > deadline:
                    log("  sandzmq bench did not finish in time: killing it")
                    break
                if leads_at is None and " leads" in stderr_path.read_text(errors="replace"):
                    leads_at = now
                if leads_at is not None:
                    if cpu.first is None and now >= leads_at + args.warmup + 0.5:
                        cpu.snap()
                    elif cpu.last is None and now >= leads_at + args.warmup + args.duration - 0.5:
                        cpu.snap()
                time.sleep(0.05)
        text = stderr_path.read_text(errors="replace")
        m = re.search(r"supervisor pid (\d+)", text)
        supervisor = int(m.group(1)) if m else None
        if proc.returncode != 0 or not out.exists():
            tail = "\n".join(text.splitlines()[-15:])
            raise RuntimeError(f"sandzmq bench failed (exit {proc.returncode}); its stderr ends:\n{tail}")
        report = json.loads(out.read_text())
    finally:
        if proc is not None:
            if proc.poll() is None:
                kill_group(proc.pid)
                proc.wait()
            else:
                kill_group(proc.pid)
        if supervisor is not None:
            kill_group(supervisor)  # bench --spawn stops it; this only cleans up after a failure
    lat = report["latency_ms"]
    return {
        "ops_per_s": report["ops_per_s"],
        "ops": report["ops"],
        "p50_ms": lat["p50"],
        "p99_ms": lat["p99"],
        "errors": report["errors"],
        "unanswered": None,  # every replicate_async resolves within --timeout (a timeout is an error)
        "errors_by_type": report.get("errors_by_type", {}),
        "commands_per_client_message": report.get("commands_per_client_message"),
        "fsync": report["fsync"],
        **cpu.result(report["ops_per_s"]),
    }


# ---------------------------------------------------------------- PySyncObj


class _Node:
    """One pysyncobj_node.py process and a thread reading its stdout lines."""

    def __init__(self, argv: list[str], stderr_path: Path) -> None:
        self.stderr = open(stderr_path, "wb")
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            start_new_session=True,
            text=True,
            bufsize=1,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def get(self, key: str, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no {key!r} line from pid {self.proc.pid} within {timeout:.0f} s")
            try:
                line = self.lines.get(timeout=remaining)
            except queue.Empty:
                continue  # the deadline check above raises
            if line is None:
                raise RuntimeError(f"pid {self.proc.pid} exited (status {self.proc.poll()}) before its {key!r} line")
            line = line.strip()
            if line.startswith("{"):
                obj = json.loads(line)
                if key in obj:
                    return obj

    def send(self, text: str) -> None:
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.write(text + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            pass

    def kill(self) -> None:
        kill_group(self.proc.pid)
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            pass
        self.stderr.close()


def run_pysyncobj(
    args: argparse.Namespace, nodes: int, size: int, mode: str, level: int, workdir: Path
) -> dict[str, Any]:
    ports = free_ports(nodes)
    addrs = [f"127.0.0.1:{p}" for p in ports]
    procs: list[_Node] = []
    try:
        for i, addr in enumerate(addrs):
            argv = [
                sys.executable,
                str(NODE_SCRIPT),
                "--self",
                addr,
                "--partners",
                *[a for a in addrs if a != addr],
                "--index",
                str(i),
                "--size",
                str(size),
                "--ready-timeout",
                "30",
                "--tag",
                str(workdir),
            ]
            procs.append(_Node(argv, workdir / f"node{i}.stderr"))
        ready = [p.get("ready", 40) for p in procs]
        if not all(r["ready"] for r in ready):
            raise RuntimeError("a PySyncObj node found no leader")
        leaders = [i for i, r in enumerate(ready) if r["is_leader"]]
        if len(leaders) != 1:  # a READY line raced with the election: ask the followers
            named = [r["leader"] for r in ready if r["leader"]]
            leader_addr = max(set(named), key=named.count)
            leaders = [addrs.index(leader_addr)] if leader_addr in addrs else [0]
        leader = leaders[0]
        window = level
        rate = args.pso_rate
        loaders = [leader] if mode == "leader" else list(range(nodes))
        start = time.time() + 0.5
        for i, p in enumerate(procs):
            load = i in loaders
            spec = {
                "load": load,
                "start": start,
                "warmup": args.warmup,
                "duration": args.duration,
                "window": max(1, window // len(loaders)) if load else 0,
                "rate": rate / len(loaders) if load else 0.0,
                "grace": args.timeout,
            }
            p.send(json.dumps(spec))
        cpu = CpuWindow(str(workdir))
        for moment in (start + args.warmup + 0.5, start + args.warmup + args.duration - 0.5):
            time.sleep(max(0.0, moment - time.time()))
            cpu.snap()
        results = [p.get("result", args.warmup + args.duration + args.timeout + 30)["result"] for p in procs]
        for p in procs:
            p.send("stop")
    finally:
        for p in procs:
            p.kill()
    latencies = sorted(x / 1e6 for r in results for x in r["latencies_us"])
    ops = sum(r["ops"] for r in results)
    errors_by_type: dict[str, int] = {}
    for r in results:
        for k, v in r["errors_by_type"].items():
            errors_by_type[k] = errors_by_type.get(k, 0) + v

    def ms(p: float) -> float | None:
        v = percentile(latencies, p)
        return None if v is None else round(v * 1000, 3)

    return {
        "ops_per_s": round(ops / args.duration, 1),
        "ops": ops,
        "p50_ms": ms(50),
        "p99_ms": ms(99),
        "errors": sum(r["errors"] for r in results),
        "unanswered": sum(r["unanswered"] for r in results),
        "errors_by_type": errors_by_type,
        "issued": sum(r["issued"] for r in results),
        "leader_kept": bool(results[leader]["is_leader_at_end"]),
        "fsync": False,
        **cpu.result(ops / args.duration),
    }


# ---------------------------------------------------------------- orchestration


def system_name(kind: str, variant: str) -> str:
    return f"sandzmq (fsync {variant})" if kind == "sandzmq" else f"PySyncObj ({variant})"


def run_one(args: argparse.Namespace, kind: str, variant: str, nodes: int, size: int, level: int) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix=f"cmp-{kind}-", dir=args.tmp_dir))
    load_before = os.getloadavg()[0]
    busy_before = wait_quiet(args.quiet_below, args.wait_quiet) if args.wait_quiet > 0 else cpu_busy()
    started = time.monotonic()
    try:
        if kind == "sandzmq":
            result = run_sandzmq(args, nodes, size, variant == "on", level, workdir)
        else:
            result = run_pysyncobj(args, nodes, size, variant, level, workdir)
        result["ok"] = True
    except Exception as exc:  # one failed run must not lose the others
        log(f"  FAILED: {exc}")
        result = {
            "ok": False,
            "error": str(exc),
            "ops_per_s": None,
            "p50_ms": None,
            "p99_ms": None,
            "errors": None,
            "unanswered": None,
        }
    finally:
        leftovers = kill_leftovers(str(workdir))
        if leftovers:
            log(f"  killed leftover processes {leftovers}")
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            log(f"  kept {workdir}")
    result["loadavg_1m_before"] = round(load_before, 2)
    result["cpu_busy_before_pct"] = round(busy_before, 1)
    result["wall_s"] = round(time.monotonic() - started, 1)
    return result


def fmt(v: Any, spec: str = ".2f") -> str:
    return "-" if v is None else format(v, spec)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--configs", default="3x128", help="NODESxBYTES, comma-separated (default: %(default)s)")
    p.add_argument("--also-5x1k", action="store_true", help="add the 5 nodes x 1024 bytes configuration")
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds per configuration (default: %(default)s)")
    p.add_argument("--duration", type=float, default=8.0, help="measured seconds per run (default: %(default)s)")
    p.add_argument("--warmup", type=float, default=2.0, help="seconds of load before measuring (default: %(default)s)")
    p.add_argument(
        "--timeout", type=float, default=5.0, help="per-command timeout / grace, seconds (default: %(default)s)"
    )
    p.add_argument(
        "--outstanding",
        default="256,1024,16384",
        help="load levels: commands outstanding in total per system, comma-separated (default: %(default)s)",
    )
    p.add_argument(
        "--clients",
        type=int,
        default=4,
        help="sandzmq bench --clients; --inflight is level / clients (default: %(default)s)",
    )
    p.add_argument("--pso-modes", default="leader,spread", help="PySyncObj load modes (default: %(default)s)")
    p.add_argument(
        "--pso-rate",
        type=float,
        default=0.0,
        help="PySyncObj open loop: calls/s in total, as testobj.py (default 0: closed loop)",
    )
    p.add_argument(
        "--sandzmq-fsync",
        choices=("on", "off", "both", "none"),
        default="on",
        help="fsync setting(s) of the generated sandzmq config; none: skip sandzmq (default: %(default)s)",
    )
    p.add_argument(
        "--wait-quiet",
        type=float,
        default=0.0,
        metavar="S",
        help="before each run, wait up to S seconds for the machine to be quiet (see --quiet-below)",
    )
    p.add_argument(
        "--quiet-below",
        type=float,
        default=20.0,
        metavar="PCT",
        help="'quiet': other work uses less than PCT %% of all CPUs (default: %(default)s)",
    )
    p.add_argument("--tmp-dir", default=None, help="where run directories go (default: the system temp dir)")
    p.add_argument("--keep", action="store_true", help="keep each run's directory (configs, logs, data)")
    p.add_argument("--json", metavar="OUT", help="write every run and the medians as JSON")
    args = p.parse_args(argv)

    if importlib.util.find_spec("pysyncobj") is None:
        print(
            "compare_pysyncobj: PySyncObj is not installed in this Python.\n"
            f"  Install the measured version with:  pip install -e '.[compare]'   (pysyncobj=={PSO_VERSION})\n"
            f"  e.g. from the repository root:       .venv/bin/pip install -e '.[compare]'",
            file=sys.stderr,
        )
        return 2
    from importlib.metadata import version as dist_version

    pso_version = dist_version("pysyncobj")
    configs = []
    for item in args.configs.split(","):
        n, s = item.lower().split("x")
        configs.append((int(n), int(s)))
    if args.also_5x1k and (5, 1024) not in configs:
        configs.append((5, 1024))
    fsyncs = {"on": ("on",), "off": ("off",), "both": ("on", "off"), "none": ()}[args.sandzmq_fsync]
    systems = [("sandzmq", v) for v in fsyncs]
    systems += [("pysyncobj", m.strip()) for m in args.pso_modes.split(",") if m.strip()]
    for kind, variant in systems:
        if kind == "pysyncobj" and variant not in ("leader", "spread"):
            p.error(f"unknown PySyncObj mode {variant!r}")

    tmp = args.tmp_dir or tempfile.gettempdir()
    machine = {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "tmp_dir": tmp,
        "tmp_filesystem": filesystem_of(tmp),
        "pysyncobj": pso_version,
    }
    fsync_note = {
        "sandzmq": "fsync = true in the generated config (one fdatasync per log-store batch), WAL under the temp dir"
        if args.sandzmq_fsync == "on"
        else f"fsync {args.sandzmq_fsync}",
        "pysyncobj": "defaults (SyncObjConf()): no journalFile, the Raft log is in memory; no disk writes, NO fsync",
    }
    levels = [int(x) for x in args.outstanding.split(",") if x.strip()]
    load_note = (
        f"closed loop at each level L in {levels} commands outstanding per system "
        f"(sandzmq: {args.clients} clients x L/{args.clients} in flight; PySyncObj: "
        + (f"open loop at {args.pso_rate:g} calls/s capped at " if args.pso_rate else "")
        + "L on the leader (leader) or L/N per node (spread)); PySyncObj's load generator runs "
        "inside its node processes, sandzmq's in a separate client process (sandzmq bench)"
    )
    header_lines = [
        "sandzmq vs PySyncObj, 127.0.0.1",
        "machine: " + ", ".join(f"{k}={v}" for k, v in machine.items()),
        f"fsync:   sandzmq: {fsync_note['sandzmq']}",
        f"         PySyncObj: {fsync_note['pysyncobj']}",
        f"load:    {load_note}",
        f"runs:    {args.rounds} alternating rounds, {args.warmup:g} s warm-up + {args.duration:g} s measured each",
    ]
    if machine["tmp_filesystem"] in ("tmpfs", "ramfs"):
        header_lines.append(f"WARNING: {tmp} is {machine['tmp_filesystem']}: sandzmq's fsync costs nothing there")
    for line in header_lines:
        log(line)

    interrupt_on_sigterm()
    runs: list[dict[str, Any]] = []
    try:
        for nodes, size in configs:
            for rnd in range(args.rounds):
                for level in levels:
                    shift = rnd % len(systems)
                    order = systems[shift:] + systems[:shift]
                    for kind, variant in order:
                        name = system_name(kind, variant)
                        log(f"[{nodes}x{size}B, {level} outstanding, round {rnd + 1}/{args.rounds}] {name} ...")
                        result = run_one(args, kind, variant, nodes, size, level)
                        result.update(
                            config=f"{nodes}x{size}",
                            nodes=nodes,
                            size=size,
                            outstanding=level,
                            round=rnd + 1,
                            system=name,
                        )
                        runs.append(result)
                        if result["ok"]:
                            log(
                                f"  {result['ops_per_s']:,.0f} ops/s, p50 {fmt(result['p50_ms'])} ms, "
                                f"p99 {fmt(result['p99_ms'])} ms, errors {result['errors']}, "
                                f"unanswered {fmt(result['unanswered'], 'd')}"
                            )
    except KeyboardInterrupt:
        log("interrupted: reporting the runs done so far")

    out, medians = tables(header_lines, runs, configs, levels, systems)
    print("\n".join(out))
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "machine": machine,
                    "fsync": fsync_note,
                    "load": load_note,
                    "params": {k: v for k, v in vars(args).items() if k != "json"},
                    "runs": runs,
                    "medians": medians,
                },
                indent=2,
            )
            + "\n"
        )
    return 0 if all(r["ok"] for r in runs) and runs else 1


def tables(
    header_lines: list[str],
    runs: list[dict[str, Any]],
    configs: list[tuple[int, int]],
    levels: list[int],
    systems: list[tuple[str, str]],
) -> tuple[list[str], list[dict[str, Any]]]:
    out = list(header_lines)
    out.append("")
    head = (
        f"{'config':<8} {'outst.':>6} {'system':<20} {'round':>5} {'ops/s':>8} {'p50 ms':>8} {'p99 ms':>8}"
        f" {'errors':>6} {'unansw.':>7} {'cores':>5} {'cpu us/op':>9} {'busy%':>5}"
    )
    out.append(head)
    out.append("-" * len(head))
    for r in runs:
        out.append(
            f"{r['config']:<8} {r['outstanding']:>6} {r['system']:<20} {r['round']:>5} {fmt(r['ops_per_s'], ',.0f'):>8} "
            f"{fmt(r['p50_ms']):>8} {fmt(r['p99_ms']):>8} {fmt(r['errors'], 'd'):>6} "
            f"{fmt(r['unanswered'], 'd'):>7} {fmt(r.get('cores_used')):>5} {fmt(r.get('cpu_us_per_op'), '.1f'):>9}"
            f" {r['cpu_busy_before_pct']:>5.0f}"
        )
    out.append("")
    medians: list[dict[str, Any]] = []
    head2 = (
        f"{'config':<8} {'outst.':>6} {'system':<20} {'runs':>4} {'ops/s':>8} {'p50 ms':>8} {'p99 ms':>8}"
        f" {'errors':>6} {'cpu us/op':>9} {'sandzmq/this':>12}"
    )
    out.append(
        "medians over the rounds (sandzmq/this: sandzmq's median ops/s over this system's, same config and "
        "load level; > 1: sandzmq is faster)"
    )
    out.append(head2)
    out.append("-" * len(head2))
    for nodes, size in configs:
        cfg = f"{nodes}x{size}"
        for level in levels:
            base = None
            rows = []
            for kind, variant in systems:
                name = system_name(kind, variant)
                ok = [
                    r
                    for r in runs
                    if r["config"] == cfg and r["outstanding"] == level and r["system"] == name and r["ok"]
                ]
                med: dict[str, Any] = {
                    "config": cfg,
                    "outstanding": level,
                    "system": name,
                    "runs": len(ok),
                    "ops_per_s": None,
                    "p50_ms": None,
                    "p99_ms": None,
                    "errors": None,
                    "cpu_us_per_op": None,
                }
                if ok:
                    med["ops_per_s"] = statistics.median([r["ops_per_s"] for r in ok])
                    for key in ("p50_ms", "p99_ms", "cpu_us_per_op"):
                        vals = [r[key] for r in ok if r[key] is not None]
                        med[key] = statistics.median(vals) if vals else None
                    med["errors"] = sum(r["errors"] or 0 for r in ok)
                if kind == "sandzmq" and base is None:
                    base = med["ops_per_s"]
                rows.append(med)
            for med in rows:
                is_sandzmq = med["system"].startswith("sandzmq")
                med["ratio_sandzmq_over_this"] = (
                    round(base / med["ops_per_s"], 2) if base and med["ops_per_s"] and not is_sandzmq else None
                )
                medians.append(med)
                out.append(
                    f"{cfg:<8} {level:>6} {med['system']:<20} {med['runs']:>4} {fmt(med['ops_per_s'], ',.0f'):>8} "
                    f"{fmt(med['p50_ms']):>8} {fmt(med['p99_ms']):>8} {fmt(med['errors'], 'd'):>6} "
                    f"{fmt(med['cpu_us_per_op'], '.1f'):>9} {fmt(med['ratio_sandzmq_over_this'], '.2f'):>12}"
                )
        # Best level of each system against the best of sandzmq: capacity against capacity.
        best: dict[str, dict[str, Any]] = {}
        for med in medians:
            if med["config"] == cfg and med["ops_per_s"] is not None:
                if med["system"] not in best or med["ops_per_s"] > best[med["system"]]["ops_per_s"]:
                    best[med["system"]] = med
        sz = [m for name, m in best.items() if name.startswith("sandzmq")]
        if sz:
            top = max(sz, key=lambda m: m["ops_per_s"])
            for name, m in best.items():
                if not name.startswith("sandzmq"):
                    out.append(
                        f"{cfg:<8} best level: {top['system']} {top['ops_per_s']:,.0f} ops/s (at {top['outstanding']}) "
                        f"vs {name} {m['ops_per_s']:,.0f} ops/s (at {m['outstanding']}): "
                        f"ratio {top['ops_per_s'] / m['ops_per_s']:.2f}"
                    )
    out.append("")
    out.append(
        "ops/s: committed operations per second in the measured window (sandzmq: replicate() results; "
        "PySyncObj: SUCCESS callbacks)."
    )
    out.append(
        "latency: call -> result/callback, over the successful operations of the window. unanswered: calls "
        "with no callback after the run plus a grace of --timeout (sandzmq: '-', its timeouts are errors)."
    )
    out.append(
        "cores / cpu us/op: CPU (user+system) of every process of the run - nodes and, for sandzmq, the bench "
        "client - inside the measured window; per committed op."
    )
    out.append(
        "busy%: the machine's CPU use in the 0.5 s before the run, i.e. by other work (high: that run is suspect)."
    )
    return out, medians


if __name__ == "__main__":
    sys.exit(main())
