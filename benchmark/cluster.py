"""The cluster a run measures: one already running (here or on other
hosts), or the config's own cluster, started for the run and stopped after
it whatever happens; and, either way, its leader."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

from sandzmq.actors.supervisor import spawn, terminate
from sandzmq.benchmark.events import ClusterStarted, ClusterStopped, LeaderFound, OnEvent
from sandzmq.benchmark.options import BenchOptions
from sandzmq.replicator.status import wait_for_leader

from sandzmq.config import ClusterConfig
from sandzmq.errors import SandzmqError

#: Seconds a cluster that was already running gets to show a leader: it has
#: had its chance to elect one, so a long wait would only hide that it is down.
RUNNING_LEADER_TIMEOUT = 10.0
LOG_NAME = "bench-cluster.log"  # a spawned cluster's output, under the config's data_dir


class NoLeaderError(SandzmqError):
    """No node became leader in time. `log_path` is the spawned cluster's
    log (its message points there), or None for a cluster the run did not
    start, which may simply not be running."""

    def __init__(self, message: str, log_path: Path | None) -> None:
        super().__init__(message)
        self.log_path = log_path


@contextlib.contextmanager
def cluster_under_test(config: ClusterConfig, options: BenchOptions, on_event: OnEvent) -> Iterator[str]:
    """Start the cluster if `options.spawn`, wait for a leader and yield its
    id; on the way out, stop a started cluster, also after an exception
    (KeyboardInterrupt included), so that no run leaves one behind.
    Raises NoLeaderError."""
    cluster: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    try:
        if options.spawn:
            log_path = config.data_dir / LOG_NAME
            cluster = _spawn(config, log_path)
            on_event(ClusterStarted(cluster.pid, log_path))
        alive = (lambda: cluster.poll() is None) if cluster is not None else None
        timeout = options.leader_timeout if cluster is not None else RUNNING_LEADER_TIMEOUT
        try:
            leader = wait_for_leader(config, timeout, alive=alive)
        except TimeoutError as exc:
            raise NoLeaderError(f"{exc}; see {log_path}" if log_path else str(exc), log_path) from None
        on_event(LeaderFound(leader))
        yield leader
    finally:
        if cluster is not None:
            on_event(ClusterStopped(terminate(cluster)))


def _spawn(config: ClusterConfig, log_path: Path) -> subprocess.Popen[bytes]:
    """`sandzmq start` for every node of the config, its output appended to `log_path`."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log_file:
        return spawn(config.path, stderr=log_file, stdout=log_file)
