"""The hostile-frame fuzzer of issue 8: a library for tests/test_hostile_fuzz.py
and a script for long runs.

    python tests/hostile_fuzz.py --seconds 600 --seed 7     # a long run on a fresh local cluster

What a run does (run_scenario):

1. starts a 3-node cluster whose peer traffic goes through a recording proxy
   (tests/frame_capture.py) and captures, while a Writer writes, at least one
   real frame of every peer message type (the Raft core's six) and every client message
   type (ClientSubmit, ClientQuery, StatusRequest, ClusterHello);
2. moves the cluster to a later term than any captured frame (SIGSTOP of the
   leader until another is elected), so that a replayed frame is stale unless
   its mutation made it otherwise; see frame_mutations.py for why;
3. for `seconds`, while the Writer keeps writing, sends mutated frames
   (frame_mutations.Mutator, seeded) with the routing ids of real peers and of
   the node's internal actors to every node's raft port and client port;
4. checks: no actor died or restarted (the pids every node reports, and its
   supervisor, unchanged), every node answers, `dropped` rose; the cluster
   still elects: a leader, then kill -9 of that leader and another one, and
   writes go on; every acknowledged write is applied on every live node,
   exactly once, in one order.

Connections are part of the attack. The sender's DEALERs with real peers'
routing ids stay connected for the whole fuzz; ROUTER_HANDOVER gives each the
peer's id at the receiver, and does not close the real peer's connection:
what the peer sends on it is silently discarded until libzmq's ZMTP heartbeat
gives up on it (HEARTBEAT_TIMEOUT, 10 s). So the cluster may be without a
leader for a while during the fuzz (disruption, which an unauthenticated
sender can cause); the liveness checks start once the fuzz is over. A
takeover that outlives that timeout, followed by the impostor's close, was
seen to make libzmq abort the receiving raft actor (`Assertion failed:
!_io_error (src/stream_engine_base.cpp:310)`): runs shorter than ~15 s do
not reach that.

Every problem found is collected in FuzzReport.problems (the test asserts
there are none); report.summary() says what was sent, what the nodes counted,
and what their logs say went wrong.
"""

from __future__ import annotations

import argparse
import random
import re
import sys
import tempfile
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack
import zmq
from cluster import RECORDING_SM, Cluster, HarnessError, Writer, group_members, pid_alive, wait_for
from frame_capture import (
    Capture,
    RecordingProxy,
    capture_client_frames,
    route_peers_through,
    wait_for_full_capture,
)
from frame_mutations import INTERNAL_IDENTITIES, MUTATIONS, PEER_IDENTITIES, Hint, Mutant, Mutator, captured_seeds

#: Mutated frames per second (each goes to every raft and client port).
DEFAULT_RATE = 150.0
#: How often the monitor asks every node for its status during the fuzz.
MONITOR_INTERVAL = 0.5
#: Mutants remembered to name the likely culprits of a restart.
RECENT = 30
ACTORS = ("raft", "log", "apply")


# ----------------------------------------------------------------------------- sending


