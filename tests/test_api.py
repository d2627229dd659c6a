"""The public Python API (SPEC 6): exports, errors, and NoOpReplicator's contract."""

from __future__ import annotations

import importlib.metadata
import io
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, BinaryIO

import pytest
from sandzmq.statemachines.kv import KVStateMachine, encode_cas, encode_get, encode_list, encode_put

import sandzmq
from sandzmq import (
    ClusterUnavailable,
    ConfigError,
    NoOpReplicator,
    NotLeaderError,
    ReplicationTimeout,
    SandzmqError,
    StateMachine,
)
from sandzmq.state_machine import load_state_machine


class Counter(StateMachine):
    """Adds each command's integer to a total. apply() reads, yields the GIL, then
    writes: without the replicator's lock, concurrent calls lose increments."""

    def __init__(self, start: int = 0) -> None:
        self.total = start
        self.applied = 0

    def apply(self, command: bytes) -> Any:
        total = self.total
        time.sleep(0)
        self.total = total + int(command)
        self.applied += 1
        return self.total

    def query(self, query: bytes) -> Any:
        return {"total": self.total, "applied": self.applied}[query.decode()]

    def snapshot(self, sink: BinaryIO) -> None:
        sink.write(f"{self.total} {self.applied}".encode())

    def restore(self, source: BinaryIO) -> None:
        self.total, self.applied = map(int, source.read().split())


