"""The node supervisor behind `sandzmq start` (SPEC 3).

For each node it runs, the supervisor starts the node's three actor
processes, in the order log-store, apply, raft (each one's partners are then
usually already listening; nothing depends on it, the actors reconnect):

    python -m sandzmq.actors {log,apply,raft} --config FILE --node ID

The children stay in the supervisor's process group (no setsid): killing
that group with SIGKILL is how a node crashes, and it must take every actor
down at once. They inherit stderr, so their logs and the supervisor's
interleave in one stream, each line naming its node.

Restart policy, and why it is safe:

- An actor that dies (any exit status, any signal) is restarted after a
  small backoff: 0.1 s, doubling per consecutive failure up to 2 s, reset
  once the actor has stayed up for 10 s. The other actors of its node keep
  running, because each copes with a restarted partner: the raft actor
  resends the log-store every write it has not seen acknowledged, and
  replays committed entries to a restarted apply actor from the applied
  index that actor reports (ApplyState); a restarted raft actor rebuilds
  its state from the log-store (LogSync -> LogState), which holds
  everything durable. Nothing acknowledged lives only in a dead process.
- Exit status 3 means "refuses to start, do not restart" (for example a
  corrupt write-ahead log), and 2 a configuration error: restarting cannot
  help, so the actor is given up.
- Crash loop: an actor restarted 5 times within 30 s is given up too (a
  node that cannot stay up should be looked at, not hammered).
- Once any actor of any node is given up, supervision is over: the reason
  is logged in one line, every child is stopped as on SIGTERM (below) and
  `sandzmq start` exits 1. A node missing an actor for good must not look
  alive: without its apply actor a leader still takes writes it never
  answers, without its log-store a node can neither vote nor replicate.
  Exiting is how a service manager (systemd, Kubernetes) learns that the
  node is down, and restarts it or alerts someone.
- SIGINT or SIGTERM: every child gets SIGTERM (raft first, log-store last),
  and those still running after 5 s get SIGKILL; then exit 0. The children
  ignore SIGINT, so a Ctrl-C in a terminal (which signals the whole
  foreground group) still stops them in that order, through the
  supervisor; and they get SIGTERM should the supervisor itself die
  (Linux: PR_SET_PDEATHSIG), so they are not left behind as orphans.
- Started by an application (spawn(): RaftReplicator, `sandzmq bench
  --spawn`), the supervisor runs in a session of its own, so no signal
  reaches it when the application dies. Instead it watches the read end
  of a pipe (`parent_fd`, the hidden `--parent-fd` of `sandzmq start`)
  whose write end only the application holds and never writes: the kernel
  closes it when the application exits or is killed, even by SIGKILL, and
  on EOF the supervisor stops as on SIGTERM. Not PR_SET_PDEATHSIG for this:
  it fires when the *thread* that started the child exits, and an
  application may call RaftReplicator.start() from a short-lived thread.
"""

from __future__ import annotations

import ctypes
import logging
import os
import select
import signal
import stat
import subprocess
import sys
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

from sandzmq.config import ClusterConfig, check_node_ids, load_config
from sandzmq.errors import SandzmqError

log = logging.getLogger("sandzmq.supervisor")

#: Start order; stop order is the reverse.
KINDS = ("log", "apply", "raft")
NAMES = {"log": "log-store", "apply": "apply actor", "raft": "raft actor"}

#: The actor entry's exit statuses that a restart cannot fix.
EXIT_CONFIG = 2
EXIT_REFUSED = 3
PERMANENT = {EXIT_CONFIG: "a configuration error", EXIT_REFUSED: "it refuses to start"}

#: (kind, node id) -> the argv of that actor process.
CommandFactory = Callable[[str, str], Sequence[str]]


@dataclass(frozen=True, slots=True)
class RestartPolicy:
    """How eagerly to restart, and when to give up (see the module docstring)."""

    backoff_initial: float = 0.1
    backoff_max: float = 2.0
    stable_after: float = 10.0  # up this long: the next failure starts from backoff_initial again
    max_restarts: int = 5  # restarts within `window` seconds before giving up
    window: float = 30.0
    stop_grace: float = 5.0  # SIGTERM -> SIGKILL
    poll_interval: float = 0.05