class FrameSender:
    """DEALERs that send hostile frames to every target port, one DEALER per
    (routing id, port), all created up front and kept for the whole fuzz: one
    with a real peer's id takes that peer's place at the ROUTER
    (ROUTER_HANDOVER; see the module docstring for what that does)."""

    def __init__(self, targets: Sequence[str], identities: Sequence[bytes]) -> None:
        self.targets = list(targets)
        self._ctx = zmq.Context()
        self._socks: dict[tuple[bytes, str], zmq.Socket] = {}
        self._poller = zmq.Poller()
        self.sent = 0
        self.refused = 0  # a queue was full (the target is not reading, or not connected)
        self.replies: Counter[str] = Counter()  # what the nodes answered, by tag
        try:
            for identity in identities:
                for target in self.targets:
                    sock = self._ctx.socket(zmq.DEALER)
                    sock.setsockopt(zmq.LINGER, 0)
                    sock.setsockopt(zmq.ROUTING_ID, identity)
                    sock.setsockopt(zmq.SNDHWM, 1_000)
                    sock.connect(target)
                    self._socks[(identity, target)] = sock
                    self._poller.register(sock, zmq.POLLIN)
        except BaseException:
            self.close()
            raise

    def send(self, mutant: Mutant) -> None:
        """Send `mutant` to every target with its routing id, never blocking."""
        parts = list(mutant.parts)
        for target in self.targets:
            try:
                self._socks[(mutant.identity, target)].send_multipart(parts, zmq.NOBLOCK)
                self.sent += 1
            except zmq.Again:
                self.refused += 1

    def wait(self, seconds: float) -> None:
        """Read the nodes' answers for up to `seconds`: the fuzz loop's pacing
        (a poll, not a sleep), and it keeps the DEALERs' receive queues empty."""
        deadline = time.monotonic() + seconds
        while True:
            left = deadline - time.monotonic()
            for sock, _ in self._poller.poll(max(0, left) * 1000):
                self._drain(sock)
            if left <= 0:
                return

    def _drain(self, sock: zmq.Socket) -> None:
        for _ in range(1_000):
            try:
                parts = sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                obj = msgpack.unpackb(parts[-1])
                self.replies[str(obj[2]) if type(obj) is list and len(obj) == 4 else "?"] += 1
            except Exception:  # noqa: BLE001 - a node's answer we cannot read is counted too
                self.replies["undecodable"] += 1

    def close(self) -> None:
        if not self._ctx.closed:
            self._ctx.destroy(linger=0)


# ----------------------------------------------------------------------------- watching the nodes


@dataclass
class Event:
    """Something the monitor saw during the fuzz (an actor's pid changed, a node stopped answering)."""

    at: float  # seconds into the fuzz
    what: str
    recent: list[str]  # the mutants sent just before it was seen

    def __str__(self) -> str:
        return f"t={self.at:.1f}s: {self.what}"


