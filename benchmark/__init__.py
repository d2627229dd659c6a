"""sandzmq.benchmark: drive replicate() load at a cluster and measure what it commits.

`run_bench(config, BenchOptions(...), on_event)` is a whole run: it starts
the cluster if asked, keeps `clients x inflight` commands in flight through
a warm-up and a measured window, watches the leader's batching and the
actors' memory from outside, stops what it started, and returns the report
(the object `sandzmq bench --json` writes). It never prints: what happens
meanwhile goes to `on_event` (events.py), so `sandzmq bench` and the
scripts under bench/ show it each in their own way.

    options    BenchOptions: the load and the window
    cluster    the cluster under test: spawned or running, its leader
    load       closed-loop drivers and the commands they send
    recorder   completions and their latencies; nearest-rank percentiles
    watch      the leader's batching counters, the actors' peak memory
    processes  which actor processes are on this host, their memory
    report     the report object and what is read back out of it
    run        run_bench, tying the above together
"""

from sandzmq.benchmark.cluster import NoLeaderError
from sandzmq.benchmark.events import ClusterStarted, ClusterStopped, Event, LeaderFound, OnEvent, Progress
from sandzmq.benchmark.options import BenchOptions
from sandzmq.benchmark.recorder import percentile
from sandzmq.benchmark.report import max_rss
from sandzmq.benchmark.run import run_bench, sigterm_as_interrupt

__all__ = [
    "BenchOptions",
    "ClusterStarted",
    "ClusterStopped",
    "Event",
    "LeaderFound",
    "NoLeaderError",
    "OnEvent",
    "Progress",
    "max_rss",
    "percentile",
    "run_bench",
    "sigterm_as_interrupt",
]