@dataclass(eq=False)
class _Child:
    """One actor process slot: the process, and its restart history."""

    node: str
    kind: str
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    failures: int = 0  # consecutive short-lived runs
    restarts: deque[float] = field(default_factory=deque)
    restart_at: float | None = None
    given_up: bool = False  # never start again
    reason: str = ""

    @property
    def name(self) -> str:
        return f"{self.node}/{self.kind}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


def actor_command(config_path: str | os.PathLike[str]) -> CommandFactory:
    """The real actors: `python -m sandzmq.actors KIND --config FILE --node ID`."""
    path = os.fspath(config_path)

    def command(kind: str, node_id: str) -> list[str]:
        return [sys.executable, "-m", "sandzmq.actors", kind, "--config", path, "--node", node_id]

    return command


class Supervisor:
    """Runs and watches the actor processes of `node_ids` (all nodes when empty).

    Use run() for the whole life cycle (the `sandzmq start` command), or
    start() / step() / stop() to drive it from elsewhere (tests). Not
    thread-safe, except request_stop(), which may be called from anywhere,
    a signal handler included.
    """

    def __init__(
        self,
        config: ClusterConfig | str | os.PathLike[str],
        node_ids: Iterable[str] = (),
        *,
        command: CommandFactory | None = None,
        policy: RestartPolicy | None = None,
        parent_fd: int | None = None,
    ) -> None:
        """`config`: a loaded config or its path (ConfigError if invalid, or
        if a node id is not in it); `command`: how to start an actor (tests
        substitute stand-ins); `policy`: restart and stop timings;
        `parent_fd`: the read end of the pipe from the application that
        started this supervisor (the module docstring; SandzmqError if it
        is not an open pipe)."""
        self.config = config if isinstance(config, ClusterConfig) else load_config(config)
        self.nodes = [node.id for node in check_node_ids(self.config, node_ids)]
        self.command = command or actor_command(self.config.path)
        self.policy = policy or RestartPolicy()
        self.children = [_Child(node, kind) for node in self.nodes for kind in KINDS]
        self._stop = threading.Event()
        self._stopped = False
        #: Why supervision is over (an actor given up), or None.
        self.failure: str | None = None
        self._parent = _ParentPipe(parent_fd) if parent_fd is not None else None

    # ------------------------------------------------------------------ life cycle

    def run(self) -> int:
        """Start everything, supervise until SIGINT/SIGTERM (exit 0) or until
        an actor is given up (exit 1), then stop every child."""
        handlers = self._install_signal_handlers()
        try:
            log.info("supervising %s (config %s, pid %d)", ", ".join(self.nodes), self.config.path, os.getpid())
            self.start()
            while not self._stop.is_set():
                if not self.step():
                    log.error("an actor was given up: stopping %s, then exiting with status 1", ", ".join(self.nodes))
                    return 1
                if self._parent is not None and self._parent.closed():
                    log.warning("the application that started this supervisor has exited")
                    break
                self._stop.wait(self.policy.poll_interval)
            log.info("stopping %s", ", ".join(self.nodes))
            return 0
        finally:
            self.stop()
            for signum, handler in handlers.items():
                signal.signal(signum, handler)

    def start(self) -> None:
        """Start every actor that is not running, in start order."""
        for child in self.children:
            if not child.given_up and not child.running:
                self._spawn(child)

    def step(self) -> bool:
        """Reap dead actors and restart those that are due. False once an actor
        has been given up (`failure` says why): then nothing is restarted any
        more, and the caller is to stop() everything."""
        now = time.monotonic()
        for child in self.children:
            if self.failure is not None or self._stop.is_set():
                break
            if child.proc is not None and child.proc.poll() is not None:
                self._on_exit(child, now)
            elif child.proc is None and child.restart_at is not None and now >= child.restart_at:
                self._spawn(child)
        return self.failure is None

    def request_stop(self) -> None:
        """Make run() stop everything and return 0 (safe from a signal handler)."""
        self._stop.set()

    def stop(self) -> None:
        """SIGTERM every child (raft first), SIGKILL those left after the grace period. Idempotent."""
        self._stop.set()
        if self._stopped:
            return
        self._stopped = True
        alive = [c for c in reversed(self.children) if c.running]
        for child in alive:
            _signal(child, signal.SIGTERM)
        deadline = time.monotonic() + self.policy.stop_grace
        for child in alive:
            assert child.proc is not None
            try:
                child.proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning(
                    "%s: %s (pid %d) did not stop within %.1f s: SIGKILL",
                    child.node,
                    NAMES[child.kind],
                    child.proc.pid,
                    self.policy.stop_grace,
                )
                _signal(child, signal.SIGKILL)
                child.proc.wait()
        for child in self.children:
            child.restart_at = None

    def pids(self) -> dict[str, dict[str, int | None]]:
        """node id -> kind -> pid of the running process (None when down)."""
        out: dict[str, dict[str, int | None]] = {node: {} for node in self.nodes}
        for child in self.children:
            out[child.node][child.kind] = child.proc.pid if child.running and child.proc else None
        return out

    # ------------------------------------------------------------------ internals

    def _spawn(self, child: _Child) -> None:
        argv = list(self.command(child.kind, child.node))
        child.restart_at = None
        try:
            child.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, preexec_fn=_child_setup)
        except OSError as exc:
            child.proc = None
            log.error("%s: cannot start the %s: %s", child.node, NAMES[child.kind], exc)
            self._schedule_restart(child, time.monotonic(), f"could not be started ({exc})")
            return
        child.started = time.monotonic()
        log.info("%s: started the %s (pid %d)", child.node, NAMES[child.kind], child.proc.pid)

    def _on_exit(self, child: _Child, now: float) -> None:
        assert child.proc is not None
        status, pid = child.proc.returncode, child.proc.pid
        child.proc = None
        how = describe_exit(status)
        if status in PERMANENT:
            self._give_up(child, f"{how}: {PERMANENT[status]}; not restarting it")
            return
        if now - child.started >= self.policy.stable_after:
            child.failures = 0
        self._schedule_restart(child, now, f"(pid {pid}) {how}")

    def _schedule_restart(self, child: _Child, now: float, what: str) -> None:
        policy = self.policy
        while child.restarts and now - child.restarts[0] > policy.window:
            child.restarts.popleft()
        if len(child.restarts) >= policy.max_restarts:
            self._give_up(
                child,
                f"{what}, and was restarted {len(child.restarts)} times within "
                f"{policy.window:g} s: crash loop, not restarting it",
            )
            return
        delay = min(policy.backoff_max, policy.backoff_initial * 2**child.failures)
        child.failures += 1
        child.restarts.append(now)
        child.restart_at = now + delay
        log.warning("%s: the %s %s; restarting it in %.1f s", child.node, NAMES[child.kind], what, delay)

    def _give_up(self, child: _Child, reason: str) -> None:
        child.given_up, child.reason, child.restart_at = True, reason, None
        self.failure = f"{child.node}: the {NAMES[child.kind]} {reason}"
        log.error("%s", self.failure)

    def _install_signal_handlers(self) -> dict[int, Any]:
        if threading.current_thread() is not threading.main_thread():
            return {}

        def handler(signum: int, frame: FrameType | None) -> None:
            self.request_stop()

        return {signum: signal.signal(signum, handler) for signum in (signal.SIGINT, signal.SIGTERM)}