class Monitor:
    """Watches the nodes from the start of the fuzz to the end of the run.

    The processes of every node's group, all along (a process that dies or
    appears is an Event, with the frames sent just before it, the likely
    culprits; a node killed on purpose is `exclude`d first); and while
    `fuzzing`, every node's status: pid changes, terms and leaders seen, and
    the current term and last index for the mutator's aimed forgeries."""

    def __init__(self, cluster: Cluster, baseline: Mapping[str, Mapping[str, Any]], recent: deque[str]) -> None:
        self.cluster = cluster
        self.pids = {n: dict(r["pids"]) for n, r in baseline.items()}
        self.groups = node_processes(cluster)
        self.restarts: list[Event] = []  # processes of a node's group that died or appeared
        self.recent = recent
        self.events: list[Event] = []
        self.terms: set[int] = set()
        self.leaders: list[tuple[int, str]] = []  # (term, leader) as first seen
        self.hint: Hint | None = None
        self.fuzzing = True
        self.exclude: set[str] = set()
        self._unreachable: set[str] = set()
        self._stop = threading.Event()
        self._start = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="fuzz-monitor", daemon=True)

    def start(self) -> None:
        self._start = time.monotonic()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        while not self._stop.wait(MONITOR_INTERVAL):
            try:
                self.observe_processes(node_processes(self.cluster))
                if self.fuzzing:
                    self.observe(self.cluster.status_all())
            except Exception as exc:  # noqa: BLE001 - the monitor must outlive a bad poll
                self._event(f"status poll failed: {exc!r}")

    def observe_processes(self, groups: Mapping[str, set[int]]) -> None:
        """The processes of each node's group (supervisor and actors), as the
        kernel sees them: a restart shows here whatever the status says."""
        for node, now in groups.items():
            if node in self.exclude:
                continue
            was = self.groups.get(node, set())
            names = {pid: f"{actor} actor" for actor, pid in self.pids[node].items()}
            names[self.cluster.proc(node).pid] = "supervisor"
            for pid in sorted(was - now):
                name = names.get(pid, "an actor started during the run")
                self.restarts.append(self._event(f"{node}: process {pid} ({name}) died"))
            for pid in sorted(now - was):
                self.restarts.append(self._event(f"{node}: new process {pid} in its group"))
            self.groups[node] = set(now)

    def _event(self, what: str) -> Event:
        recent: list[str] = []
        for _ in range(3):  # the fuzz thread appends to it meanwhile
            try:
                recent = list(self.recent)[-10:]
                break
            except RuntimeError:
                continue
        event = Event(time.monotonic() - self._start, what, recent)
        self.events.append(event)
        return event

    def observe(self, rows: Mapping[str, Mapping[str, Any]]) -> None:
        terms, indexes = [], []
        for node, row in rows.items():
            if row.get("role") in (None, "unreachable"):
                if node not in self._unreachable:
                    self._unreachable.add(node)
                    self._event(f"{node} does not answer ({row.get('error', 'no status')})")
                continue
            self._unreachable.discard(node)
            for actor in ACTORS:
                new = (row.get("pids") or {}).get(actor)
                old = self.pids[node].get(actor)
                if new != old and new is not None:
                    forged = " while the old process is alive: a forged pid believed" if old and pid_alive(old) else ""
                    self._event(f"{node}'s status reports pid {new} for its {actor} actor, was {old}{forged}")
                    self.pids[node][actor] = new
            if isinstance(row.get("term"), int):
                terms.append(row["term"])
                self.terms.add(row["term"])
            if isinstance(row.get("last_index"), int):
                indexes.append(row["last_index"])
            if row.get("role") == "leader" and (row["term"], node) not in self.leaders:
                self.leaders.append((row["term"], node))
        if terms and indexes:
            self.hint = Hint(max(terms), max(indexes))


def node_processes(cluster: Cluster) -> dict[str, set[int]]:
    """The live processes of each running node's process group (SPEC 3: the
    supervisor and its three actors)."""
    return {n: set(group_members(cluster.proc(n).pid)) for n in cluster.node_ids if cluster.proc(n) is not None}


# ----------------------------------------------------------------------------- the run


@dataclass
class FuzzReport:
    """What a run did and found. `problems` empty: the cluster passed."""

    seed: int
    seconds: float
    rate: float
    captured: dict[str, int] = field(default_factory=dict)
    frames_by_kind: Counter[str] = field(default_factory=Counter)
    frames_by_source: Counter[str] = field(default_factory=Counter)
    messages_sent: int = 0
    messages_refused: int = 0
    replies: Counter[str] = field(default_factory=Counter)
    dropped_before: dict[str, Any] = field(default_factory=dict)
    dropped_after: dict[str, Any] = field(default_factory=dict)
    terms_before: dict[str, Any] = field(default_factory=dict)
    terms_after: dict[str, Any] = field(default_factory=dict)
    leaders_seen: list[tuple[int, str]] = field(default_factory=list)
    leader_killed: str | None = None
    leader_after_kill: str | None = None
    acked: dict[str, int] = field(default_factory=dict)  # writes acknowledged by phase
    events: list[Event] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    log_findings: list[str] = field(default_factory=list)
    restarts_reported: int = 0  # process events already reported by the post-fuzz check

    def summary(self) -> str:
        lines = [
            f"hostile fuzz: seed {self.seed}, {self.seconds:g} s at {self.rate:g} frames/s",
            f"  captured frames by type: {self.captured}",
            f"  frames sent by mutation: {dict(sorted(self.frames_by_kind.items()))}",
            f"  frames sent by source type: {dict(sorted(self.frames_by_source.items()))}",
            f"  messages: {self.messages_sent} sent to the raft and client ports, {self.messages_refused} "
            f"refused by full queues; answers received: {dict(self.replies)}",
            f"  dropped per node: before {self.dropped_before}, after {self.dropped_after}",
            f"  terms: before {self.terms_before}, after {self.terms_after}; "
            f"{len(self.leaders_seen)} leaders seen during the fuzz {self.leaders_seen[:8]}",
            f"  leader killed after the fuzz: {self.leader_killed}, then elected: {self.leader_after_kill}",
            f"  writes acknowledged: {self.acked}",
        ]
        if self.events:
            lines.append(f"  seen from the start of the fuzz ({len(self.events)} events, the first 12):")
            shown: list[str] = []
            for e in self.events[:12]:
                lines.append(f"    {e}")
                if e.recent[-5:] != shown:
                    shown = e.recent[-5:]
                    lines += [f"      after: {r}" for r in shown]
        if self.log_findings:
            lines.append("  node logs (distinct error lines):")
            lines += [f"    {line}" for line in self.log_findings]
        if self.problems:
            lines.append(f"  PROBLEMS ({len(self.problems)}), replay with --seed {self.seed}:")
            lines += [f"    - {p}" for p in self.problems]
        else:
            lines.append("  no problem found")
        return "\n".join(lines)


