"""Micro-benchmark of the write-ahead log: append + sync per batch.

For each batch size and fsync on/off it appends batches of fixed-size
entries, calling sync() after each (the log-store's pattern: one fsync per
batch), and reports batches/s, entries/s, the time in append() and in sync()
per batch (with fsync on, the second is the cost of one fdatasync), and the
time to reopen (recover) the log it wrote. Each cell runs --repeat times;
the table shows medians. Entries are built outside the timed calls.

    .venv/bin/python bench/micro_wal.py [--dir DIR] [--duration S] [--json OUT|-]

Write to a real disk: on tmpfs fsync costs nothing (the script says so).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import tempfile
import time

from benchlib import filesystem_of, median_cell, write_json
from sandzmq.raft.messages import Entry
from sandzmq.storage import WriteAheadLog


def run_once(directory: str, batch_size: int, entry_size: int, fsync: bool, duration: float) -> dict:
    data = os.urandom(entry_size)
    append_s = sync_s = 0.0
    batches = 0
    index = 1
    wal = WriteAheadLog.open(directory, fsync=fsync)
    clock = time.perf_counter
    deadline = clock() + duration
    while clock() < deadline:
        entries = [Entry(i, 1, data) for i in range(index, index + batch_size)]
        t0 = clock()
        wal.append(entries)
        t1 = clock()
        wal.sync()
        t2 = clock()
        append_s += t1 - t0
        sync_s += t2 - t1
        batches += 1
        index += batch_size
    wal.close()
    t0 = clock()
    WriteAheadLog.open(directory, fsync=fsync).close()
    reopen_s = clock() - t0
    busy = append_s + sync_s
    return {
        "batches_per_s": batches / busy,
        "entries_per_s": batches * batch_size / busy,
        "append_us": append_s / batches * 1e6,
        "sync_us": sync_s / batches * 1e6,
        "reopen_ms": reopen_s * 1e3,
        "batches": batches,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", default=tempfile.gettempdir(), help="where to write (default: %(default)s)")
    parser.add_argument("--batch-sizes", default="1,16,64,512", help="comma-separated (default: %(default)s)")
    parser.add_argument("--entry-size", type=int, default=128, help="bytes of data per entry (default: %(default)s)")
    parser.add_argument("--duration", type=float, default=1.0, help="seconds per run (default: %(default)s)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per cell; medians are shown (default: %(default)s)")
    parser.add_argument("--json", metavar="OUT", help="also write the results as JSON to OUT ('-': stdout)")
    args = parser.parse_args()

    sizes = [int(s) for s in args.batch_sizes.split(",")]
    fstype = filesystem_of(args.dir)
    params = {
        "dir": args.dir,
        "filesystem": fstype,
        "entry_size": args.entry_size,
        "duration_s": args.duration,
        "repeat": args.repeat,
        "python": platform.python_version(),
        "machine": platform.platform(),
        "cpus": os.cpu_count(),
    }
    print("micro_wal: append + sync per batch, " + ", ".join(f"{k}={v}" for k, v in params.items()))
    if fstype in ("tmpfs", "ramfs"):
        print("warning: the directory is on", fstype, "- fsync costs nothing there")

    results = []
    header = f"{'fsync':>5} {'batch':>5} {'batches/s':>10} {'entries/s':>10} {'append µs':>10} {'sync µs':>9} {'reopen ms':>9}"
    print(header)
    print("-" * len(header))
    for fsync in (True, False):
        for size in sizes:
            runs = []
            for _ in range(args.repeat):
                directory = tempfile.mkdtemp(prefix="micro_wal-", dir=args.dir)
                try:
                    runs.append(run_once(directory, size, args.entry_size, fsync, args.duration))
                finally:
                    shutil.rmtree(directory)
            cell = median_cell(runs)
            cell.update(fsync=fsync, batch_size=size)
            results.append(cell)
            print(
                f"{'on' if fsync else 'off':>5} {size:>5} {cell['batches_per_s']:>10,.0f} {cell['entries_per_s']:>10,.0f} "
                f"{cell['append_us']:>10.1f} {cell['sync_us']:>9.1f} {cell['reopen_ms']:>9.1f}"
            )
    if args.json:
        write_json(args.json, {"params": params, "results": results})


if __name__ == "__main__":
    main()
