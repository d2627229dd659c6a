"""The node supervisor's restart policy, with stand-in actors.

The real actors are not needed to test the policy: the Supervisor takes a
command factory, and here every "actor" is a tiny Python program that
records its pid, then behaves as a per-actor mode file says (run, exit N, or
ignore SIGTERM), and records its pid again when SIGTERM stops it. Tests that need the supervisor's signal handling run it as
a process of its own (a driver script); the others drive it in-process with
start() / step() / stop().
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from sandzmq.actors.supervisor import KINDS, NAMES, RestartPolicy, Supervisor, describe_exit
from sandzmq.statemachines.kv import encode_get, encode_put

from sandzmq import ClusterUnavailable, ConfigError, NotLeaderError, RaftReplicator
from sandzmq.config import ClusterConfig, load_config

CHILD = r"""
import os, signal, sys, time
kind, node, logdir = sys.argv[1:4]
with open(os.path.join(logdir, f"{node}-{kind}.starts"), "a") as f:
    f.write(f"{os.getpid()}\n")
mode_file = os.path.join(logdir, f"{node}-{kind}.mode")
mode = open(mode_file).read().strip() if os.path.exists(mode_file) else "run"
if mode.startswith("exit"):
    sys.exit(int(mode[4:]))
def on_sigterm(*args):
    with open(os.path.join(logdir, f"{node}-{kind}.sigterm"), "a") as f:
        f.write(f"{os.getpid()}\n")
    sys.exit(0)
if mode == "stubborn":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
else:
    signal.signal(signal.SIGTERM, on_sigterm)
while True:
    time.sleep(1)
"""

DRIVER = r"""
import sys
from sandzmq.actors.supervisor import RestartPolicy, Supervisor
from sandzmq.config import load_config

config, logdir, child, grace = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
parent_fd = int(sys.argv[5]) if len(sys.argv) > 5 else None
code = open(child).read()
supervisor = Supervisor(
    load_config(config),
    command=lambda kind, node: [sys.executable, "-c", code, kind, node, logdir],
    policy=RestartPolicy(backoff_initial=0.02, stop_grace=grace, poll_interval=0.02),
    parent_fd=parent_fd,
)
sys.exit(supervisor.run())
"""

FAST = RestartPolicy(
    backoff_initial=0.02, backoff_max=0.1, max_restarts=3, window=30.0, stop_grace=2.0, poll_interval=0.02
)


def wait_until(
    predicate: Callable[[], Any], timeout: float = 10.0, what: str = "condition", tick: Callable[[], Any] | None = None
) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        if tick is not None:
            tick()
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def alive(pid: int) -> bool:
    """True if `pid` runs (a zombie, not yet reaped by whoever inherited it, counts as dead)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in ("Z", "X")


def write_config(tmp_path: Path, node_ids: Sequence[str]) -> Path:
    text = '[cluster]\nname = "sup"\nstate_machine = "kv"\ndata_dir = "data"\n'
    for i, node_id in enumerate(node_ids):
        text += f'\n[[nodes]]\nid = "{node_id}"\nraft = "tcp://127.0.0.1:{17001 + i}"\nclient = "tcp://127.0.0.1:{17101 + i}"\n'
    path = tmp_path / "cluster.toml"
    path.write_text(text)
    return path


class Actors:
    """The stand-in actors' files: which pids started, and how each should behave."""

    def __init__(self, logdir: Path) -> None:
        self.logdir = logdir

    def command(self, kind: str, node: str) -> list[str]:
        return [sys.executable, "-c", CHILD, kind, node, str(self.logdir)]

    def starts(self, node: str, kind: str) -> list[int]:
        path = self.logdir / f"{node}-{kind}.starts"
        return [int(line) for line in path.read_text().split()] if path.exists() else []

    def set_mode(self, node: str, kind: str, mode: str) -> None:
        (self.logdir / f"{node}-{kind}.mode").write_text(mode)

    def sigtermed(self, node: str, kind: str) -> list[int]:
        path = self.logdir / f"{node}-{kind}.sigterm"
        return [int(line) for line in path.read_text().split()] if path.exists() else []

    def all_pids(self) -> list[int]:
        return [int(line) for path in self.logdir.glob("*.starts") for line in path.read_text().split()]


