"""The log-store actor over real ipc:// sockets and a real, fsync'd WAL.

The test plays the raft actor exactly as it will be: an Inbox (ROUTER) at
layout.raft_ipc receives the log-store's answers, and a DEALER with identity
"raft" sends it LogWrites and LogSyncs. Every wait polls with a deadline.
"""

from __future__ import annotations

import errno
import os
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pykka
import pytest
from actor_partner import DEADLINE_S, write_one_node_config
from actor_partner import FakeRaft as PartnerRaft
from sandzmq.actors.layout import NodeLayout
from sandzmq.actors.log_store import LogStoreActor
from sandzmq.actors.process import EXIT_FAILURE, EXIT_REFUSED, requested_exit
from sandzmq.protocol import ApplyState, LogDurable, LogGap, LogState, LogSync, LogWrite
from sandzmq.raft.messages import Entry, EntryKind, HardState
from sandzmq.storage import StorageError, WalCorruptError, WalReader, WriteAheadLog
from sandzmq.transport import Envelope, context, terminate_context

from sandzmq.config import ClusterConfig, load_config

# ----------------------------------------------------------------------------- helpers


def write_config(tmp_path: Path, *, fsync: bool = True) -> Path:
    return write_one_node_config(tmp_path, name="logtest", fsync=fsync)


class FakeRaft(PartnerRaft):
    """The raft actor's side of the log-store protocol."""

    def __init__(self, layout: NodeLayout, envelope: Envelope) -> None:
        super().__init__(layout, envelope, "log")

    def durable_until(self, write_id: int) -> list[LogDurable]:
        """Every LogDurable up to the one that covers `write_id`."""
        acks = [self.expect(LogDurable)]
        while acks[-1].write_id < write_id:
            acks.append(self.expect(LogDurable))
        return acks

    def state(self, nonce: int, next_write_id: int = 1) -> LogState:
        """Ask for the state, announcing `next_write_id` as the next write (epoch 0)."""
        self.send(LogSync(nonce, 0, next_write_id))
        while True:
            msg = self.receive()
            if isinstance(msg, LogState) and msg.nonce == nonce:
                return msg


class Node:
    """A config, its layout, the fake raft actor, and the log-store actors started (always stopped)."""

    def __init__(self, tmp_path: Path) -> None:
        self.config: ClusterConfig = load_config(write_config(tmp_path))
        self.layout = NodeLayout.of(self.config, "n1")
        self.envelope = Envelope(self.config.name)
        self.refs: list[pykka.ActorRef[Any]] = []
        self.raft = FakeRaft(self.layout, self.envelope)

    def start(self, cls: type[LogStoreActor] = LogStoreActor) -> pykka.ActorRef[Any]:
        ref = cls.start(self.config, "n1")
        self.refs.append(ref)
        return ref

    def stop(self, ref: pykka.ActorRef[Any]) -> None:
        ref.stop(block=True, timeout=DEADLINE_S)

    def wal(self) -> WalReader:
        return WalReader(self.layout.wal_dir)

    def close(self) -> None:
        for ref in self.refs:
            if ref.is_alive():
                ref.stop(block=True, timeout=DEADLINE_S)
        self.raft.close()


@pytest.fixture(autouse=True)
def fresh_context() -> Iterator[None]:
    terminate_context()
    yield
    leaked = [s for s in list(getattr(context(), "_sockets", ())) if not s.closed]
    terminate_context()
    assert not leaked, f"sockets left open: {leaked}"


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    n = Node(tmp_path)
    try:
        yield n
    finally:
        n.close()


def wait_dead(ref: pykka.ActorRef[Any]) -> None:
    assert ref.actor_stopped.wait(DEADLINE_S), "the actor did not stop"


def entries(first: int, last: int, term: int = 1) -> list[Entry]:
    return [Entry(i, term, f"e{i}t{term}".encode()) for i in range(first, last + 1)]


# ----------------------------------------------------------------------------- in-process


def test_log_state_on_start_of_an_empty_log(node: Node) -> None:
    node.start()
    state = node.raft.expect(LogState)
    assert state == LogState(0, os.getpid(), state.incarnation, HardState(), 1, 0, 0, 0)


