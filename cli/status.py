"""`sandzmq status`: the nodes' status reports as a table or as SPEC 5's JSON.

Asking the nodes is the library's (sandzmq.replicator.status); this module
only shapes the answers. The JSON form is a contract (SPEC 5): exactly the
keys below, every one of them present, null where a node does not answer.
Anything else a node reports (its followers' progress, drop counters by
reason) goes only into the human view, where nobody parses it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sandzmq.replicator.status import PID_KEYS

#: The keys of one node in `status --json`, in order.
NODE_KEYS = (
    "id", "role", "term", "leader", "commit_index", "applied_index",
    "last_index", "snapshot_index", "dropped", "pids",
)  # fmt: skip
UNREACHABLE = "unreachable"


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