@pytest.fixture
def actors(tmp_path: Path) -> Actors:
    logdir = tmp_path / "actors"
    logdir.mkdir()
    return Actors(logdir)


@pytest.fixture
def supervise(tmp_path: Path, actors: Actors) -> Iterator[Callable[..., Supervisor]]:
    """Factory of in-process Supervisors over stand-in actors; all stopped at the end."""
    made: list[Supervisor] = []

    def make(node_ids: list[str] = ["n1"], policy: RestartPolicy = FAST) -> Supervisor:  # noqa: B006
        config: ClusterConfig = load_config(write_config(tmp_path, node_ids))
        supervisor = Supervisor(config, command=actors.command, policy=policy)
        made.append(supervisor)
        return supervisor

    yield make
    for supervisor in made:
        supervisor.stop()
    for pid in actors.all_pids():
        assert not alive(pid), f"stand-in actor {pid} left running"


def running_pids(supervisor: Supervisor, node: str = "n1") -> dict[str, int | None]:
    return supervisor.pids()[node]


# --- in-process: the restart policy ---------------------------------------------------


def test_starts_log_apply_raft_per_node_in_the_supervisors_group(supervise, actors: Actors) -> None:
    supervisor = supervise(["n1", "n2"])
    assert [(c.node, c.kind) for c in supervisor.children] == [(n, k) for n in ("n1", "n2") for k in KINDS]
    supervisor.start()
    wait_until(lambda: all(actors.starts(n, k) for n in ("n1", "n2") for k in KINDS), what="six actors")
    for node, pids in supervisor.pids().items():
        assert set(pids) == set(KINDS)
        for pid in pids.values():
            assert pid is not None and os.getpgid(pid) == os.getpgid(0)  # no setsid


def test_an_actor_killed_with_sigkill_is_restarted(supervise, actors: Actors) -> None:
    supervisor = supervise()
    supervisor.start()
    before = wait_until(lambda: all(running_pids(supervisor).values()) and running_pids(supervisor), what="start")
    wait_until(lambda: actors.starts("n1", "raft"), what="raft running")
    os.kill(before["raft"], signal.SIGKILL)
    after = wait_until(
        lambda: running_pids(supervisor)["raft"] not in (None, before["raft"]) and running_pids(supervisor),
        tick=supervisor.step,
        what="raft restarted",
    )
    assert after["log"] == before["log"] and after["apply"] == before["apply"]  # the others kept running
    wait_until(lambda: len(actors.starts("n1", "raft")) == 2, what="the new raft to run")
    assert alive(after["raft"])


def test_an_actor_that_exits_is_restarted_whatever_its_status(supervise, actors: Actors) -> None:
    supervisor = supervise()
    supervisor.start()
    pid = wait_until(lambda: running_pids(supervisor)["apply"], what="start")
    wait_until(lambda: actors.starts("n1", "apply"), what="apply running")
    os.kill(pid, signal.SIGTERM)  # exits 0, but nobody asked the node to stop
    wait_until(lambda: len(actors.starts("n1", "apply")) == 2, tick=supervisor.step, what="apply restarted")


@pytest.mark.parametrize("status", [2, 3])
def test_exit_status_2_or_3_is_given_up_and_ends_supervision(supervise, actors: Actors, status: int) -> None:
    """Restarting cannot fix a configuration error (2) or an actor that refuses
    to start (3); and a node missing an actor for good must not look alive."""
    actors.set_mode("n1", "apply", f"exit{status}")
    supervisor = supervise(["n1", "n2"])
    supervisor.start()
    apply = next(c for c in supervisor.children if c.kind == "apply")
    wait_until(lambda: not supervisor.step(), what="step() to report the end of supervision")
    assert apply.given_up and ("refuses to start" if status == 3 else "configuration error") in apply.reason
    # Several backoff periods later it has still not been started again.
    until = time.monotonic() + 0.3
    while time.monotonic() < until:
        assert not supervisor.step()
        time.sleep(0.02)
    assert len(actors.starts("n1", "apply")) == 1
    supervisor.stop()
    assert supervisor.pids() == {n: {"log": None, "apply": None, "raft": None} for n in ("n1", "n2")}


