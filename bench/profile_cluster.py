"""Profile the leader of a local cluster under `sandzmq bench` load: where each actor's time goes.

    .venv/bin/pip install py-spy                # optional: without it, only the CPU table
    .venv/bin/python bench/profile_cluster.py [--clients 4] [--inflight 64] [--size 128]
        [--warmup 2] [--seconds 5] [--rate 500] [--gil] [--fsync on|off] [--top 15] [--json OUT]

What it does, in order:

1. writes a config for a 3-node cluster on 127.0.0.1 (free ports, data in a
   temp dir, the kv state machine, fsync on unless --fsync off; --max-inflight
   and --max-batch set the raft options), starts it through the supervisor and
   waits for a leader and for every node's actor pids;
2. starts `sandzmq bench` against it (a separate client process, as in any
   measurement) and waits --warmup seconds into its measured window;
3. for --seconds, runs `py-spy record --pid P -d S -r RATE --nonblocking
   --format raw` on each of the leader's three actor processes (raft, log,
   apply) and on the bench client, and reads every process's CPU time from
   /proc/<pid>/stat at both ends of the same window;
4. prints the CPU share of every process (% of one core; the py-spy samplers'
   own share too, since on a small machine they compete with the cluster),
   the bench's numbers, and for each profiled process its top functions by
   self samples (the function was running) and inclusive samples (it was on
   the stack), folded from the raw stacks.

Read the CPU table before the profiles: a profile says where a process spends
its time, not whether that process is the bottleneck. --gil keeps only the
samples where the thread holds the GIL (an actor releases it while it waits in
zmq_poll), which approximates Python CPU time; without it, runnable-but-not-
running samples on an overloaded machine inflate Socket.send and Poller.poll.

Everything started is stopped at the end, also on Ctrl-C: the bench by its
process group, the cluster through its supervisor (SIGTERM, then SIGKILL of
its process group), and any process left that names the run's temp dir.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchlib import kill_group, kill_leftovers, write_cluster_config, write_json
from sandzmq.actors.supervisor import spawn, terminate
from sandzmq.replicator.status import PID_KEYS, collect, wait_for_leader

from sandzmq.config import ClusterConfig, load_config

REPO = Path(__file__).resolve().parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
PROFILED = (*PID_KEYS, "client")  # the leader's three actors, then the bench client
#: Outer frames nearly every sample shares (a thread's start, pykka's actor
#: loop): left out of the inclusive lists, where they would crowd out the rest.
PLUMBING = ("(threading.py)", "(pykka/")


# ---------------------------------------------------------------- pure parts


def cpu_seconds_from_stat(stat_text: str) -> float:
    """User + system CPU seconds from the text of /proc/<pid>/stat (fields 14
    and 15; split after the last ')', since the command name may hold spaces)."""
    fields = stat_text.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


_FRAME = re.compile(r"(?P<func>.*?) \((?P<path>.*?)(?::\d+)?\)$")


def short_frame(frame: str) -> str:
    """`func (path:line)` -> `func (short path)`: one entry per function (not
    per line), paths from the repository or from site-packages."""
    match = _FRAME.match(frame.strip())
    if not match:
        return frame.strip()
    path = match["path"]
    for root in (str(REPO) + "/", "site-packages/"):
        if root in path:
            path = path.split(root, 1)[1]
            break
    return f"{match['func']} ({path})"


@dataclass
class Folded:
    """Samples of one process, per function."""

    total: int = 0
    self_samples: Counter[str] = field(default_factory=Counter)  # the innermost frame
    inclusive: Counter[str] = field(default_factory=Counter)  # anywhere on the stack, once per stack

    def top(self, counter: Counter[str], n: int, skip: tuple[str, ...] = ()) -> list[dict[str, Any]]:
        """The n functions with the most samples, as % of all samples; those
        whose frame contains one of `skip` left out."""
        rows = ((f, c) for f, c in counter.most_common() if not any(s in f for s in skip))
        return [
            {"function": f, "samples": c, "pct": round(100 * c / self.total, 1)} for f, c in itertools.islice(rows, n)
        ]


def fold_raw(lines: list[str]) -> Folded:
    """Fold py-spy's `--format raw` output (collapsed stacks: `f1;f2;f3 COUNT`,
    outermost first) into self and inclusive samples per function."""
    folded = Folded()
    for line in lines:
        stack, _, count = line.rstrip("\n").rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [short_frame(f) for f in stack.split(";")]
        folded.total += n
        folded.self_samples[frames[-1]] += n
        for frame in set(frames):  # a recursive function counts once per stack
            folded.inclusive[frame] += n
    return folded


def cpu_shares(before: dict[str, float], after: dict[str, float], seconds: float) -> dict[str, float]:
    """% of one core per process over the window (processes seen at both ends)."""
    return {
        name: round(100 * (after[name] - before[name]) / seconds, 1) for name in before if name in after and seconds > 0
    }


# ---------------------------------------------------------------- processes


def read_cpu(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return cpu_seconds_from_stat(fh.read())
    except (OSError, IndexError, ValueError):
        return None


def snapshot(pids: dict[str, int]) -> dict[str, float]:
    return {name: cpu for name, pid in pids.items() if (cpu := read_cpu(pid)) is not None}


def find_py_spy() -> str | None:
    """py-spy on PATH, or next to this Python (a venv's bin)."""
    beside = Path(sys.executable).parent / "py-spy"
    return shutil.which("py-spy") or (str(beside) if beside.exists() else None)


def wait_for_pids(config: ClusterConfig, timeout: float) -> list[tuple[str, dict[str, Any] | None]]:
    """Status reports once every node reports all three actor pids (a node
    reports a pid only once that actor has started)."""
    deadline = time.monotonic() + timeout
    while True:
        reports = collect(config, timeout=1.0)
        if all(r and isinstance(r.get("pids"), dict) and all(r["pids"].get(k) for k in PID_KEYS) for _, r in reports):
            return reports
        if time.monotonic() >= deadline:
            raise TimeoutError(f"not every node reported its actor pids within {timeout:g} s")
        time.sleep(0.2)


def wait_for_line(path: Path, text: str, timeout: float, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + timeout
    while text not in (path.read_text(errors="replace") if path.exists() else ""):
        if proc.poll() is not None:
            raise RuntimeError(f"the bench exited (status {proc.returncode}) early; see {path}")
        if time.monotonic() >= deadline:
            raise TimeoutError(f"no {text!r} from the bench within {timeout:g} s")
        time.sleep(0.1)


def start_py_spy(py_spy: str, pid: int, args: argparse.Namespace, out: Path) -> subprocess.Popen[bytes]:
    argv = [
        py_spy,
        "record",
        "--pid",
        str(pid),
        "-d",
        f"{args.seconds:g}",
        "-r",
        str(args.rate),
        "--nonblocking",
        "--format",
        "raw",
        "-o",
        str(out),
    ]
    if args.gil:
        argv.append("--gil")
    return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


# ---------------------------------------------------------------- the run


def profile(args: argparse.Namespace, workdir: Path, out_dir: Path) -> dict[str, Any]:
    """Start, load, sample, stop; the raw results (CPU shares, bench report, folded profiles)."""
    raft = {k: v for k, v in (("max_inflight", args.max_inflight), ("max_batch_entries", args.max_batch)) if v}
    config_path = write_cluster_config(workdir, args.nodes, fsync=args.fsync == "on", raft=raft, name="profile")
    config = load_config(config_path)
    cluster = bench = None
    spies: dict[str, subprocess.Popen[bytes]] = {}
    try:
        with open(workdir / "cluster.log", "wb") as log_file:
            cluster = spawn(config_path, stdout=log_file, stderr=log_file)
        leader = wait_for_leader(config, 30.0, alive=lambda: cluster.poll() is None)
        reports = dict(wait_for_pids(config, 30.0))
        log(
            f"{leader} leads; pids raft/log/apply: "
            + ", ".join(f"{n} {'/'.join(str(r['pids'][k]) for k in PID_KEYS)}" for n, r in reports.items() if r)
        )
        bench_err = workdir / "bench.stderr"
        with open(bench_err, "wb") as err, open(workdir / "bench.stdout", "wb") as so:
            bench = subprocess.Popen(
                _bench_argv(config_path, args, workdir / "bench.json"),
                stdin=subprocess.DEVNULL,
                stdout=so,
                stderr=err,
                start_new_session=True,
            )
        wait_for_line(bench_err, " leads", 40.0, bench)
        time.sleep(1.0 + args.warmup)  # the bench's own 1 s warm-up, then ours, inside its measured window
        pids = {
            f"{n} {k}{' (leader)' if n == leader else ''}": r["pids"][k]
            for n, r in reports.items()
            if r
            for k in PID_KEYS
        }
        pids["bench client"] = bench.pid
        targets = {**{k: reports[leader]["pids"][k] for k in PID_KEYS}, "client": bench.pid}
        py_spy = None if args.no_py_spy else find_py_spy()
        cpu0, t0 = snapshot(pids), time.monotonic()
        if py_spy:
            spies = {
                kind: start_py_spy(py_spy, pid, args, out_dir / f"{kind}.raw.txt") for kind, pid in targets.items()
            }
            spy_cpu0 = snapshot({kind: p.pid for kind, p in spies.items()})
        time.sleep(args.seconds)
        cpu1, t1 = snapshot(pids), time.monotonic()
        spy_pct = None
        if py_spy:
            spy_pct = sum(cpu_shares(spy_cpu0, snapshot({k: p.pid for k, p in spies.items()}), t1 - t0).values())
        shares = cpu_shares(cpu0, cpu1, t1 - t0)
        if spy_pct is not None:
            shares[f"py-spy ({len(spies)} samplers)"] = round(spy_pct, 1)
        problems = _finish_spies(spies, args.seconds + 30)
        bench.wait(args.seconds + args.warmup + 60)
        bench_report = _read_json(workdir / "bench.json")
    finally:
        for proc in spies.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if bench is not None:
            kill_group(bench.pid)
            bench.wait()
        if cluster is not None:
            terminate(cluster)
    profiles = {}
    for kind in PROFILED if py_spy else ():
        raw = out_dir / f"{kind}.raw.txt"
        folded = fold_raw(raw.read_text().splitlines()) if raw.exists() else Folded()
        profiles[kind] = {
            "pid": targets[kind],
            "samples": folded.total,
            "raw": str(raw),
            "problem": problems.get(kind),
            "self": folded.top(folded.self_samples, args.top),
            "inclusive": folded.top(folded.inclusive, args.top, skip=PLUMBING),
        }
    return {
        "leader": leader,
        "pids": pids,
        "window_s": round(t1 - t0, 2),
        "cpu_pct": shares,
        "py_spy": py_spy,
        "bench": bench_report,
        "profiles": profiles,
    }


def _bench_argv(config: Path, args: argparse.Namespace, out: Path) -> list[str]:
    """The load: long enough to cover the warm-up, the sampling and py-spy's start."""
    return [
        sys.executable,
        "-m",
        "sandzmq.cli.main",
        "bench",
        "--config",
        str(config),
        "--clients",
        str(args.clients),
        "--inflight",
        str(args.inflight),
        "--size",
        str(args.size),
        "--warmup",
        "1",
        "--duration",
        f"{args.warmup + args.seconds + 2:g}",
        "--json",
        str(out),
    ]


def _finish_spies(spies: dict[str, subprocess.Popen[bytes]], timeout: float) -> dict[str, str]:
    """Wait for each py-spy; what went wrong per profiled process (its stderr's last line)."""
    problems = {}
    for kind, proc in spies.items():
        try:
            _, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
        if proc.returncode != 0:
            lines = err.decode(errors="replace").strip().splitlines()
            problems[kind] = f"py-spy exit {proc.returncode}: {lines[-1] if lines else ''}"
    return problems


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


# ---------------------------------------------------------------- output


def render(result: dict[str, Any], args: argparse.Namespace) -> str:
    lines = [
        f"CPU over {result['window_s']:g} s, % of one core ({os.cpu_count()} cores = {100 * (os.cpu_count() or 1)}):"
    ]
    width = max(map(len, result["cpu_pct"]))
    lines += [f"  {name:<{width}}  {pct:6.1f}" for name, pct in result["cpu_pct"].items()]
    lines.append(f"  {'total':<{width}}  {sum(result['cpu_pct'].values()):6.1f}")
    bench = result["bench"]
    if bench:
        lat = bench["latency_ms"]
        lines.append(
            f"bench: {bench['ops_per_s']:,.0f} ops/s, p50 {lat['p50']} ms, p99 {lat['p99']} ms, "
            f"errors {bench['errors']}; entries per AppendEntries {bench.get('entries_per_append')}, "
            f"per fsync {bench.get('entries_per_fsync')}"
        )
    if not result["py_spy"]:
        lines.append(
            "no profiles: py-spy is not installed (.venv/bin/pip install py-spy)"
            if not args.no_py_spy
            else "no profiles (--no-py-spy)"
        )
    for kind, prof in result["profiles"].items():
        lines.append("")
        lines.append(
            f"== {kind} (pid {prof['pid']}): {prof['samples']} samples"
            + (f"  [{prof['problem']}]" if prof["problem"] else "")
        )
        for title, key in (
            ("self%  function", "self"),
            ("incl%  function (the threading/pykka outer frames left out)", "inclusive"),
        ):
            lines.append(f"  {title}")
            lines += [f"  {row['pct']:5.1f}  {row['function']}" for row in prof[key]]
    return "\n".join(lines)


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 2)[2],
    )
    p.add_argument("--nodes", type=int, default=3, help="cluster size (default: %(default)s)")
    p.add_argument("--clients", type=int, default=4, help="bench --clients (default: %(default)s)")
    p.add_argument("--inflight", type=int, default=64, help="bench --inflight per client (default: %(default)s)")
    p.add_argument("--size", type=int, default=128, help="bench --size, bytes (default: %(default)s)")
    p.add_argument(
        "--warmup", type=float, default=2.0, help="seconds of measured load before sampling (default: %(default)s)"
    )
    p.add_argument("--seconds", type=float, default=5.0, help="sampling window, seconds (default: %(default)s)")
    p.add_argument("--rate", type=int, default=500, help="py-spy samples per second (default: %(default)s)")
    p.add_argument("--gil", action="store_true", help="py-spy --gil: only samples holding the GIL (see below)")
    p.add_argument("--no-py-spy", action="store_true", help="only the CPU table, no profiles")
    p.add_argument(
        "--fsync", choices=("on", "off"), default="on", help="raft.fsync of the cluster (default: %(default)s)"
    )
    p.add_argument("--max-inflight", type=int, default=0, help="raft.max_inflight (default: the config default)")
    p.add_argument("--max-batch", type=int, default=0, help="raft.max_batch_entries (default: the config default)")
    p.add_argument("--top", type=int, default=15, help="functions listed per profile and kind (default: %(default)s)")
    p.add_argument(
        "--out-dir", type=Path, help="keep the raw py-spy profiles here (default: deleted with the temp dir)"
    )
    p.add_argument("--tmp-dir", default=None, help="where the run directory goes (default: the system temp dir)")
    p.add_argument("--keep", action="store_true", help="keep the run directory (config, logs, data, profiles)")
    p.add_argument("--json", metavar="OUT", help="write the CPU shares, the bench report and the profiles as JSON")
    args = p.parse_args(argv)
    if min(args.nodes, args.clients, args.inflight, args.rate, args.top) < 1 or args.seconds <= 0 or args.warmup < 0:
        p.error("counts, --rate and --seconds must be positive, --warmup not negative")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="profile-", dir=args.tmp_dir))
    out_dir = args.out_dir or workdir / "profiles"
    out_dir.mkdir(parents=True, exist_ok=True)
    log(
        f"profile: {args.nodes} nodes (fsync {args.fsync}), bench {args.clients} x {args.inflight} in flight, "
        f"{args.size} B; {args.seconds:g} s at {args.rate} Hz{' --gil' if args.gil else ''}, after {args.warmup:g} s; "
        f"{os.cpu_count()} cores, Python {platform.python_version()}"
    )

    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt  # clean up as on Ctrl-C

    signal.signal(signal.SIGTERM, on_term)
    failed = True
    try:
        result = profile(args, workdir, out_dir)
        failed = False
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    except (TimeoutError, RuntimeError) as exc:
        log(f"profile: {exc} (cluster log: {workdir / 'cluster.log'})")
        return 1
    finally:
        leftovers = kill_leftovers(str(workdir))
        if leftovers:
            log(f"killed leftover processes {leftovers}")
        if args.keep or failed:  # a failed run keeps its logs to look at
            log(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    print(render(result, args))
    if args.json:
        result["params"] = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "json"}
        write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