def test_write_is_acknowledged_once_durable(node: Node) -> None:
    node.start()
    node.raft.expect(LogState)
    hs = HardState(1, "n1", 0)
    node.raft.send(LogWrite(1, [Entry(1, 1, b"", EntryKind.NOOP), *entries(2, 3)], hs))
    assert node.raft.expect(LogDurable) == LogDurable(1, 3, 1)
    state = node.raft.state(nonce=7)
    assert state == LogState(7, os.getpid(), state.incarnation, hs, 1, 3, 1, 1)
    with node.wal() as wal:
        assert wal.entries(1, 4) == [Entry(1, 1, b"", EntryKind.NOOP), *entries(2, 3)]
        assert wal.hard_state == hs


def test_hard_state_only_write(node: Node) -> None:
    node.start()
    node.raft.expect(LogState)
    node.raft.send(LogWrite(1, [], HardState(3, "n2", 0)))
    assert node.raft.expect(LogDurable) == LogDurable(1, 0, 0)
    assert node.raft.state(1).hard_state == HardState(3, "n2", 0)


def test_a_write_that_only_moves_commit_is_acknowledged_without_an_fsync(node: Node) -> None:
    ref = node.start()
    node.raft.expect(LogState)
    stats = ref.proxy()
    node.raft.send(LogWrite(1, entries(1, 2), HardState(1, "n1", 0)))
    assert node.raft.expect(LogDurable) == LogDurable(1, 2, 1)
    assert stats.syncs.get() == 1
    node.raft.send(LogWrite(2, [], HardState(1, "n1", 2), must_sync=False))  # commit only: the core says no fsync
    assert node.raft.expect(LogDurable) == LogDurable(2, 2, 1)
    assert stats.syncs.get() == 1
    node.raft.send(LogWrite(3, [], HardState(2, None, 2)))  # a new term must be durable
    assert node.raft.expect(LogDurable) == LogDurable(3, 2, 1)
    assert stats.syncs.get() == 2
    assert node.raft.state(5).hard_state == HardState(2, None, 2)  # the commit-only write was kept too


def test_one_fsync_and_one_ack_cover_a_batch_of_writes(node: Node) -> None:
    # The writes are queued before the log-store exists, so that they reach
    # it together: each drained batch gets one fsync and one LogDurable.
    for i in range(1, 101):
        node.raft.send(LogWrite(i, entries(i, i), HardState(1, None, max(0, i - 1)) if i % 10 == 0 else None))
    ref = node.start()
    node.raft.expect(LogState)
    acks = node.raft.durable_until(100)
    assert len(acks) < 100, f"{len(acks)} LogDurables for 100 writes: no group commit"
    assert acks[-1] == LogDurable(100, 100, 1)
    assert [a.write_id for a in acks] == sorted({a.write_id for a in acks})
    stats = ref.proxy()
    assert stats.writes.get() == 100 and stats.syncs.get() == len(acks)
    with node.wal() as wal:
        assert wal.entries(1, 101) == entries(1, 100)
        assert wal.hard_state == HardState(1, None, 99)


def test_writes_sent_to_a_running_log_store_are_grouped(node: Node) -> None:
    node.start()
    node.raft.expect(LogState)
    for i in range(1, 101):
        node.raft.send(LogWrite(i, entries(i, i), None))
    acks = node.raft.durable_until(100)
    assert len(acks) < 100 and acks[-1] == LogDurable(100, 100, 1)


def test_supersede_replaces_the_suffix(node: Node) -> None:
    node.start()
    node.raft.expect(LogState)
    node.raft.send(LogWrite(1, entries(1, 5, term=1), HardState(1, "n1", 0)))
    node.raft.send(LogWrite(2, entries(3, 4, term=2), HardState(2, None, 2)))
    assert node.raft.durable_until(2)[-1] == LogDurable(2, 4, 2)
    state = node.raft.state(1, next_write_id=3)
    assert (state.last_index, state.last_term, state.hard_state) == (4, 2, HardState(2, None, 2))
    with node.wal() as wal:
        assert wal.entries(1, 5) == entries(1, 2, term=1) + entries(3, 4, term=2)


