"""The `sandzmq` command line (SPEC 4, 5): error contract, status JSON, help, bench.

Commands run as real processes through the console script, because what is
tested is what a shell sees: stdout, stderr and the exit status. Nodes are
FakeNodes (tests/test_client.py) where a command needs someone to answer.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sandzmq.protocol import ClientReply, ClientSubmit, ReplyStatus, StatusReply, StatusRequest
from test_client import FakeNode, commands, unused_address

SPEC_NODE_KEYS = [
    "id", "role", "term", "leader", "commit_index", "applied_index",
    "last_index", "snapshot_index", "dropped", "pids",
]  # fmt: skip
SPEC_BENCH_KEYS = {"ops_per_s", "ops", "errors", "latency_ms", "clients", "size", "duration_s", "nodes", "fsync"}


def sandzmq_command() -> list[str]:
    script = Path(sys.executable).parent / "sandzmq"
    if script.exists():
        return [str(script)]
    found = shutil.which("sandzmq")
    return [found] if found else [sys.executable, "-m", "sandzmq.cli.main"]


def run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*sandzmq_command(), *args], capture_output=True, text=True, timeout=timeout)


def config_text(nodes: list[tuple[str, str]], cluster: str = "test", extra: str = "") -> str:
    text = f'[cluster]\nname = "{cluster}"\nstate_machine = "kv"\ndata_dir = "data"\n{extra}'
    for node_id, client in nodes:
        text += f'\n[[nodes]]\nid = "{node_id}"\nraft = "{unused_address()}"\nclient = "{client}"\n'
    return text


@pytest.fixture
def config(tmp_path: Path) -> Callable[..., Path]:
    def write(nodes: list[tuple[str, str]] | None = None, text: str | None = None, **kwargs: Any) -> Path:
        path = tmp_path / "cluster.toml"
        if nodes is None:
            nodes = [(f"n{i}", unused_address()) for i in (1, 2, 3)]
        path.write_text(text if text is not None else config_text(nodes, **kwargs))
        return path

    return write


@pytest.fixture
def fakes() -> Iterator[Callable[..., FakeNode]]:
    made: list[FakeNode] = []

    def make(answer: Any, node_id: str) -> FakeNode:
        node = FakeNode(answer, node_id)
        made.append(node)
        return node

    yield make
    for node in made:
        node.stop()


def assert_one_line_error(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("sandzmq: ")
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


# --- config errors: one line, exit 2, no traceback -------------------------------------

COMMANDS = [["start"], ["status"], ["status", "--json"], ["bench", "--duration", "1"], ["bench", "--spawn"]]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_a_missing_file(command: list[str], tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    assert_one_line_error(run(*command, "--config", str(missing)), str(missing), "no such file")


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_an_unknown_key_names_the_file_and_the_key(command: list[str], config) -> None:
    path = config(extra="\n[raft]\nheartbeat = 5\n")
    assert_one_line_error(run(*command, "--config", str(path)), str(path), "raft.heartbeat", "unknown key")


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_a_bad_address_names_the_node(command: list[str], config) -> None:
    path = config([("n1", "http://127.0.0.1:1")])
    assert_one_line_error(run(*command, "--config", str(path)), str(path), "nodes[0].client")


def test_invalid_toml(config) -> None:
    path = config(text="[cluster\nname = ")
    assert_one_line_error(run("status", "--config", str(path)), str(path), "not valid TOML")


def test_start_with_an_unknown_node(config) -> None:
    path = config()
    assert_one_line_error(run("start", "--config", str(path), "--node", "n1", "--node", "n9"), "--node", "'n9'")


# --- status ------------------------------------------------------------------------


def test_status_json_with_no_node_running(config) -> None:
    path = config()
    result = run("status", "--config", str(path), "--json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert list(document) == ["nodes"]
    assert [n["id"] for n in document["nodes"]] == ["n1", "n2", "n3"]
    for node in document["nodes"]:
        assert list(node) == SPEC_NODE_KEYS
        assert node["role"] == "unreachable"
        assert all(node[key] is None for key in SPEC_NODE_KEYS if key not in ("id", "role"))


FULL_STATUS = {
    "id": "n1", "role": "leader", "term": 4, "leader": "n1", "commit_index": 120,
    "applied_index": 119, "last_index": 121, "snapshot_index": 100, "dropped": 3,
    "pids": {"raft": 101, "log": 102, "apply": 103},
    "followers": {"n2": {"match": 120, "next": 122, "state": "replicate", "inflight": 1, "lag": 1}},
    "drops": {"malformed": 2, "cluster": 1, "total": 3},
}  # fmt: skip


def status_answer(report: dict[str, Any]) -> Callable[[FakeNode, Any], list[Any]]:
    def answer(node: FakeNode, msg: Any) -> list[Any]:
        if isinstance(msg, StatusRequest):
            return [StatusReply(msg.request_id, report)]
        if isinstance(msg, ClientSubmit):
            return [ClientReply.of([(rid, int(ReplyStatus.OK), {"ok": True}) for rid, _ in commands(msg)])]
        return []

    return answer


def test_status_json_has_exactly_the_spec_keys(config, fakes) -> None:
    leader = fakes(status_answer(FULL_STATUS), "n1")
    follower = fakes(status_answer({"id": "n2", "role": "follower", "term": 4, "leader": "n1"}), "n2")
    path = config([("n1", leader.address), ("n2", follower.address), ("n3", unused_address())])
    result = run("status", "--config", str(path), "--json")
    assert result.returncode == 0, result.stderr
    n1, n2, n3 = json.loads(result.stdout)["nodes"]
    assert list(n1) == list(n2) == list(n3) == SPEC_NODE_KEYS
    assert n1 == {k: FULL_STATUS[k] for k in SPEC_NODE_KEYS}  # followers and drops stay out
    assert (n2["role"], n2["leader"], n2["commit_index"]) == ("follower", "n1", None)
    assert n2["pids"] == {"raft": None, "log": None, "apply": None}
    assert n3["role"] == "unreachable" and n3["pids"] is None


def test_status_human_view_shows_the_details(config, fakes) -> None:
    leader = fakes(status_answer(FULL_STATUS), "n1")
    path = config([("n1", leader.address), ("n2", unused_address())])
    result = run("status", "--config", str(path))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split()[:3] == ["NODE", "ROLE", "TERM"]
    assert lines[1].split()[:4] == ["n1", "leader", "4", "n1"]
    assert "101/102/103" in lines[1]
    assert lines[2].split()[:2] == ["n2", "unreachable"]
    assert "n2: match 120" in result.stdout and "lag 1" in result.stdout
    assert "malformed 2" in result.stdout


# --- help and the command set ------------------------------------------------------


@pytest.mark.parametrize(
    "command,options",
    [
        ("start", ["--config", "--node"]),
        ("status", ["--config", "--json"]),
        ("bench", ["--config", "--spawn", "--clients", "--size", "--duration", "--json"]),
    ],
)
def test_help(command: str, options: list[str]) -> None:
    result = run(command, "--help")
    assert result.returncode == 0, result.stderr
    for option in options:
        assert option in result.stdout


def test_top_level_help_lists_the_commands() -> None:
    result = run("--help")
    assert result.returncode == 0
    for command in ("start", "status", "bench"):
        assert command in result.stdout


# --- bench against a fake leader -----------------------------------------------------


def test_bench_reports_the_spec_json(config, fakes, tmp_path: Path) -> None:
    leader = fakes(status_answer(FULL_STATUS), "n1")
    path = config([("n1", leader.address), ("n2", unused_address()), ("n3", unused_address())])
    out = tmp_path / "bench.json"
    result = run(
        "bench", "--config", str(path), "--clients", "2", "--inflight", "8", "--size", "64",
        "--duration", "1", "--warmup", "0.2", "--json", str(out),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    assert SPEC_BENCH_KEYS <= set(report)
    assert set(report["latency_ms"]) == {"p50", "p90", "p99", "max"}
    assert report["ops"] > 0 and report["errors"] == 0
    assert (report["clients"], report["size"], report["duration_s"], report["nodes"], report["fsync"]) == (
        2,
        64,
        1.0,
        3,
        True,
    )
    assert report["latency_ms"]["p50"] <= report["latency_ms"]["p99"] <= report["latency_ms"]["max"]
    assert "ops/s" in result.stdout and "p99" in result.stdout
    assert "fsync on" in result.stderr and "n1 leads" in result.stderr
    # The commands were real kv puts of 64-byte values.
    (_, payload), *_ = commands(leader.messages(ClientSubmit)[0])
    assert payload.command.startswith(b"\x93\xa3put")


def test_a_missing_option_is_a_usage_error() -> None:
    # Usage errors keep the option parser's format, also without a traceback.
    result = run("bench")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "--config" in result.stderr


def growing_stats_answer(report: dict[str, Any]) -> Callable[[FakeNode, Any], list[Any]]:
    """A leader whose batching counters grow by the same step at every status
    request: whatever the number of requests in the window, 64 entries per
    AppendEntries and 160 per fsync."""
    stats = {"append_messages": 0, "append_entries": 0, "fsyncs": 0, "fsync_entries": 0}
    step = {"append_messages": 10, "append_entries": 640, "fsyncs": 5, "fsync_entries": 800}
    plain = status_answer(report)

    def answer(node: FakeNode, msg: Any) -> list[Any]:
        if isinstance(msg, StatusRequest):
            for key, inc in step.items():
                stats[key] += inc
            return [StatusReply(msg.request_id, {**report, "stats": dict(stats)})]
        return plain(node, msg)

    return answer


def bench_against(
    answer: Any, config, fakes, tmp_path: Path
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    """A short `sandzmq bench` against one fake leader: the run and its --json report."""
    leader = fakes(answer, "n1")
    path = config([("n1", leader.address)])
    out = tmp_path / "bench.json"
    result = run("bench", "--config", str(path), "--clients", "1", "--inflight", "4", "--duration", "0.5",
                 "--warmup", "0.2", "--json", str(out))  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result, json.loads(out.read_text())


def test_bench_reports_entries_per_append_and_per_fsync(config, fakes, tmp_path: Path) -> None:
    result, report = bench_against(growing_stats_answer(FULL_STATUS), config, fakes, tmp_path)
    assert (report["entries_per_append"], report["entries_per_fsync"]) == (64.0, 160.0)
    assert report["leader"] == "n1"
    assert report["max_rss_mib"] == {}  # the fake's pids 101-103 are no sandzmq actors
    assert "64.0 entries per AppendEntries, 160.0 entries per fsync" in result.stdout
    assert "max RSS: -" in result.stdout


def test_bench_without_leader_stats_reports_null(config, fakes, tmp_path: Path) -> None:
    result, report = bench_against(status_answer(FULL_STATUS), config, fakes, tmp_path)
    assert report["entries_per_append"] is None and report["entries_per_fsync"] is None
    assert "batching: -" in result.stdout
