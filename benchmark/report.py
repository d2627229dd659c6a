"""The report of a run: the object `sandzmq bench --json` writes (SPEC 5
fixes its first fields; the rest may grow), and what is read back out of it.

Honesty rules: only operations that complete inside the measured window
count (the warm-up before it is excluded, as is the tail after it); errors
are counted, never timed as successes; the parameters that change the
numbers (fsync from the config, sizes, concurrency, node count) are part of
the report, so no number travels without them.
"""

from __future__ import annotations

import os
import platform
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from sandzmq.benchmark.options import BenchOptions
from sandzmq.benchmark.recorder import percentile
from sandzmq.benchmark.watch import RATIOS

from sandzmq.config import ClusterConfig


@dataclass(frozen=True, slots=True)
class Measurement:
    """What a run saw inside its measured window: the report's raw material.

    latencies: seconds, ascending, of the successes completed in the window.
    errors: the failures completed in the window, by error type.
    client_stats: the clients' counters, summed over the clients.
    batching: the leader's RATIOS over the window (None where unknown).
    max_rss_mib: {node id: {actor kind: MiB}}, the local actors' peaks.
    """

    latencies: list[float]
    errors: Counter[str]
    client_stats: dict[str, int]
    leader: str
    batching: dict[str, float | None] = field(default_factory=lambda: dict.fromkeys(RATIOS))
    max_rss_mib: dict[str, dict[str, float]] = field(default_factory=dict)


def build_report(config: ClusterConfig, options: BenchOptions, measured: Measurement) -> dict[str, Any]:
    """The SPEC 5 JSON object, with a few more fields after the required ones."""
    latencies = measured.latencies
    stats = measured.client_stats

    def ms(p: float) -> float | None:
        value = percentile(latencies, p)
        return None if value is None else round(value * 1000, 3)

    return {
        "ops_per_s": round(len(latencies) / options.duration, 1),
        "ops": len(latencies),
        "errors": sum(measured.errors.values()),
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
        "errors_by_type": dict(measured.errors),
        "state_machine": config.state_machine,
        "spawned": options.spawn,
        "commands_per_client_message": round(stats.get("requests_sent", 0) / max(1, stats.get("submits", 0)), 2),
        "leader": measured.leader,
        # Over the measured window, on the leader; null when it reports no "stats".
        **measured.batching,
        # Per node and actor kind, the most resident memory seen (nodes on this host only).
        "max_rss_mib": measured.max_rss_mib,
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
        },
    }


def max_rss(max_rss_mib: dict[str, dict[str, float]]) -> tuple[float, str, str] | None:
    """The largest resident set of any actor in a report's "max_rss_mib":
    (MiB, node id, actor kind), or None when no actor process could be read
    (all nodes on other hosts)."""
    samples = [(mib, node, kind) for node, kinds in max_rss_mib.items() for kind, mib in kinds.items()]
    return max(samples) if samples else None
