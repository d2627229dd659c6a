"""Micro-benchmark of snapshot files: write, verify, read back, receive in chunks.

Writes a snapshot of --size-mb of state through the sink in 64 KiB writes
(commit included: trailer, fsync, rename, directory fsync), verifies it
(SnapshotStore.newest(): one sha256 pass), reads the state back through the
restore source in 1 MiB reads, and receives it through SnapshotReceiver in
--chunk-kb chunks (one fdatasync per chunk, then the verify on finish).
Reports MB/s per step, medians of --repeat runs. Quick by default (16 MB).

    .venv/bin/python bench/micro_snapshot.py [--size-mb N] [--chunk-kb K] [--dir DIR] [--json OUT|-]

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
from sandzmq.storage.snapshot import SnapshotMeta, SnapshotStore, iter_chunks


def run_once(directory: str, size_mb: int, chunk_kb: int, fsync: bool) -> dict:
    piece = os.urandom(64 << 10)
    pieces = (size_mb << 20) // len(piece)
    store = SnapshotStore(os.path.join(directory, "leader"), fsync=fsync)
    meta = SnapshotMeta(1000, 3, ("n1", "n2", "n3"))
    clock = time.perf_counter
    t0 = clock()
    with store.begin(meta, b"sessions") as sink:
        for _ in range(pieces):
            sink.write(piece)
        sink.commit()
    t1 = clock()
    info = store.newest()
    t2 = clock()
    assert info is not None
    with store.open(info) as reader:
        source = reader.state()
        while source.read(1 << 20):
            pass
    t3 = clock()
    follower = SnapshotStore(os.path.join(directory, "follower"), fsync=fsync)
    receiver = follower.receiver(max_total_bytes=info.size, max_chunk_bytes=chunk_kb << 10)
    for offset, chunk in iter_chunks(info.path, chunk_kb << 10):
        receiver.accept(offset, chunk)
    receiver.finish()
    t4 = clock()
    mb = info.size / 1e6
    return {
        "write_mb_s": mb / (t1 - t0),
        "verify_mb_s": mb / (t2 - t1),
        "read_mb_s": mb / (t3 - t2),
        "receive_mb_s": mb / (t4 - t3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", default=tempfile.gettempdir(), help="where to write (default: %(default)s)")
    parser.add_argument("--size-mb", type=int, default=16, help="state size in MB (default: %(default)s)")
    parser.add_argument("--chunk-kb", type=int, default=1024, help="receive chunk size (default: %(default)s)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per cell; medians are shown (default: %(default)s)")
    parser.add_argument("--json", metavar="OUT", help="also write the results as JSON to OUT ('-': stdout)")
    args = parser.parse_args()

    fstype = filesystem_of(args.dir)
    params = {
        "dir": args.dir,
        "filesystem": fstype,
        "size_mb": args.size_mb,
        "chunk_kb": args.chunk_kb,
        "repeat": args.repeat,
        "python": platform.python_version(),
        "machine": platform.platform(),
        "cpus": os.cpu_count(),
    }
    print("micro_snapshot: " + ", ".join(f"{k}={v}" for k, v in params.items()))
    if fstype in ("tmpfs", "ramfs"):
        print("warning: the directory is on", fstype, "- fsync costs nothing there")
    header = f"{'fsync':>5} {'write MB/s':>10} {'verify MB/s':>11} {'read MB/s':>9} {'receive MB/s':>12}"
    print(header)
    print("-" * len(header))
    results = []
    for fsync in (True, False):
        runs = []
        for _ in range(args.repeat):
            directory = tempfile.mkdtemp(prefix="micro_snapshot-", dir=args.dir)
            try:
                runs.append(run_once(directory, args.size_mb, args.chunk_kb, fsync))
            finally:
                shutil.rmtree(directory)
        cell = median_cell(runs)
        cell.update(fsync=fsync)
        results.append(cell)
        print(
            f"{'on' if fsync else 'off':>5} {cell['write_mb_s']:>10,.0f} {cell['verify_mb_s']:>11,.0f} "
            f"{cell['read_mb_s']:>9,.0f} {cell['receive_mb_s']:>12,.0f}"
        )
    if args.json:
        write_json(args.json, {"params": params, "results": results})


if __name__ == "__main__":
    main()
