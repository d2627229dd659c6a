"""SVG plots of benchmark results for docs/PERFORMANCE.md.

    .venv/bin/pip install -e '.[plots]'        # once: matplotlib
    .venv/bin/python bench/plot.py --out-dir docs/plots sweep.json compare.json

Reads the --json output of bench/sweep.py and of bench/compare_pysyncobj.py
(any number of files, either kind) and writes two plots into --out-dir:

- throughput.svg: committed ops/s against the total number of requests in
  flight (clients x in flight per client; compare_pysyncobj's
  "outstanding"), one line per system and configuration;
- latency.svg: p50 (solid) and p99 (dashed) latency against the same load.

Closed-loop throughput is in-flight / latency (Little's law), so the two
plots read together: where the throughput line flattens, latency starts to
grow in proportion to the load. Points are the medians the scripts computed.
The SVGs carry no date and a fixed id salt, so replotting the same data
changes no byte of a committed file.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Series:
    """One line on the plots: a system in one configuration, over load levels."""

    label: str
    points: list[tuple[int, float, float | None, float | None]] = field(default_factory=list)  # (load, ops/s, p50, p99)

    def sorted_points(self) -> list[tuple[int, float, float | None, float | None]]:
        return sorted(self.points)


def sweep_series(document: dict[str, Any]) -> list[Series]:
    """bench/sweep.py: one line per cluster setting (nodes, size, window, batch),
    over its load levels."""
    lines: dict[tuple[int, int, int, int], Series] = {}
    for cell in document.get("cells", []):
        if cell.get("ops_per_s") is None:
            continue
        key = (cell["nodes"], cell["size"], cell["max_inflight"], cell["max_batch"])
        label = f"sandzmq {cell['nodes']}x{cell['size']}B win {cell['max_inflight']} batch {cell['max_batch']}"
        lines.setdefault(key, Series(label)).points.append(
            (cell["outstanding"], cell["ops_per_s"], cell.get("p50_ms"), cell.get("p99_ms"))
        )
    return [lines[key] for key in sorted(lines)]


def compare_series(document: dict[str, Any]) -> list[Series]:
    """bench/compare_pysyncobj.py: one line per system and configuration."""
    lines: dict[str, Series] = {}
    for med in document.get("medians", []):
        if med.get("ops_per_s") is None:
            continue
        label = f"{med['system']} {med['config']}B"
        lines.setdefault(label, Series(label)).points.append(
            (med["outstanding"], med["ops_per_s"], med.get("p50_ms"), med.get("p99_ms"))
        )
    return list(lines.values())


def series_of(document: dict[str, Any]) -> list[Series]:
    """The lines in one results file, whichever script wrote it."""
    if document.get("kind") == "sandzmq-sweep" or "cells" in document:
        return sweep_series(document)
    if "medians" in document:
        return compare_series(document)
    raise ValueError("neither bench/sweep.py nor bench/compare_pysyncobj.py output (no 'cells', no 'medians')")


def load_all(paths: list[Path]) -> list[Series]:
    """Every line of every file; a label that occurs in two files gets the file's name."""
    found: list[tuple[Path, Series]] = [(path, s) for path in paths for s in series_of(json.loads(path.read_text()))]
    counts: dict[str, int] = defaultdict(int)
    for _, s in found:
        counts[s.label] += 1
    for path, s in found:
        if counts[s.label] > 1:
            s.label = f"{s.label} ({path.stem})"
    return [s for _, s in found]


# ---------------------------------------------------------------- drawing


def have_matplotlib() -> bool:
    return importlib.util.find_spec("matplotlib") is not None


def draw(series: list[Series], out_dir: Path, title: str) -> list[Path]:
    """Write throughput.svg and latency.svg; their paths."""
    import matplotlib

    matplotlib.use("Agg")  # no display needed
    import matplotlib.pyplot as plt

    plt.rcParams["svg.hashsalt"] = "sandzmq-bench"  # stable element ids: reproducible files
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []

    fig, ax = plt.subplots(figsize=(8, 5))
    for s in series:
        pts = s.sorted_points()
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=s.label)
    _axes(ax, _title("Committed throughput against load", title), "committed ops/s")
    ax.set_ylim(bottom=0)
    written.append(_save(fig, out_dir / "throughput.svg"))

    fig, ax = plt.subplots(figsize=(8, 5))
    for s in series:
        pts = s.sorted_points()
        (line,) = ax.plot(
            [p[0] for p in pts if p[2] is not None],
            [p[2] for p in pts if p[2] is not None],
            marker="o",
            label=f"{s.label} p50",
        )
        ax.plot(
            [p[0] for p in pts if p[3] is not None],
            [p[3] for p in pts if p[3] is not None],
            marker="^",
            linestyle="--",
            color=line.get_color(),
            label=f"{s.label} p99",
        )
    _axes(ax, _title("Latency percentiles against load", title), "latency, ms (log scale)")
    ax.set_yscale("log")
    written.append(_save(fig, out_dir / "latency.svg"))
    plt.close("all")
    return written


def _title(what: str, suffix: str) -> str:
    return f"{what}: {suffix}" if suffix else what


def _axes(ax: Any, title: str, ylabel: str) -> None:
    from matplotlib.ticker import FuncFormatter, NullFormatter

    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:,.0f}"))  # 1,024, not 2^10
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("requests in flight in total (clients x in flight per client), log scale")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="small")


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, format="svg", metadata={"Date": None})
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 2)[2],
    )
    p.add_argument("results", nargs="+", type=Path, help="--json files of bench/sweep.py or bench/compare_pysyncobj.py")
    p.add_argument("--out-dir", "-o", type=Path, required=True, help="directory for throughput.svg and latency.svg")
    p.add_argument("--title", default="", help="a common title suffix, e.g. the machine")
    args = p.parse_args(argv)
    if not have_matplotlib():
        print(
            "plot.py: matplotlib is not installed in this Python, so no plot can be drawn.\n"
            "  Install it with:  .venv/bin/pip install -e '.[plots]'",
            file=sys.stderr,
        )
        return 2
    try:
        series = load_all(args.results)
    except (OSError, ValueError, KeyError) as exc:
        print(f"plot.py: {exc}", file=sys.stderr)
        return 1
    if not series:
        print("plot.py: no successful results to plot in those files", file=sys.stderr)
        return 1
    for path in draw(series, args.out_dir, args.title):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