class _ParentPipe:
    """The read end of a pipe whose write end the parent holds and never
    writes: EOF means the parent is gone (see the module docstring)."""

    def __init__(self, fd: int) -> None:
        try:
            is_pipe = stat.S_ISFIFO(os.fstat(fd).st_mode)
        except OSError as exc:
            raise SandzmqError(f"parent fd {fd}: {exc.strerror}") from None
        if not is_pipe:
            raise SandzmqError(f"parent fd {fd} is not a pipe")
        os.set_blocking(fd, False)
        self.fd = fd
        self._poll = select.poll()
        self._poll.register(fd, select.POLLIN)

    def closed(self) -> bool:
        """True once every write end is closed (without waiting)."""
        if not self._poll.poll(0):
            return False
        try:
            return os.read(self.fd, 4096) == b""  # anything written is ignored
        except BlockingIOError:
            return False


def _signal(child: _Child, signum: int) -> None:
    if child.proc is not None:
        try:
            child.proc.send_signal(signum)
        except ProcessLookupError:
            pass


def describe_exit(status: int) -> str:
    """'exited with status 1' / 'was killed by SIGKILL'."""
    if status < 0:
        try:
            name = signal.Signals(-status).name
        except ValueError:
            name = f"signal {-status}"
        return f"was killed by {name}"
    return f"exited with status {status}"


