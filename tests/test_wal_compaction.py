"""WAL compaction (issue 10): compact() and reset(), their crash ordering, and
the reader following them. Real files and real fsync; a crash is simulated by
leaving the files exactly as a crash between two steps would."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from sandzmq.raft.messages import Entry, HardState
from sandzmq.storage import LogCompactedError, WalCorruptError, WalReader, WriteAheadLog
from sandzmq.storage.wal import list_segments, read_base, segment_first_index


def batch(lo: int, hi: int, term: int = 1) -> list[Entry]:
    return [Entry(i, term, f"{i}:{term}".encode() * 8) for i in range(lo, hi + 1)]


def filled(directory: Path, last: int = 200, per_batch: int = 10, term_every: int = 50) -> WriteAheadLog:
    """An open log of entries 1..last in many small segments; the term grows every term_every entries."""
    wal = WriteAheadLog.open(directory, segment_bytes=400)
    for lo in range(1, last + 1, per_batch):
        hi = min(last, lo + per_batch - 1)
        wal.append([Entry(i, 1 + (i - 1) // term_every, f"{i}".encode() * 8) for i in range(lo, hi + 1)])
        wal.sync()
    wal.append([], HardState(term=7, vote="n2", commit=last))
    wal.sync()
    return wal


def firsts(directory: Path) -> list[int]:
    return [segment_first_index(path) for _, path in list_segments(directory)]


def test_compact_deletes_whole_segments_and_reopens(tmp_path: Path) -> None:
    wal = filled(tmp_path)
    before = wal.entries(1, 201)
    assert len(list_segments(tmp_path)) > 5
    first = wal.compact(120)
    assert 100 < first <= 121  # the segment holding 120..  stays: a trailing window
    assert first in firsts(tmp_path) and min(firsts(tmp_path)) == first
    assert wal.first_index == first
    assert wal.entries(first, 201) == before[first - 1 :]
    assert wal.term_at(first - 1) == before[first - 2].term
    assert wal.term_at(first - 2) is None
    with pytest.raises(LogCompactedError, match=f"log starts at index {first}"):
        wal.entries(first - 1, first + 1)
    wal.append(batch(201, 205, term=5))
    wal.sync()
    wal.close()
    with WriteAheadLog.open(tmp_path, segment_bytes=400) as again:
        assert again.recovery_report.base_index == first - 1
        assert (again.first_index, again.last_index, again.last_term) == (first, 205, 5)
        assert again.entries(first, 201) == before[first - 1 :]
        assert again.term_at(first - 1) == before[first - 2].term
        assert again.hard_state == HardState(7, "n2", 200)
        assert again.compact(first - 1) == first  # nothing more to drop
        again.compact(10**6)  # far beyond the log: only the active segment stays
        assert len(list_segments(tmp_path)) == 1


@pytest.mark.parametrize("upto", [0, 1, 37, 99, 100, 101, 150, 199, 200])
def test_compaction_never_drops_an_entry_above_its_index(tmp_path: Path, upto: int) -> None:
    wal = filled(tmp_path)
    before = wal.entries(1, 201)
    active = list_segments(tmp_path)[-1]
    first = wal.compact(upto)
    assert first <= upto + 1
    assert wal.entries(max(first, upto + 1), 201) == before[max(first, upto + 1) - 1 :]
    assert list_segments(tmp_path)[-1] == active
    wal.close()
    with WriteAheadLog.open(tmp_path, segment_bytes=400) as again:
        assert (again.first_index, again.last_index) == (first, 200)
        assert again.entries(first, 201) == before[first - 1 :]


def test_a_segment_that_a_supersede_reaches_below_cannot_start_the_log(tmp_path: Path) -> None:
    wal = WriteAheadLog.open(tmp_path, segment_bytes=200)
    for lo in range(1, 60, 5):
        wal.append(batch(lo, lo + 4))
    wal.sync()
    last_seg_first = firsts(tmp_path)[-1]
    # A new leader's entries overwrite from before the active segment's first index.
    wal.append(batch(last_seg_first - 3, last_seg_first + 2, term=2))
    wal.sync()
    first = wal.compact(last_seg_first + 1)
    assert first <= last_seg_first - 3  # the segment holding the supersede is not the first
    wal.close()
    with WriteAheadLog.open(tmp_path, segment_bytes=200) as again:
        assert again.first_index == first
        assert again.term_at(last_seg_first) == 2


def test_crash_after_the_base_write_is_finished_at_open(tmp_path: Path) -> None:
    directory = tmp_path / "wal"
    wal = filled(directory)
    saved = tmp_path / "saved"
    shutil.copytree(directory, saved)
    first = wal.compact(150)
    wal.close()
    # As a crash after step 1 (BASE written) leaves it: the old segments still there.
    for name in sorted(p.name for p in saved.glob("*.wal")):
        if not (directory / name).exists():
            shutil.copy2(saved / name, directory / name)
    assert min(firsts(directory)) == 1
    with WriteAheadLog.open(directory, segment_bytes=400) as again:
        assert again.recovery_report.removed_compacted
        assert again.first_index == first and again.last_index == 200
    assert min(firsts(directory)) == first


def test_crash_before_the_base_write_leaves_the_old_log(tmp_path: Path) -> None:
    wal = filled(tmp_path)
    wal.close()
    (tmp_path / "BASE.tmp").write_bytes(b'{"half": ')  # a BASE write that never completed
    with WriteAheadLog.open(tmp_path, segment_bytes=400) as again:
        assert (again.first_index, again.last_index) == (1, 200)
        assert "BASE.tmp" in again.recovery_report.removed_temp_files


def test_reset_discards_the_log_and_keeps_the_hard_state(tmp_path: Path) -> None:
    wal = filled(tmp_path)
    wal.reset(500, 9)
    assert (wal.first_index, wal.last_index, wal.last_term, wal.term_at(500)) == (501, 500, 9, 9)
    assert wal.hard_state == HardState(7, "n2", 200)
    assert len(list_segments(tmp_path)) == 1 and firsts(tmp_path) == [501]
    with pytest.raises(LogCompactedError):
        wal.entries(200, 201)
    with pytest.raises(ValueError, match="gap"):
        wal.append(batch(503, 503, term=9))
    wal.append(batch(501, 510, term=9))
    wal.sync()
    wal.close()
    with WriteAheadLog.open(tmp_path, segment_bytes=400) as again:
        assert (again.first_index, again.last_index, again.term_at(500)) == (501, 510, 9)
        assert again.entries(501, 511) == batch(501, 510, term=9)
        assert again.hard_state == HardState(7, "n2", 200)


@pytest.mark.parametrize("steps_done", ["base", "base+segment"])
def test_reset_cut_short_by_a_crash_recovers_the_empty_log(tmp_path: Path, steps_done: str) -> None:
    directory, done = tmp_path / "wal", tmp_path / "done"
    wal = filled(directory)
    wal.close()
    shutil.copytree(directory, done)
    with WriteAheadLog.open(done, segment_bytes=400) as finished:
        finished.reset(500, 9)
    # The crash: the old log, plus what the reset had made durable before it.
    shutil.copy2(done / "BASE", directory / "BASE")
    if steps_done == "base+segment":
        (new,) = list_segments(done)
        shutil.copy2(new[1], directory / new[1].name)
    with WriteAheadLog.open(directory, segment_bytes=400) as again:
        assert (again.first_index, again.last_index, again.term_at(500)) == (501, 500, 9)
        assert again.hard_state == HardState(7, "n2", 200)  # from BASE when its segment was never made
        again.append(batch(501, 502, term=9))
        again.sync()
    assert firsts(directory) == [501]


def test_damaged_base_or_missing_first_segment_refuses_to_start(tmp_path: Path) -> None:
    wal = filled(tmp_path)
    first = wal.compact(150)
    wal.close()
    base = (tmp_path / "BASE").read_bytes()
    (tmp_path / "BASE").write_bytes(base.replace(b'"index": ', b'"index": 1'))
    with pytest.raises(WalCorruptError, match="BASE"):
        WriteAheadLog.open(tmp_path)
    (tmp_path / "BASE").write_bytes(base)
    list_segments(tmp_path)[0][1].unlink()
    with pytest.raises(WalCorruptError, match="missing"):
        WriteAheadLog.open(tmp_path)
    assert read_base(tmp_path).index == first - 1


def test_reader_follows_compaction_and_reset(tmp_path: Path) -> None:
    wal = filled(tmp_path)
    with WalReader(tmp_path) as reader:
        assert reader.last_index == 200
        first = wal.compact(150)
        assert reader.first_index == first
        assert reader.entries(first, 201) == wal.entries(first, 201)
        with pytest.raises(LogCompactedError):
            reader.entries(1, 2)
        with WalReader(tmp_path) as fresh:
            assert (fresh.first_index, fresh.last_index) == (first, 200)
        wal.reset(1000, 8)
        wal.append(batch(1001, 1003, term=8))
        wal.sync()
        assert (reader.first_index, reader.last_index, reader.term_at(1000)) == (1001, 1003, 8)
        assert reader.entries(1001, 1004) == batch(1001, 1003, term=8)
    wal.close()


def test_reader_notices_a_reset_that_stat_cannot_tell_apart(tmp_path: Path) -> None:
    """Two BASE writes within the file system's timestamp granularity, the inode
    reused and the same size: stat says nothing changed, the segments do."""
    wal = filled(tmp_path)
    with WalReader(tmp_path) as reader:
        wal.compact(150)
        assert reader.last_index == 200
        wal.reset(1000, 8)
        wal.append(batch(1001, 1002, term=8))
        wal.sync()
        st = (tmp_path / "BASE").stat()
        reader._base_stamp = (st.st_ino, st.st_mtime_ns, st.st_size)  # what an unlucky stat would see
        assert (reader.first_index, reader.last_index) == (1001, 1002)
        assert reader.entries(1001, 1003) == batch(1001, 1002, term=8)
    wal.close()
