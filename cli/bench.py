"""`sandzmq bench`: drive replicate() load at a cluster, report ops/s and latency.

Load model: `clients` Client sessions, each keeping `inflight` commands in
flight with replicate_async (closed loop: a command is issued when one
completes, from the completing future's callback, so the next command is
batched with whatever else that client's I/O thread sends next). Each
operation's latency runs from the replicate_async() call to its future's
resolution: what an application calling replicate() would see.

Honesty rules: only operations that complete inside the measured window
count (the warm-up before it is excluded, as is the tail after it); errors
are counted, never timed as successes; the parameters that change the
numbers (fsync from the config, sizes, concurrency, node count) are printed
and written to the JSON report.
"""
from __future__ import annotations

import json
import os
import platform
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from sandzmq.actors.supervisor import spawn, terminate
from sandzmq.cli.status import wait_for_leader
from sandzmq.config import ClusterConfig, load_config
from sandzmq.errors import SandzmqError
from sandzmq.replicator.client import Client
from sandzmq.statemachines.kv import encode_put

KEYS_PER_CLIENT = 1024  # the kv state stays bounded however long the run


@dataclass(frozen=True, slots=True)
class BenchOptions:
    config: str
    spawn: bool = False
    clients: int = 4
    inflight: int = 64
    size: int = 128
    duration: float = 10.0
    warmup: float = 1.0
    timeout: float = 5.0
    json_out: str | None = None
    leader_timeout: float = 30.0


class _Recorder:
    """Completions, with the time they completed. Appends from the clients'
    I/O threads (list.append is atomic); read once the run is over."""

    def __init__(self) -> None:
        self.done: list[tuple[float, float]] = []  # (completed at, latency s) of successes
        self.failed: list[tuple[float, str]] = []  # (completed at, error type)

    def ok(self, at: float, latency: float) -> None:
        self.done.append((at, latency))

    def error(self, at: float, kind: str) -> None:
        self.failed.append((at, kind))


class _Driver:
    """Keeps `inflight` commands in flight on one Client."""

    def __init__(self, client: Client, make: Callable[[int], bytes], inflight: int, timeout: float, recorder: _Recorder) -> None:
        self.client, self.make, self.inflight, self.timeout = client, make, inflight, timeout
        self.recorder = recorder
        self.stopping = False
        self.pending = 0
        self._lock = threading.Lock()
        self._n = 0
        self.idle = threading.Event()

    def start(self) -> None:
        for _ in range(self.inflight):
            self._issue()

    def _issue(self) -> None:
        with self._lock:
            if self.stopping or self.client.closed:
                if self.pending == 0:
                    self.idle.set()
                return
            self.pending += 1
            self._n += 1
            n = self._n
        started = time.perf_counter()
        future = self.client.replicate_async(self.make(n), timeout=self.timeout)
        future.add_done_callback(lambda f: self._done(f, started))

    def _done(self, future: Future[Any], started: float) -> None:
        now = time.perf_counter()
        error = future.exception()
        if error is None:
            self.recorder.ok(now, now - started)
        else:
            self.recorder.error(now, type(error).__name__)
        with self._lock:
            self.pending -= 1
        self._issue()

    def stop(self) -> None:
        with self._lock:
            self.stopping = True
            if self.pending == 0:
                self.idle.set()


