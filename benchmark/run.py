"""One benchmark run, start to end: the cluster, the load, the measured
window, the report."""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

from sandzmq.benchmark.cluster import cluster_under_test
from sandzmq.benchmark.events import Event, OnEvent, Progress
from sandzmq.benchmark.load import Driver, command_factory
from sandzmq.benchmark.options import BenchOptions
from sandzmq.benchmark.recorder import Recorder, percentile
from sandzmq.benchmark.report import Measurement, build_report
from sandzmq.benchmark.watch import ClusterWatch
from sandzmq.replicator.client import Client

from sandzmq.config import ClusterConfig

PROGRESS_INTERVAL = 1.0  # seconds between two Progress events
MIN_INTERVAL = 0.2  # a last interval shorter than this says nothing: no Progress for it


def run_bench(config: ClusterConfig, options: BenchOptions, on_event: OnEvent | None = None) -> dict[str, Any]:
    """Drive replicate() load at the cluster of `config` and return the
    report (see report.py), telling `on_event` what happens meanwhile.

    Raises NoLeaderError if no node leads in time. A cluster the run
    started is stopped before this returns or raises, whatever the cause."""
    emit: OnEvent = on_event or _ignore
    with cluster_under_test(config, options, emit) as leader:
        measured = _measure(config, options, leader, emit)
    return build_report(config, options, measured)


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM raises KeyboardInterrupt inside the block, so that a run killed
    politely (as bench/sweep.py stops one) still stops the cluster it
    started. Only possible in the main thread; elsewhere the handlers stay
    as they are. A choice for the process, hence the caller's to make."""
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


def _ignore(event: Event) -> None:
    pass


def _measure(config: ClusterConfig, options: BenchOptions, leader: str, emit: OnEvent) -> Measurement:
    """Load the cluster through the warm-up and the measured window, then
    keep what completed inside the window."""
    recorder = Recorder()
    watch = ClusterWatch(config, leader)
    clients = [Client.from_config(config) for _ in range(options.clients)]
    drivers = [
        Driver(client, command_factory(config, i, options.size), options.inflight, options.timeout, recorder)
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
            _report_progress(recorder, began, start, end, emit)
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
    return Measurement(
        latencies=sorted(recorder.latencies_between(start, end)),
        errors=Counter(kind for at, kind in recorder.failed if start <= at < end),
        client_stats=dict(stats),
        leader=leader,
        batching=watch.batching(),
        max_rss_mib=watch.max_rss_mib(),
    )


def _report_progress(recorder: Recorder, began: float, start: float, end: float, emit: OnEvent) -> None:
    """Emit a Progress every PROGRESS_INTERVAL (rates over the time since the
    previous one) until `end`."""
    seen_ok = seen_err = 0
    last = began
    tick = began + PROGRESS_INTERVAL
    while True:
        now = time.perf_counter()
        if now >= end:
            return
        time.sleep(max(0.0, min(tick, end) - now))
        now = time.perf_counter()
        if now - last < MIN_INTERVAL:
            return
        done, failed = recorder.ok_count, len(recorder.failed)
        window = sorted(recorder.latencies(seen_ok, done))
        emit(
            Progress(
                measured_s=None if last < start else now - start,
                ops_per_s=(done - seen_ok) / (now - last),
                errors=failed - seen_err,
                p50_s=percentile(window, 50),
                p99_s=percentile(window, 99),
            )
        )
        seen_ok, seen_err, last = done, failed, now
        tick += PROGRESS_INTERVAL
