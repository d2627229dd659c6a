"""`sandzmq status`: ask every node of a config for its status report.

The JSON form is a contract (SPEC 5): exactly the keys below, every one of
them present, null where a node does not answer. Anything else a node
reports (its followers' progress, drop counters by reason) goes only into
the human view, where nobody parses it.
"""
from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from sandzmq.config import ClusterConfig, NodeConfig
from sandzmq.errors import SandzmqError
from sandzmq.replicator.client import Client

#: The keys of one node in `status --json`, in order.
NODE_KEYS = (
    "id", "role", "term", "leader", "commit_index", "applied_index",
    "last_index", "snapshot_index", "dropped", "pids",
)  # fmt: skip
PID_KEYS = ("raft", "log", "apply")
UNREACHABLE = "unreachable"


def node_status(config: ClusterConfig, node: NodeConfig, timeout: float = 1.0) -> dict[str, Any] | None:
    """The node's raw status report, or None if it does not answer within `timeout`."""
    try:
        with Client.connect(node.client, cluster=config.name) as client:
            return client.status(timeout=timeout)
    except SandzmqError:
        return None


def collect(config: ClusterConfig, nodes: Sequence[NodeConfig] | None = None, timeout: float = 1.0) -> list[tuple[str, dict[str, Any] | None]]:
    """(node id, raw report or None) for each node, asked in parallel so that
    unreachable nodes cost one timeout in all, not one each."""
    nodes = list(config.nodes if nodes is None else nodes)
    with ThreadPoolExecutor(max_workers=max(1, len(nodes))) as pool:
        reports = list(pool.map(lambda n: node_status(config, n, timeout), nodes))
    return [(node.id, report) for node, report in zip(nodes, reports)]


def spec_row(node_id: str, report: dict[str, Any] | None) -> dict[str, Any]:
    """One node as SPEC 5 has it: exactly NODE_KEYS; role "unreachable" and
    every other field null when there is no report."""
    if report is None:
        row: dict[str, Any] = dict.fromkeys(NODE_KEYS)
        row["id"], row["role"] = node_id, UNREACHABLE
        return row
    row = {key: report.get(key) for key in NODE_KEYS}
    row["id"] = node_id
    pids = report.get("pids")
    row["pids"] = {key: (pids.get(key) if isinstance(pids, dict) else None) for key in PID_KEYS}
    return row


def spec_document(results: Sequence[tuple[str, dict[str, Any] | None]]) -> dict[str, Any]:
    """The whole `status --json` object."""
    return {"nodes": [spec_row(node_id, report) for node_id, report in results]}


def wait_for_leader(config: ClusterConfig, timeout: float, *, alive: Any = None) -> str:
    """Poll the nodes until one reports itself leader; its id. `alive()`,
    if given, is checked each round (a spawned cluster that died).
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


# ---------------------------------------------------------------- the human view

_COLUMNS = (
    ("NODE", "id"), ("ROLE", "role"), ("TERM", "term"), ("LEADER", "leader"),
    ("COMMIT", "commit_index"), ("APPLIED", "applied_index"), ("LAST", "last_index"),
    ("SNAPSHOT", "snapshot_index"), ("DROPPED", "dropped"),
)  # fmt: skip


def render(results: Sequence[tuple[str, dict[str, Any] | None]]) -> str:
    """A table, one row per node, then what the leaders know of their followers."""
    rows = []
    for node_id, report in results:
        row = spec_row(node_id, report)
        cells = [_cell(row[key]) for _, key in _COLUMNS]
        pids = row["pids"]
        cells.append("-" if pids is None else "/".join(_cell(pids[k]) for k in PID_KEYS))
        rows.append(cells)
    header = [title for title, _ in _COLUMNS] + ["PIDS raft/log/apply"]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in [header, *rows]]
    for node_id, report in results:
        lines.extend(_details(node_id, report or {}))
    return "\n".join(lines)


def _details(node_id: str, report: dict[str, Any]) -> list[str]:
    out = []
    followers = report.get("followers")
    if isinstance(followers, dict) and followers:
        out.append(f"{node_id} followers:")
        for peer, p in sorted(followers.items()):
            if not isinstance(p, dict):
                continue
            out.append(
                f"  {peer}: match {_cell(p.get('match'))}, next {_cell(p.get('next'))}, lag {_cell(p.get('lag'))}, "
                f"{_cell(p.get('state'))}, {_cell(p.get('inflight'))} in flight"
            )
    drops = report.get("drops")
    if isinstance(drops, dict):
        counted = {k: v for k, v in drops.items() if v and k != "total"}
        if counted:
            out.append(f"{node_id} drops: " + ", ".join(f"{k} {v}" for k, v in sorted(counted.items())))
    return out


def _cell(value: Any) -> str:
    return "-" if value is None else str(value)
