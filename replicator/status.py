"""A cluster's status seen from outside: every node's status report, and its leader.

`sandzmq status`, `sandzmq bench` and the benchmark scripts all need to ask
each node of a config how it is doing; this is that question, asked through
`Client`, with no opinion on how the answers are shown.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from sandzmq.replicator.client import Client

from sandzmq.config import ClusterConfig, NodeConfig
from sandzmq.errors import SandzmqError

#: The actor kinds of a node, as named in the "pids" of its status report.
PID_KEYS = ("raft", "log", "apply")


def node_status(config: ClusterConfig, node: NodeConfig, timeout: float = 1.0) -> dict[str, Any] | None:
    """The node's raw status report, or None if it does not answer within `timeout`."""
    try:
        with Client.connect(node.client, cluster=config.name) as client:
            return client.status(timeout=timeout)
    except SandzmqError:
        return None


def collect(
    config: ClusterConfig, nodes: Sequence[NodeConfig] | None = None, timeout: float = 1.0
) -> list[tuple[str, dict[str, Any] | None]]:
    """(node id, raw report or None) for each node, asked in parallel so that
    unreachable nodes cost one timeout in all, not one each."""
    nodes = list(config.nodes if nodes is None else nodes)
    with ThreadPoolExecutor(max_workers=max(1, len(nodes))) as pool:
        reports = list(pool.map(lambda n: node_status(config, n, timeout), nodes))
    return [(node.id, report) for node, report in zip(nodes, reports)]


def wait_for_leader(config: ClusterConfig, timeout: float, *, alive: Callable[[], bool] | None = None) -> str:
    """Poll the nodes until one reports itself leader; its id. `alive()`,
    if given, is checked each round, so that waiting on a cluster that has
    already died (a spawned one whose supervisor exited) ends at once.
    Raises TimeoutError."""
    deadline = time.monotonic() + timeout
    while True:
        for node_id, report in collect(config, timeout=0.5):
            if report is not None and report.get("role") == "leader":
                return node_id
        if alive is not None and not alive():
            raise TimeoutError("the cluster stopped before it elected a leader")
        if time.monotonic() >= deadline:
            raise TimeoutError(f"no node became leader within {timeout:g} s")
        time.sleep(0.1)