def test_a_crash_loop_is_given_up(supervise, actors: Actors) -> None:
    actors.set_mode("n1", "raft", "exit1")
    supervisor = supervise()
    supervisor.start()
    raft = next(c for c in supervisor.children if c.kind == "raft")
    wait_until(lambda: not supervisor.step(), what="step() to report the end of supervision")
    assert raft.given_up and "crash loop" in raft.reason
    assert len(actors.starts("n1", "raft")) == FAST.max_restarts + 1


def test_the_backoff_doubles_and_is_capped(supervise, actors: Actors) -> None:
    actors.set_mode("n1", "raft", "exit1")
    policy = RestartPolicy(backoff_initial=0.02, backoff_max=0.05, max_restarts=10, stop_grace=2.0)
    supervisor = supervise(policy=policy)
    supervisor.start()
    raft = next(c for c in supervisor.children if c.kind == "raft")
    delays = []
    last = None

    def record() -> None:
        nonlocal last
        supervisor.step()
        if raft.restart_at is not None and raft.restart_at != last:
            last = raft.restart_at
            delays.append(round(raft.restart_at - raft.restarts[-1], 3))

    wait_until(lambda: len(delays) >= 4, tick=record, what="four restarts")
    assert delays[:4] == [0.02, 0.04, 0.05, 0.05]


def test_stop_kills_an_actor_that_ignores_sigterm(supervise, actors: Actors) -> None:
    actors.set_mode("n1", "raft", "stubborn")
    supervisor = supervise(policy=RestartPolicy(stop_grace=0.3))
    supervisor.start()
    wait_until(lambda: all(actors.starts("n1", k) for k in KINDS), what="start")
    pid = running_pids(supervisor)["raft"]
    start = time.monotonic()
    supervisor.stop()
    assert time.monotonic() - start < 2.0
    assert pid is not None and not alive(pid)
    assert running_pids(supervisor) == {"log": None, "apply": None, "raft": None}


def test_describe_exit() -> None:
    assert describe_exit(1) == "exited with status 1"
    assert describe_exit(-signal.SIGKILL) == "was killed by SIGKILL"


# --- as a process: signals ------------------------------------------------------------


@pytest.fixture
def driver(tmp_path: Path, actors: Actors) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """Start a supervisor process (own session) over stand-in actors; kill its group at the end."""
    procs: list[subprocess.Popen[bytes]] = []
    (tmp_path / "driver.py").write_text(DRIVER)
    (tmp_path / "child.py").write_text(CHILD)

    def start(
        node_ids: tuple[str, ...] = ("n1",), grace: float = 2.0, parent_fd: int | None = None
    ) -> subprocess.Popen[bytes]:
        config = write_config(tmp_path, node_ids)
        argv = [
            sys.executable,
            str(tmp_path / "driver.py"),
            str(config),
            str(actors.logdir),
            str(tmp_path / "child.py"),
            str(grace),
        ]
        if parent_fd is not None:
            argv.append(str(parent_fd))
        proc = subprocess.Popen(argv, start_new_session=True, pass_fds=() if parent_fd is None else (parent_fd,))
        procs.append(proc)
        wait_until(lambda: all(actors.starts(n, k) for n in node_ids for k in KINDS), what="the actors to start")
        return proc

    yield start
    for proc in procs:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
    wait_until(lambda: not any(alive(pid) for pid in actors.all_pids()), what="stand-in actors to end")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_to_the_supervisor_stops_everything_and_exits_0(driver, actors: Actors, signum: int) -> None:
    proc = driver(["n1", "n2"])
    pids = actors.all_pids()
    assert len(pids) == 6
    proc.send_signal(signum)
    assert proc.wait(8) == 0
    assert not any(alive(pid) for pid in pids)