def test_restart_reports_what_is_durable(node: Node) -> None:
    ref = node.start()
    node.raft.expect(LogState)
    node.raft.send(LogWrite(1, entries(1, 10, term=1), HardState(1, "n1", 0)))
    node.raft.send(LogWrite(2, entries(11, 12, term=2), HardState(2, "n1", 10)))
    node.raft.durable_until(2)
    node.stop(ref)

    node.start()
    state = node.raft.expect(LogState)
    assert state == LogState(0, os.getpid(), state.incarnation, HardState(2, "n1", 10), 1, 12, 2, 0)
    # And it takes writes again, once told which comes next: the raft
    # actor's link reconnected on its own.
    node.raft.send(LogSync(9, 0, 3))
    assert node.raft.expect(LogState).nonce == 9
    node.raft.send(LogWrite(3, entries(13, 13, term=2), None))
    assert node.raft.expect(LogDurable) == LogDurable(3, 13, 2)


def test_resent_writes_are_harmless(node: Node) -> None:
    node.start()
    node.raft.expect(LogState)
    writes = [
        LogWrite(1, entries(1, 3), HardState(1, "n1", 0)),
        LogWrite(2, entries(4, 6), None),
        LogWrite(3, entries(7, 9), HardState(1, "n1", 6)),
    ]
    for w in writes:
        node.raft.send(w)
    node.raft.durable_until(3)
    before = node.raft.state(1, next_write_id=2)  # as the raft actor does when it sees a new log-store pid...
    for w in writes[1:]:  # ... it resends every write not acknowledged
        node.raft.send(w)
    assert node.raft.durable_until(3)[-1] == LogDurable(3, 9, 1)
    after = node.raft.state(2, next_write_id=4)
    assert (after.hard_state, after.last_index, after.last_term) == (before.hard_state, 9, 1)
    with node.wal() as wal:
        assert wal.entries(1, 10) == entries(1, 9)


def test_resend_after_a_supersede_ends_in_the_same_log(node: Node) -> None:
    """Write 2 was superseded by write 3 from an index before it. Resending
    2 and 3 (neither acknowledged, say) makes write 2 impossible on the
    current log (a lower term after a higher one): it is refused, its hard
    state kept, and write 3 puts the log back where the sequence left it."""
    ref = node.start()
    node.raft.expect(LogState)
    w1 = LogWrite(1, entries(1, 3, term=1), HardState(1, "n1", 0))
    w2 = LogWrite(2, entries(4, 10, term=1), HardState(1, "n1", 3))
    w3 = LogWrite(3, entries(2, 3, term=2), HardState(2, "n2", 1))
    for w in (w1, w2, w3):
        node.raft.send(w)
    node.raft.durable_until(3)
    expected = node.raft.state(1, next_write_id=2)
    assert (expected.last_index, expected.last_term) == (3, 2)
    node.raft.send(w2)
    node.raft.send(w3)
    assert node.raft.durable_until(3)[-1] == LogDurable(3, 3, 2)  # w2, refused, is covered by w3's
    after = node.raft.state(2, next_write_id=4)
    assert (after.hard_state, after.last_index, after.last_term) == (expected.hard_state, 3, 2)
    assert ref.proxy().rejected.get() == 1
    with node.wal() as wal:
        assert wal.entries(1, 4) == entries(1, 1, term=1) + entries(2, 3, term=2)


def test_sync_reports_writes_received_before_it(node: Node) -> None:
    node.start()
    node.raft.expect(LogState)
    node.raft.send(LogWrite(1, entries(1, 4), None))
    node.raft.send(LogSync(5, 0, 2))
    first, second = node.raft.receive(), node.raft.receive()
    assert first == LogDurable(1, 4, 1)
    assert isinstance(second, LogState) and (second.nonce, second.last_index, second.write_id) == (5, 4, 1)


def test_a_lost_write_is_never_acknowledged_and_the_log_store_asks_for_it(node: Node) -> None:
    """Regression (issue 8): write 1 = entries 1..3, write 2 lost, write 3 =
    entries 7..9 gave LogDurable(3, last_index=3), and the core took 4..9
    as durable. Now write 3 is not even applied: the log-store asks for
    write 2, and takes 2 and 3 once they are resent after a LogSync."""
    ref = node.start()
    node.raft.expect(LogState)
    w1, w2, w3 = LogWrite(1, entries(1, 3), None), LogWrite(2, entries(4, 6), None), LogWrite(3, entries(7, 9), None)
    node.raft.send(w1)
    assert node.raft.expect(LogDurable) == LogDurable(1, 3, 1)
    node.raft.send(w3)  # write 2 was lost on the way
    assert node.raft.expect(LogGap) == LogGap(0, 2)
    node.raft.send(LogWrite(4, entries(10, 10), None))  # the rest of the stream: still nothing, and no second LogGap
    node.raft.nothing_within(0.2)
    assert ref.proxy().gaps.get() == 2
    with node.wal() as wal:
        assert wal.last_index == 3
    node.raft.send(LogSync(8, 0, 2))
    assert node.raft.expect(LogState).last_index == 3
    node.raft.send(w2)
    node.raft.send(w3)
    assert node.raft.durable_until(3)[-1] == LogDurable(3, 9, 1)


