"""Micro-benchmark of the client library alone: CPU per replicate_async op.

A fake node runs in its own OS process (multiprocessing 'spawn'): a ROUTER
(transport.Inbox) that answers every ClientSubmit at once with an OK
ClientReply for each of its requests, and does nothing else (no Raft, no
disk). In this process, `clients` Client sessions (Client.connect with the
cluster's name) each keep `inflight` commands of --size bytes in flight with
replicate_async, closed loop from the futures' done-callbacks as
`sandzmq bench` (sandzmq.benchmark.load.Driver) does.

Per cell it reports completed ops/s and the CPU this process spent per op
(time.process_time over the measured window: the caller, the clients' I/O
threads and libzmq's I/O thread together), plus how many requests travelled
per ClientSubmit, since batching decides most of the per-op cost. Each cell
runs --repeat times after a short warm-up; medians are shown. The fake node
shares the machine's cores: on 2 cores, ops/s at high concurrency is partly
its speed; the CPU per op is the client's own.

    .venv/bin/python bench/micro_client.py [--cells 1x1,1x256,4x256] [--duration S]
                                           [--repeat N] [--quick] [--json OUT|-]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import sys
import threading
import time
from concurrent.futures import Future
from typing import Any

from benchlib import median_cell, write_json
from sandzmq.protocol import ClientReply, ClientSubmit
from sandzmq.replicator.client import Client
from sandzmq.transport import Envelope, Inbox, Poller, terminate_context
from sandzmq.transport.sockets import library_versions

CLUSTER = "micro-client"


def fake_node(address_q: Any, stop: Any) -> None:
    """Child process: answer every ClientSubmit with OKs, until `stop` is set."""
    envelope = Envelope(CLUSTER)
    inbox = Inbox("tcp://127.0.0.1:0", envelope, monitor=False)
    address_q.put(inbox.address)
    poller = Poller([inbox])
    reply_frame, encode = inbox.reply_frame, envelope.encode
    try:
        while not stop.is_set():
            if not poller.wait(100):
                continue
            for identity, message in inbox.drain():
                if type(message) is ClientSubmit:
                    n = len(message.payloads)
                    first = message.first_request_id
                    reply_frame(identity, encode(ClientReply(list(range(first, first + n)), [0] * n, [None] * n)))
    finally:
        inbox.close()
        terminate_context()


class Driver:
    """Keeps `inflight` commands in flight on one Client (like sandzmq.benchmark.load.Driver, without timing each op)."""

    def __init__(self, client: Client, command: bytes, inflight: int) -> None:
        self.client, self.command, self.inflight = client, command, inflight
        self.completed = 0  # written only by the client's I/O thread
        self.errors = 0
        self.pending = 0
        self.stopping = False
        self.idle = threading.Event()
        self._lock = threading.Lock()

    def start(self) -> None:
        for _ in range(self.inflight):
            self._issue()

    def _issue(self) -> None:
        with self._lock:
            if self.stopping:
                if self.pending == 0:
                    self.idle.set()
                return
            self.pending += 1
        self.client.replicate_async(self.command, timeout=5.0).add_done_callback(self._done)

    def _done(self, future: Future[Any]) -> None:
        if future.exception() is None:
            self.completed += 1
        else:
            self.errors += 1
        with self._lock:
            self.pending -= 1
        self._issue()

    def stop(self) -> None:
        with self._lock:
            self.stopping = True
            if self.pending == 0:
                self.idle.set()


def run_cell(address: str, clients: int, inflight: int, args: argparse.Namespace) -> dict[str, Any]:
    """One run: warm up, then measure ops and this process's CPU over --duration."""
    command = os.urandom(args.size)
    sessions = [Client.connect(address, cluster=CLUSTER) for _ in range(clients)]
    drivers = [Driver(c, command, inflight) for c in sessions]
    try:
        for d in drivers:
            d.start()
        time.sleep(args.warmup)
        ops0 = sum(d.completed for d in drivers)
        sub0 = sum(c.stats["submits"] for c in sessions)
        req0 = sum(c.stats["requests_sent"] for c in sessions)
        cpu0, wall0 = time.process_time(), time.perf_counter()
        time.sleep(args.duration)
        cpu1, wall1 = time.process_time(), time.perf_counter()
        ops = sum(d.completed for d in drivers) - ops0
        submits = sum(c.stats["submits"] for c in sessions) - sub0
        requests = sum(c.stats["requests_sent"] for c in sessions) - req0
        for d in drivers:
            d.stop()
        for d in drivers:
            d.idle.wait(10)
        errors = sum(d.errors for d in drivers)
    finally:
        for c in sessions:
            c.close()
    wall, cpu = wall1 - wall0, cpu1 - cpu0
    return {
        "ops_per_s": ops / wall,
        "cpu_us_per_op": cpu / ops * 1e6 if ops else float("nan"),
        "cpu_util": cpu / wall,
        "requests_per_submit": requests / submits if submits else 0.0,
        "errors": errors,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--cells", default="1x1,1x256,4x256", help="comma-separated CLIENTSxINFLIGHT (default: %(default)s)"
    )
    parser.add_argument("--size", type=int, default=128, help="bytes per command (default: %(default)s)")
    parser.add_argument("--duration", type=float, default=2.0, help="measured seconds per run (default: %(default)s)")
    parser.add_argument("--warmup", type=float, default=0.5, help="seconds before measuring (default: %(default)s)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per cell; medians shown (default: %(default)s)")
    parser.add_argument("--quick", action="store_true", help="--duration 0.7 --warmup 0.3 --repeat 1")
    parser.add_argument("--json", metavar="OUT", help="also write the results as JSON to OUT ('-': stdout only JSON)")
    args = parser.parse_args(argv)
    if args.quick:
        args.duration, args.warmup, args.repeat = 0.7, 0.3, 1
    cells = [tuple(int(x) for x in cell.lower().split("x")) for cell in args.cells.split(",")]
    params = {
        "size": args.size,
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "repeat": args.repeat,
        "python": platform.python_version(),
        **library_versions(),
        "machine": platform.platform(),
        "cpus": os.cpu_count(),
    }
    out = sys.stderr if args.json == "-" else sys.stdout
    print(
        "micro_client: Client.replicate_async against a fake node that answers at once, "
        + ", ".join(f"{k}={v}" for k, v in params.items()),
        file=out,
    )
    header = (
        f"{'clients':>7} {'inflight':>8} {'ops/s':>9} {'cpu us/op':>9} {'cpu util':>8} {'req/submit':>10} {'errors':>6}"
    )
    print(header, file=out)
    print("-" * len(header), file=out)
    ctx = mp.get_context("spawn")
    address_q, stop = ctx.Queue(), ctx.Event()
    node = ctx.Process(target=fake_node, args=(address_q, stop), daemon=True)
    node.start()
    results = []
    try:
        address = address_q.get(timeout=30)
        for clients, inflight in cells:
            cell = median_cell([run_cell(address, clients, inflight, args) for _ in range(args.repeat)])
            cell.update(clients=clients, inflight=inflight)
            results.append(cell)
            print(
                f"{clients:>7} {inflight:>8} {cell['ops_per_s']:>9,.0f} {cell['cpu_us_per_op']:>9.2f}"
                f" {cell['cpu_util']:>8.2f} {cell['requests_per_submit']:>10.1f} {cell['errors']:>6}",
                file=out,
            )
    finally:
        stop.set()
        node.join(timeout=10)
        if node.is_alive():
            node.kill()
        terminate_context()
    print("cpu us/op: this process's CPU (all threads) per completed op; cpu util: CPU seconds per second", file=out)
    if args.json:
        write_json(args.json, {"params": params, "results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
