"""Snapshot files (issue 10): streaming round trip with bounded memory, damage
and truncation detection, fallback, retention, temp-file cleanup, and the
chunked receiver. Real files and real fsync; a crash is simulated by leaving
the files a crash would leave."""

from __future__ import annotations

import hashlib
import os
import stat
import tracemalloc
from pathlib import Path

import msgpack
import pytest
from sandzmq.storage.snapshot import (
    PREFIX,
    TRAILER,
    SnapshotCorruptError,
    SnapshotInfo,
    SnapshotMeta,
    SnapshotStore,
    SnapshotTransferError,
    iter_chunks,
    read_chunk,
    snapshot_name,
    verify_file,
)

META = SnapshotMeta(index=120, term=3, voters=("n1", "n2", "n3"), learners=("n4",), cluster="c0ffee")
SESSIONS = b"sessions:" + bytes(range(256)) * 4


def state_bytes(n: int, seed: int = 0) -> bytes:
    return hashlib.shake_256(seed.to_bytes(4, "little")).digest(n)


def write(
    store: SnapshotStore, meta: SnapshotMeta = META, state: bytes = b"", sessions: bytes = SESSIONS
) -> SnapshotInfo:
    with store.begin(meta, sessions) as sink:
        for at in range(0, len(state), 7000):  # the state machine writes in pieces
            sink.write(state[at : at + 7000])
        return sink.commit()


def restored(store: SnapshotStore, info: SnapshotInfo) -> tuple[bytes, bytes]:
    with store.open(info) as reader:
        return reader.sessions(), reader.state().read()


def test_round_trip_and_file_modes(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path / "snap")
    state = state_bytes(100_000)
    info = write(store, state=state)
    assert info.path.name == snapshot_name(120, 3) and info.meta == META
    assert (info.sessions_len, info.state_len) == (len(SESSIONS), len(state))
    assert stat.S_IMODE(info.path.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "snap").stat().st_mode) == 0o700
    newest = store.newest()
    assert newest == info
    assert restored(store, newest) == (SESSIONS, state)
    with store.open(newest) as reader:  # a source limited to the state section
        source = reader.state()
        assert source.read(10) == state[:10]
        assert len(source.read()) == len(state) - 10 and source.read() == b""


def test_empty_state_and_sessions(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path)
    info = write(store, SnapshotMeta(0, 0), b"", b"")
    assert restored(store, store.newest() or info) == (b"", b"")


def test_a_large_state_streams_in_bounded_memory(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path, fsync=False)  # fsync is not what this measures
    chunk = state_bytes(1 << 20)
    size_mb = 64
    tracemalloc.start()
    try:
        with store.begin(META, SESSIONS) as sink:
            for _ in range(size_mb):
                sink.write(chunk)
            sink.commit()
        _, write_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        info = store.newest()
        assert info is not None and info.state_len == size_mb << 20
        digest = hashlib.sha256()
        with store.open(info) as reader:
            source = reader.state()
            while piece := source.read(1 << 20):
                digest.update(piece)
        _, read_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert digest.digest() == hashlib.sha256(chunk * size_mb).digest()
    # The chunk itself (1 MiB) is outside; buffers of a few MiB at most, never the 64 MiB.
    assert write_peak < 8 << 20, write_peak
    assert read_peak < 8 << 20, read_peak


def sections(info: SnapshotInfo) -> dict[str, tuple[int, int]]:
    """[start, end) of each part of the file."""
    return {
        "prefix": (0, PREFIX.size),
        "header": (PREFIX.size, info.sessions_offset),
        "sessions": (info.sessions_offset, info.state_offset),
        "state": (info.state_offset, info.state_offset + info.state_len),
        "trailer": (info.size - TRAILER.size, info.size),
    }


def flip(path: Path, offset: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0x40]))


