"""The completions of a run, as the clients' I/O threads report them, and
the nearest-rank percentiles taken of their latencies.

Recording sits on the hot path of every operation, on the clients' own
threads: whatever it costs is measured as the cluster's latency. Hence the
flat array below rather than a list of tuples.
"""

from __future__ import annotations

from array import array


class Recorder:
    """Completions, with the time they completed. Appends come from the
    clients' I/O threads; read once the run is over (and by the progress
    reports). Successes go into one flat array of (completed at, latency)
    pairs: extend() with a pair is one C call, so pairs from two threads
    never interleave, and a float array is invisible to the garbage
    collector, which would otherwise walk one tuple per operation at every
    full collection."""

    def __init__(self) -> None:
        self.samples = array("d")  # completed at, latency s, completed at, latency s, ...
        self.failed: list[tuple[float, str]] = []  # (completed at, error type)

    @property
    def ok_count(self) -> int:
        return len(self.samples) // 2

    def ok(self, at: float, latency: float) -> None:
        self.samples.extend((at, latency))

    def error(self, at: float, kind: str) -> None:
        self.failed.append((at, kind))

    def latencies(self, first: int = 0, end: int | None = None) -> list[float]:
        """Latencies of the successes numbered [first, end)."""
        stop = None if end is None else 2 * end
        return list(self.samples[2 * first + 1 : stop : 2])

    def latencies_between(self, start: float, end: float) -> list[float]:
        """Latencies of the successes that completed in [start, end)."""
        samples = self.samples
        return [lat for at, lat in zip(samples[0::2], samples[1::2]) if start <= at < end]


def percentile(sorted_values: list[float], p: float) -> float | None:
    """Nearest-rank percentile of an ascending list (None when empty): always
    a latency that was observed, never an interpolation between two."""
    if not sorted_values:
        return None
    rank = max(1, -(-len(sorted_values) * p // 100))  # ceil(n * p / 100)
    return sorted_values[int(rank) - 1]
