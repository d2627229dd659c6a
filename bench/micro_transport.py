"""Micro-benchmarks of sandzmq.transport: what one message costs.

    .venv/bin/python bench/micro_transport.py [--quick] [--json]

1. Envelope encode + decode of AppendEntries with 1, 64 and 512 entries of
   128 bytes (and of the small messages), in-process: us per message and per
   entry, median of several runs. The columnar entry layout (protocol/logdata.py) is
   compared side by side with the obvious alternative, one [term, kind, data]
   list per entry, so the choice stays measured.
2. DEALER -> ROUTER over ipc and tcp loopback, between TWO PROCESSES (the
   receiver is started with multiprocessing 'spawn', as actors are): one-way
   messages/s with the sender in a tight loop and the receiver draining in
   batches, raw frames and full encode/decode; and a ping-pong round trip
   (PeerLink.send -> Inbox.drain -> Inbox.reply -> PeerLink.drain).

Numbers are medians; every run prints its parameters and the machine.
"""

from __future__ import annotations

import argparse
import gc
import json
import multiprocessing as mp
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

import msgpack
from sandzmq.protocol import MAX_UINT, DecodeError, Registry
from sandzmq.raft.messages import AppendEntries, AppendEntriesResponse, Entry, EntryKind, Heartbeat
from sandzmq.transport import Envelope, Inbox, PeerLink, Poller, drain, ipc_endpoint, terminate_context
from sandzmq.transport.sockets import DEFAULT_DRAIN, library_versions

ENTRY_BYTES = 128
CLUSTER = "bench"


def median_time(fn: Callable[[], object], *, min_time: float, repeats: int) -> float:
    """Median seconds per call of fn over `repeats` runs of >= min_time each."""
    loops = 1
    while True:  # calibrate: double until a run takes a quarter of min_time
        t0 = time.perf_counter()
        for _ in range(loops):
            fn()
        elapsed = time.perf_counter() - t0
        if elapsed >= min_time / 4:
            break
        loops *= 2
    loops = max(1, int(loops * min_time / elapsed))
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(loops):
            fn()
        samples.append((time.perf_counter() - t0) / loops)
    return statistics.median(samples)


def append_entries(n: int) -> AppendEntries:
    data = os.urandom(ENTRY_BYTES)
    return AppendEntries("n1", "n2", 7, 1000, 7, [Entry(1001 + i, 7, data) for i in range(n)], 999)


# -- the alternative layout, for comparison only -------------------------------
# One [term, kind, data] list per entry, with the same checks as the protocol's
# (header, ints in range, exact types), registered in a private registry
# so that it pays the same envelope costs.


def nested_encode(m: AppendEntries) -> list[Any]:
    rows = [[e.term, e.kind, e.data] for e in m.entries]
    return [m.src, m.dst, m.term, m.prev_index, m.prev_term, m.commit, rows]


def nested_decode(b: Any) -> AppendEntries:
    if type(b) is not list or len(b) != 7:
        raise DecodeError("AppendEntries: expected 7 fields")
    src, dst, term, prev_index, prev_term, commit, rows = b
    if (
        type(src) is not str
        or type(dst) is not str
        or any(type(v) is not int or not 0 <= v <= MAX_UINT for v in (term, prev_index, prev_term, commit))
    ):
        raise DecodeError("AppendEntries: bad header")
    if type(rows) is not list:
        raise DecodeError("rows")
    try:
        entries = [
            Entry(i, t, d, kinds[k])
            for i, (t, k, d) in enumerate(rows, prev_index + 1)
            if (type(t) is int and t >= 0 and type(k) is int and type(d) is bytes) or _bad()
        ]
    except (TypeError, ValueError, KeyError) as e:
        raise DecodeError(str(e)) from None
    return AppendEntries(src, dst, term, prev_index, prev_term, entries, commit)


kinds = {int(k): k for k in EntryKind}


def _bad() -> bool:
    raise DecodeError("bad entry")


_nested_registry = Registry()  # (no tag of its own for the class in REGISTRY's copy)
_nested_registry.register("ae.nested", AppendEntries, nested_encode, nested_decode)


# -- 1. codec -------------------------------------------------------------------


def _codec_row(args: argparse.Namespace, layout: str, env: Envelope, name: str, msg: Any, n: int) -> dict[str, Any]:
    frame = env.encode(msg)
    assert env.decode(frame) == msg
    enc = median_time(lambda: env.encode(msg), min_time=args.min_time, repeats=args.repeats)
    dec = median_time(lambda: env.decode(frame), min_time=args.min_time, repeats=args.repeats)
    return {
        "layout": layout,
        "message": name,
        "entries": n,
        "bytes": len(frame),
        "encode_us": enc * 1e6,
        "decode_us": dec * 1e6,
        "total_us": (enc + dec) * 1e6,
        "per_entry_us": (enc + dec) * 1e6 / n if n else None,
    }