class Gate(StateMachine):
    """Blocks in apply() until released, to hold the replicator busy."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()

    def apply(self, command: bytes) -> Any:
        self.entered.set()
        self.release.wait(5)
        return command

    def query(self, query: bytes) -> Any:
        return query

    def snapshot(self, sink: BinaryIO) -> None:
        pass

    def restore(self, source: BinaryIO) -> None:
        pass


@pytest.fixture
def kv() -> Iterator[NoOpReplicator]:
    with NoOpReplicator(KVStateMachine()) as replicator:
        yield replicator


# --- the package's surface -----------------------------------------------------


def test_public_names() -> None:
    expected = {
        "StateMachine", "Replicator", "NoOpReplicator", "RaftReplicator", "Client",
        "SandzmqError", "NotLeaderError", "ReplicationTimeout", "ClusterUnavailable",
        "ConfigError", "__version__",
    }  # fmt: skip
    assert set(sandzmq.__all__) == expected
    for name in expected:
        assert getattr(sandzmq, name) is not None
    assert sandzmq.__version__ == importlib.metadata.version("sandzmq")


def test_replicators_share_one_contract() -> None:
    assert issubclass(sandzmq.NoOpReplicator, sandzmq.Replicator)
    assert issubclass(sandzmq.RaftReplicator, sandzmq.Replicator)


def test_interfaces_are_abstract() -> None:
    with pytest.raises(TypeError):
        StateMachine()  # type: ignore[abstract]
    with pytest.raises(TypeError):
        sandzmq.Replicator()  # type: ignore[abstract]

    class ApplyOnly(StateMachine):
        def apply(self, command: bytes) -> Any:
            return None

    with pytest.raises(TypeError):
        ApplyOnly()  # type: ignore[abstract]


# --- errors --------------------------------------------------------------------


@pytest.mark.parametrize("error", [NotLeaderError, ReplicationTimeout, ClusterUnavailable, ConfigError])
def test_errors_derive_from_sandzmq_error(error: type[Exception]) -> None:
    assert issubclass(error, SandzmqError)
    assert issubclass(SandzmqError, Exception)


def test_the_three_replication_errors_are_distinct() -> None:
    kinds = [NotLeaderError, ReplicationTimeout, ClusterUnavailable]
    for kind in kinds:
        assert [issubclass(kind, other) for other in kinds].count(True) == 1


def test_not_leader_error_carries_the_leader() -> None:
    error = NotLeaderError("n2", "tcp://10.0.0.2:7102")
    assert (error.leader_id, error.leader_address) == ("n2", "tcp://10.0.0.2:7102")
    assert "n2" in str(error) and "tcp://10.0.0.2:7102" in str(error)


def test_not_leader_error_when_the_leader_is_unknown() -> None:
    error = NotLeaderError()
    assert error.leader_id is None and error.leader_address is None
    assert "unknown" in str(error)
    with pytest.raises(SandzmqError):
        raise error


def test_config_error_is_one_line() -> None:
    error = ConfigError("c.toml", "nodes[0].raft", "bad\naddress")
    assert str(error) == "c.toml: nodes[0].raft: bad address"
    assert (error.path, error.key, error.problem) == ("c.toml", "nodes[0].raft", "bad\naddress")
    assert str(ConfigError(Path("dir/c.toml"), "-", "no such file")) == "dir/c.toml: -: no such file"


# --- NoOpReplicator --------------------------------------------------------------


def test_replicate_returns_apply_result(kv: NoOpReplicator) -> None:
    assert kv.replicate(encode_put("a", "1")) == {"ok": True, "prev": None}
    assert kv.replicate(encode_cas("a", "1", "2"), timeout=1.0) == {"ok": True, "prev": "1"}
    assert kv.query(encode_get("a")) == {"ok": True, "value": "2"}


@pytest.mark.parametrize("consistency", ["linearizable", "lease", "local"])
def test_every_consistency_level_reads_the_state(kv: NoOpReplicator, consistency: str) -> None:
    kv.replicate(encode_put("a", "1"))
    assert kv.query(encode_get("a"), consistency=consistency)["value"] == "1"


def test_unknown_consistency_is_rejected(kv: NoOpReplicator) -> None:
    with pytest.raises(ValueError, match="linearizable"):
        kv.query(encode_get("a"), consistency="strong")


def test_commands_and_queries_must_be_bytes(kv: NoOpReplicator) -> None:
    with pytest.raises(TypeError):
        kv.replicate("put a 1")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        kv.query(bytearray(encode_get("a")))  # type: ignore[arg-type]


def test_only_a_state_machine_can_be_replicated() -> None:
    with pytest.raises(TypeError):
        NoOpReplicator({})  # type: ignore[arg-type]


def test_lifecycle() -> None:
    counter = Counter()
    replicator = NoOpReplicator(counter)
    with pytest.raises(ClusterUnavailable, match="start"):
        replicator.replicate(b"1")
    with pytest.raises(ClusterUnavailable):
        replicator.query(b"total")
    replicator.start()
    replicator.start()
    assert replicator.replicate(b"5") == 5
    replicator.stop()
    replicator.stop()
    with pytest.raises(ClusterUnavailable):
        replicator.replicate(b"1")
    assert counter.applied == 1  # the refused command was not applied
    replicator.start()
    assert replicator.replicate(b"2") == 7  # the state survives a restart


def test_custom_state_machine_with_many_threads() -> None:
    threads, per_thread = 8, 200
    with NoOpReplicator(Counter()) as replicator:
        with ThreadPoolExecutor(threads) as pool:
            results = list(pool.map(lambda _: replicator.replicate(b"1"), range(threads * per_thread)))
        total = replicator.query(b"total", consistency="local")
    assert total == threads * per_thread
    # One total order: every command saw a distinct state.
    assert sorted(results) == list(range(1, threads * per_thread + 1))


def test_replicate_times_out_while_the_state_machine_is_busy() -> None:
    gate = Gate()
    with NoOpReplicator(gate) as replicator, ThreadPoolExecutor(1) as pool:
        busy = pool.submit(replicator.replicate, b"first")
        assert gate.entered.wait(5)
        started = time.monotonic()
        with pytest.raises(ReplicationTimeout):
            replicator.replicate(b"second", timeout=0.05)
        assert time.monotonic() - started < 2
        gate.release.set()
        assert busy.result(5) == b"first"
        assert replicator.replicate(b"third", timeout=1) == b"third"


def test_snapshot_restore_round_trip_through_the_replicator() -> None:
    original = KVStateMachine()
    with NoOpReplicator(original) as replicator:
        for i in range(20):
            replicator.replicate(encode_put(f"key{i}", f"value{i}"))
        replicator.replicate(encode_cas("key3", "value3", b"changed"))
        queries = [encode_list(), encode_list("key1"), encode_get("key3"), encode_get("key19"), encode_get("absent")]
        before = [replicator.query(q) for q in queries]
    sink = io.BytesIO()
    original.snapshot(sink)
    fresh = KVStateMachine()
    fresh.restore(io.BytesIO(sink.getvalue()))
    with NoOpReplicator(fresh) as replicator:
        assert [replicator.query(q) for q in queries] == before
        assert replicator.replicate(encode_put("key3", "again"))["prev"] == b"changed"


def test_custom_state_machine_snapshot_round_trip() -> None:
    counter = Counter()
    with NoOpReplicator(counter) as replicator:
        for n in (3, 4, 5):
            replicator.replicate(str(n).encode())
    sink = io.BytesIO()
    counter.snapshot(sink)
    fresh = Counter()
    fresh.restore(io.BytesIO(sink.getvalue()))
    with NoOpReplicator(fresh) as replicator:
        assert (replicator.query(b"total"), replicator.query(b"applied")) == (12, 3)


# --- naming a state machine in a config ----------------------------------------------


def test_load_state_machine_from_module_and_class(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "user_machines.py").write_text(
        "import sandzmq\n"
        "class Outer:\n"
        "    class Tally(sandzmq.StateMachine):\n"
        "        def __init__(self, start=0): self.n = start\n"
        "        def apply(self, command): self.n += 1; return self.n\n"
        "        def query(self, query): return self.n\n"
        "        def snapshot(self, sink): pass\n"
        "        def restore(self, source): pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        machine = load_state_machine("user_machines:Outer.Tally", {"start": 41})
    finally:
        sys.modules.pop("user_machines", None)
    with NoOpReplicator(machine) as replicator:
        assert replicator.replicate(b"x") == 42


@pytest.mark.parametrize(
    "spec, options, error, message",
    [
        ("posix", {}, ValueError, "later release"),
        ("kv2", {}, ValueError, "module:Class"),
        ("no_such_module_anywhere:Thing", {}, ImportError, "no_such_module_anywhere"),
        ("sandzmq.statemachines.kv:Missing", {}, ImportError, "Missing"),
        ("collections:OrderedDict", {}, TypeError, "not a subclass of sandzmq.StateMachine"),
        ("sandzmq.statemachines.kv:encode_put", {}, TypeError, "not a subclass"),
        ("kv", {"unexpected": 1}, TypeError, "unexpected"),
    ],
)
def test_load_state_machine_errors(spec: str, options: dict[str, Any], error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        load_state_machine(spec, options)
