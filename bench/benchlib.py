"""What the benchmark scripts share: medians per cell, JSON output, the disk's filesystem.

The scripts run as plain files (`python bench/micro_wal.py`), so this module
is imported by name from the scripts' own folder.
"""
from __future__ import annotations

import json
import os
import statistics
from typing import Any


def median_cell(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The per-key median of several runs of one benchmark cell (noise: quote medians)."""
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]}


def write_json(destination: str, document: dict[str, Any]) -> None:
    """`--json OUT`: write the results to OUT, or to standard output for "-"."""
    text = json.dumps(document, indent=2)
    if destination == "-":
        print(text)
    else:
        with open(destination, "w") as out:
            out.write(text + "\n")


def filesystem_of(path: str) -> str:
    """The filesystem type of the mount holding `path` (Linux /proc/mounts), or '?':
    fsync costs differ by an order of magnitude between filesystems."""
    path, best, fstype = os.path.realpath(path), "", "?"
    try:
        with open("/proc/mounts") as mounts:
            for line in mounts:
                _, mount_point, kind, *_ = line.split()
                if (path == mount_point or path.startswith(mount_point.rstrip("/") + "/")) and len(mount_point) > len(best):
                    best, fstype = mount_point, kind
    except OSError:
        pass
    return fstype