# Linux's prctl(PR_SET_PDEATHSIG): looked up in the parent, so the child
# (between fork and exec) only makes the call.
try:
    _prctl: Any = ctypes.CDLL(None, use_errno=True).prctl if sys.platform.startswith("linux") else None
except (OSError, AttributeError):
    _prctl = None
_PR_SET_PDEATHSIG = 1


def _child_setup() -> None:
    """Runs in the child before exec: ignore SIGINT (the supervisor decides
    how the node stops), and get SIGTERM if the supervisor dies."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)


def run(config_path: str | os.PathLike[str], node_ids: Iterable[str] = (), *, parent_fd: int | None = None) -> int:
    """`sandzmq start`: supervise the named nodes (all when none) until
    SIGINT/SIGTERM, or until `parent_fd` reaches EOF (spawn()). Returns the
    exit status; ConfigError and SandzmqError propagate."""
    supervisor = Supervisor(config_path, node_ids, parent_fd=parent_fd)
    _configure_logging()
    return supervisor.run()


def spawn(
    config_path: str | os.PathLike[str],
    node_ids: Iterable[str] = (),
    *,
    stdout: Any = None,
    stderr: Any = None,
) -> subprocess.Popen[bytes]:
    """Run `sandzmq start` for these nodes as a child in its own session, so
    that terminate() can clean up its whole process group (RaftReplicator,
    `sandzmq bench --spawn`).

    The nodes stop by themselves once this process dies, however it dies:
    the supervisor watches a pipe whose write end is held here (the module
    docstring). That end is closed by terminate(), or when the returned
    Popen is garbage-collected: dropping it stops the nodes too."""
    read_end, write_end = os.pipe()  # neither end is inherited by other children
    argv = [
        sys.executable,
        "-m",
        "sandzmq.cli.main",
        "start",
        "--config",
        os.fspath(config_path),
        "--parent-fd",
        str(read_end),
    ]
    for node_id in node_ids:
        argv += ["--node", node_id]
    try:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr, start_new_session=True, pass_fds=(read_end,)
        )
    except BaseException:
        os.close(write_end)
        raise
    finally:
        os.close(read_end)
    _lifelines[proc] = weakref.finalize(proc, os.close, write_end)
    return proc


#: spawn()ed supervisor -> the closing of its pipe's write end.
_lifelines: weakref.WeakKeyDictionary[subprocess.Popen[bytes], weakref.finalize] = weakref.WeakKeyDictionary()


def terminate(proc: subprocess.Popen[bytes], grace: float = 10.0) -> int:
    """Stop a spawn()ed supervisor: SIGTERM (it stops its actors in order),
    then SIGKILL its whole process group if it is not done within `grace`
    seconds. Returns its exit status."""
    if proc.poll() is None:
        try:
            proc.send_signal(signal.SIGTERM)
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            log.warning(
                "the supervisor (pid %d) did not stop within %.0f s: killing its process group", proc.pid, grace
            )
        except ProcessLookupError:
            pass
    # Whatever is left of the group (an actor the supervisor could not stop).
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    status = proc.wait()
    lifeline = _lifelines.pop(proc, None)
    if lifeline is not None:
        lifeline()
    return status


def _configure_logging() -> None:
    """Log to stderr unless the application configured logging itself."""
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(f"%(asctime)s sandzmq-start[{os.getpid()}] %(levelname)s %(message)s"))
        root.addHandler(handler)
        root.setLevel(logging.INFO)


__all__ = ["KINDS", "RestartPolicy", "Supervisor", "actor_command", "describe_exit", "run", "spawn", "terminate"]