@pytest.mark.parametrize("section", ["prefix", "header", "sessions", "state", "trailer"])
@pytest.mark.parametrize("where", ["first", "middle", "last"])
def test_a_flipped_byte_in_any_section_is_detected(tmp_path: Path, section: str, where: str) -> None:
    store = SnapshotStore(tmp_path)
    info = write(store, state=state_bytes(50_000))
    lo, hi = sections(info)[section]
    flip(info.path, {"first": lo, "middle": (lo + hi) // 2, "last": hi - 1}[where])
    with pytest.raises(SnapshotCorruptError) as caught:
        verify_file(info.path)
    assert str(info.path) in str(caught.value)
    assert store.newest() is None and store.problems[0].path == str(info.path)


@pytest.mark.parametrize("cut", ["prefix", "header", "sessions", "state", "trailer"])
@pytest.mark.parametrize("at", ["start", "start+1", "end-1"])
def test_truncation_at_every_section_boundary_is_detected(tmp_path: Path, cut: str, at: str) -> None:
    store = SnapshotStore(tmp_path)
    info = write(store, state=state_bytes(20_000))
    lo, hi = sections(info)[cut]
    size = {"start": lo, "start+1": lo + 1, "end-1": hi - 1}[at]
    os.truncate(info.path, size)
    with pytest.raises(SnapshotCorruptError, match="snapshot"):
        verify_file(info.path)


def test_a_corrupt_newest_snapshot_falls_back_to_the_older_one(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path)
    old = write(store, SnapshotMeta(100, 2), state_bytes(5000, 1))
    new = write(store, SnapshotMeta(200, 3), state_bytes(5000, 2))
    flip(new.path, new.state_offset + 10)
    assert store.newest() == old
    (problem,) = store.problems
    assert problem.path == str(new.path) and "checksum" in problem.problem
    assert restored(store, old)[1] == state_bytes(5000, 1)


def test_a_file_renamed_to_another_index_or_of_another_cluster_is_refused(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path, cluster="c0ffee")
    info = write(store, state=b"x")
    info.path.rename(tmp_path / snapshot_name(999, 3))
    assert store.newest() is None and "not its name" in store.problems[0].problem
    other = SnapshotStore(tmp_path / "other", cluster="beef")
    write(other, state=b"x")
    assert other.newest() is None and "cluster" in other.problems[0].problem


def test_temp_files_of_a_crash_are_removed_at_open_and_abort_leaves_nothing(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path)
    kept = write(store, state=b"kept")
    sink = store.begin(SnapshotMeta(300, 4), b"")
    sink.write(b"half a snapshot")  # ... and the process dies: the temp file stays
    (tmp_path / "receiving.snap.tmp").write_bytes(b"partial transfer")
    assert store.newest() == kept  # a temp file is never taken for a snapshot
    again = SnapshotStore(tmp_path)
    assert sorted(again.removed_temp_files) == ["receiving.snap.tmp", snapshot_name(300, 4) + ".tmp"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [kept.path.name]
    with pytest.raises(RuntimeError):
        with again.begin(SnapshotMeta(400, 4), b"") as sink:
            sink.write(b"abc")
            raise RuntimeError("the state machine's snapshot() raised")
    assert sorted(p.name for p in tmp_path.iterdir()) == [kept.path.name]


def test_keep_n_newest(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path, keep=3)
    for index in range(1, 7):
        write(store, SnapshotMeta(index * 10, 1), b"s")
    assert [p.name for p in store.paths()] == [snapshot_name(i * 10, 1) for i in (6, 5, 4)]
    assert len(list(tmp_path.iterdir())) == 3


def test_bad_meta_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path)
    with pytest.raises(ValueError, match="index"):
        store.begin(SnapshotMeta(1 << 62, 1), b"")
    assert list(tmp_path.iterdir()) == []


# -- chunked transfer ------------------------------------------------------------


@pytest.fixture
def source(tmp_path: Path) -> SnapshotInfo:
    return write(SnapshotStore(tmp_path / "leader"), state=state_bytes(300_000))


def test_chunks_in_order_install_the_snapshot(tmp_path: Path, source: SnapshotInfo) -> None:
    store = SnapshotStore(tmp_path / "follower")
    old = write(store, SnapshotMeta(50, 1), b"old")
    receiver = store.receiver(max_total_bytes=1 << 20, max_chunk_bytes=64 << 10)
    chunks = list(iter_chunks(source.path, 64 << 10))
    assert b"".join(piece for _, piece in chunks) == source.path.read_bytes()
    for n, (offset, piece) in enumerate(chunks):
        assert store.newest() == old  # the old state stays until the new one is complete
        assert receiver.accept(offset, piece) == offset + len(piece) == receiver.durable_offset
        if n == 0:
            assert receiver.meta == META  # the header is checked as soon as it is in
    info = receiver.finish()
    assert info.path.name == snapshot_name(META.index, META.term)
    assert store.newest() == info
    assert restored(store, info) == (SESSIONS, state_bytes(300_000))
    assert not (tmp_path / "follower" / "receiving.snap.tmp").exists()
    assert read_chunk(source.path, 10, 5) == source.path.read_bytes()[10:15]


def test_duplicate_gap_overlap_and_restart(tmp_path: Path, source: SnapshotInfo) -> None:
    store = SnapshotStore(tmp_path / "follower")
    receiver = store.receiver(max_total_bytes=1 << 20, max_chunk_bytes=64 << 10)
    chunks = list(iter_chunks(source.path, 50_000))
    receiver.accept(*chunks[0])
    receiver.accept(*chunks[1])
    assert receiver.accept(*chunks[1]) == 100_000  # a resend of the last chunk: tolerated
    with pytest.raises(SnapshotTransferError, match="gap") as caught:
        receiver.accept(*chunks[3])
    assert caught.value.durable_offset == 100_000
    with pytest.raises(SnapshotTransferError, match="overlap"):
        receiver.accept(50_000, chunks[1][1][:10] + b"different")
    with pytest.raises(SnapshotTransferError, match="overlap"):
        receiver.accept(10, b"x")
    assert receiver.accept(*chunks[0]) == 50_000  # offset 0: a restart, the partial file is discarded
    assert os.path.getsize(tmp_path / "follower" / "receiving.snap.tmp") == 50_000
    for chunk in chunks[1:]:
        receiver.accept(*chunk)
    assert restored(store, receiver.finish())[1] == state_bytes(300_000)


def test_limits_and_hostile_headers(tmp_path: Path, source: SnapshotInfo) -> None:
    store = SnapshotStore(tmp_path / "follower")
    small = store.receiver(max_total_bytes=100_000, max_chunk_bytes=64 << 10)
    with pytest.raises(SnapshotTransferError, match="exceeds the limit of 65536"):
        small.accept(0, b"x" * ((64 << 10) + 1))
    chunks = list(iter_chunks(source.path, 60_000))
    small.accept(*chunks[0])
    with pytest.raises(SnapshotTransferError, match="exceed the limit of 100000"):
        small.accept(*chunks[1])
    small.abort()

    def hostile(meta_bytes: bytes) -> str:
        receiver = store.receiver(max_total_bytes=1 << 20)
        with pytest.raises(SnapshotTransferError, match="bad snapshot header") as caught:
            receiver.accept(0, meta_bytes)
        assert receiver.durable_offset == 0  # discarded
        receiver.abort()
        return caught.value.reason

    def header(**fields: object) -> bytes:
        doc = {"index": 1, "term": 1, "cluster": "", "voters": [], "learners": [], "sessions_len": 0, **fields}
        body = msgpack.packb(doc)
        return PREFIX.pack(b"SZMQSNAP", 1, len(body)) + body

    assert "magic" in hostile(b"GARBAGE!" + bytes(8))
    assert "version" in hostile(PREFIX.pack(b"SZMQSNAP", 99, 0))
    assert "header length" in hostile(PREFIX.pack(b"SZMQSNAP", 1, 1 << 30))
    assert "index" in hostile(header(index=1 << 62))
    assert "term" in hostile(header(term=-1))
    assert "voters" in hostile(header(voters=[""]))
    assert "size limit" in hostile(header(sessions_len=1 << 40))
    lacking = msgpack.packb({"index": 1})
    assert "lacks" in hostile(PREFIX.pack(b"SZMQSNAP", 1, len(lacking)) + lacking)


def test_a_complete_transfer_of_a_damaged_file_is_refused_and_restarts(tmp_path: Path, source: SnapshotInfo) -> None:
    store = SnapshotStore(tmp_path / "follower")
    receiver = store.receiver(max_total_bytes=1 << 20)
    data = bytearray(source.path.read_bytes())
    data[len(data) // 2] ^= 1
    receiver.accept(0, bytes(data))
    with pytest.raises(SnapshotCorruptError, match="checksum"):
        receiver.finish()
    assert receiver.durable_offset == 0 and store.newest() is None
    receiver.accept(0, source.path.read_bytes())
    assert receiver.finish().meta == META
