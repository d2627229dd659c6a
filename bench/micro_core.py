"""Micro-benchmark of the sans-I/O Raft core (sandzmq.raft): what one step costs.

No sockets, no disk, no threads: the core is driven directly, the way the
Raft actor drives it, with the messages and durability reports a real
cluster would produce, answered at once.

1. leader:   a 3-node leader (n1) proposes a batch of B commands and then
             takes the acknowledgements of its 2 followers. One cycle is
                 propose(B) -> ready()            (AppendEntries x2 + the local write)
                 persisted(write)                 (the local disk is done)
                 step(AppendEntriesResponse) x2   (both followers acknowledge)
                 ready() until idle               (commit: heartbeats + committed entries)
             Reported per batch and per entry, and split into the two halves
             ("propose" = propose + first ready; "ack" = the rest).
2. follower: a follower (n2) takes an AppendEntries of B entries, hands out
             the write, is told it is durable, and releases its answer:
                 step(AppendEntries) -> ready() -> persisted() -> ready() until idle
             The AppendEntries carry commit = the previous batch, so each
             cycle also hands out committed entries, as in steady state.

Entries carry `--entry-size` bytes (default 170: about what a 128-byte kv
put is once wrapped in a client command). Messages are built outside the
timed section (decoding them is the transport's cost: micro_transport.py).
Old entries are trimmed from memory between timed blocks, as the Raft
actor does on its ticks. Each cell runs --repeat times for --duration
seconds; medians are shown.

    .venv/bin/python bench/micro_core.py [--batches 1,64,512] [--duration S] [--repeat N] [--json OUT|-]
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import sys
import time
from typing import Any

from benchlib import median_cell, write_json
from sandzmq.raft import (
    AppendEntries,
    AppendEntriesResponse,
    CoreConfig,
    Entry,
    Heartbeat,
    HeartbeatResponse,
    MemoryLog,
    RaftCore,
    RequestVote,
    RequestVoteResponse,
    Role,
)

VOTERS = ("n1", "n2", "n3")
TRIM_KEEP = 50_000  # as the Raft actor's MEMORY_TAIL_ENTRIES


class _NoCold:
    """A cold reader that must never be needed: the fast path reads only the in-memory tail."""

    def entries(self, lo: int, hi: int) -> list[Entry]:
        raise AssertionError(f"cold read of ({lo}, {hi}) on the fast path")

    def term_at(self, index: int) -> int | None:
        raise AssertionError(f"cold term read of {index} on the fast path")


def _config(batch: int) -> CoreConfig:
    # The defaults of the config file ([raft]), with a batch limit that lets B
    # entries travel in one AppendEntries.
    return CoreConfig(max_batch_entries=max(512, batch))


def make_leader(batch: int) -> RaftCore:
    """n1 as the leader of term 1 (after a pre-vote and a vote), with both
    followers in REPLICATE state and the no-op entry committed."""
    core = RaftCore("n1", VOTERS, config=_config(batch), log=MemoryLog(cold=_NoCold()), seed=1)
    for _ in range(1000):
        if core.role is Role.LEADER:
            break
        core.tick()
        _answer(core)
    assert core.role is Role.LEADER, core.role
    for _ in range(10):  # heartbeats -> probes -> replicate
        _answer(core)
        core.tick()
    _answer(core)
    assert all(pr.state.value == "replicate" for pr in core.progress.values())
    return core


def _answer(core: RaftCore) -> None:
    """Play the disk and the two followers: everything durable at once, every
    vote granted, every AppendEntries accepted."""
    while core.has_ready():
        rd = core.ready()
        if rd.write is not None:
            core.persisted(rd.write.write_id)
        for m in rd.messages:
            if isinstance(m, RequestVote):
                core.step(RequestVoteResponse(m.dst, m.src, m.term, granted=True, pre_vote=m.pre_vote))
            elif isinstance(m, AppendEntries):
                core.step(
                    AppendEntriesResponse(m.dst, m.src, m.term, success=True, index=m.prev_index + len(m.entries))
                )
            elif isinstance(m, Heartbeat):
                core.step(HeartbeatResponse(m.dst, m.src, m.term, m.context))


def _trim(core: RaftCore) -> None:
    settled = min(core.commit, core.durable_index)
    if settled - core.log.memory_first_index > 2 * TRIM_KEEP:
        core.log.trim(settled - TRIM_KEEP)


def bench_leader(batch: int, entry_size: int, duration: float) -> dict[str, Any]:
    core = make_leader(batch)
    commands = [os.urandom(entry_size) for _ in range(batch)]
    clock = time.perf_counter
    propose_s = ack_s = 0.0
    cycles = messages_out = committed = 0
    block = max(1, 2048 // batch)
    deadline = clock() + duration
    while clock() < deadline:
        _trim(core)  # outside the timed section, as on the actor's tick
        for _ in range(block):
            t0 = clock()
            core.propose(commands)
            rd = core.ready()
            t1 = clock()
            core.persisted(rd.write.write_id)
            term = core.term
            for m in rd.messages:
                if type(m) is AppendEntries:
                    core.step(AppendEntriesResponse(m.dst, "n1", term, True, m.prev_index + len(m.entries)))
            n_out = len(rd.messages)
            n_committed = 0
            while core.has_ready():
                rd2 = core.ready()
                n_out += len(rd2.messages)
                if rd2.committed:  # the apply actor's confirmation, as the raft actor passes it on
                    n_committed += len(rd2.committed)
                    core.confirm_applied(rd2.committed[-1].index)
            t2 = clock()
            propose_s += t1 - t0
            ack_s += t2 - t1
            cycles += 1
            messages_out += n_out
            committed += n_committed
    assert committed >= (cycles - 1) * batch, (committed, cycles, batch)
    total = propose_s + ack_s
    return {
        "us_per_batch": total / cycles * 1e6,
        "us_per_entry": total / (cycles * batch) * 1e6,
        "propose_us_per_batch": propose_s / cycles * 1e6,
        "ack_us_per_batch": ack_s / cycles * 1e6,
        "entries_per_s": cycles * batch / total,
        "messages_per_cycle": messages_out / cycles,
        "cycles": cycles,
    }


def make_follower(batch: int) -> RaftCore:
    core = RaftCore("n2", VOTERS, config=_config(batch), log=MemoryLog(cold=_NoCold()), seed=2)
    core.step(Heartbeat("n1", "n2", 1, 0))
    while core.has_ready():
        rd = core.ready()
        if rd.write is not None:
            core.persisted(rd.write.write_id)
    assert core.role is Role.FOLLOWER and core.leader == "n1"
    return core


def bench_follower(batch: int, entry_size: int, duration: float) -> dict[str, Any]:
    core = make_follower(batch)
    data = os.urandom(entry_size)
    clock = time.perf_counter
    step_s = durable_s = 0.0
    cycles = committed = 0
    prev = 0
    block = max(1, 2048 // batch)
    deadline = clock() + duration
    while clock() < deadline:
        _trim(core)
        # The leader's messages for the next block, built untimed (a decoder's work).
        msgs = []
        for _ in range(block):
            entries = [Entry(prev + 1 + i, 1, data) for i in range(batch)]
            # As the decoder gives them: with the sizes it counted from the data column.
            msgs.append(
                AppendEntries("n1", "n2", 1, prev, 1 if prev else 0, entries, prev, [len(e.data) for e in entries])
            )
            prev += batch
        for m in msgs:
            t0 = clock()
            core.step(m)
            rd = core.ready()
            t1 = clock()
            core.persisted(rd.write.write_id)
            n_committed = len(rd.committed)
            if rd.committed:
                core.confirm_applied(rd.committed[-1].index)
            answered = False
            while core.has_ready():
                rd2 = core.ready()
                if rd2.committed:
                    n_committed += len(rd2.committed)
                    core.confirm_applied(rd2.committed[-1].index)
                answered = answered or bool(rd2.messages)
            t2 = clock()
            assert answered
            step_s += t1 - t0
            durable_s += t2 - t1
            cycles += 1
            committed += n_committed
    total = step_s + durable_s
    return {
        "us_per_batch": total / cycles * 1e6,
        "us_per_entry": total / (cycles * batch) * 1e6,
        "step_us_per_batch": step_s / cycles * 1e6,
        "durable_us_per_batch": durable_s / cycles * 1e6,
        "entries_per_s": cycles * batch / total,
        "cycles": cycles,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", default="1,64,512", help="comma-separated batch sizes (default: %(default)s)")
    parser.add_argument("--entry-size", type=int, default=170, help="bytes per entry (default: %(default)s)")
    parser.add_argument("--duration", type=float, default=1.0, help="seconds per run (default: %(default)s)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per cell; medians shown (default: %(default)s)")
    parser.add_argument("--quick", action="store_true", help="--duration 0.3 --repeat 1")
    parser.add_argument(
        "--gc",
        choices=("default", "actor"),
        default="actor",
        help="'actor': gc.freeze() + gc threshold 50,000 as the actor processes run (default); 'default': CPython's",
    )
    parser.add_argument("--json", metavar="OUT", help="also write the results as JSON to OUT ('-': stdout only JSON)")
    args = parser.parse_args(argv)
    if args.quick:
        args.duration, args.repeat = 0.3, 1
    if args.gc == "actor":  # as sandzmq.actors.process.run does
        gc.collect()
        gc.freeze()
        gc.set_threshold(50_000, 20, 20)
    batches = [int(b) for b in args.batches.split(",")]
    params = {
        "entry_size": args.entry_size,
        "duration_s": args.duration,
        "repeat": args.repeat,
        "gc_threshold": list(gc.get_threshold()),
        "python": platform.python_version(),
        "machine": platform.platform(),
        "cpus": os.cpu_count(),
    }
    quiet = args.json == "-"
    results: list[dict[str, Any]] = []
    out = sys.stderr if quiet else sys.stdout
    print("micro_core: RaftCore step costs, 3 voters, " + ", ".join(f"{k}={v}" for k, v in params.items()), file=out)
    header = (
        f"{'role':<9} {'batch':>5} {'us/batch':>9} {'us/entry':>9} {'entries/s':>11} {'part 1 us':>9} {'part 2 us':>9}"
    )
    print(header, file=out)
    print("-" * len(header), file=out)
    for role, fn, parts in (
        ("leader", bench_leader, ("propose_us_per_batch", "ack_us_per_batch")),
        ("follower", bench_follower, ("step_us_per_batch", "durable_us_per_batch")),
    ):
        for batch in batches:
            cell = median_cell([fn(batch, args.entry_size, args.duration) for _ in range(args.repeat)])
            cell.update(role=role, batch=batch)
            results.append(cell)
            print(
                f"{role:<9} {batch:>5} {cell['us_per_batch']:>9.1f} {cell['us_per_entry']:>9.3f}"
                f" {cell['entries_per_s']:>11,.0f} {cell[parts[0]]:>9.1f} {cell[parts[1]]:>9.1f}",
                file=out,
            )
    print(
        "leader parts: 1 = propose + ready (AppendEntries built), 2 = persisted + 2 acks + ready until idle", file=out
    )
    print(
        "follower parts: 1 = step(AppendEntries) + ready, 2 = persisted + ready until idle (answer, committed)",
        file=out,
    )
    if args.json:
        write_json(args.json, {"params": params, "results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
