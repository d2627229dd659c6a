"""The benchmark library (sandzmq.benchmark): pre-encoded commands, the
batching ratios from the leader's counters, the memory sampling, and a
whole run against a fake leader, in process. The command that prints it is
tested in tests/test_bench_cli.py and, as a shell sees it, in tests/test_cli.py."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sandzmq.benchmark import (
    BenchOptions,
    ClusterStarted,
    ClusterStopped,
    Event,
    LeaderFound,
    NoLeaderError,
    Progress,
    cluster,
    load,
    processes,
    report,
    run_bench,
    watch,
)
from sandzmq.protocol import ClientReply, ClientSubmit, ReplyStatus, StatusReply, StatusRequest
from sandzmq.statemachines.kv import encode_put
from test_client import CLUSTER, FakeNode, commands, unused_address

from sandzmq.config import load_config
from sandzmq.errors import SandzmqError

STATS = {"append_messages": 100, "append_entries": 6400, "fsyncs": 50, "fsync_entries": 6000}


def kv_config(tmp_path: Path, state_machine: str = "kv"):
    path = tmp_path / "c.toml"
    path.write_text(
        f'[cluster]\nname = "t"\nstate_machine = "{state_machine}"\ndata_dir = "data"\n'
        '[[nodes]]\nid = "n1"\nraft = "tcp://127.0.0.1:7001"\nclient = "tcp://127.0.0.1:7002"\n'
        '[[nodes]]\nid = "n2"\nraft = "tcp://192.0.2.1:7001"\nclient = "tcp://192.0.2.1:7002"\n'
    )
    return load_config(path)


def test_commands_are_encoded_once_and_cycle_over_the_key_set(tmp_path: Path) -> None:
    make = load.command_factory(kv_config(tmp_path), 3, 16)
    first = make(5)
    assert first is make(5 + load.KEYS_PER_CLIENT)  # the same object: indexed, not re-encoded
    value = first[-16:]
    assert first == encode_put("bench/3/5", value)
    assert len({make(n) for n in range(2 * load.KEYS_PER_CLIENT)}) == load.KEYS_PER_CLIENT


def test_large_values_shrink_the_key_set_to_the_budget(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(load, "ENCODED_BUDGET", 10 * 1000)
    make = load.command_factory(kv_config(tmp_path), 0, 1000)
    assert len({make(n) for n in range(100)}) == 10


def test_other_state_machines_get_raw_bytes(tmp_path: Path) -> None:
    config = kv_config(tmp_path, state_machine="recording_sm:RecordingStateMachine")
    assert len(load.command_factory(config, 0, 64)(1)) == 64


def test_batching_ratios_over_the_window() -> None:
    after = {"append_messages": 110, "append_entries": 7040, "fsyncs": 55, "fsync_entries": 6800}
    assert watch.batching_ratios(STATS, after) == {"entries_per_append": 64.0, "entries_per_fsync": 160.0}


@pytest.mark.parametrize(
    "before,after",
    [
        (None, STATS),  # no stats at the start (an older node, or no answer)
        (STATS, None),
        (STATS, STATS),  # nothing sent in the window: no ratio, not a division by zero
        (STATS, {k: v // 2 for k, v in STATS.items()}),  # counters went back: the actor restarted
        ({"fsyncs": 1}, {"fsyncs": 2}),  # counters missing
    ],
)
def test_batching_ratios_are_null_when_they_mean_nothing(before, after) -> None:
    assert watch.batching_ratios(before, after) == {"entries_per_append": None, "entries_per_fsync": None}


def test_parse_vmrss() -> None:
    text = "Name:\tpython\nVmPeak:\t  300000 kB\nVmRSS:\t   51200 kB\nThreads:\t4\n"
    assert processes.parse_vmrss_mib(text) == 50.0
    assert processes.parse_vmrss_mib("Name:\tkthreadd\nThreads:\t1\n") is None


def test_read_rss_of_this_process_and_of_a_gone_one() -> None:
    assert processes.read_rss_mib(os.getpid()) > 1.0
    assert processes.read_rss_mib(2**31 - 1) is None


@pytest.mark.parametrize(
    "address,host",
    [("tcp://127.0.0.1:7000", "127.0.0.1"), ("tcp://[::1]:7000", "::1"), ("tcp://db-3.example:9", "db-3.example")],
)
def test_address_host(address: str, host: str) -> None:
    assert processes.address_host(address) == host


def test_local_hosts() -> None:
    assert processes.is_local_host("127.0.0.1") and processes.is_local_host("localhost")
    assert not processes.is_local_host("192.0.2.1")  # TEST-NET-1: never an address of this machine


def test_only_local_sandzmq_processes_are_sampled(tmp_path: Path) -> None:
    config = kv_config(tmp_path)
    stand_in = "import sys; print('up', flush=True); sys.stdin.read()"
    with subprocess.Popen(
        [sys.executable, "-c", stand_in, "sandzmq-stand-in"], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    ) as actor:
        # Popen returns during the exec, before /proc/PID/cmdline is filled in: wait for the child to speak.
        assert actor.stdout.readline() == b"up\n"
        reports = [
            ("n1", {"pids": {"raft": actor.pid, "log": 2**31 - 1, "apply": None}}),
            ("n2", {"pids": {"raft": actor.pid, "log": actor.pid, "apply": actor.pid}}),  # another host
        ]
        try:
            assert processes.local_actor_pids(config, reports) == {"n1": {"raft": actor.pid}}
        finally:
            actor.stdin.close()


def test_max_rss() -> None:
    assert report.max_rss({}) is None
    assert report.max_rss({"n1": {"raft": 40.0, "log": 30.0}, "n2": {"apply": 55.5}}) == (55.5, "n2", "apply")


# --- a whole run, in process, against a fake leader ------------------------------------


def leader_answer() -> Callable[[FakeNode, Any], list[Any]]:
    """A leader that commits everything, and whose batching counters grow by
    the same step at every status request: 64 entries per AppendEntries and
    160 per fsync, however many requests the window holds."""
    stats = {"append_messages": 0, "append_entries": 0, "fsyncs": 0, "fsync_entries": 0}
    step = {"append_messages": 10, "append_entries": 640, "fsyncs": 5, "fsync_entries": 800}

    def answer(node: FakeNode, msg: Any) -> list[Any]:
        if isinstance(msg, StatusRequest):
            for key, inc in step.items():
                stats[key] += inc
            report = {"id": "n1", "role": "leader", "term": 1, "leader": "n1", "stats": dict(stats)}
            return [StatusReply(msg.request_id, report)]
        if isinstance(msg, ClientSubmit):
            return [ClientReply.of([(rid, int(ReplyStatus.OK), None) for rid, _ in commands(msg)])]
        return []

    return answer


def one_node_config(tmp_path: Path, address: str):
    path = tmp_path / "one.toml"
    path.write_text(
        f'[cluster]\nname = "{CLUSTER}"\nstate_machine = "kv"\ndata_dir = "data"\n'
        f'[[nodes]]\nid = "n1"\nraft = "{unused_address()}"\nclient = "{address}"\n'
    )
    return load_config(path)


def test_a_run_returns_the_report_and_reports_its_progress(tmp_path: Path) -> None:
    leader = FakeNode(leader_answer(), "n1")
    events: list[Event] = []
    try:
        options = BenchOptions(clients=2, inflight=4, size=16, duration=1.6, warmup=0.5)
        result = run_bench(one_node_config(tmp_path, leader.address), options, on_event=events.append)
    finally:
        leader.stop()
    assert events[0] == LeaderFound("n1")
    progress = events[1:]
    assert progress and all(isinstance(e, Progress) for e in progress)  # not spawned: no cluster events
    assert progress[0].measured_s is None and progress[0].ops_per_s > 0  # the first second is warm-up
    assert any(e.measured_s is not None for e in progress)
    assert result["ops"] > 0 and result["errors"] == 0 and result["leader"] == "n1"
    assert (result["clients"], result["size"], result["duration_s"], result["nodes"], result["spawned"]) == (
        2,
        16,
        1.6,
        1,
        False,
    )
    assert (result["entries_per_append"], result["entries_per_fsync"]) == (64.0, 160.0)
    assert list(result)[:9] == [
        "ops_per_s",
        "ops",
        "errors",
        "latency_ms",
        "clients",
        "size",
        "duration_s",
        "nodes",
        "fsync",
    ]


def test_no_leader_in_a_running_cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cluster, "RUNNING_LEADER_TIMEOUT", 0.2)
    events: list[Event] = []
    with pytest.raises(NoLeaderError, match="no node became leader within 0.2 s$") as caught:
        run_bench(one_node_config(tmp_path, unused_address()), BenchOptions(duration=1.0), on_event=events.append)
    assert caught.value.log_path is None and events == []


class DeadSupervisor:
    """What spawn() returns for a cluster that exits at once."""

    pid = 4242

    def poll(self) -> int:
        return 1


def test_a_spawned_cluster_is_stopped_also_when_it_never_leads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stopped = []
    monkeypatch.setattr(cluster, "spawn", lambda path, **kw: DeadSupervisor())
    monkeypatch.setattr(cluster, "terminate", lambda proc: stopped.append(proc) or 1)
    config = one_node_config(tmp_path, unused_address())
    events: list[Event] = []
    with pytest.raises(
        NoLeaderError, match="the cluster stopped before it elected a leader; see .*bench-cluster.log"
    ) as caught:
        run_bench(config, BenchOptions(spawn=True, duration=1.0), on_event=events.append)
    log_path = config.data_dir / "bench-cluster.log"
    assert caught.value.log_path == log_path and log_path.exists()
    assert events == [ClusterStarted(4242, log_path), ClusterStopped(1)]
    assert len(stopped) == 1


@pytest.mark.parametrize(
    "settings", [{"clients": 0}, {"inflight": 0}, {"size": -1}, {"duration": 0}, {"warmup": -1}, {"timeout": 0}]
)
def test_options_that_measure_nothing_are_refused(settings: dict[str, Any]) -> None:
    with pytest.raises(SandzmqError):
        BenchOptions(**settings)
