"""`sandzmq bench`: drive replicate() load at a cluster, report ops/s and latency.

Load model: `clients` Client sessions, each keeping `inflight` commands in
flight with replicate_async (closed loop: a command is issued when one
completes, from the completing future's callback, so the next command is
batched with whatever else that client's I/O thread sends next). Each
operation's latency runs from the replicate_async() call to its future's
resolution: what an application calling replicate() would see.

Besides latency and throughput, the report has what the cluster did in the
measured window, read from outside it: the leader's entries per
AppendEntries and per fsync (its cumulative "stats" counters, read at both
ends of the window) and the largest resident set of each actor process on
this host (sampled every RSS_INTERVAL seconds).

Honesty rules: only operations that complete inside the measured window
count (the warm-up before it is excluded, as is the tail after it); errors
are counted, never timed as successes; the parameters that change the
numbers (fsync from the config, sizes, concurrency, node count) are printed
and written to the JSON report.
"""
from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import platform
import signal
import socket
import sys
import threading
import time
from array import array
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from sandzmq.actors.supervisor import spawn, terminate
from sandzmq.config import ClusterConfig, load_config
from sandzmq.errors import SandzmqError
from sandzmq.replicator.client import Client
from sandzmq.replicator.status import PID_KEYS, collect, node_status, wait_for_leader
from sandzmq.statemachines.kv import encode_put

KEYS_PER_CLIENT = 1024  # the kv state stays bounded however long the run
ENCODED_BUDGET = 32 << 20  # bytes of pre-encoded commands per client; big values get fewer keys
RSS_INTERVAL = 0.5  # seconds between two memory samples of the actor processes
#: The leader's cumulative counters ("stats" in its status report) and the
#: ratios the report derives from their growth over the measured window.
RATIOS = {
    "entries_per_append": ("append_entries", "append_messages"),
    "entries_per_fsync": ("fsync_entries", "fsyncs"),
}


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
    """Completions, with the time they completed. Appends come from the
    clients' I/O threads; read once the run is over (and by the progress
    line). Successes go into one flat array of (completed at, latency)
    pairs: extend() with a pair is one C call, so pairs from two threads
    never interleave, and a float array is invisible to the garbage
    collector (a list of tuples grew by a million objects per 10 s run and
    made every full collection walk them)."""

    def __init__(self) -> None:
        self.samples = array("d")  # completed at, latency s, completed at, latency s, ...
        self.failed: list[tuple[float, str]] = []  # (completed at, error type)

    @property
    def ok_count(self) -> int:
        return len(self.samples) // 2

    def ok(self, at: float, latency: float) -> None:
        self.samples.extend((at, latency))

    def latencies(self, first: int = 0, end: int | None = None) -> list[float]:
        """Latencies of the successes numbered [first, end)."""
        stop = None if end is None else 2 * end
        return list(self.samples[2 * first + 1 : stop : 2])

    def latencies_between(self, start: float, end: float) -> list[float]:
        """Latencies of the successes that completed in [start, end)."""
        samples = self.samples
        return [lat for at, lat in zip(samples[0::2], samples[1::2]) if start <= at < end]

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
        self._send(n, time.perf_counter())

    def _send(self, n: int, started: float) -> None:
        future = self.client.replicate_async(self.make(n), timeout=self.timeout)
        future.add_done_callback(lambda f: self._done(f, started))

    def _done(self, future: Future[Any], started: float) -> None:
        """Record the completion and issue the next command, under one lock
        and one clock read: this runs once per operation on the client's I/O
        thread, so its cost is the bench's, not the cluster's."""
        now = time.perf_counter()
        error = future.exception()
        if error is None:
            self.recorder.ok(now, now - started)
        else:
            self.recorder.error(now, type(error).__name__)
        with self._lock:
            if self.stopping or self.client.closed:
                self.pending -= 1
                if self.pending == 0:
                    self.idle.set()
                return
            self._n += 1
            n = self._n
        self._send(n, now)

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
    bytes (its apply() decides what they mean).

    The kv commands are encoded once per client and then indexed: encode_put
    validates and packs (~1.5 us a call), which on a small machine would
    measure the bench's own command building rather than the cluster. The
    key set shrinks for large values so the pre-encoded commands stay within
    ENCODED_BUDGET bytes."""
    value = os.urandom(size)
    if config.state_machine != "kv":
        return lambda n: value
    keys = max(1, min(KEYS_PER_CLIENT, ENCODED_BUDGET // max(1, size)))
    encoded = [encode_put(f"bench/{client_index}/{k}", value) for k in range(keys)]
    return lambda n: encoded[n % keys]


# ---------------------------------------------------------------- watching the cluster


def batching_ratios(before: dict[str, Any] | None, after: dict[str, Any] | None) -> dict[str, float | None]:
    """Entries per AppendEntries and per fsync over a window, from the leader's
    cumulative "stats" at its two ends (None where a counter is missing, did
    not grow, or went backwards: the actor restarted, so the counts mean nothing)."""
    ratios: dict[str, float | None] = dict.fromkeys(RATIOS)
    if not isinstance(before, dict) or not isinstance(after, dict):
        return ratios
    for name, (entries, events) in RATIOS.items():
        try:
            d_entries, d_events = after[entries] - before[entries], after[events] - before[events]
        except (KeyError, TypeError):
            continue
        if d_events > 0 and d_entries >= 0:
            ratios[name] = round(d_entries / d_events, 2)
    return ratios


def parse_vmrss_mib(status_text: str) -> float | None:
    """VmRSS from the text of /proc/<pid>/status, in MiB (None if absent:
    kernel threads and zombies have none)."""
    for line in status_text.splitlines():
        if line.startswith("VmRSS:"):
            fields = line.split()
            if len(fields) >= 3 and fields[2].lower() == "kb":
                return int(fields[1]) / 1024
    return None


def read_rss_mib(pid: int) -> float | None:
    """The resident memory of a live process, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            return parse_vmrss_mib(fh.read())
    except OSError:
        return None


