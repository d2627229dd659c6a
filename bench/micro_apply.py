"""Micro-benchmark of the apply actor's hot path, without sockets.

An ApplyActor is constructed but never started (no thread, no sockets): its
state machine is the built-in kv store and its link to the raft actor is a
stub that only counts frames. Committed entries are what `sandzmq bench`
sends: kv puts of --value-size bytes over 1,024 keys per client, wrapped by
sandzmq.protocol.encode_command with --clients client sessions,
sequence numbers that keep increasing, and first_incomplete trailing by
--inflight (so the sessions hold about that many results per client, as
under `sandzmq bench`). Entries are built outside the timed sections.

For batches of 1, 64 and 512 entries it times, per batch and per entry:

    apply     ApplyActor._apply(entries): the per-entry loop (payload decode,
              session admit/record, StateMachine.apply) - nothing else;
    on_batch  ApplyActor._on_batch(ApplyBatch(entries, want_results=True)):
              the leader's whole path in the actor - checks, _apply, and the
              ApplyResults frame encoded for the raft actor;
    decode    Envelope.decode of the ApplyBatch frame the actor receives
              (the transport's share of the same batch);

and `total` = decode + on_batch, the apply process's CPU per batch.

    .venv/bin/python bench/micro_apply.py [--batches 1,64,512] [--duration S] [--repeat N] [--json OUT|-]
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchlib import median_cell, write_json
from sandzmq.actors.apply import ApplyActor
from sandzmq.protocol import ApplyBatch, encode_command
from sandzmq.raft.messages import Entry
from sandzmq.statemachines.kv import KVStateMachine, encode_put
from sandzmq.transport import Envelope

from sandzmq.config import load_config

KEYS_PER_CLIENT = 1024
CONFIG = """\
[cluster]
name = "micro-apply"
state_machine = "kv"
data_dir = "data"

[[nodes]]
id = "n1"
raft = "tcp://127.0.0.1:1"
client = "tcp://127.0.0.1:2"
"""


class _StubLink:
    """Stands in for the apply actor's DEALER link: counts what would be sent."""

    def __init__(self) -> None:
        self.frames = 0
        self.bytes = 0

    def send_frame(self, frame: bytes) -> None:
        self.frames += 1
        self.bytes += len(frame)

    def send(self, message: Any) -> None:
        self.frames += 1

    def close(self) -> None:
        pass


class EntrySource:
    """Committed entries as a 3-node cluster under `sandzmq bench` produces them."""

    def __init__(self, clients: int, inflight: int, value_size: int) -> None:
        self.client_ids = [os.urandom(16) for _ in range(clients)]
        self.value = os.urandom(value_size)
        self.inflight = inflight
        self.seqs = [0] * clients
        self.index = 0
        self.turn = 0

    def take(self, n: int) -> list[Entry]:
        out = []
        clients = len(self.client_ids)
        for _ in range(n):
            c = self.turn % clients
            self.turn += 1
            seq = self.seqs[c]
            self.seqs[c] = seq + 1
            command = encode_put(f"bench/{c}/{seq % KEYS_PER_CLIENT}", self.value)
            data = encode_command(self.client_ids[c], seq, max(0, seq - self.inflight), command)
            self.index += 1
            out.append(Entry(self.index, 1, data))
        return out


def new_actor(config_path: Path) -> tuple[ApplyActor, _StubLink]:
    actor = ApplyActor(load_config(config_path), "n1")
    actor.sm = KVStateMachine()
    link = _StubLink()
    actor.link = link  # type: ignore[assignment]
    return actor, link