def test_ctrl_c_to_the_whole_group_stops_through_the_supervisor(driver, actors: Actors) -> None:
    proc = driver()
    pids = actors.all_pids()
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
    assert proc.wait(8) == 0
    assert not any(alive(pid) for pid in pids)
    assert all(len(actors.starts("n1", k)) == 1 for k in KINDS)  # nobody was restarted on the way out


def test_the_supervisor_stops_everything_when_its_parent_closes_the_pipe(driver, actors: Actors) -> None:
    """The parent holds the write end of a pipe and never writes; when it
    dies the kernel closes it, and the supervisor reads EOF."""
    read_end, write_end = os.pipe()
    try:
        proc = driver(["n1", "n2"], parent_fd=read_end)
    finally:
        os.close(read_end)
    pids = actors.all_pids()
    os.close(write_end)
    assert proc.wait(8) == 0  # a graceful stop, as on SIGTERM
    assert not any(alive(pid) for pid in pids)
    assert all(actors.sigtermed(n, k) == actors.starts(n, k) for n in ("n1", "n2") for k in KINDS)


def test_sigkill_of_the_group_is_a_node_crash(driver, actors: Actors) -> None:
    proc = driver()
    pids = actors.all_pids()
    os.killpg(proc.pid, signal.SIGKILL)
    assert proc.wait(5) == -signal.SIGKILL
    wait_until(lambda: not any(alive(pid) for pid in pids), what="the group to die")


def test_actors_do_not_outlive_a_killed_supervisor(driver, actors: Actors) -> None:
    if not sys.platform.startswith("linux"):
        pytest.skip("PR_SET_PDEATHSIG is Linux only")
    proc = driver()
    pids = actors.all_pids()
    proc.kill()  # the supervisor alone
    proc.wait(5)
    wait_until(lambda: not any(alive(pid) for pid in pids), what="orphaned actors to stop")


@pytest.mark.parametrize("kind", ["log", "apply", "raft"])
def test_run_stops_everything_and_exits_1_once_an_actor_is_given_up(
    driver, actors: Actors, tmp_path: Path, kind: str
) -> None:
    """So that a service manager sees the node is down: a node that keeps
    running without its apply actor would still lead and take writes it
    never answers."""
    actors.set_mode("n2", kind, "exit3")
    (tmp_path / "driver.py").write_text(DRIVER)
    (tmp_path / "child.py").write_text(CHILD)
    config = write_config(tmp_path, ["n1", "n2"])
    proc = subprocess.run(
        [sys.executable, str(tmp_path / "driver.py"), str(config), str(actors.logdir), str(tmp_path / "child.py"), "2"],
        start_new_session=True,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 1, proc.stderr
    assert "refuses to start" in proc.stderr and f"n2: the {NAMES[kind]}" in proc.stderr
    wait_until(lambda: not any(alive(pid) for pid in actors.all_pids()), what="every actor to end")
    for node in ("n1", "n2"):  # the others were stopped gracefully, not killed
        for other in KINDS:
            if (node, other) != ("n2", kind):
                assert actors.sigtermed(node, other) == actors.starts(node, other), (node, other)


# --- RaftReplicator: start() runs a node's supervisor, stop() ends it -------------------


def test_raft_replicator_checks_its_config_and_needs_start(tmp_path: Path) -> None:
    path = write_config(tmp_path, ["n1"])
    with pytest.raises(ConfigError, match="--node"):
        RaftReplicator(path, "n9")
    with pytest.raises(ConfigError, match="no such file"):
        RaftReplicator(tmp_path / "missing.toml", "n1")
    node = RaftReplicator(path, "n1")
    with pytest.raises(ClusterUnavailable, match="start"):
        node.replicate(b"x")
    node.stop()  # stopping a node that never started does nothing
    assert node.pid is None


APPLICATION = r"""
import json, sys, time
import sandzmq

node = sandzmq.RaftReplicator(sys.argv[1], "n1")
node.start()
deadline = time.monotonic() + 20
while None in (pids := node.status()["pids"]).values() and time.monotonic() < deadline:
    time.sleep(0.05)
print(json.dumps({"supervisor": node.pid, "actors": pids}), flush=True)
sys.stdin.read()  # until killed (or the test's end of the pipe closes)
"""


def read_line(proc: subprocess.Popen[bytes], timeout: float) -> bytes:
    """One line of proc's stdout, or AssertionError once `timeout` passes."""
    import selectors

    assert proc.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ)
        if not selector.select(timeout):
            raise AssertionError(f"no output from pid {proc.pid} within {timeout} s")
    return proc.stdout.readline()


