"""What the cluster itself does during a run, read from outside it: the
leader's batching over the measured window, and the most memory each local
actor process held.

Both come from the nodes' status reports and /proc, never from inside the
cluster, so the bench works against any running cluster, and the watching
costs the cluster a few status requests per run.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from sandzmq.benchmark.processes import local_actor_pids, read_rss_mib
from sandzmq.replicator.status import collect, node_status

from sandzmq.config import ClusterConfig

RSS_INTERVAL = 0.5  # seconds between two memory samples of the actor processes
#: The leader's cumulative counters ("stats" in its status report) and the
#: ratios the report derives from their growth over the measured window.
RATIOS = {
    "entries_per_append": ("append_entries", "append_messages"),
    "entries_per_fsync": ("fsync_entries", "fsyncs"),
}


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


def leader_stats(config: ClusterConfig, leader: str, timeout: float = 2.0) -> dict[str, Any] | None:
    """The "stats" counters of `leader`'s status, or None if it does not
    answer, no longer leads, or reports no counters."""
    report = node_status(config, config.node(leader), timeout)
    if not report or report.get("role") != "leader":
        return None
    stats = report.get("stats")
    return stats if isinstance(stats, dict) else None


class ClusterWatch:
    """The leader's batching counters at both ends of the measured window,
    and the resident memory of every local actor process every RSS_INTERVAL
    seconds, on a thread of its own so that the samples do not wait for
    the progress reports."""

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
        """Start sampling; the leader's counters are read once `window_start`
        (a time.perf_counter() value) is reached."""
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

    def batching(self) -> dict[str, float | None]:
        """The RATIOS over the window, None where they cannot be known."""
        return batching_ratios(self.before, self.after)

    def max_rss_mib(self) -> dict[str, dict[str, float]]:
        """{node id: {actor kind: the most resident memory seen, MiB}}."""
        return {node: {kind: round(mib, 1) for kind, mib in kinds.items()} for node, kinds in self.max_rss.items()}

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