def _rows_ready(cluster: Cluster) -> dict[str, dict[str, Any]] | None:
    """Every node's status, if every node answers and reports all three pids."""
    rows = cluster.status_all()
    for row in rows.values():
        pids = row.get("pids") or {}
        if row.get("role") in (None, "unreachable") or not all(isinstance(pids.get(a), int) for a in ACTORS):
            return None
    return rows


def _move_past(cluster: Cluster, term: int) -> dict[str, dict[str, Any]]:
    """Get every node to a term above `term` (SIGSTOP the leader until another
    is elected, then SIGCONT it), and return the status once all answer."""
    old = cluster.wait_for_leader(15)
    cluster.sigstop(old)
    try:
        cluster.wait_for_leader(15, exclude=[old])
    finally:
        cluster.sigcont(old)

    def past() -> dict[str, dict[str, Any]] | None:
        rows = _rows_ready(cluster)
        return rows if rows and all(r["term"] > term for r in rows.values()) else None

    return wait_for(past, 15, f"every node to answer in a term above {term}", describe=cluster.describe)


_FRAME = re.compile(r'  File "([^"]+)", line (\d+), in (\S+)')
_NOTEWORTHY = re.compile(r"\b(WARNING|ERROR|CRITICAL)\b")
_BLUR = re.compile(r"urn:uuid:[0-9a-f-]+|\b\d+(\.\d+)?\b")


def _project_frame(line: str) -> str | None:
    """`dir/file.py:line func` of a traceback line in sandzmq's own code, else None."""
    m = _FRAME.match(line)
    if not m or "site-packages" in m[1] or "/lib/python" in m[1] or not m[1].endswith(".py"):
        return None
    return f"{'/'.join(Path(m[1]).parts[-2:])}:{m[2]} {m[3]}"


def log_findings(cluster: Cluster, limit: int = 40) -> list[str]:
    """What went wrong inside the nodes, from their logs: each distinct
    exception with the sandzmq frames that raised it, and each distinct
    warning or error line (numbers blurred, so a restart loop is one line)."""
    found: dict[str, str] = {}
    for node in cluster.node_ids:
        frames: list[str] | None = None  # inside a traceback: its frames so far
        for line in cluster.log_text(node).splitlines():
            if line.startswith("Traceback (most recent call last)"):
                frames = []
            elif frames is not None and line.startswith(" "):
                where = _project_frame(line)
                if where:
                    frames.append(where)
            elif frames is not None and line.strip():
                if frames:  # the last line of a traceback: the exception
                    key = f"{_BLUR.sub('#', line)} @ {frames[-1]}"
                    found.setdefault(key, f"{node}: {line.strip()[:240]}  at {' <- '.join(reversed(frames[-3:]))}")
                frames = None
            elif _NOTEWORTHY.search(line) and "Unhandled exception in" not in line:
                key = _BLUR.sub("#", line.split(" ", 2)[-1])
                found.setdefault(key, f"{node}: {line.strip()[:240]}")
    return list(found.values())[:limit]