@pytest.mark.integration
def test_raft_replicator_stops_its_node_when_the_application_is_killed(tmp_path: Path) -> None:
    """SIGKILL runs no atexit handler and no stop(): the node must notice by
    itself, or it runs on, orphaned, holding its ports and its data."""
    from actor_partner import write_one_node_config  # here: see test_raft_replicator_runs_a_real_node

    config = write_one_node_config(tmp_path, name="orphan")
    app = subprocess.Popen(
        [sys.executable, "-c", APPLICATION, str(config)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        cwd=tmp_path,
        start_new_session=True,
    )
    supervisor: int | None = None
    try:
        started = json.loads(read_line(app, 40))
        supervisor = started["supervisor"]
        pids = [supervisor, *started["actors"].values()]
        assert all(isinstance(pid, int) and alive(pid) for pid in pids), started
        app.kill()
        app.wait(5)
        wait_until(lambda: not any(alive(pid) for pid in pids), timeout=20, what="the orphaned node to stop")
    finally:
        if app.poll() is None:
            app.kill()
            app.wait()
        if supervisor is not None:  # spawn() made it a process group leader; its actors are in its group
            try:
                os.killpg(supervisor, signal.SIGKILL)
            except ProcessLookupError:
                pass


@pytest.mark.integration
def test_raft_replicator_runs_a_real_node(tmp_path: Path) -> None:
    from cluster import free_ports  # here: the stand-in actors import this module without tests/ on their path

    ports = free_ports(6)
    text = '[cluster]\nname = "rr"\nstate_machine = "kv"\ndata_dir = "data"\n'
    for i, node_id in enumerate(("n1", "n2", "n3")):
        text += f'\n[[nodes]]\nid = "{node_id}"\nraft = "tcp://127.0.0.1:{ports[i]}"\nclient = "tcp://127.0.0.1:{ports[3 + i]}"\n'
    path = tmp_path / "cluster.toml"
    path.write_text(text)
    nodes = [RaftReplicator(path, node_id) for node_id in ("n1", "n2", "n3")]
    groups: list[int] = []
    try:
        for node in nodes:
            node.start()
            node.start()  # idempotent
            assert node.pid is not None
            groups.append(node.pid)
        leader = wait_until(
            lambda: next((n for n in nodes if n.status()["role"] == "leader"), None), timeout=20, what="a leader"
        )
        assert leader.replicate(encode_put("k", "v"), timeout=5) == {"ok": True, "prev": None}
        assert leader.query(encode_get("k")) == {"ok": True, "value": "v"}
        follower = next(n for n in nodes if n is not leader)
        with pytest.raises(NotLeaderError) as caught:
            follower.replicate(encode_put("k", "w"), timeout=5)
        assert (caught.value.leader_id, caught.value.leader_address) == (leader.node_id, leader.address)
        wait_until(
            lambda: follower.query(encode_get("k"), consistency="local") == {"ok": True, "value": "v"},
            what="the follower to apply",
        )
    finally:
        for node in nodes:
            node.stop()
            node.stop()  # idempotent
    for pgid in groups:  # the supervisor and its actors are gone
        with pytest.raises(ProcessLookupError):
            os.killpg(pgid, 0)
