"""The integration-test harness: real `sandzmq start` processes on loopback, real disk.

    with Cluster(tmp_path) as c:              # writes tmp_path/cluster.toml, starts nothing
        c.start_all()
        leader = c.wait_for_leader(10)
        client = c.client()                   # sandzmq.Client.from_config(c.config_path)
        client.replicate(b"x")
        c.kill9(leader)                       # SIGKILL to the node's process group = a crash
        c.start(leader)                       # restart on the same data directory

It only uses the public interface of SPEC.md: the config file (section 4), the
command line (`sandzmq start`, `sandzmq status --json`, section 5) and
`sandzmq.Client` (section 6). Nothing here imports the node's internals, so
the tests can be written before the node exists.

Processes. Each node is one `sandzmq start --config F --node ID` process
started with start_new_session=True: it leads its own process group, which
SPEC 3 says also holds its three actor processes. kill9() sends SIGKILL to
that group; sigstop()/sigcont() stop and continue the whole group. The harness
signals only process groups it created (and, for kill_actor(), a pid that
status reports for one of its own nodes, after checking that the pid is in
that node's group). close() kills every group it ever started, always, and
waits until no live process is left in any of them.

Logs. A node's stdout and stderr go to <tmp>/logs/<id>.log (appended across
restarts, each start marked by a "==== harness:" line). tail_logs() returns
the end of every node's log; tests/conftest.py adds it to the report of a
failing test.

Ports. Every address is 127.0.0.1 with a port that was free when the config
was written: found by binding it, and chosen below the kernel's ephemeral
range (ip_local_port_range) so that an outgoing connection -- a node dialling
a peer that is down -- can never take the port of a node that is about to
(re)start. Ports are never handed out twice in one test session.
"""

from __future__ import annotations

import atexit
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

TESTS_DIR = Path(__file__).resolve().parent
#: The command under test; SANDZMQ_TEST_BIN may name another build of it.
SANDZMQ = Path(os.environ.get("SANDZMQ_TEST_BIN") or Path(sys.executable).parent / "sandzmq")

#: The state machine most integration tests use (tests/recording_sm.py).
RECORDING_SM = "recording_sm:RecordingStateMachine"

POLL = 0.05  # seconds between two polls: short, never a synchronisation by itself
STATUS_TIMEOUT = 15.0  # one `sandzmq status` run, which waits for unreachable nodes
NODE_STATUS_TIMEOUT = 1.0  # one node's Client.status(); no answer: "unreachable"
#: The keys of one node's row in `sandzmq status --json` (SPEC 5), written
#: out here rather than imported: the harness checks the contract, not the code.
SPEC_STATUS_KEYS = (
    "id", "role", "term", "leader", "commit_index", "applied_index",
    "last_index", "snapshot_index", "dropped", "pids",
)  # fmt: skip

_ports_handed_out: set[int] = set()
_ports_lock = threading.Lock()

#: Every Cluster not closed yet (conftest.py prints their logs when a test fails).
LIVE: list[Cluster] = []


class HarnessError(AssertionError):
    """The harness could not do what a test asked (a node did not come up, a
    command failed, a deadline passed). An AssertionError so that pytest shows
    it as a test failure with its message, not as an error in the harness."""


# ----------------------------------------------------------------------------- helpers


def wait_for(
    predicate: Callable[[], T],
    timeout: float,
    what: str,
    interval: float = POLL,
    describe: Callable[[], str] | None = None,
) -> T:
    """Poll `predicate` until it returns something truthy; return that.

    Exceptions raised by the predicate count as "not yet" (a node may be
    restarting); the last one is named in the HarnessError raised when the
    deadline passes, together with `describe()` if given.
    """
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # noqa: BLE001 - "not yet", reported on timeout
            last_exc = exc
        if time.monotonic() >= deadline:
            detail = f"; last error: {type(last_exc).__name__}: {last_exc}" if last_exc else ""
            extra = ""
            if describe is not None:
                try:
                    extra = "\n" + describe()
                except Exception as exc:  # noqa: BLE001
                    extra = f"\n(describe failed: {exc!r})"
            raise HarnessError(f"timed out after {timeout:.1f}s waiting for {what}{detail}{extra}")
        time.sleep(interval)


CLIENT_CLOSE_TIMEOUT = 10.0