def fuzz(
    mutator: Mutator,
    sender: FrameSender,
    seconds: float,
    rate: float,
    report: FuzzReport,
    recent: deque[str],
    hint: Callable[[], Hint | None] = lambda: None,
) -> None:
    """Send mutated frames at `rate` per second for `seconds`."""
    start = time.monotonic()
    interval = 1.0 / rate
    next_at = start
    end = start + seconds
    while time.monotonic() < end:
        mutant = mutator.next(hint())
        sender.send(mutant)
        report.frames_by_kind[mutant.kind] += 1
        report.frames_by_source[mutant.source] += 1
        recent.append(f"t={time.monotonic() - start:.2f}s {mutant.describe()}")
        next_at += interval
        sender.wait(min(next_at, end) - time.monotonic())
    report.messages_sent, report.messages_refused = sender.sent, sender.refused
    report.replies.update(sender.replies)


def run_scenario(
    cluster: Cluster,
    seconds: float,
    seed: int,
    rate: float = DEFAULT_RATE,
    out: Callable[[str], None] = print,
    kinds: Sequence[str] | None = None,
) -> FuzzReport:
    """The whole run (module docstring) on `cluster`, a Cluster not started
    yet, with RecordingStateMachine. Raises HarnessError if the set-up fails
    (before any hostile frame is sent); what goes wrong afterwards is a
    finding, in report.problems."""
    report = FuzzReport(seed=seed, seconds=seconds, rate=rate)
    problems = report.problems
    with RecordingProxy(cluster.raft_addresses, cluster.client_addresses) as proxy:
        route_peers_through(cluster, proxy)
        cluster.start_all()
        leader = cluster.wait_for_leader(30)
        writer = Writer(cluster.client(), "w")
        writer.start()
        try:
            capture_client_frames(proxy, leader)
            wait_for_full_capture(proxy)
            capture = proxy.stop_recording()
            report.captured = capture.counts()
            out(f"captured {len(capture.frames)} frames: {report.captured}")
            writer.wait_acked(10, 20)
            before = _move_past(cluster, capture.max_term())
            report.dropped_before = {n: r["dropped"] for n, r in before.items()}
            report.terms_before = {n: r["term"] for n, r in before.items()}
            report.acked["before the fuzz"] = len(writer.acked)

            groups_before = node_processes(cluster)
            recent: deque[str] = deque(maxlen=RECENT)
            monitor = Monitor(cluster, before, recent)
            monitor.start()
            try:
                _fuzz_phase(cluster, capture, monitor, recent, seconds, seed, rate, report, out, kinds)
                report.acked["during the fuzz"] = len(writer.acked) - report.acked["before the fuzz"]
                groups_after_fuzz = _check_nodes(cluster, before, groups_before, monitor, report)
                _check_elections(cluster, writer, monitor, report)
            finally:
                monitor.stop()
                report.events = monitor.events
        finally:
            try:
                writer.stop()
            except HarnessError as exc:
                problems.append(f"the writer did not stop cleanly: {exc}")
        report.acked["total"] = len(writer.acked)
        if not any(p.startswith("no leader") for p in problems):
            _check_history(cluster, writer, report)
        _check_processes_at_end(cluster, groups_after_fuzz, monitor, report)
    report.log_findings = log_findings(cluster)
    return report