def bench_codec(args: argparse.Namespace) -> list[dict[str, Any]]:
    env = Envelope(CLUSTER)
    rows = []
    cases: list[tuple[str, Any, int]] = [
        ("Heartbeat", Heartbeat("n1", "n2", 7, 999), 0),
        ("AppendEntriesResponse", AppendEntriesResponse("n2", "n1", 7, True, 1512), 0),
    ] + [(f"AppendEntries x{n}", append_entries(n), n) for n in (1, 64, 512)]
    nested = Envelope(CLUSTER, registry=_nested_registry)
    for name, msg, n in cases:
        rows.append(_codec_row(args, "columnar", env, name, msg, n))
        if n:
            rows.append(_codec_row(args, "per-entry list", nested, name, msg, n))
    return rows


# -- 2. sockets, two processes ---------------------------------------------------


def _receiver(address_q: Any, result_q: Any, endpoint: str, expect: int, mode: str, gc_gen0: int | None) -> None:
    """Child process: bind, report the address, receive `expect` messages."""
    if gc_gen0:
        gc.set_threshold(gc_gen0)
    env = Envelope(CLUSTER)
    inbox = Inbox(endpoint, env, rcvhwm=100_000)
    address_q.put(inbox.address)
    poller = Poller([inbox])
    got = 0
    first = last = 0.0
    batches = 0
    try:
        if mode == "pingpong":
            while got < expect:
                if poller.wait(5000):
                    for ident, msg in inbox.drain():
                        inbox.reply(ident, msg)
                        got += 1
        else:
            sock = inbox.socket
            while got < expect:
                if not poller.wait(5000):
                    break
                n = len(drain(sock)) if mode == "raw" else len(inbox.drain())
                if n and not got:
                    first = time.perf_counter()
                got += n
                batches += 1
            last = time.perf_counter()
        result_q.put({"received": got, "seconds": last - first, "batches": batches, "dropped": inbox.drops.total})
    finally:
        inbox.close()
        terminate_context()


def _send_all(link: PeerLink, send: Callable[[], bool], n: int) -> int:
    """Send n messages as fast as the socket takes them: on a full queue,
    wait for room (bench only; the actors drop instead)."""
    retries = 0
    for _ in range(n):
        while not send():
            retries += 1
            link.writable(1000)
    return retries


def bench_socket(args: argparse.Namespace, transport: str, mode: str, msg: Any, run_dir: str) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    address_q, result_q = ctx.Queue(), ctx.Queue()
    endpoint = "tcp://127.0.0.1:0" if transport == "tcp" else ipc_endpoint(run_dir, f"b{mode}{os.getpid()}")
    n = args.messages if mode != "pingpong" else args.pings
    proc = ctx.Process(target=_receiver, args=(address_q, result_q, endpoint, n + 1, mode, args.gc_gen0), daemon=True)
    proc.start()
    env = Envelope(CLUSTER)
    link = PeerLink(address_q.get(timeout=30), env, "sender", sndhwm=100_000)
    try:
        # One message first, so the connection is up before timing starts.
        link.send(msg)
        frame = env.encode(msg)
        entries = len(getattr(msg, "entries", ())) or None
        if mode == "pingpong":
            poller = Poller([link])
            assert poller.wait(10_000), "no echo"
            link.drain()
            samples = []
            for _ in range(n):
                t0 = time.perf_counter()
                link.send(msg)
                while not poller.wait(10_000):
                    pass
                link.drain()
                samples.append(time.perf_counter() - t0)
            result = result_q.get(timeout=60)
            return {
                "transport": transport,
                "mode": mode,
                "message": type(msg).__name__,
                "entries": entries,
                "bytes": len(frame),
                "messages": n,
                "rtt_us_p50": statistics.median(samples) * 1e6,
                "rtt_us_p99": sorted(samples)[int(0.99 * (n - 1))] * 1e6,
                "msgs_per_s": None,
                "receiver_batches": None,
                "sender_retries": None,
                "dropped": result["dropped"],
            }
        send_frame = link.send_frame
        if mode == "raw":
            t0 = time.perf_counter()
            retries = _send_all(link, lambda: send_frame(frame), n)
        else:
            t0 = time.perf_counter()
            retries = _send_all(link, lambda: link.send(msg), n)
        send_s = time.perf_counter() - t0
        result = result_q.get(timeout=120)
        assert result["received"] == n + 1, result
        rate = n / result["seconds"] if result["seconds"] > 0 else float("inf")
        return {
            "transport": transport,
            "mode": mode,
            "message": type(msg).__name__,
            "entries": entries,
            "bytes": len(frame),
            "messages": n,
            "msgs_per_s": rate,
            "send_msgs_per_s": n / send_s,
            "entries_per_s": rate * entries if entries else None,
            "receiver_batches": result["batches"],
            "sender_retries": retries,
            "rtt_us_p50": None,
            "rtt_us_p99": None,
            "dropped": result["dropped"],
        }
    finally:
        link.close()
        proc.join(timeout=30)
        if proc.is_alive():
            proc.kill()


