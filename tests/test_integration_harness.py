"""The integration harness itself (tests/cluster.py): config writing, ports,
process-group handling and clean-up, the history checker. None of these needs
a working node."""

from __future__ import annotations

import io
import os
import signal
import socket
import sys
import textwrap
import time

import pytest
from cluster import LIVE, RECORDING_SM, Cluster, HarnessError, group_members, history_problems, wait_for
from recording_sm import RecordingStateMachine

from sandzmq.config import load_config

pytestmark = pytest.mark.integration


def test_config_is_valid_and_complete(tmp_path):
    c = Cluster(tmp_path, nodes=5, raft_options={"heartbeat_ms": 40, "election_timeout_ms": [200, 400], "fsync": True})
    try:
        cfg = load_config(c.config_path)
        assert [n.id for n in cfg.nodes] == ["n1", "n2", "n3", "n4", "n5"]
        assert cfg.state_machine == RECORDING_SM
        assert cfg.name == "itest"
        assert cfg.raft.heartbeat_ms == 40 and cfg.raft.election_timeout_ms == (200, 400)
        addresses = [n.raft for n in cfg.nodes] + [n.client for n in cfg.nodes]
        assert len(set(addresses)) == 10
        assert all(a.startswith("tcp://127.0.0.1:") for a in addresses)
        for n in cfg.nodes:
            assert cfg.data_dir_for(n.id) == c.node_data_dir(n.id)
            assert c.wal_dir(n.id) == c.node_data_dir(n.id) / "wal"
            assert str(c.node_data_dir(n.id)).startswith(str(tmp_path))
        assert str(tmp_path / "tests") not in c.env["PYTHONPATH"]
        assert c.env["PYTHONPATH"].split(os.pathsep)[0].endswith("tests")
    finally:
        c.close()


def test_ports_are_free_distinct_and_bindable(tmp_path):
    clusters = [Cluster(tmp_path / str(i)) for i in range(3)]
    try:
        ports = [
            int(a.rsplit(":", 1)[1])
            for c in clusters
            for a in [*c.raft_addresses.values(), *c.client_addresses.values()]
        ]
        assert len(ports) == len(set(ports)) == 18
        for port in ports:
            with socket.socket() as s:
                s.bind(("127.0.0.1", port))
    finally:
        for c in clusters:
            c.close()


def test_state_machine_module_imports_in_a_node_environment(tmp_path):
    """The node processes import "recording_sm:RecordingStateMachine" with the env the harness gives them."""
    import subprocess

    c = Cluster(tmp_path)
    try:
        code = f"from sandzmq.state_machine import load_state_machine as l; print(type(l('{RECORDING_SM}', {{}})).__name__)"
        out = subprocess.run([sys.executable, "-c", code], env=c.env, cwd=tmp_path, capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == "RecordingStateMachine"
    finally:
        c.close()


_TREE = textwrap.dedent(
    """
    import subprocess, sys, time
    subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    print("tree up", flush=True)
    time.sleep(600)
    """
)


def _spawn_tree(c: Cluster, node: str) -> int:
    proc = c._spawn(node, [sys.executable, "-c", _TREE])
    wait_for(lambda: len(group_members(proc.pid)) == 3, 10, "a 3-process tree")
    return proc.pid


def test_kill9_kills_the_whole_group_and_close_kills_everything(tmp_path):
    c = Cluster(tmp_path)
    try:
        g1 = _spawn_tree(c, "n1")
        g2 = _spawn_tree(c, "n2")
        c.kill9("n1")
        assert group_members(g1) == []
        assert not c.is_running("n1") and c.is_running("n2")
        g1b = _spawn_tree(c, "n1")  # a restart is a new group
        assert g1b != g1
        c.sigstop("n2")
        assert "tree up" in c.log_text("n1")
        assert "==== harness: start #2 of n1" in c.log_text("n1")
    finally:
        c.close()
    assert group_members(g1b) == [] and group_members(g2) == []  # the SIGSTOPped group too
    assert c not in LIVE
    with pytest.raises(HarnessError):
        c.start("n1")


def test_stop_sends_sigterm_and_reports_the_exit_status(tmp_path):
    c = Cluster(tmp_path)
    try:
        script = "import signal, sys, time\nsignal.signal(signal.SIGTERM, lambda *a: sys.exit(0))\ntime.sleep(600)"
        proc = c._spawn("n1", [sys.executable, "-c", script])
        time.sleep(0.5)  # let the interpreter install its handler (this is a harness self-test)
        assert c.stop("n1") == 0
        assert proc.returncode == 0
        # A process that ignores SIGTERM: stop() kills it and says so.
        proc = c._spawn(
            "n2",
            [
                sys.executable,
                "-c",
                "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nprint('rea' + 'dy', flush=True)\ntime.sleep(600)",
            ],
        )
        wait_for(lambda: "ready" in c.log_text("n2"), 10, "n2 ready")
        with pytest.raises(HarnessError, match="did not exit"):
            c.stop("n2", timeout=1)
        assert proc.returncode == -signal.SIGKILL
    finally:
        c.close()


def test_tail_logs_names_every_node(tmp_path):
    c = Cluster(tmp_path)
    try:
        c._spawn("n3", [sys.executable, "-c", "print('hello from n3')"]).wait(10)
        text = c.tail_logs()
        assert "----- n1 (never started)" in text
        assert "----- n3 (exited 0)" in text and "hello from n3" in text
    finally:
        c.close()


def test_history_checker():
    acked = [b"a", b"b", b"c"]
    assert history_problems([b"a", b"b", b"c"], acked) == []
    assert history_problems([b"a", b"x", b"b", b"c"], acked, maybe=[b"x"]) == []
    assert "more than once" in history_problems([b"a", b"b", b"b", b"c"], acked)[0]
    assert "missing" in history_problems([b"a", b"c"], acked)[0]
    assert "out of order" in history_problems([b"b", b"a", b"c"], acked)[0]
    assert "nobody sent" in history_problems([b"a", b"b", b"c", b"z"], acked)[0]
    assert "ClusterUnavailable" in " ".join(
        history_problems([b"a", b"b", b"c", b"r"], acked, maybe=[b"r"], absent=[b"r"])
    )
    assert history_problems([b"a", b"b", b"c"], acked, positions={b"a": 0, b"c": 2}) == []
    assert "index apply() returned" in history_problems([b"a", b"b", b"c"], acked, positions={b"a": 1})[0]
    # prefix: other writers' commands are ignored, positions use the whole list
    assert (
        history_problems([b"o-1", b"w-1", b"o-2", b"w-2"], [b"w-1", b"w-2"], positions={b"w-2": 3}, prefix=b"w-") == []
    )


def test_recording_state_machine():
    sm = RecordingStateMachine()
    assert [sm.apply(c) for c in (b"x", b"y", b"x")] == [0, 1, 2]
    assert sm.query(b"all") == [b"x", b"y", b"x"] and sm.query(b"count") == 3
    assert sm.query(b"tail:2") == [b"y", b"x"]
    sink = io.BytesIO()
    sm.snapshot(sink)
    other = RecordingStateMachine()
    other.apply(b"junk")
    other.restore(io.BytesIO(sink.getvalue()))
    assert other.query(b"all") == [b"x", b"y", b"x"]
    assert other.apply(b"z") == 3