def bench_cell(config_path: Path, batch: int, args: argparse.Namespace) -> dict[str, Any]:
    clock = time.perf_counter
    envelope = Envelope("micro-apply")
    chunk = max(batch, 16_384 // batch * batch)

    # 1. _apply alone
    actor, _ = new_actor(config_path)
    source = EntrySource(args.clients, args.inflight, args.value_size)
    apply_s, n_apply = 0.0, 0
    deadline = clock() + args.duration
    while clock() < deadline:
        entries = source.take(chunk)
        batches = [entries[i : i + batch] for i in range(0, chunk, batch)]
        for b in batches:
            t0 = clock()
            results = actor._apply(b)
            apply_s += clock() - t0
            n_apply += 1
        assert len(results.indexes) == len(b) and results.statuses[-1] == 0, results.results[-1]

    # 2. _on_batch, and 3. decoding the ApplyBatch frame
    actor, link = new_actor(config_path)
    source = EntrySource(args.clients, args.inflight, args.value_size)
    on_batch_s = decode_s = 0.0
    n_batch = 0
    frame_bytes = 0
    deadline = clock() + args.duration
    while clock() < deadline:
        entries = source.take(chunk)
        frames = [envelope.encode(ApplyBatch(entries[i : i + batch], True)) for i in range(0, chunk, batch)]
        for frame in frames:
            t0 = clock()
            message = envelope.decode(frame)
            t1 = clock()
            actor._on_batch(message)
            t2 = clock()
            decode_s += t1 - t0
            on_batch_s += t2 - t1
            n_batch += 1
            frame_bytes += len(frame)
    assert actor.applied_index == source.index and link.frames >= n_batch, (actor.applied_index, link.frames)

    per_batch = lambda s, n: s / n * 1e6  # noqa: E731
    return {
        "apply_us_per_batch": per_batch(apply_s, n_apply),
        "apply_us_per_entry": per_batch(apply_s, n_apply * batch),
        "on_batch_us_per_batch": per_batch(on_batch_s, n_batch),
        "on_batch_us_per_entry": per_batch(on_batch_s, n_batch * batch),
        "decode_us_per_batch": per_batch(decode_s, n_batch),
        "decode_us_per_entry": per_batch(decode_s, n_batch * batch),
        "total_us_per_entry": per_batch(on_batch_s + decode_s, n_batch * batch),
        "entries_per_s": n_batch * batch / (on_batch_s + decode_s),
        "frame_bytes": frame_bytes / n_batch,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", default="1,64,512", help="comma-separated batch sizes (default: %(default)s)")
    parser.add_argument("--value-size", type=int, default=128, help="bytes of each put's value (default: %(default)s)")
    parser.add_argument("--clients", type=int, default=4, help="client sessions (default: %(default)s)")
    parser.add_argument(
        "--inflight", type=int, default=64, help="first_incomplete lag per client (default: %(default)s)"
    )
    parser.add_argument("--duration", type=float, default=0.5, help="seconds per timed part (default: %(default)s)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per cell; medians shown (default: %(default)s)")
    parser.add_argument("--quick", action="store_true", help="--duration 0.2 --repeat 1")
    parser.add_argument(
        "--gc",
        choices=("default", "actor"),
        default="actor",
        help="'actor': gc.freeze() + gc threshold 50,000 as the actor processes run (default)",
    )
    parser.add_argument("--json", metavar="OUT", help="also write the results as JSON to OUT ('-': stdout only JSON)")
    args = parser.parse_args(argv)
    if args.quick:
        args.duration, args.repeat = 0.2, 1
    batches = [int(b) for b in args.batches.split(",")]
    with tempfile.TemporaryDirectory(prefix="micro_apply-") as tmp:
        config_path = Path(tmp) / "cluster.toml"
        config_path.write_text(CONFIG)
        if args.gc == "actor":  # as sandzmq.actors.process.run does
            gc.collect()
            gc.freeze()
            gc.set_threshold(50_000, 20, 20)
        params = {
            "value_size": args.value_size,
            "clients": args.clients,
            "inflight": args.inflight,
            "duration_s": args.duration,
            "repeat": args.repeat,
            "gc_threshold": list(gc.get_threshold()),
            "python": platform.python_version(),
            "machine": platform.platform(),
            "cpus": os.cpu_count(),
        }
        out = sys.stderr if args.json == "-" else sys.stdout
        print(
            "micro_apply: the apply actor's path per batch, kv puts, "
            + ", ".join(f"{k}={v}" for k, v in params.items()),
            file=out,
        )
        header = (
            f"{'batch':>5} {'apply us/e':>10} {'on_batch us/e':>13} {'decode us/e':>11} {'total us/e':>10}"
            f" {'entries/s':>10} {'on_batch us/b':>13}"
        )
        print(header, file=out)
        print("-" * len(header), file=out)
        results = []
        for batch in batches:
            runs = [bench_cell(config_path, batch, args) for _ in range(args.repeat)]
            cell = median_cell(runs)
            cell["batch"] = batch
            results.append(cell)
            print(
                f"{batch:>5} {cell['apply_us_per_entry']:>10.2f} {cell['on_batch_us_per_entry']:>13.2f}"
                f" {cell['decode_us_per_entry']:>11.2f} {cell['total_us_per_entry']:>10.2f}"
                f" {cell['entries_per_s']:>10,.0f} {cell['on_batch_us_per_batch']:>13.1f}",
                file=out,
            )
        print(
            "us/e: microseconds per entry; on_batch includes apply and the ApplyResults encode; "
            "total = decode + on_batch",
            file=out,
        )
    if args.json:
        write_json(args.json, {"params": params, "results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
