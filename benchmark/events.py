"""What a run tells its caller while it runs.

A run never prints: it hands these to the caller's callback, and the caller
(the command line, a script, a test) shows them as it likes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class ClusterStarted:
    """The run started the config's cluster: its supervisor's pid (to stop
    it by hand if the run itself is killed) and where the cluster logs."""

    pid: int
    log_path: Path


@dataclass(frozen=True, slots=True)
class LeaderFound:
    """A node leads: the load starts now."""

    leader: str


@dataclass(frozen=True, slots=True)
class Progress:
    """About once a second: the rates since the previous Progress.

    measured_s: seconds into the measured window, or None while the interval
        reported began in the warm-up.
    errors: failed commands in the interval.
    p50_s, p99_s: latency percentiles of the interval's successes (None if none).
    """

    measured_s: float | None
    ops_per_s: float
    errors: int
    p50_s: float | None
    p99_s: float | None


@dataclass(frozen=True, slots=True)
class ClusterStopped:
    """The cluster the run started is stopped again: its supervisor's exit status."""

    exit_status: int


Event = ClusterStarted | LeaderFound | Progress | ClusterStopped
OnEvent = Callable[[Event], None]