def bench_sockets(args: argparse.Namespace) -> list[dict[str, Any]]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="sandzmq-bench-") as run_dir:
        for transport in ("ipc", "tcp"):
            for mode, msg in [
                ("raw", Heartbeat("n1", "n2", 7, 999)),
                ("decoded", Heartbeat("n1", "n2", 7, 999)),
                ("decoded", append_entries(64)),
                ("pingpong", Heartbeat("n1", "n2", 7, 999)),
            ]:
                rows.append(bench_socket(args, transport, mode, msg, run_dir))
    terminate_context()
    return rows


# -- output ----------------------------------------------------------------------


def _fmt(v: Any, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def print_tables(params: dict[str, Any], codec_rows: list[dict[str, Any]], socket_rows: list[dict[str, Any]]) -> None:
    print("sandzmq transport micro-benchmarks")
    print("  " + ", ".join(f"{k}={v}" for k, v in params.items()))
    print()
    print("1. envelope encode + decode, in-process (median)")
    print(
        f"  {'message':<22} {'layout':<15} {'bytes':>7} {'encode us':>10} {'decode us':>10}"
        f" {'total us':>9} {'us/entry':>9}"
    )
    for r in codec_rows:
        print(
            f"  {r['message']:<22} {r['layout']:<15} {r['bytes']:>7} {r['encode_us']:>10.2f} {r['decode_us']:>10.2f}"
            f" {r['total_us']:>9.2f} {_fmt(r['per_entry_us'], '>9.3f')}"
        )
    print()
    print("2. DEALER -> ROUTER, sender and receiver in two processes (spawn)")
    print(
        f"  {'transport':<9} {'mode':<9} {'message':<22} {'bytes':>6} {'msgs/s':>9} {'entries/s':>10}"
        f" {'rtt p50 us':>10} {'rtt p99 us':>10} {'batches':>8} {'drops':>5}"
    )
    for r in socket_rows:
        msg = r["message"] + (f" x{r['entries']}" if r["entries"] else "")
        print(
            f"  {r['transport']:<9} {r['mode']:<9} {msg:<22} {r['bytes']:>6} {_fmt(r['msgs_per_s'], '>9,.0f')}"
            f" {_fmt(r.get('entries_per_s'), '>10,.0f')} {_fmt(r['rtt_us_p50'], '>10.1f')}"
            f" {_fmt(r['rtt_us_p99'], '>10.1f')} {_fmt(r['receiver_batches'], '>8')} {r['dropped']:>5}"
        )
    print()
    print("  raw: frames only (send_frame / drain); decoded: PeerLink.send -> Inbox.drain with envelope")
    print("  decode; pingpong: one message in flight, echoed through Inbox.reply. batches = receiver drains.")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    p.add_argument("--quick", action="store_true", help="fewer, shorter runs (smoke test)")
    p.add_argument("--messages", type=int, default=200_000, help="messages per one-way socket run")
    p.add_argument("--pings", type=int, default=5_000, help="round trips per ping-pong run")
    p.add_argument("--repeats", type=int, default=7, help="runs per codec case (median reported)")
    p.add_argument("--min-time", type=float, default=0.2, help="seconds per codec run")
    p.add_argument("--skip-sockets", action="store_true")
    p.add_argument(
        "--gc-gen0",
        type=int,
        default=None,
        metavar="N",
        help="gc.set_threshold(N) in both processes (default: CPython's 700)",
    )
    args = p.parse_args(argv)
    if args.gc_gen0:
        gc.set_threshold(args.gc_gen0)
    if args.quick:
        args.messages, args.pings, args.repeats, args.min_time = 20_000, 500, 3, 0.05
    params = {
        "python": platform.python_version(),
        **library_versions(),
        "msgpack": ".".join(map(str, msgpack.version)),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "entry_bytes": ENTRY_BYTES,
        "messages": args.messages,
        "pings": args.pings,
        "repeats": args.repeats,
        "gc_threshold": gc.get_threshold(),
        "drain_max": DEFAULT_DRAIN,
    }
    codec_rows = bench_codec(args)
    socket_rows = [] if args.skip_sockets else bench_sockets(args)
    if args.json:
        json.dump({"params": params, "codec": codec_rows, "sockets": socket_rows}, sys.stdout, indent=1)
        print()
    else:
        print_tables(params, codec_rows, socket_rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