def _fuzz_phase(
    cluster: Cluster,
    capture: Capture,
    monitor: Monitor,
    recent: deque[str],
    seconds: float,
    seed: int,
    rate: float,
    report: FuzzReport,
    out: Callable[[str], None],
    kinds: Sequence[str] | None,
) -> None:
    """Send hostile frames for `seconds`, aimed with what `monitor` sees."""
    mutator = Mutator(captured_seeds(capture), seed=seed, cluster=cluster.name, node_ids=cluster.node_ids, kinds=kinds)
    targets = [*cluster.raft_addresses.values(), *cluster.client_addresses.values()]
    sender = FrameSender(targets, PEER_IDENTITIES + INTERNAL_IDENTITIES)
    out(f"fuzzing for {seconds:g} s at {rate:g} frames/s, seed {seed}")
    try:
        fuzz(mutator, sender, seconds, rate, report, recent, hint=lambda: monitor.hint)
    finally:
        sender.close()
        monitor.fuzzing = False
    report.leaders_seen = list(monitor.leaders)


def _check_nodes(
    cluster: Cluster,
    before: Mapping[str, Mapping[str, Any]],
    groups_before: Mapping[str, set[int]],
    monitor: Monitor,
    report: FuzzReport,
) -> dict[str, set[int]]:
    """No actor died or restarted (by the processes of each node's group, and
    by the pids its status reports), every node answers, `dropped` rose.
    Returns the nodes' processes now, for _check_processes_at_end."""
    problems = report.problems
    restarts = list(monitor.restarts)
    for node in cluster.node_ids:
        if not cluster.is_running(node):
            problems.append(f"{node}'s supervisor (`sandzmq start`) exited: {cluster.describe()}")
    if restarts:
        problems.append(
            f"{len(restarts)} process deaths or starts during the fuzz, e.g. {[str(e) for e in restarts[:4]]}"
        )
    groups_after = node_processes(cluster)
    for node, was in groups_before.items():
        now = groups_after.get(node, set())
        if now != was:
            problems.append(f"{node}'s processes changed: {sorted(was - now)} gone, {sorted(now - was)} new")
    try:
        rows = wait_for(lambda: _rows_ready(cluster), 15, "every node to answer with its pids")
    except HarnessError:
        rows = cluster.status_all()
        down = {n: r.get("error") or r.get("pids") for n, r in rows.items() if r.get("role") in (None, "unreachable")}
        problems.append(f"nodes that do not answer after the fuzz: {down}")
    for node, row in rows.items():
        now_pids = row.get("pids") or {}
        for actor in ACTORS:
            old, new = before[node]["pids"][actor], now_pids.get(actor)
            if new is None or new == old:
                continue
            if pid_alive(old) and old in groups_after.get(node, set()):
                problems.append(
                    f"{node}'s status reports pid {new} for its {actor} actor, whose process {old} is alive: "
                    "it believed a forged message"
                )
            else:
                problems.append(f"{node}'s {actor} actor died or restarted (pid {old} -> {new})")
    report.dropped_after = {n: r.get("dropped") for n, r in rows.items()}
    report.terms_after = {n: r.get("term") for n, r in rows.items()}
    if all(isinstance(v, int) for v in report.dropped_after.values()):
        if sum(report.dropped_after.values()) <= sum(report.dropped_before.values()):
            problems.append(f"`dropped` did not rise: before {report.dropped_before}, after {report.dropped_after}")
    else:
        problems.append(f"`dropped` unknown for some node after the fuzz: {report.dropped_after}")
    report.restarts_reported = len(restarts)
    return groups_after


def _check_processes_at_end(
    cluster: Cluster, groups_after_fuzz: Mapping[str, set[int]], monitor: Monitor, report: FuzzReport
) -> None:
    """No process of a surviving node died or appeared after the fuzz either:
    a crash it caused may come later (a peer's reconnect, the election)."""
    later = monitor.restarts[report.restarts_reported :]
    if later:
        report.problems.append(
            f"{len(later)} process deaths or starts after the fuzz, e.g. {[str(e) for e in later[:4]]}"
        )
    now = node_processes(cluster)
    for node, was in groups_after_fuzz.items():
        if node in monitor.exclude or node not in now:
            continue
        if now[node] != was:
            report.problems.append(
                f"{node}'s processes changed after the fuzz: {sorted(was - now[node])} gone, {sorted(now[node] - was)} new"
            )