def address_host(address: str) -> str:
    """The host of a node address `tcp://HOST:PORT` (IPv6 without brackets)."""
    hostport = address.partition("://")[2] or address
    return hostport.rpartition(":")[0].strip("[]")


def is_local_host(host: str) -> bool:
    """Whether `host` names this machine: only then are a node's pids ours
    to read in /proc (a remote node's pid may exist here as another process).
    Binding to an address succeeds only for addresses of this host."""
    try:
        if ipaddress.ip_address(host).is_loopback:
            return True
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except OSError:
        return False
    for family, _, _, _, sockaddr in infos:
        try:
            with socket.socket(family, socket.SOCK_STREAM) as probe:
                probe.bind((sockaddr[0], 0))
            return True
        except OSError:
            continue
    return False


def _is_sandzmq_process(pid: int) -> bool:
    """Whether `pid` runs sandzmq: a reported pid may belong to another
    process by now (an actor that exited and a pid reused, or a stand-in)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return b"sandzmq" in fh.read()
    except OSError:
        return False


def local_actor_pids(config: ClusterConfig, reports: list[tuple[str, dict[str, Any] | None]]) -> dict[str, dict[str, int]]:
    """{node id: {actor kind: pid}} for the actors whose memory can be read
    here: nodes on this host, pids that are sandzmq processes."""
    found: dict[str, dict[str, int]] = {}
    for node_id, report in reports:
        pids = report.get("pids") if report else None
        if not isinstance(pids, dict) or not is_local_host(address_host(config.node(node_id).client)):
            continue
        mine = {kind: pid for kind in PID_KEYS if isinstance(pid := pids.get(kind), int) and _is_sandzmq_process(pid)}
        if mine:
            found[node_id] = mine
    return found


def leader_stats(config: ClusterConfig, leader: str, timeout: float = 2.0) -> dict[str, Any] | None:
    """The "stats" counters of `leader`'s status, or None if it does not
    answer, no longer leads, or reports no counters."""
    report = node_status(config, config.node(leader), timeout)
    if not report or report.get("role") != "leader":
        return None
    stats = report.get("stats")
    return stats if isinstance(stats, dict) else None


class _ClusterWatch:
    """What the cluster itself does during a run, read from outside it: the
    leader's batching counters at both ends of the measured window, and the
    resident memory of every local actor process every RSS_INTERVAL seconds
    (a thread, so the samples do not wait for the progress lines)."""

    def __init__(self, config: ClusterConfig, leader: str) -> None:
        self.config, self.leader = config, leader
        self.pids = local_actor_pids(config, collect(config, timeout=1.0))
        self.max_rss: dict[str, dict[str, float]] = {}
        self.before: dict[str, Any] | None = None
        self.after: dict[str, Any] | None = None
        self._window_start = float("inf")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-watch", daemon=True)

    def start(self, window_start: float) -> None:
        self._window_start = window_start
        self._thread.start()

    def finish(self) -> None:
        """At the end of the window: the leader's counters, then stop sampling."""
        self.after = leader_stats(self.config, self.leader)
        self.stop()

    def stop(self) -> None:
        """Stop sampling (idempotent; also after an interrupted run)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        started = False
        while not self._stop.is_set():
            self._sample_rss()
            now = time.perf_counter()
            if not started and now >= self._window_start:
                started = True
                self.before = leader_stats(self.config, self.leader)
                continue
            pause = RSS_INTERVAL if started else min(RSS_INTERVAL, max(0.0, self._window_start - now))
            self._stop.wait(pause)

    def _sample_rss(self) -> None:
        for node_id, pids in self.pids.items():
            for kind, pid in pids.items():
                rss = read_rss_mib(pid)
                if rss is not None:
                    node = self.max_rss.setdefault(node_id, {})
                    node[kind] = max(node.get(kind, 0.0), rss)

    def result(self) -> dict[str, Any]:
        rss = {node: {kind: round(mib, 1) for kind, mib in kinds.items()} for node, kinds in self.max_rss.items()}
        return {"batching": batching_ratios(self.before, self.after), "max_rss_mib": rss}


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
    with _sigterm_as_interrupt():
        result = _run_against(config, options, err)
    if result is None:
        return 1
    report = _report(config, options, result)
    print(_table(report), file=out)
    if options.json_out:
        Path(options.json_out).write_text(json.dumps(report, indent=2) + "\n")
    return 0 if report["ops"] > 0 else 1


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM raises KeyboardInterrupt while the bench runs, so that a
    --spawn cluster is stopped (the `finally` below) when the bench is killed
    politely, as by bench/sweep.py, and not left running. Only possible in
    the main thread; elsewhere the handlers stay as they are."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _run_against(config: ClusterConfig, options: BenchOptions, err: TextIO) -> dict[str, Any] | None:
    """Start the cluster if asked, wait for a leader, drive the load, and
    stop the cluster again whatever happens. The results, or None when no
    leader showed up."""
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
            return None
        print(f"bench: {leader} leads", file=err)
        return _drive(config, options, leader, err)
    finally:
        if cluster is not None:
            status = terminate(cluster)
            print(f"bench: stopped the cluster (exit status {status})", file=err)


def _check(options: BenchOptions) -> None:
    for name in ("clients", "inflight", "size"):
        if getattr(options, name) < (0 if name == "size" else 1):
            raise SandzmqError(f"--{name} must be positive")
    if options.duration <= 0 or options.warmup < 0 or options.timeout <= 0:
        raise SandzmqError("--duration and --timeout must be positive, --warmup not negative")


def _drive(config: ClusterConfig, options: BenchOptions, leader: str, err: TextIO) -> dict[str, Any]:
    recorder = _Recorder()
    watch = _ClusterWatch(config, leader)
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
        watch.start(window_start=start)
        try:
            _progress(recorder, began, start, end, err)
            watch.finish()
        finally:
            watch.stop()
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
    latencies = sorted(recorder.latencies_between(start, end))
    errors = Counter(kind for at, kind in recorder.failed if start <= at < end)
    return {"latencies": latencies, "errors": errors, "client_stats": dict(stats), "leader": leader, **watch.result()}


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
        done, failed = recorder.ok_count, len(recorder.failed)
        window = sorted(recorder.latencies(seen_ok, done))
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
        "leader": result.get("leader"),
        # Over the measured window, on the leader; null when it reports no "stats".
        **result.get("batching", dict.fromkeys(RATIOS)),
        # Per node and actor kind, the most resident memory seen (nodes on this host only).
        "max_rss_mib": result.get("max_rss_mib", {}),
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
        },
    }


def _table(report: dict[str, Any]) -> str:
    """The human summary: the latency table, then batching and memory lines."""
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


def max_rss(max_rss_mib: dict[str, dict[str, float]]) -> tuple[float, str, str] | None:
    """The largest resident set of any actor: (MiB, node id, actor kind), or
    None when no actor process could be read (all nodes on other hosts)."""
    samples = [(mib, node, kind) for node, kinds in max_rss_mib.items() for kind, mib in kinds.items()]
    return max(samples) if samples else None


def _rss_line(max_rss_mib: dict[str, dict[str, float]]) -> str:
    top = max_rss(max_rss_mib)
    if top is None:
        return "max RSS: - (no actor process on this host)"
    mib, node, kind = top
    return f"max RSS: {mib:.1f} MiB ({node} {kind}, of {sum(map(len, max_rss_mib.values()))} actor processes sampled)"