def percentile(sorted_values: list[float], p: float) -> float | None:
    """Nearest-rank percentile of an ascending list (None when empty)."""
    if not sorted_values:
        return None
    rank = max(1, -(-len(sorted_values) * p // 100))  # ceil(n * p / 100)
    return sorted_values[int(rank) - 1]


def command_factory(config: ClusterConfig, client_index: int, size: int) -> Callable[[int], bytes]:
    """Commands the config's state machine understands: kv puts of `size`-byte
    values over a bounded key set; for any other state machine, `size` raw
    bytes (its apply() decides what they mean)."""
    value = os.urandom(size)
    if config.state_machine == "kv":
        return lambda n: encode_put(f"bench/{client_index}/{n % KEYS_PER_CLIENT}", value)
    return lambda n: value


def run_bench(options: BenchOptions, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    """The whole command; returns the exit status. ConfigError propagates."""
    config = load_config(options.config)
    _check(options)
    fsync = config.raft.fsync
    print(
        f"bench: {len(config.nodes)} node(s) of {config.name!r} (fsync {'on' if fsync else 'OFF'}), "
        f"{options.clients} client(s) x {options.inflight} in flight, {options.size}-byte values, "
        f"{options.duration:g} s after a {options.warmup:g} s warm-up",
        file=err,
    )
    cluster = None
    log_path = None
    try:
        if options.spawn:
            log_path = config.data_dir / "bench-cluster.log"
            log_path.parent.mkdir(parents=True, exist_ok=True)
            log_file = open(log_path, "ab")
            try:
                cluster = spawn(config.path, stderr=log_file, stdout=log_file)
            finally:
                log_file.close()
            print(f"bench: started the cluster (supervisor pid {cluster.pid}, log {log_path})", file=err)
        try:
            alive = (lambda: cluster.poll() is None) if cluster is not None else None
            leader = wait_for_leader(config, options.leader_timeout if cluster else 10.0, alive=alive)
        except TimeoutError as exc:
            hint = f"; see {log_path}" if log_path else " (is it running? --spawn starts it)"
            print(f"sandzmq: {exc}{hint}", file=err)
            return 1
        print(f"bench: {leader} leads", file=err)
        result = _drive(config, options, err)
    finally:
        if cluster is not None:
            status = terminate(cluster)
            print(f"bench: stopped the cluster (exit status {status})", file=err)
    report = _report(config, options, result)
    print(_table(report), file=out)
    if options.json_out:
        Path(options.json_out).write_text(json.dumps(report, indent=2) + "\n")
    return 0 if report["ops"] > 0 else 1


def _check(options: BenchOptions) -> None:
    for name in ("clients", "inflight", "size"):
        if getattr(options, name) < (0 if name == "size" else 1):
            raise SandzmqError(f"--{name} must be positive")
    if options.duration <= 0 or options.warmup < 0 or options.timeout <= 0:
        raise SandzmqError("--duration and --timeout must be positive, --warmup not negative")


def _drive(config: ClusterConfig, options: BenchOptions, err: TextIO) -> dict[str, Any]:
    recorder = _Recorder()
    clients = [Client.from_config(config) for _ in range(options.clients)]
    drivers = [
        _Driver(client, command_factory(config, i, options.size), options.inflight, options.timeout, recorder)
        for i, client in enumerate(clients)
    ]
    try:
        began = time.perf_counter()
        for driver in drivers:
            driver.start()
        start = began + options.warmup
        end = start + options.duration
        _progress(recorder, began, start, end, err)
        for driver in drivers:
            driver.stop()
        for driver in drivers:
            driver.idle.wait(options.timeout + 1.0)
        stats = Counter[str]()
        for client in clients:
            stats.update(client.stats)
    finally:
        for client in clients:
            client.close()
    latencies = sorted(lat for at, lat in recorder.done if start <= at < end)
    errors = Counter(kind for at, kind in recorder.failed if start <= at < end)
    return {"latencies": latencies, "errors": errors, "client_stats": dict(stats)}


def _progress(recorder: _Recorder, began: float, start: float, end: float, err: TextIO) -> None:
    """Print one line a second (rates over the time since the last line) until `end`."""
    seen_ok = seen_err = 0
    last = began
    tick = began + 1.0
    while True:
        now = time.perf_counter()
        if now >= end:
            return
        time.sleep(max(0.0, min(tick, end) - now))
        now = time.perf_counter()
        if now - last < 0.2:  # a sliver at the end says nothing
            return
        done, failed = len(recorder.done), len(recorder.failed)
        window = sorted(lat for _, lat in recorder.done[seen_ok:done])
        phase = "warm-up" if last < start else f"{now - start:5.1f} s"
        print(
            f"  {phase:>8}  {(done - seen_ok) / (now - last):>9.0f} ops/s  errors {failed - seen_err:<5}"
            f"  p50 {_ms(percentile(window, 50))} ms  p99 {_ms(percentile(window, 99))} ms",
            file=err,
            flush=True,
        )
        seen_ok, seen_err, last = done, failed, now
        tick += 1.0


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.2f}"


def _report(config: ClusterConfig, options: BenchOptions, result: dict[str, Any]) -> dict[str, Any]:
    """The SPEC 5 JSON object, with a few more fields after the required ones."""
    latencies: list[float] = result["latencies"]
    errors: Counter[str] = result["errors"]
    stats = result["client_stats"]

    def ms(p: float) -> float | None:
        value = percentile(latencies, p)
        return None if value is None else round(value * 1000, 3)

    return {
        "ops_per_s": round(len(latencies) / options.duration, 1),
        "ops": len(latencies),
        "errors": sum(errors.values()),
        "latency_ms": {"p50": ms(50), "p90": ms(90), "p99": ms(99), "max": ms(100)},
        "clients": options.clients,
        "size": options.size,
        "duration_s": options.duration,
        "nodes": len(config.nodes),
        "fsync": config.raft.fsync,
        # More than SPEC 5 asks for:
        "inflight_per_client": options.inflight,
        "warmup_s": options.warmup,
        "timeout_s": options.timeout,
        "errors_by_type": dict(errors),
        "state_machine": config.state_machine,
        "spawned": options.spawn,
        "commands_per_client_message": round(stats.get("requests_sent", 0) / max(1, stats.get("submits", 0)), 2),
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
        },
    }


def _table(report: dict[str, Any]) -> str:
    lat = report["latency_ms"]
    header = ["ops/s", "ops", "errors", "p50 ms", "p90 ms", "p99 ms", "max ms"]
    row = [
        f"{report['ops_per_s']:.1f}", str(report["ops"]), str(report["errors"]),
        *("-" if lat[k] is None else f"{lat[k]:.2f}" for k in ("p50", "p90", "p99", "max")),
    ]  # fmt: skip
    widths = [max(len(h), len(c)) for h, c in zip(header, row)]
    lines = ["  ".join(x.rjust(w) for x, w in zip(line, widths)) for line in (header, row)]
    if report["errors_by_type"]:
        lines.append("errors: " + ", ".join(f"{k} {v}" for k, v in sorted(report["errors_by_type"].items())))
    return "\n".join(lines)
