"""Run every micro-benchmark in bench/ and print one summary table.

    .venv/bin/python bench/run_micro.py [--quick] [--only core,apply,wal,transport,client]
                                        [--json OUT] [--baseline OLD.json]

Each benchmark runs as its own process (micro_core.py, micro_apply.py,
micro_wal.py, micro_transport.py, micro_client.py) with --json, and the numbers that matter
for throughput are collected into one table: microseconds per entry, per
batch and per message, and rates. With --baseline (a --json file of an
earlier run, e.g. from before a change) every row also shows the old value
and the change in percent, with the direction that is better marked, so a
regression is visible at a glance. Changes within +-10 % are usually noise on
a shared 2-core machine: rerun before you believe one.

Keep the machine otherwise idle while it runs; it takes about a minute
(--quick: about 20 s).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
BENCHES = ("core", "apply", "wal", "transport", "client")


def _run(script: str, args: list[str], json_path: str | None, timeout: float) -> dict[str, Any]:
    """Run one benchmark script; its JSON comes from `json_path`, or from stdout when None."""
    argv = [sys.executable, str(HERE / script), *args]
    started = time.monotonic()
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    elapsed = time.monotonic() - started
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout + proc.stderr)
        raise RuntimeError(f"{script} failed with exit status {proc.returncode}")
    if json_path is None:
        data = json.loads(proc.stdout)
    else:
        data = json.loads(Path(json_path).read_text())
    data["_seconds"] = round(elapsed, 1)
    return data


def run_core(quick: bool, tmp: str) -> dict[str, Any]:
    out = os.path.join(tmp, "core.json")
    return _run("micro_core.py", ["--quick"] * quick + ["--json", out], out, 300)


def run_apply(quick: bool, tmp: str) -> dict[str, Any]:
    out = os.path.join(tmp, "apply.json")
    return _run("micro_apply.py", ["--quick"] * quick + ["--json", out], out, 300)


def run_wal(quick: bool, tmp: str) -> dict[str, Any]:
    out = os.path.join(tmp, "wal.json")
    args = [
        "--batch-sizes",
        "1,64,512",
        "--duration",
        "0.3" if quick else "0.5",
        "--repeat",
        "1" if quick else "3",
        "--json",
        out,
    ]
    return _run("micro_wal.py", args, out, 300)


def run_transport(quick: bool, tmp: str) -> dict[str, Any]:
    return _run("micro_transport.py", ["--json"] + ["--quick"] * quick, None, 600)


def run_client(quick: bool, tmp: str) -> dict[str, Any]:
    out = os.path.join(tmp, "client.json")
    return _run("micro_client.py", ["--quick"] * quick + ["--json", out], out, 300)


RUNNERS = {"core": run_core, "apply": run_apply, "wal": run_wal, "transport": run_transport, "client": run_client}

# (key, label, unit, lower_is_better)
Row = tuple[str, str, str, bool]


def summarize(raw: dict[str, Any]) -> list[tuple[Row, float | None]]:
    """The summary rows: ((key, label, unit, lower_is_better), value)."""
    rows: list[tuple[Row, float | None]] = []

    def add(key: str, label: str, unit: str, lower: bool, value: float | None) -> None:
        rows.append(((key, label, unit, lower), value))

    if "core" in raw:
        for r in raw["core"]["results"]:
            role, b = r["role"], r["batch"]
            add(f"core.{role}.{b}.us_entry", f"core {role}, batch {b}", "us/entry", True, r["us_per_entry"])
            add(f"core.{role}.{b}.us_batch", f"core {role}, batch {b}", "us/batch", True, r["us_per_batch"])
    if "apply" in raw:
        for r in raw["apply"]["results"]:
            b = r["batch"]
            add(f"apply.{b}.apply_us_entry", f"apply _apply loop, batch {b}", "us/entry", True, r["apply_us_per_entry"])
            add(
                f"apply.{b}.total_us_entry",
                f"apply decode+_on_batch, batch {b}",
                "us/entry",
                True,
                r["total_us_per_entry"],
            )
    if "wal" in raw:
        for r in raw["wal"]["results"]:
            fs, b = "fsync" if r["fsync"] else "no-fsync", r["batch_size"]
            add(
                f"wal.{fs}.{b}.us_batch",
                f"wal append+sync ({fs}), batch {b}",
                "us/batch",
                True,
                r["append_us"] + r["sync_us"],
            )
            add(f"wal.{fs}.{b}.append_us_entry", f"wal append ({fs}), batch {b}", "us/entry", True, r["append_us"] / b)
    if "transport" in raw:
        for r in raw["transport"]["codec"]:
            if r["layout"] != "columnar":
                continue
            name = r["message"]
            key = name.replace(" ", "")
            add(f"codec.{key}.us", f"codec {name} enc+dec", "us/msg", True, r["total_us"])
            if r["per_entry_us"] is not None:
                add(f"codec.{key}.us_entry", f"codec {name} enc+dec", "us/entry", True, r["per_entry_us"])
        for r in raw["transport"]["sockets"]:
            label = f"{r['transport']} {r['mode']} {r['message']}" + (f" x{r['entries']}" if r["entries"] else "")
            key = f"sock.{r['transport']}.{r['mode']}.{r['message']}{r['entries'] or ''}"
            if r["mode"] == "pingpong":
                add(key + ".rtt", label, "rtt p50 us", True, r["rtt_us_p50"])
            else:
                add(key + ".rate", label, "msgs/s", False, r["msgs_per_s"])
    if "client" in raw:
        for r in raw["client"]["results"]:
            cell = f"{r['clients']}x{r['inflight']}"
            add(
                f"client.{cell}.us_op",
                f"client replicate_async, {r['clients']} x {r['inflight']} in flight",
                "cpu us/op",
                True,
                r["cpu_us_per_op"],
            )
            add(
                f"client.{cell}.rate",
                f"client replicate_async, {r['clients']} x {r['inflight']} in flight",
                "ops/s",
                False,
                r["ops_per_s"],
            )
    return rows


def _fmt(v: float | None) -> str:
    if v is None:
        return "-"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.3f}"


def print_summary(rows: list[tuple[Row, float | None]], baseline: dict[str, float] | None) -> None:
    label_w = max(len(r[0][1]) for r in rows)
    unit_w = max(len(r[0][2]) for r in rows)
    head = f"{'benchmark':<{label_w}}  {'unit':<{unit_w}}  {'value':>12}"
    if baseline is not None:
        head += f"  {'baseline':>12}  {'change':>8}"
    print(head)
    print("-" * len(head))
    for (key, label, unit, lower), value in rows:
        line = f"{label:<{label_w}}  {unit:<{unit_w}}  {_fmt(value):>12}"
        if baseline is not None:
            old = baseline.get(key)
            change = ""
            if old and value is not None:
                pct = (value - old) / old * 100
                worse = pct > 0 if lower else pct < 0
                mark = "  WORSE" if worse and abs(pct) > 10 else ("  better" if not worse and abs(pct) > 10 else "")
                change = f"{pct:+.0f}%{mark}"
            line += f"  {_fmt(old):>12}  {change:>8}"
        print(line)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="shorter runs (smoke test; noisier numbers)")
    parser.add_argument("--only", default=",".join(BENCHES), help="comma-separated subset of %(default)s")
    parser.add_argument("--json", metavar="OUT", help="write the summary and every benchmark's raw JSON to OUT")
    parser.add_argument("--baseline", metavar="OLD", help="a --json file of an earlier run to compare against")
    args = parser.parse_args(argv)
    wanted = [b.strip() for b in args.only.split(",") if b.strip()]
    for b in wanted:
        if b not in RUNNERS:
            parser.error(f"unknown benchmark {b!r}; choose from {', '.join(BENCHES)}")
    baseline = None
    if args.baseline:
        old = json.loads(Path(args.baseline).read_text())
        baseline = old["summary"]
        if old.get("machine", {}).get("quick") != args.quick:
            print(
                "note: the baseline was run with"
                + ("" if old.get("machine", {}).get("quick") else "out")
                + " --quick and this run is not the same: compare like with like",
                file=sys.stderr,
            )
    raw: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="run_micro-") as tmp:
        for name in wanted:
            print(f"running {name} ...", file=sys.stderr, flush=True)
            raw[name] = RUNNERS[name](args.quick, tmp)
            print(f"  done in {raw[name]['_seconds']} s", file=sys.stderr, flush=True)
    rows = summarize(raw)
    machine = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        "quick": args.quick,
    }
    print(f"sandzmq micro-benchmarks ({', '.join(f'{k}={v}' for k, v in machine.items())})")
    print_summary(rows, baseline)
    if args.json:
        summary = {key: value for (key, _, _, _), value in rows}
        Path(args.json).write_text(json.dumps({"machine": machine, "summary": summary, "raw": raw}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