def close_client(client: Any, timeout: float = CLIENT_CLOSE_TIMEOUT) -> bool:
    """client.close(), but never hang the test run on it: False if it did not
    return within `timeout` (it is left to finish in a daemon thread)."""
    t = threading.Thread(target=lambda: _quiet(client.close), name="close-client", daemon=True)
    t.start()
    t.join(timeout)
    return not t.is_alive()


def _quiet(fn: Callable[[], Any]) -> None:
    try:
        fn()
    except Exception:  # noqa: BLE001 - a client that cannot close must not stop the cleanup
        pass


def kill_all_live() -> None:
    """Last-resort clean-up (atexit, SIGTERM of the test run): SIGKILL every
    process group of every cluster not closed yet. No waiting, no clients."""
    for c in list(LIVE):
        for pgid in c._groups:
            try:
                os.killpg(pgid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


atexit.register(kill_all_live)


def _ephemeral_range() -> tuple[int, int]:
    try:
        lo, hi = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(lo), int(hi)
    except (OSError, ValueError):
        return 32768, 60999


def free_ports(count: int) -> list[int]:
    """`count` distinct loopback ports that are free now, never handed out before
    in this session, preferably below the ephemeral range (see module docstring)."""
    lo, _ = _ephemeral_range()
    held: list[socket.socket] = []
    ports: list[int] = []
    with _ports_lock:
        try:
            rng = random.Random()
            attempts = 0
            while len(ports) < count:
                attempts += 1
                if lo > 12000 and attempts < 2000:
                    port = rng.randrange(10000, lo)
                else:  # no room below the ephemeral range: let the kernel choose
                    port = 0
                if port and port in _ports_handed_out:
                    continue
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    s.close()
                    continue
                port = s.getsockname()[1]
                if port in _ports_handed_out:
                    s.close()
                    continue
                held.append(s)
                ports.append(port)
                _ports_handed_out.add(port)
        finally:
            for s in held:
                s.close()
    return ports


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as TOML")


def _proc_stat(pid: int) -> tuple[str, int, int] | None:
    """(state, ppid, pgid) of a process, None if it does not exist."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    fields = text[text.rindex(")") + 2 :].split()
    return fields[0], int(fields[1]), int(fields[2])


def pid_alive(pid: int) -> bool:
    """True if the process exists and is not a zombie."""
    stat = _proc_stat(pid)
    return stat is not None and stat[0] not in ("Z", "X")


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes of a process group."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        stat = _proc_stat(int(name))
        if stat is not None and stat[2] == pgid and stat[0] not in ("Z", "X"):
            found.append(int(name))
    return found


def history_problems(
    records: Sequence[bytes],
    acked: Sequence[bytes],
    maybe: Iterable[bytes] = (),
    absent: Iterable[bytes] = (),
    positions: Mapping[bytes, int] | None = None,
    prefix: bytes | None = None,
    ordered: bool = True,
) -> list[str]:
    """What is wrong with one node's applied commands, given what clients saw.

    - acked: commands whose replicate() returned, in acknowledgement order;
      each must be applied exactly once, and (for a sequential writer) in this
      order;
    - maybe: commands whose outcome is unknown (ReplicationTimeout, killed
      in flight): applied at most once;
    - absent: commands the cluster refused (ClusterUnavailable): never applied;
    - positions: command -> the index apply() returned for it; the command
      must be at that index of the node's list.
    - ordered: check that acked commands were applied in the order of `acked`
      (true for one sequential writer; concurrent writes use positions instead);
    - prefix: only records starting with it are checked against acked/maybe
      (other writers' commands are ignored), positions against all records.
    Anything else in `records` is a command nobody sent. Returns [] if all is well.
    """
    problems: list[str] = []
    everything = list(records)
    records = everything if prefix is None else [r for r in everything if r.startswith(prefix)]
    counts = Counter(records)
    dups = [c for c, n in counts.items() if n > 1]
    if dups:
        problems.append(f"{len(dups)} command(s) applied more than once, e.g. {dups[:3]}")
    acked_set = set(acked)
    maybe_set = set(maybe)
    missing = [c for c in acked if c not in counts]
    if missing:
        problems.append(f"{len(missing)} acknowledged command(s) missing, e.g. {missing[:3]}")
    stray = [c for c in counts if c not in acked_set and c not in maybe_set]
    if stray:
        problems.append(f"{len(stray)} command(s) that nobody sent (or that were refused), e.g. {stray[:3]}")
    refused = [c for c in absent if c in counts]
    if refused:
        problems.append(f"{len(refused)} command(s) reported ClusterUnavailable were applied, e.g. {refused[:3]}")
    if ordered and not dups and not missing:
        order = [c for c in records if c in acked_set]
        if order != list(acked):
            first = next(i for i, (a, b) in enumerate(zip(order, acked)) if a != b)
            problems.append(
                f"acknowledged commands applied out of order: position {first} holds {order[first]!r}, "
                f"acknowledged order has {acked[first]!r}"
            )
    if positions:
        n = len(everything)
        wrong = [(c, i) for c, i in positions.items() if not (isinstance(i, int) and 0 <= i < n and everything[i] == c)]
        if wrong:
            c, i = wrong[0]
            at = everything[i] if isinstance(i, int) and 0 <= i < n else "<past the end>"
            problems.append(
                f"{len(wrong)} command(s) not at the index apply() returned to the client, e.g. {c!r} "
                f"acknowledged at {i}, the node has {at!r} there"
            )
    return problems


# ----------------------------------------------------------------------------- the cluster


class Cluster:
    """A cluster of `sandzmq start` processes described by a config file in `tmp_path`."""

    def __init__(
        self,
        tmp_path: str | os.PathLike[str],
        nodes: int = 3,
        state_machine: str = RECORDING_SM,
        raft_options: Mapping[str, Any] | None = None,
        *,
        name: str = "itest",
        state_machine_options: Mapping[str, Any] | None = None,
        env: Mapping[str, str] | None = None,
        join: Iterable[str] = (),
    ) -> None:
        """`join`: ids of nodes written with join = true (started empty, waiting to be added)."""
        self.root = Path(tmp_path)
        self.root.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.state_machine = state_machine
        self.raft_options = dict(raft_options or {})
        self.state_machine_options = dict(state_machine_options or {})
        self.join = set(join)
        self.node_ids = [f"n{i}" for i in range(1, nodes + 1)]
        ports = free_ports(2 * nodes)
        self.raft_addresses = {n: f"tcp://127.0.0.1:{ports[2 * i]}" for i, n in enumerate(self.node_ids)}
        self.client_addresses = {n: f"tcp://127.0.0.1:{ports[2 * i + 1]}" for i, n in enumerate(self.node_ids)}
        self.data_dir = self.root / "data"
        self.log_dir = self.root / "logs"
        self.log_dir.mkdir(exist_ok=True)
        self.config_path = self.root / "cluster.toml"
        #: A node listed here is started with its own config file (write_node_config).
        self.node_configs: dict[str, Path] = {}
        self.write_config()
        self.env = self._node_env(env)

        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._groups: set[int] = set()  # every process group this cluster created
        self._all_procs: list[subprocess.Popen[bytes]] = []
        self._starts: Counter[str] = Counter()
        self._clients: list[Any] = []
        self._lock = threading.RLock()
        self._status_clients: dict[str, tuple[Any, threading.Lock]] = {}
        self._stopped: set[str] = set()  # SIGSTOPped nodes
        self._known_pids: dict[str, set[int]] = {n: set() for n in self.node_ids}
        self.closed = False
        LIVE.append(self)

    # ------------------------------------------------------------------ config

    def config_text(self, raft_addresses: Mapping[str, str] | None = None) -> str:
        """The config file; `raft_addresses` overrides some nodes' raft addresses
        (the view of the peers one node gets from write_node_config)."""
        raft = {**self.raft_addresses, **(raft_addresses or {})}
        lines = [
            "# written by tests/cluster.py",
            "[cluster]",
            f"name = {_toml_value(self.name)}",
            f"state_machine = {_toml_value(self.state_machine)}",
            f"data_dir = {_toml_value(str(self.data_dir))}",
            "",
        ]
        if self.state_machine_options:
            lines.append("[state_machine_options]")
            lines += [f"{k} = {_toml_value(v)}" for k, v in self.state_machine_options.items()]
            lines.append("")
        if self.raft_options:
            lines.append("[raft]")
            lines += [f"{k} = {_toml_value(v)}" for k, v in self.raft_options.items()]
            lines.append("")
        for n in self.node_ids:
            lines += [
                "[[nodes]]",
                f"id = {_toml_value(n)}",
                f"raft = {_toml_value(raft[n])}",
                f"client = {_toml_value(self.client_addresses[n])}",
                *(["join = true"] if n in self.join else []),
                "",
            ]
        return "\n".join(lines)

    def write_config(self) -> None:
        tmp = self.config_path.with_suffix(".toml.tmp")
        tmp.write_text(self.config_text())
        os.replace(tmp, self.config_path)

    def write_node_config(self, node: str, raft_addresses: Mapping[str, str]) -> Path:
        """Give `node` a config file of its own, the cluster's except that the
        other nodes' raft addresses are those of `raft_addresses` (a proxy in
        front of them: tests/frame_capture.py), and start it with that file
        from now on. Its own address is never overridden, since it binds
        there; status and clients keep using the cluster's file, which has
        the real addresses."""
        self._check_node(node)
        if node in raft_addresses:
            raise ValueError(f"{node} binds its own raft address; only other nodes' can be overridden")
        path = self.root / f"{node}.toml"
        path.write_text(self.config_text(raft_addresses))
        self.node_configs[node] = path
        return path

    def _node_env(self, extra: Mapping[str, str] | None) -> dict[str, str]:
        env = dict(os.environ)
        path = [str(TESTS_DIR)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
        env["PYTHONPATH"] = os.pathsep.join(path)
        env["PYTHONUNBUFFERED"] = "1"  # a node killed with SIGKILL still leaves its log behind
        env.pop("PYTEST_CURRENT_TEST", None)
        env.update(extra or {})
        return env

    # ------------------------------------------------------------------ paths

    def node_data_dir(self, node: str) -> Path:
        return self.data_dir / node

    def wal_dir(self, node: str) -> Path:
        return self.node_data_dir(node) / "wal"

    def log_path(self, node: str) -> Path:
        return self.log_dir / f"{node}.log"

    def _check_node(self, node: str) -> None:
        if node not in self.node_ids:
            raise ValueError(f"unknown node {node!r}; this cluster has {self.node_ids}")

    # ------------------------------------------------------------------ processes

    def _spawn(self, node: str, argv: Sequence[str]) -> subprocess.Popen[bytes]:
        """Start `argv` as node `node`'s process, in a new session (its own group)."""
        if self.closed:
            raise HarnessError("the cluster is closed")
        current = self._procs.get(node)
        if current is not None and current.poll() is None:
            raise HarnessError(f"{node} is already running (pid {current.pid})")
        self._starts[node] += 1
        with open(self.log_path(node), "ab") as log:
            log.write(
                f"==== harness: start #{self._starts[node]} of {node} at {time.strftime('%H:%M:%S')}: "
                f"{' '.join(argv)}\n".encode()
            )
            log.flush()
            proc = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=self.root,
                start_new_session=True,
            )
        self._procs[node] = proc
        self._all_procs.append(proc)
        self._groups.add(proc.pid)  # a session leader's pgid is its pid
        self._stopped.discard(node)
        return proc

    def start(self, node: str) -> None:
        """Start one node (`sandzmq start --config F --node ID`, F its own file
        if it has one, see write_node_config); returns at once."""
        self._check_node(node)
        config = self.node_configs.get(node, self.config_path)
        self._spawn(node, [str(SANDZMQ), "start", "--config", str(config), "--node", node])

    def start_all(self) -> None:
        for node in self.node_ids:
            self.start(node)

    def proc(self, node: str) -> subprocess.Popen[bytes] | None:
        return self._procs.get(node)

    def is_running(self, node: str) -> bool:
        """The node's supervisor (`sandzmq start`) has not exited."""
        p = self._procs.get(node)
        return p is not None and p.poll() is None

    def running(self) -> list[str]:
        return [n for n in self.node_ids if self.is_running(n)]

    def _pgid(self, node: str) -> int:
        p = self._procs.get(node)
        if p is None:
            raise HarnessError(f"{node} was never started")
        return p.pid

    def _wait_group_gone(self, pgid: int, timeout: float = 10.0) -> None:
        wait_for(lambda: not group_members(pgid), timeout, f"process group {pgid} to be gone")

    def kill9(self, node: str) -> None:
        """Crash a node: SIGKILL to its whole process group; wait until it is gone."""
        self.kill9_many([node])

    def kill9_many(self, nodes: Iterable[str]) -> None:
        """SIGKILL several nodes' groups back to back (before waiting for any)."""
        nodes = list(nodes)
        for node in nodes:
            self._check_node(node)
            pgid = self._pgid(node)
            try:
                os.killpg(pgid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for node in nodes:
            pgid = self._pgid(node)
            self._procs[node].wait(timeout=10)
            self._wait_group_gone(pgid)
            self._stopped.discard(node)

    def kill9_all(self) -> None:
        self.kill9_many([n for n in self.node_ids if n in self._procs])

    def stop(self, node: str, timeout: float = 15.0) -> int:
        """SIGTERM the supervisor (SPEC 3: it stops its actors and exits 0); return
        its exit status. If it does not exit within `timeout`, kill the group and
        raise (a graceful stop that hangs is a bug)."""
        p = self._procs.get(node)
        if p is None:
            raise HarnessError(f"{node} was never started")
        if p.poll() is None:
            if node in self._stopped:
                self.sigcont(node)
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill9(node)
                raise HarnessError(f"{node} did not exit within {timeout}s of SIGTERM; killed it") from None
        try:
            self._wait_group_gone(p.pid, timeout=timeout)
        except HarnessError:
            left = group_members(p.pid)
            self.kill9(node)
            raise HarnessError(
                f"{node}'s supervisor exited on SIGTERM but left actor processes {left} running"
            ) from None
        return p.returncode

    def wait_exit(self, node: str, timeout: float) -> int:
        """Wait for the node's supervisor to exit on its own; return its status."""
        p = self._procs.get(node)
        if p is None:
            raise HarnessError(f"{node} was never started")
        try:
            return p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise HarnessError(f"{node} (pid {p.pid}) still running after {timeout}s") from None

    def sigstop(self, node: str) -> None:
        """Freeze the whole node (SIGSTOP to its group)."""
        os.killpg(self._pgid(node), signal.SIGSTOP)
        self._stopped.add(node)

    def sigcont(self, node: str) -> None:
        os.killpg(self._pgid(node), signal.SIGCONT)
        self._stopped.discard(node)

    def kill_actor(self, node: str, actor: str) -> int:
        """SIGKILL one actor process of a node ("raft", "log" or "apply") and
        wait until it is gone. Returns the killed pid."""
        pid = self.signal_actor(node, actor, signal.SIGKILL)
        wait_for(lambda: not pid_alive(pid), 10, f"{node}'s {actor} (pid {pid}) to die")
        return pid

    def signal_actor(self, node: str, actor: str, sig: int) -> int:
        """Send `sig` to one actor process of a node, by the pid status reports,
        after checking the pid is in the node's process group (so it is a
        process this harness started). Returns the pid."""
        pid = self.pids(node)[actor]
        if not isinstance(pid, int) or pid <= 0:
            raise HarnessError(f"status of {node} reports no pid for {actor!r}: {pid!r}")
        stat = _proc_stat(pid)
        if stat is None:
            raise HarnessError(f"{node}'s {actor} pid {pid} does not exist")
        if stat[2] != self._pgid(node):
            raise HarnessError(
                f"{node}'s {actor} pid {pid} is in process group {stat[2]}, not the node's group "
                f"{self._pgid(node)} (SPEC 3: the actors run in the supervisor's group); not killing it"
            )
        os.kill(pid, sig)
        return pid

    # ------------------------------------------------------------------ status

    def status_all(self, via: str = "client", timeout: float | None = None) -> dict[str, dict[str, Any]]:
        """Every node's status row (SPEC 5 fields), as {node id: row}; a node that
        does not answer gets role "unreachable" and null fields.

        via="client": Client.status(node=...) for all nodes at once (fast, for
        polling); via="cli": one `sandzmq status --config F --json` run."""
        if via == "cli":
            return self.status_cli(timeout or STATUS_TIMEOUT)
        wait = timeout or NODE_STATUS_TIMEOUT
        if not hasattr(self, "_pool"):
            self._pool = ThreadPoolExecutor(max_workers=len(self.node_ids), thread_name_prefix="status")
        rows = dict(zip(self.node_ids, self._pool.map(lambda n: self._status_one(n, wait), self.node_ids)))
        self._remember_pids(rows)
        return rows

    def _status_client(self, node: str) -> tuple[Any, threading.Lock]:
        """One from_config client per node, each used by one thread at a time
        (the polls of different nodes run in parallel)."""
        with self._lock:
            if node not in self._status_clients:
                self._status_clients[node] = (self.client(), threading.Lock())
            return self._status_clients[node]

    def _remember_pids(self, rows: Mapping[str, Mapping[str, Any]]) -> None:
        for node, row in rows.items():
            for pid in (row.get("pids") or {}).values():
                if isinstance(pid, int):
                    self._known_pids.setdefault(node, set()).add(pid)

    def status_cli(self, timeout: float = STATUS_TIMEOUT) -> dict[str, dict[str, Any]]:
        """`sandzmq status --config F --json`, as {node id: row}. Raises HarnessError
        if the command fails or prints something that is not the SPEC's JSON."""
        try:
            out = subprocess.run(
                [str(SANDZMQ), "status", "--config", str(self.config_path), "--json"],
                capture_output=True,
                timeout=timeout,
                env=self.env,
                cwd=self.root,
            )
        except subprocess.TimeoutExpired:
            raise HarnessError(f"`sandzmq status --json` did not finish within {timeout}s") from None
        if out.returncode != 0:
            raise HarnessError(
                f"`sandzmq status --json` exited {out.returncode}: {out.stderr.decode(errors='replace')[-2000:]}"
            )
        try:
            doc = json.loads(out.stdout)
            rows = {row["id"]: row for row in doc["nodes"]}
        except (ValueError, KeyError, TypeError) as exc:
            raise HarnessError(
                f"`sandzmq status --json` printed no valid status ({exc}): {out.stdout[:2000]!r}"
            ) from None
        self._remember_pids(rows)
        return rows

    def status(self, node: str, via: str = "client") -> dict[str, Any]:
        """One node's status row ("unreachable" if it does not answer)."""
        self._check_node(node)
        if via == "cli":
            rows = self.status_cli()
            if node not in rows:
                raise HarnessError(f"`sandzmq status --json` has no row for {node}: {sorted(rows)}")
            return rows[node]
        return self._status_one(node)

    def _status_one(self, node: str, timeout: float = NODE_STATUS_TIMEOUT) -> dict[str, Any]:
        client, lock = self._status_client(node)
        try:
            with lock:
                row = dict(client.status(timeout=timeout, node=node))
        except Exception as exc:  # noqa: BLE001
            row = dict.fromkeys(SPEC_STATUS_KEYS)
            row.update(id=node, role="unreachable", error=f"{type(exc).__name__}: {exc}")
        self._remember_pids({node: row})
        return row

    def pids(self, node: str) -> dict[str, int]:
        """{"raft", "log", "apply"} pids of a running node, from its status."""
        row = wait_for(
            lambda: (r := self.status(node)).get("role") not in (None, "unreachable") and r,
            10,
            f"{node} to report its status",
            describe=self.describe,
        )
        pids = row.get("pids")
        if not isinstance(pids, dict) or not all(k in pids for k in ("raft", "log", "apply")):
            raise HarnessError(f"status of {node} has no pids {{raft, log, apply}}: {row}")
        return pids

    @staticmethod
    def leader_of(rows: Mapping[str, Mapping[str, Any]]) -> str | None:
        """The leader a majority of the cluster agrees on, or None.

        A node counts as leader if it says role == "leader", and a majority of
        all nodes (itself included) report that node as leader in its term.
        With several self-declared leaders (a stale one just woke up), the one
        of the highest term is taken.
        """
        majority = len(rows) // 2 + 1
        claims = sorted(
            ((r.get("term") or 0, n) for n, r in rows.items() if r.get("role") == "leader"),
            reverse=True,
        )
        for term, n in claims:
            agree = sum(1 for r in rows.values() if r.get("leader") == n and r.get("term") == term)
            if agree >= majority:
                return n
        return None

    def wait_for_leader(self, timeout: float = 10.0, exclude: Iterable[str] = ()) -> str:
        """Poll status until a majority agrees on a leader not in `exclude`; return its id."""
        exclude = set(exclude)

        last: dict[str, Any] = {}

        def found() -> str | None:
            rows = self.status_all()
            last["rows"] = rows
            leader = self.leader_of(rows)
            return leader if leader is not None and leader not in exclude else None

        def describe() -> str:
            rows = last.get("rows", {})
            shown = "; ".join(
                f"{n}: {r.get('role')} term {r.get('term')} leader {r.get('leader')}"
                + (f" ({r['error']})" if r.get("error") else "")
                for n, r in rows.items()
            )
            return f"last status: {shown}\n{self.describe()}"

        return wait_for(
            found,
            timeout,
            "a leader" + (f" other than {sorted(exclude)}" if exclude else ""),
            interval=0.1,
            describe=describe,
        )

    def wait_role(self, node: str, roles: Iterable[str], timeout: float = 10.0) -> dict[str, Any]:
        roles = set(roles)
        return wait_for(
            lambda: (r := self.status(node)).get("role") in roles and r,
            timeout,
            f"{node} to report a role in {sorted(roles)}",
            interval=0.1,
            describe=self.describe,
        )

    # ------------------------------------------------------------------ clients

    def client(self) -> Any:
        """A new `sandzmq.Client.from_config(config)`, closed by close()."""
        import sandzmq

        c = sandzmq.Client.from_config(self.config_path)
        with self._lock:
            self._clients.append(c)
        return c

    def node_client(self, node: str, follow_leader: bool = False) -> Any:
        """A new `sandzmq.Client.connect(<node's client address>)`, closed by close()."""
        import sandzmq

        c = sandzmq.Client.connect(self.client_addresses[node], follow_leader=follow_leader)  # SPEC 6 form
        self._clients.append(c)
        return c

    def _query(self, node: str, query: bytes, timeout: float) -> Any:
        client, lock = self._status_client(node)
        with lock:
            return client.query(query, consistency="local", node=node, timeout=timeout)

    def records(self, node: str, timeout: float = 5.0) -> list[bytes]:
        """Every command node `node` has applied, in order (RecordingStateMachine,
        local read of that node)."""
        value = self._query(node, b"all", timeout)
        if not isinstance(value, list):
            raise HarnessError(f"query b'all' on {node} returned {value!r:.200}, not a list")
        return [bytes(v) for v in value]

    def count(self, node: str, timeout: float = 5.0) -> int:
        return int(self._query(node, b"count", timeout))

    def wait_records(
        self,
        node: str,
        predicate: Callable[[list[bytes]], bool],
        timeout: float = 20.0,
        what: str = "its records to satisfy the check",
    ) -> list[bytes]:
        """Poll node's records until predicate(records) holds; return them."""
        box: dict[str, Any] = {}

        def check() -> bool:
            recs = self.records(node)
            box["last"] = recs
            return predicate(recs)

        def describe() -> str:
            last = box.get("last")
            shown = "never read" if last is None else f"{len(last)} records, last {last[-3:]}"
            return f"{node}: {shown}\n{self.describe()}"

        wait_for(check, timeout, f"{node}: {what}", interval=0.1, describe=describe)
        return box["last"]

    def wait_caught_up(
        self,
        acked: Sequence[bytes],
        nodes: Iterable[str] | None = None,
        maybe: Iterable[bytes] = (),
        timeout: float = 20.0,
    ) -> dict[str, list[bytes]]:
        """Wait until each node holds every acknowledged command; return {node: records}.

        Only waits: checking the history is history_problems()' job."""
        acked_set = set(acked)
        out = {}
        for node in nodes if nodes is not None else self.node_ids:
            out[node] = self.wait_records(
                node,
                lambda recs: acked_set.issubset(recs),
                timeout,
                f"all {len(acked_set)} acknowledged commands",
            )
        return out

    # ------------------------------------------------------------------ logs

    def log_text(self, node: str) -> str:
        try:
            return self.log_path(node).read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, node: str, lines: int = 40) -> str:
        return "\n".join(self.log_text(node).splitlines()[-lines:])

    def tail_logs(self, lines: int = 40) -> str:
        parts = []
        for node in self.node_ids:
            state = (
                "running"
                if self.is_running(node)
                else (f"exited {self._procs[node].returncode}" if node in self._procs else "never started")
            )
            parts.append(f"----- {node} ({state}) {self.log_path(node)}, last {lines} lines -----")
            parts.append(self.log_tail(node, lines))
        return "\n".join(parts)

    def describe(self) -> str:
        """Process states, for error messages (logs are added to failure reports separately)."""
        states = []
        for node in self.node_ids:
            p = self._procs.get(node)
            if p is None:
                states.append(f"{node}: never started")
            elif p.poll() is None:
                states.append(f"{node}: running pid {p.pid}" + (" (SIGSTOPped)" if node in self._stopped else ""))
            else:
                states.append(f"{node}: exited {p.returncode}")
        return "processes: " + ", ".join(states)

    # ------------------------------------------------------------------ teardown

    def close(self) -> None:
        """Close clients, SIGKILL every process group this cluster started, wait for them."""
        if self.closed:
            return
        self.closed = True
        hung = [c for c in self._clients if not close_client(c)]
        self._clients.clear()
        if hasattr(self, "_pool"):
            self._pool.shutdown(wait=False, cancel_futures=True)
        for pgid in self._groups:
            try:
                os.killpg(pgid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        for p in self._all_procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        leftovers = {g: m for g in self._groups if (m := group_members(g))}
        deadline = time.monotonic() + 10
        while leftovers and time.monotonic() < deadline:
            time.sleep(POLL)
            leftovers = {g: m for g in self._groups if (m := group_members(g))}
        if self in LIVE:
            LIVE.remove(self)
        if leftovers:
            raise HarnessError(f"processes survived SIGKILL of their groups: {leftovers}")
        if hung:
            raise HarnessError(f"Client.close() did not return within {CLIENT_CLOSE_TIMEOUT}s for {hung}")

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Cluster({self.root}, nodes={self.node_ids}, {self.describe()})"


# ----------------------------------------------------------------------------- writers


class Writer:
    """Sequential writes of unique commands through one client, for fault tests.

    Each command is b"<prefix>-<n>". A command whose replicate() returned is
    `acked` (in order); one that raised ReplicationTimeout, or was in flight
    when the writer stopped, is `maybe`; one that raised ClusterUnavailable or
    NotLeaderError is `refused` (SPEC 6: it was never accepted, so it must
    never be applied). Every attempt is a new command: a new replicate() call
    with the same bytes would be a second command (SPEC 6).
    """

    def __init__(self, client: Any, prefix: str, timeout: float = 5.0) -> None:
        self.client = client
        self.prefix = prefix
        self.timeout = timeout
        self.acked: list[bytes] = []
        self.results: dict[bytes, Any] = {}
        self.maybe: list[bytes] = []
        self.refused: list[bytes] = []
        self.errors: list[tuple[float, bytes, BaseException]] = []
        self.ack_times: list[float] = []
        self._n = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.crashed: BaseException | None = None

    def next_command(self) -> bytes:
        self._n += 1
        return f"{self.prefix}-{self._n}".encode()

    def write_one(self) -> bool:
        """One attempt; True if acknowledged."""
        import sandzmq

        cmd = self.next_command()
        try:
            result = self.client.replicate(cmd, timeout=self.timeout)
        except sandzmq.ReplicationTimeout as exc:
            self.maybe.append(cmd)
            self.errors.append((time.monotonic(), cmd, exc))
            return False
        except (sandzmq.ClusterUnavailable, sandzmq.NotLeaderError) as exc:
            self.refused.append(cmd)
            self.errors.append((time.monotonic(), cmd, exc))
            return False
        except BaseException:
            self.maybe.append(cmd)
            raise
        self.acked.append(cmd)
        self.results[cmd] = result
        self.ack_times.append(time.monotonic())
        return True

    def write(self, count: int, deadline: float = 30.0) -> None:
        """Acknowledge `count` more commands, retrying failures (each retry a
        new command) until `deadline` seconds pass."""
        target = len(self.acked) + count
        end = time.monotonic() + deadline
        while len(self.acked) < target:
            if time.monotonic() > end:
                raise HarnessError(
                    f"writer {self.prefix}: only {len(self.acked)}/{target} acknowledged within {deadline}s; "
                    f"last errors: {[(type(e).__name__, str(e)) for _, _, e in self.errors[-3:]]}"
                )
            if not self.write_one():
                time.sleep(POLL)

    # background mode

    def start(self) -> None:
        def run() -> None:
            try:
                while not self._stop.is_set():
                    if not self.write_one():
                        time.sleep(POLL)
            except BaseException as exc:  # noqa: BLE001 - reported by stop()
                self.crashed = exc

        self._thread = threading.Thread(target=run, name=f"writer-{self.prefix}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = None) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout if timeout is not None else self.timeout + 10)
            if self._thread.is_alive():
                raise HarnessError(f"writer {self.prefix}: replicate() did not return within its timeout")
        if self.crashed is not None:
            raise HarnessError(f"writer {self.prefix} crashed: {self.crashed!r}") from self.crashed

    def wait_acked(self, count: int, timeout: float) -> None:
        wait_for(
            lambda: len(self.acked) >= count or self.crashed,
            timeout,
            f"writer {self.prefix} to have {count} acknowledged commands",
        )
        if self.crashed is not None:
            raise HarnessError(f"writer {self.prefix} crashed: {self.crashed!r}") from self.crashed

    def problems(self, records: Sequence[bytes], ordered: bool = True) -> list[str]:
        return history_problems(
            records,
            self.acked,
            maybe=self.maybe,
            absent=self.refused,
            positions=self.results if ordered else None,
            prefix=f"{self.prefix}-".encode(),
        )