def test_a_write_of_another_epoch_is_a_gap(node: Node) -> None:
    """A restarted raft actor numbers its writes afresh under a new epoch: its
    write 1 must not pass for the previous raft actor's write 1."""
    node.start()
    node.raft.expect(LogState)
    node.raft.send(LogWrite(1, entries(1, 1), None, epoch=77))
    assert isinstance(node.raft.expect(LogGap), LogGap)
    node.raft.send(LogSync(3, 77, 1))
    node.raft.expect(LogState)
    node.raft.send(LogWrite(1, entries(1, 1), None, epoch=77))
    assert node.raft.expect(LogDurable) == LogDurable(1, 1, 1, 77)


def test_messages_for_others_are_counted_and_ignored(node: Node) -> None:
    """The log-store's socket takes only LogWrite and LogSync, from the raft actor."""
    ref = node.start()
    node.raft.expect(LogState)
    node.raft.send(ApplyState(1, 2))
    assert node.raft.state(3).last_index == 0
    assert ref.proxy().envelope.get().drops.wrong_socket == 1
    assert ref.proxy().dropped.get() == 1


def test_corrupt_wal_refuses_to_start(node: Node) -> None:
    with WriteAheadLog.open(node.layout.wal_dir) as wal:
        for i in range(1, 21):
            wal.append(entries(i, i), HardState(1, "n1", i - 1))
            wal.sync()
    (segment,) = node.layout.wal_dir.glob("*.wal")
    with open(segment, "r+b") as f:  # a bit flip in the middle, valid records after it
        f.seek(segment.stat().st_size // 2)
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0x40]))
    with pytest.raises(WalCorruptError):
        WriteAheadLog.open(node.layout.wal_dir)

    ref = node.start()
    wait_dead(ref)
    assert requested_exit(ref) == EXIT_REFUSED
    node.raft.nothing_within(0.2)  # no LogState: the raft actor must not start on it


def test_failed_fsync_stops_the_log_store(node: Node, monkeypatch: pytest.MonkeyPatch) -> None:
    ref = node.start()
    node.raft.expect(LogState)

    def failing_sync(self: WriteAheadLog) -> None:
        raise StorageError("disk on fire")

    monkeypatch.setattr(WriteAheadLog, "sync", failing_sync)
    node.raft.send(LogWrite(1, entries(1, 1), None))
    wait_dead(ref)
    assert requested_exit(ref) == EXIT_FAILURE
    node.raft.nothing_within(0.2)  # and it never claimed the write durable


def test_after_a_failed_fsync_the_restarted_log_store_writes_a_new_segment(
    node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sandzmq.storage import wal as wal_module

    def eio(fd: int) -> None:
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    ref = node.start()
    node.raft.expect(LogState)
    node.raft.send(LogWrite(1, entries(1, 3), HardState(1, "n1", 0)))
    assert node.raft.expect(LogDurable) == LogDurable(1, 3, 1)
    with monkeypatch.context() as patch:
        patch.setattr(wal_module, "_fdatasync", eio)
        node.raft.send(LogWrite(2, entries(4, 6), None))
        wait_dead(ref)
    assert requested_exit(ref) == EXIT_FAILURE
    (old,) = node.layout.wal_dir.glob("*.wal")
    # pykka sets actor_stopped before on_stop closes the WAL: a new log-store
    # started before that finds the lock taken (a process exit releases it).
    for thread in threading.enumerate():
        if thread.name.startswith(f"{LogStoreActor.__name__}-"):
            thread.join(DEADLINE_S)
            assert not thread.is_alive(), f"{thread.name} did not finish"

    node.start()  # as the supervisor does
    state = node.raft.expect(LogState)
    assert state.last_index == 3  # write 2 was never acknowledged, and is not on disk
    size = old.stat().st_size
    node.raft.send(LogSync(4, 0, 2))  # the raft actor's resend, from the write not acknowledged
    assert node.raft.expect(LogState).nonce == 4
    node.raft.send(LogWrite(2, entries(4, 6), None))
    assert node.raft.expect(LogDurable) == LogDurable(2, 6, 1)
    assert old.stat().st_size == size
    assert sorted(p.name for p in node.layout.wal_dir.glob("*.wal")) == [
        old.name,
        "0000000000000002-0000000000000004.wal",
    ]


# ----------------------------------------------------------------------------- as a process


def actor_process(config: Path, kind: str = "log", node: str = "n1") -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "sandzmq.actors", kind, "--config", str(config), "--node", node],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=config.parent,
    )