def _check_elections(cluster: Cluster, writer: Writer, monitor: Monitor, report: FuzzReport) -> None:
    """A leader, writes going on; kill -9 of it, another leader, writes going on."""
    problems = report.problems
    try:
        leader = cluster.wait_for_leader(20)
    except HarnessError as exc:
        problems.append(f"no leader after the fuzz: {exc}")
        return
    try:
        writer.wait_acked(len(writer.acked) + 10, 20)
    except HarnessError as exc:
        problems.append(f"writes did not go on after the fuzz: {exc}")
    report.leader_killed = leader
    monitor.exclude.add(leader)
    cluster.kill9(leader)
    try:
        report.leader_after_kill = cluster.wait_for_leader(20, exclude=[leader])
    except HarnessError as exc:
        problems.append(f"no leader after kill -9 of {leader}: {exc}")
        return
    try:
        writer.wait_acked(len(writer.acked) + 20, 30)
    except HarnessError as exc:
        problems.append(f"writes did not go on after kill -9 of {leader}: {exc}")


def _check_history(cluster: Cluster, writer: Writer, report: FuzzReport) -> None:
    """Every acknowledged write applied on every live node, exactly once, in one order."""
    live = [n for n in cluster.node_ids if cluster.is_running(n)]
    try:
        lists = cluster.wait_caught_up(writer.acked, nodes=live, timeout=30)
    except HarnessError as exc:
        report.problems.append(f"acknowledged writes missing: {exc}")
        lists = {}
        for node in live:
            try:
                lists[node] = cluster.records(node)
            except Exception as exc2:  # noqa: BLE001 - reported, the other nodes still checked
                report.problems.append(f"cannot read {node}'s applied commands: {exc2!r}")
    for node, records in lists.items():
        report.problems += [f"{node}: {p}" for p in writer.problems(records)]
    if lists:
        shortest = min(len(r) for r in lists.values())
        first_node, first = next(iter(lists.items()))
        for node, records in lists.items():
            if records[:shortest] != first[:shortest]:
                at = next(i for i, (a, b) in enumerate(zip(records, first)) if a != b)
                report.problems.append(
                    f"{node} and {first_node} applied different sequences: at {at}, {records[at]!r} vs {first[at]!r}"
                )


# ----------------------------------------------------------------------------- the script


def main(argv: Sequence[str] | None = None) -> int:
    """Run the scenario on a fresh local cluster; exit 1 if it found a problem."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="how long to send hostile frames")
    parser.add_argument("--seed", type=int, default=None, help="the mutation sequence (default: a random one, printed)")
    parser.add_argument("--rate", type=float, default=DEFAULT_RATE, help="mutated frames per second")
    parser.add_argument("--dir", type=Path, default=None, help="where to put the cluster (default: a temp dir)")
    parser.add_argument(
        "--kinds", default=None, help=f"comma-separated mutations to use (default: all of {','.join(MUTATIONS)})"
    )
    args = parser.parse_args(argv)
    kinds = args.kinds.split(",") if args.kinds else None
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**32)
    root = args.dir or Path(tempfile.mkdtemp(prefix="sandzmq-fuzz-"))
    print(f"seed {seed}; cluster in {root} (node logs in {root / 'logs'})", flush=True)
    cluster = Cluster(root, state_machine=RECORDING_SM, name="fuzz")
    try:
        report = run_scenario(cluster, args.seconds, seed, args.rate, out=lambda s: print(s, flush=True), kinds=kinds)
    finally:
        cluster.close()
    print(report.summary())
    return 1 if report.problems else 0


if __name__ == "__main__":
    sys.exit(main())