def finish(proc: subprocess.Popen[str], timeout: float = 5.0) -> tuple[int, str]:
    try:
        _, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise AssertionError(f"the process did not exit within {timeout} s") from None
    return proc.returncode, stderr


def test_process_stops_on_sigterm_with_status_0(tmp_path: Path) -> None:
    config_path = write_config(tmp_path)
    config = load_config(config_path)
    raft = FakeRaft(NodeLayout.of(config, "n1"), Envelope(config.name))
    proc = actor_process(config_path)
    try:
        state = raft.expect(LogState)  # it is up
        assert state.pid == proc.pid
        raft.send(LogWrite(1, entries(1, 2), HardState(1, "n1", 0)))
        assert raft.expect(LogDurable) == LogDurable(1, 2, 1)
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code, stderr = finish(proc)
        assert code == 0, stderr
        assert time.monotonic() - started < 5
        assert "Traceback" not in stderr
        assert " n1/log INFO " in stderr
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        raft.close()


def test_process_makes_the_node_directories_private(tmp_path: Path) -> None:
    """Directories an older version made world-readable are tightened when
    the node starts, and nothing new is created readable by others, whatever
    the umask."""
    config_path = write_config(tmp_path)
    config = load_config(config_path)
    layout = NodeLayout.of(config, "n1")
    for directory in (layout.data_dir, layout.wal_dir, layout.run_dir):
        directory.mkdir(parents=True, exist_ok=True)
        directory.chmod(0o755)
    raft = FakeRaft(layout, Envelope(config.name))
    previous = os.umask(0)
    try:
        proc = actor_process(config_path)
    finally:
        os.umask(previous)
    try:
        raft.expect(LogState)  # it is up
        for directory in (layout.data_dir, layout.wal_dir, layout.run_dir):
            assert stat.S_IMODE(directory.stat().st_mode) == 0o700, directory
        for path in layout.wal_dir.iterdir():
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
        proc.send_signal(signal.SIGTERM)
        code, stderr = finish(proc)
        assert code == 0, stderr
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        raft.close()


def test_process_with_a_bad_config_exits_2_with_one_line(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text('[cluster]\nname = "x"\nstate_machine = "kv"\nbogus = 1\n')
    code, stderr = finish(actor_process(config))
    assert code == 2
    assert len(stderr.strip().splitlines()) == 1 and "cluster.bogus" in stderr


def test_process_for_an_unknown_node_exits_2(tmp_path: Path) -> None:
    code, stderr = finish(actor_process(write_config(tmp_path), node="n9"))
    assert code == 2 and len(stderr.strip().splitlines()) == 1 and "n9" in stderr


def test_process_with_a_corrupt_wal_exits_3(tmp_path: Path) -> None:
    config_path = write_config(tmp_path)
    wal_dir = NodeLayout.of(load_config(config_path), "n1").wal_dir
    with WriteAheadLog.open(wal_dir) as wal:
        for i in range(1, 21):
            wal.append(entries(i, i))
            wal.sync()
    (segment,) = wal_dir.glob("*.wal")
    data = bytearray(segment.read_bytes())
    data[len(data) // 2] ^= 0x40
    segment.write_bytes(bytes(data))
    code, stderr = finish(actor_process(config_path))
    assert code == EXIT_REFUSED, stderr
    assert "corrupt write-ahead log" in stderr and "Traceback" not in stderr
