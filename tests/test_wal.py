"""The write-ahead log: round trips, supersede, rotation, recovery, the reader, kill -9.

Real files in tmp_path and real fsync, except the hypothesis model test,
which runs hundreds of examples and checks logic, not the disk.
"""

from __future__ import annotations

import errno
import os
import signal
import stat
import struct
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sandzmq.raft.messages import Entry, EntryKind, HardState
from sandzmq.storage import StorageError, WalCorruptError, WalReader, WriteAheadLog, records


def data_for(index: int, term: int, size: int = 16) -> bytes:
    return (f"{index}:{term}:".encode() * size)[:size]


def batch(lo: int, hi: int, term: int = 1, size: int = 16) -> list[Entry]:
    """Entries lo..hi inclusive."""
    return [Entry(i, term, data_for(i, term, size)) for i in range(lo, hi + 1)]


def segments(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.wal"))


def record_offsets(path: Path) -> list[tuple[int, int]]:
    """(offset, type) of every record in a segment file."""
    found: list[tuple[int, int]] = []
    records.scan(path.read_bytes(), records.SEGMENT_HEADER.size, lambda off, kind, _: found.append((off, kind)))
    return found


def filled(directory: Path, batches: int = 10, per_batch: int = 5, **options) -> list[Entry]:
    """A closed log of `batches` synced batches; returns its entries."""
    written: list[Entry] = []
    with WriteAheadLog.open(directory, **options) as wal:
        for b in range(batches):
            entries = batch(b * per_batch + 1, (b + 1) * per_batch)
            wal.append(entries)
            wal.sync()
            written += entries
    return written


# -- round trips ---------------------------------------------------------------


def test_new_log_is_empty(tmp_path: Path) -> None:
    with WriteAheadLog.open(tmp_path / "wal") as wal:
        assert (wal.first_index, wal.last_index, wal.last_term) == (1, 0, 0)
        assert wal.hard_state == HardState()
        assert wal.term_at(0) == 0 and wal.term_at(1) is None
        assert wal.entries(1, 1) == []
        assert wal.recovery_report.created
    assert len(segments(tmp_path / "wal")) == 1


def test_append_sync_reopen_round_trip(tmp_path: Path) -> None:
    written: list[Entry] = []
    with WriteAheadLog.open(tmp_path) as wal:
        for b, term in enumerate([1, 1, 2, 3]):
            entries = batch(b * 4 + 1, b * 4 + 4, term)
            entries[0].kind = EntryKind.NOOP
            wal.append(entries)
            written += entries
        wal.append([Entry(17, 3, b"")])  # one-entry batch, empty data
        written.append(Entry(17, 3, b""))
        wal.sync()
        assert wal.entries(1, 18) == written
    with WriteAheadLog.open(tmp_path) as wal:
        assert (wal.first_index, wal.last_index, wal.last_term) == (1, 17, 3)
        assert wal.entries(1, 18) == written
        assert wal.entries(6, 10) == written[5:9]
        assert [wal.term_at(i) for i in (0, 1, 8, 9, 12, 13, 17, 18)] == [0, 1, 1, 2, 2, 3, 3, None]
        assert wal.recovery_report.records == 1 + 5  # segment-start hard state + 5 batches
        assert wal.recovery_report.torn_segment is None


def test_entries_range_and_max_bytes(tmp_path: Path) -> None:
    written = filled(tmp_path, batches=4, per_batch=5)
    with WriteAheadLog.open(tmp_path) as wal:
        with pytest.raises(IndexError):
            wal.entries(0, 3)
        with pytest.raises(IndexError):
            wal.entries(18, 22)
        assert wal.entries(3, 15, max_bytes=16 * 4) == written[2:6]
        assert wal.entries(3, 15, max_bytes=1) == written[2:3]  # always at least one


def test_hard_state_persists_and_last_one_wins(tmp_path: Path) -> None:
    with WriteAheadLog.open(tmp_path) as wal:
        wal.append([], HardState(1, "n1", 0))
        wal.append(batch(1, 3), HardState(2, "n2", 1))
        wal.append([], HardState(2, None, 3))
        wal.sync()
        assert wal.hard_state == HardState(2, None, 3)
    with WriteAheadLog.open(tmp_path) as wal:
        assert wal.hard_state == HardState(2, None, 3)
        assert wal.last_index == 3


def test_supersede_then_reopen_keeps_later_hard_state(tmp_path: Path) -> None:
    """The reason supersede appends instead of cutting the file: the vote written
    after entries 11..20 must survive their replacement."""
    with WriteAheadLog.open(tmp_path) as wal:
        wal.append(batch(1, 10, term=1))
        wal.append(batch(11, 20, term=2))
        wal.append([], HardState(3, "n3", 5))  # voted in term 3, reported durable
        wal.sync()
        wal.append(batch(11, 14, term=3))
        wal.sync()
        assert (wal.last_index, wal.last_term) == (14, 3)
    with WriteAheadLog.open(tmp_path) as wal:
        assert wal.hard_state == HardState(3, "n3", 5)
        assert (wal.last_index, wal.last_term) == (14, 3)
        assert wal.entries(1, 15) == batch(1, 10, 1) + batch(11, 14, 3)
        assert wal.term_at(15) is None
        wal.append(batch(12, 12, term=4))  # supersede inside the superseding record
        wal.append(batch(13, 16, term=4))
        wal.append(batch(5, 6, term=4))  # and inside the first one
        wal.sync()
    with WriteAheadLog.open(tmp_path) as wal:
        assert wal.entries(1, 7) == batch(1, 4, 1) + batch(5, 6, 4)
        assert wal.last_index == 6


def test_bad_appends_raise_value_error_and_change_nothing(tmp_path: Path) -> None:
    with WriteAheadLog.open(tmp_path) as wal:
        wal.append(batch(1, 3, term=2))
        with pytest.raises(ValueError, match="gap"):
            wal.append(batch(5, 6, term=2))
        with pytest.raises(ValueError, match="consecutive"):
            wal.append([Entry(4, 2), Entry(6, 2)])
        with pytest.raises(ValueError, match="decrease"):
            wal.append(batch(4, 4, term=1))
        with pytest.raises(ValueError, match="decrease"):
            wal.append([Entry(4, 3), Entry(5, 2), Entry(6, 4)])
        with pytest.raises(ValueError, match="first index"):
            wal.append(batch(0, 1, term=2))
        assert wal.last_index == 3
        wal.sync()
    with WriteAheadLog.open(tmp_path) as wal:
        assert wal.entries(1, 4) == batch(1, 3, term=2)


@pytest.mark.parametrize("fsync", [True, False])
def test_sync_is_one_fdatasync_per_group(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fsync: bool) -> None:
    from sandzmq.storage import wal as wal_module

    calls: list[int] = []
    real = wal_module._fdatasync
    monkeypatch.setattr(wal_module, "_fdatasync", lambda fd: (calls.append(fd), real(fd)))
    with WriteAheadLog.open(tmp_path, fsync=fsync) as wal:
        for b in range(3):
            wal.append(batch(b * 2 + 1, b * 2 + 2), HardState(1, "n1", b))
        assert calls == []  # append() alone never waits for the disk
        wal.sync()
        wal.sync()  # nothing new: no second fdatasync
        assert len(calls) == (1 if fsync else 0)


def test_second_writer_is_refused(tmp_path: Path) -> None:
    with WriteAheadLog.open(tmp_path):
        with pytest.raises(StorageError, match="already open"):
            WriteAheadLog.open(tmp_path)
    WriteAheadLog.open(tmp_path).close()


def test_closed_log_refuses_appends(tmp_path: Path) -> None:
    wal = WriteAheadLog.open(tmp_path)
    wal.close()
    wal.close()
    with pytest.raises(StorageError, match="closed"):
        wal.append(batch(1, 1))


def test_files_and_directories_are_private_whatever_the_umask(tmp_path: Path) -> None:
    """Other local users must neither read the log (commands, votes) nor change it."""
    directory = tmp_path / "data" / "n1" / "wal"
    previous = os.umask(0)
    try:
        with WriteAheadLog.open(directory, segment_bytes=512) as wal:
            for b in range(10):  # several rotations
                wal.append(batch(b * 4 + 1, b * 4 + 4, size=32))
                wal.sync()
    finally:
        os.umask(previous)
    assert len(segments(directory)) > 2
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "data" / "n1").stat().st_mode) == 0o700  # created on the way: ours too
    for path in directory.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path.name


def test_opening_tightens_what_an_older_version_left_open(tmp_path: Path) -> None:
    filled(tmp_path / "wal", batches=2)
    (tmp_path / "wal").chmod(0o755)
    (tmp_path / "wal" / "LOCK").chmod(0o644)
    WriteAheadLog.open(tmp_path / "wal").close()
    assert stat.S_IMODE((tmp_path / "wal").stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "wal" / "LOCK").stat().st_mode) == 0o600


# -- rotation ------------------------------------------------------------------


def test_rotation_across_segments_and_reopen(tmp_path: Path) -> None:
    with WriteAheadLog.open(tmp_path, segment_bytes=2048) as wal:
        for b in range(30):
            wal.append(batch(b * 8 + 1, b * 8 + 8, term=1 + b // 10, size=32), HardState(1 + b // 10, "n1", b * 8))
            wal.sync()
        wal.append(batch(100, 101, term=4))  # supersede far back, in an old segment
        wal.sync()
    files = segments(tmp_path)
    assert len(files) >= 4
    assert [f.name for f in files] == sorted(f.name for f in files)
    assert files[0].name == "0000000000000001-0000000000000001.wal"
    for f in files:  # every segment starts with a hard state copy
        assert record_offsets(f)[0] == (records.SEGMENT_HEADER.size, records.HARD_STATE)
        assert f.stat().st_size < 2048 + 2 * 500
    with WriteAheadLog.open(tmp_path, segment_bytes=2048) as wal:
        assert wal.recovery_report.segments == [f.name for f in files]
        assert wal.last_index == 101
        expected = [e for b in range(30) for e in batch(b * 8 + 1, b * 8 + 8, 1 + b // 10, 32)][:99]
        assert wal.entries(1, 102) == expected + batch(100, 101, 4)
        assert wal.hard_state == HardState(3, "n1", 29 * 8)
        assert wal.term_at(80) == 1 and wal.term_at(81) == 2 and wal.term_at(100) == 4


# -- recovery: torn tails and corruption ----------------------------------------


def test_torn_tail_cut_in_half_is_truncated(tmp_path: Path) -> None:
    filled(tmp_path, batches=10, per_batch=5)
    (seg,) = segments(tmp_path)
    last_offset = record_offsets(seg)[-1][0]
    size = seg.stat().st_size
    os.truncate(seg, size - 20)
    with WriteAheadLog.open(tmp_path) as wal:
        assert wal.last_index == 45
        report = wal.recovery_report
        assert (report.torn_segment, report.torn_offset) == (seg.name, last_offset)
        assert report.torn_bytes == size - 20 - last_offset
        assert "short payload" in report.torn_problem
        assert "torn tail" in str(report)
        assert seg.stat().st_size == last_offset
        wal.append(batch(46, 50, term=2))  # and the log goes on from there
        wal.sync()
    with WriteAheadLog.open(tmp_path) as wal:
        assert wal.entries(41, 51) == batch(41, 45) + batch(46, 50, term=2)
        assert wal.recovery_report.torn_segment is None


def test_torn_tail_of_a_few_header_bytes(tmp_path: Path) -> None:
    filled(tmp_path, batches=3)
    (seg,) = segments(tmp_path)
    size = seg.stat().st_size
    with open(seg, "ab") as f:
        f.write(b"\x07\x00\x00")
    with WriteAheadLog.open(tmp_path) as wal:
        assert wal.last_index == 15 and wal.recovery_report.torn_bytes == 3
    assert seg.stat().st_size == size


@pytest.mark.parametrize("damage", ["zeros-after", "record-zeroed"])
def test_torn_tail_with_trailing_zeros(tmp_path: Path, damage: str) -> None:
    """The file grew but the data never reached the disk: zeros where records should be."""
    filled(tmp_path, batches=10, per_batch=5)
    (seg,) = segments(tmp_path)
    size = seg.stat().st_size
    last_offset = record_offsets(seg)[-1][0]
    with open(seg, "r+b") as f:
        if damage == "record-zeroed":  # the last record's header made it, its payload did not
            f.seek(last_offset + records.HEADER.size + 4)
            f.write(bytes(size - f.tell()))
        f.seek(0, os.SEEK_END)
        f.write(bytes(8192))
    expected_end, expected_last = (size, 50) if damage == "zeros-after" else (last_offset, 45)
    with WriteAheadLog.open(tmp_path) as wal:
        assert wal.last_index == expected_last
        assert wal.recovery_report.torn_offset == expected_end
    assert seg.stat().st_size == expected_end


def flip_byte(path: Path, offset: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0x40]))


def test_corrupt_middle_record_refuses_to_start(tmp_path: Path) -> None:
    filled(tmp_path, batches=10)
    (seg,) = segments(tmp_path)
    offset = record_offsets(seg)[3][0]
    flip_byte(seg, offset + records.HEADER.size + 5)
    size = seg.stat().st_size
    with pytest.raises(WalCorruptError) as caught:
        WriteAheadLog.open(tmp_path)
    message = str(caught.value)
    assert str(seg) in message and f"offset {offset}" in message and "CRC mismatch" in message
    assert "refuses to start" in message and "\n" not in message
    assert (caught.value.path, caught.value.offset) == (str(seg), offset)
    assert seg.stat().st_size == size  # nothing was cut
    WriteAheadLog.open(tmp_path / "other").close()  # and the lock was released
    with pytest.raises(WalCorruptError):
        WriteAheadLog.open(tmp_path)


def test_flipped_length_field_is_not_taken_for_a_torn_tail(tmp_path: Path) -> None:
    """A length bit flip makes a middle record seem to run past the end of the file;
    the valid records behind it show it is not a torn write."""
    filled(tmp_path, batches=10)
    (seg,) = segments(tmp_path)
    offset = record_offsets(seg)[3][0]
    with open(seg, "r+b") as f:
        f.seek(offset)
        f.write(struct.pack("<I", 100_000))
    with pytest.raises(WalCorruptError, match=f"offset {offset}: short payload"):
        WriteAheadLog.open(tmp_path)


def test_corruption_in_a_non_last_segment_refuses_to_start(tmp_path: Path) -> None:
    filled(tmp_path, batches=20, per_batch=10, segment_bytes=1024)
    files = segments(tmp_path)
    assert len(files) >= 3
    offset = record_offsets(files[0])[-1][0]  # even the very end of an old segment
    flip_byte(files[0], offset + records.HEADER.size + 3)
    with pytest.raises(WalCorruptError, match=f"{files[0].name}: .*offset {offset}: .*newer one follows"):
        WriteAheadLog.open(tmp_path, segment_bytes=1024)
    os.truncate(files[0], offset + 5)  # a "torn" tail in an old segment is corruption too
    with pytest.raises(WalCorruptError, match=f"offset {offset}"):
        WriteAheadLog.open(tmp_path, segment_bytes=1024)


def test_missing_segment_refuses_to_start(tmp_path: Path) -> None:
    filled(tmp_path, batches=20, per_batch=10, segment_bytes=1024)
    segments(tmp_path)[1].unlink()
    with pytest.raises(WalCorruptError, match="segment number 2 is missing"):
        WriteAheadLog.open(tmp_path)


def test_index_gap_on_disk_is_corruption(tmp_path: Path) -> None:
    filled(tmp_path, batches=2)
    (seg,) = segments(tmp_path)
    with open(seg, "ab") as f:
        f.write(records.encode_entries(batch(20, 21)))
    with pytest.raises(WalCorruptError, match="gap"):
        WriteAheadLog.open(tmp_path)


def test_bad_segment_header_is_corruption(tmp_path: Path) -> None:
    filled(tmp_path, batches=2)
    (seg,) = segments(tmp_path)
    flip_byte(seg, 2)
    with pytest.raises(WalCorruptError, match="offset 0: bad segment magic"):
        WriteAheadLog.open(tmp_path)


# -- format 1 (entries as rows), still readable -----------------------------------


def format1_segment(path: Path, hard_state: HardState, *batches: list[Entry]) -> None:
    """A segment as format 1 wrote it: version 1 header, ENTRY_ROWS records."""
    import msgpack

    data = records.SEGMENT_HEADER.pack(records.MAGIC, 1)
    data += records.frame(records.HARD_STATE, msgpack.packb((hard_state.term, hard_state.vote, hard_state.commit)))
    for entries in batches:
        data += records.frame(
            records.ENTRY_ROWS, msgpack.packb([(e.index, e.term, int(e.kind), e.data) for e in entries])
        )
    path.write_bytes(data)


def test_a_format_1_log_is_read_as_it_was_and_appended_to_in_a_format_2_segment(tmp_path: Path) -> None:
    tmp_path.chmod(0o700)
    hs = HardState(3, "n2", 4)
    mixed = [Entry(5, 2, b"noop", EntryKind.NOOP), Entry(6, 3, b"x")]
    format1_segment(tmp_path / "0000000000000001-0000000000000001.wal", hs, batch(1, 6, term=2), mixed)
    expected = batch(1, 4, term=2) + mixed
    with WalReader(tmp_path) as reader:
        assert reader.entries(1, 7) == expected and reader.hard_state == hs
    with WriteAheadLog.open(tmp_path) as wal:
        assert wal.entries(1, 7) == expected and wal.hard_state == hs
        assert [wal.term_at(i) for i in range(8)] == [0, 2, 2, 2, 2, 2, 3, None]
        assert wal.recovery_report.started_segment == "0000000000000002-0000000000000007.wal"
        wal.append(batch(7, 9, term=3), HardState(3, "n2", 8))
    files = segments(tmp_path)
    assert [records.segment_version(f.read_bytes()) for f in files] == [1, 2]
    with WriteAheadLog.open(tmp_path) as wal:
        assert wal.entries(1, 10) == expected + batch(7, 9, term=3) and wal.hard_state == HardState(3, "n2", 8)


def test_a_fresh_format_1_segment_is_not_appended_to(tmp_path: Path) -> None:
    """A segment holding only its creation's hard state is appended to on
    open, unless it is of an older format: a format 1 build must never find
    a record type it does not know in a segment it can read."""
    tmp_path.chmod(0o700)
    format1_segment(tmp_path / "0000000000000001-0000000000000001.wal", HardState(1, None, 0))
    with WriteAheadLog.open(tmp_path) as wal:
        assert wal.recovery_report.started_segment is not None
        wal.append(batch(1, 2))
    assert [records.segment_version(f.read_bytes()) for f in segments(tmp_path)] == [1, 2]


def test_an_unknown_format_version_refuses_to_start(tmp_path: Path) -> None:
    filled(tmp_path, batches=2)
    (seg,) = segments(tmp_path)
    with open(seg, "r+b") as f:
        f.seek(8)
        f.write(struct.pack("<I", records.VERSION + 1))
    with pytest.raises(WalCorruptError, match=f"unsupported segment format version {records.VERSION + 1}"):
        WriteAheadLog.open(tmp_path)


def test_unfinished_rotation_leaves_no_trace(tmp_path: Path) -> None:
    filled(tmp_path, batches=2)
    (tmp_path / "0000000000000002-000000000000000b.wal.tmp").write_bytes(b"SZMQ")
    with WriteAheadLog.open(tmp_path) as wal:
        assert wal.recovery_report.removed_temp_files == ["0000000000000002-000000000000000b.wal.tmp"]
        assert wal.last_index == 10
    assert not list(tmp_path.glob("*.tmp"))


# -- after a failed fsync ----------------------------------------------------------


def eio(fd: int) -> None:
    raise OSError(errno.EIO, os.strerror(errno.EIO))


def fail_a_sync(directory: Path, monkeypatch: pytest.MonkeyPatch, *, marker_fails: bool = False) -> int:
    """Entries 1..5 synced, 6..10 appended and their fsync failed (EIO), the
    log closed. Returns the segment's size after the successful sync.
    marker_fails: every file write fails too while the fsync fails."""
    from sandzmq.storage import wal as wal_module

    wal = WriteAheadLog.open(directory)
    wal.append(batch(1, 5), HardState(1, "n1", 0))
    wal.sync()
    synced = segments(directory)[-1].stat().st_size
    with monkeypatch.context() as patch:
        patch.setattr(wal_module, "_fdatasync", eio)
        if marker_fails:
            patch.setattr(wal_module, "write_file_atomically", lambda *args, **kwargs: eio(-1))
        wal.append(batch(6, 10), HardState(1, "n1", 5))
        with pytest.raises(StorageError, match="Input/output error"):
            wal.sync()
    with pytest.raises(StorageError, match="failed earlier"):
        wal.append(batch(11, 11))
    wal.close()
    return synced


def test_after_a_failed_fsync_reopen_cuts_what_was_never_synced_and_starts_a_new_segment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Linux may mark the pages of a failed fsync clean: the page cache then
    shows records the disk does not have. Appending behind them, or
    reporting them durable, would build on data that is not there."""
    synced = fail_a_sync(tmp_path, monkeypatch)
    (old,) = segments(tmp_path)
    assert old.stat().st_size > synced  # what the page cache shows
    with WriteAheadLog.open(tmp_path) as wal:
        assert wal.last_index == 5  # 6..10 were never acknowledged: that needs a successful sync
        assert wal.hard_state == HardState(1, "n1", 0)
        assert old.stat().st_size == synced
        report = wal.recovery_report
        assert (report.unsynced_segment, report.unsynced_bytes) == (
            old.name,
            len(records.encode_entries(batch(6, 10))) + len(records.encode_hard_state(HardState(1, "n1", 5))),
        )
        assert "never synced" in str(report)
        first, second = segments(tmp_path)
        assert first == old and second.name == "0000000000000002-0000000000000006.wal"
        wal.append(batch(6, 8, term=2))
        wal.sync()
        assert old.stat().st_size == synced  # the appends went to the new segment
    assert [p.name for p in tmp_path.iterdir() if p.suffix != ".wal"] == ["LOCK"]  # the marker is gone
    with WriteAheadLog.open(tmp_path) as wal:
        assert wal.entries(1, 9) == batch(1, 5) + batch(6, 8, term=2)
        assert wal.recovery_report.unsynced_segment is None


def test_without_the_failure_marker_reopen_still_never_appends_to_that_segment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The marker is best effort (the disk that failed the fsync may fail its write too)."""
    fail_a_sync(tmp_path, monkeypatch, marker_fails=True)
    (old,) = segments(tmp_path)
    size = old.stat().st_size
    with WriteAheadLog.open(tmp_path) as wal:
        wal.append(batch(wal.last_index + 1, wal.last_index + 2, term=2))
        wal.sync()
    assert old.stat().st_size == size
    assert len(segments(tmp_path)) == 2


def test_reopen_appends_to_the_last_segment_only_if_nothing_was_written_to_it(tmp_path: Path) -> None:
    WriteAheadLog.open(tmp_path).close()
    WriteAheadLog.open(tmp_path).close()
    assert len(segments(tmp_path)) == 1  # as created (and fsynced): nothing to doubt
    with WriteAheadLog.open(tmp_path) as wal:
        wal.append(batch(1, 3))
    with WriteAheadLog.open(tmp_path) as wal:
        assert [p.name for p in segments(tmp_path)] == [
            "0000000000000001-0000000000000001.wal",
            "0000000000000002-0000000000000004.wal",
        ]
        assert wal.entries(1, 4) == batch(1, 3)
    WriteAheadLog.open(tmp_path).close()
    assert len(segments(tmp_path)) == 2


# -- the reader ------------------------------------------------------------------


def test_reader_follows_a_writer_that_appends_supersedes_and_rotates(tmp_path: Path) -> None:
    reader = WalReader(tmp_path / "wal")
    assert reader.last_index == 0  # no directory yet: an empty log
    model: list[Entry] = []
    with WriteAheadLog.open(tmp_path / "wal", segment_bytes=450) as wal:
        assert reader.last_index == 0 and reader.term_at(0) == 0
        for b in range(12):
            entries = batch(len(model) + 1, len(model) + 6, term=max(wal.last_term, 1 + b // 4))
            wal.append(entries)
            wal.sync()
            model += entries
            assert reader.last_index == len(model)
            assert reader.entries(1, len(model) + 1) == model
            if b % 3 == 2:  # supersede the last few
                start = len(model) - 3
                entries = batch(start, start + 1, term=wal.last_term + 1)
                wal.append(entries, HardState(wal.last_term + 1, "n1", start - 1))
                wal.sync()
                model = model[: start - 1] + entries
                assert reader.entries(start - 2, len(model) + 1) == model[start - 3 :]
                assert reader.hard_state == wal.hard_state
            assert [reader.term_at(i) for i in range(len(model) + 2)] == [wal.term_at(i) for i in range(len(model) + 2)]
        assert len(segments(tmp_path / "wal")) > 3
        # Between two reads the writer fills a segment, supersedes its end and
        # rotates: the reader must finish the old segment before the new one.
        for _ in range(2):
            before = len(segments(tmp_path / "wal"))
            while len(segments(tmp_path / "wal")) == before:
                entries = batch(len(model) + 1, len(model) + 6, term=wal.last_term)
                wal.append(entries)
                model += entries
                entries = batch(len(model) - 1, len(model), term=wal.last_term + 1)
                wal.append(entries)
                model[-2:] = entries
            wal.sync()
            assert reader.entries(1, len(model) + 1) == model
            assert reader.last_term == model[-1].term
        # A record in the making (half written) is "not there yet", never an error.
        last_seg = segments(tmp_path / "wal")[-1]
        term = wal.last_term + 1
        record = records.encode_entries(batch(len(model) + 1, len(model) + 4, term=term))
        with open(last_seg, "ab") as f:
            f.write(record[:-10])
        assert reader.last_index == len(model)
        with open(last_seg, "ab") as f:
            f.write(record[-10:])
        assert reader.last_index == len(model) + 4
        assert reader.term_at(len(model) + 4) == term
    late = WalReader(tmp_path / "wal")  # a reader opened on an existing log sees it all
    assert late.entries(1, len(model) + 1) == model
    late.close()
    reader.close()


def test_reader_reports_corruption_in_a_sealed_segment(tmp_path: Path) -> None:
    filled(tmp_path, batches=20, per_batch=10, segment_bytes=1024)
    first = segments(tmp_path)[0]
    flip_byte(first, record_offsets(first)[-1][0] + records.HEADER.size + 3)
    with pytest.raises(WalCorruptError, match=first.name):
        WalReader(tmp_path).refresh()


# -- kill -9 ---------------------------------------------------------------------

CHILD = textwrap.dedent(
    """
    import sys
    from sandzmq.raft.messages import Entry, HardState
    from sandzmq.storage import WriteAheadLog

    wal = WriteAheadLog.open(sys.argv[1], segment_bytes=256 << 10)
    start = wal.last_index + 1
    print("start", start, flush=True)
    while True:
        entries = [Entry(i, 7, (b"%d|" % i) * 100) for i in range(start, start + 64)]
        wal.append(entries, HardState(7, "n1", start - 1))
        wal.sync()
        print("synced", entries[-1].index, flush=True)
        start += 64
    """
)


def expected_entry(i: int) -> Entry:
    return Entry(i, 7, (b"%d|" % i) * 100)


@pytest.mark.integration
def test_kill_9_loses_nothing_that_was_synced(tmp_path: Path) -> None:
    """A child appends and syncs batches and is SIGKILLed mid-way, three times over;
    each reopen holds everything the child reported synced, and the child
    continues where the log ends."""
    synced = 0
    for round_ in range(3):
        child = subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path)], stdout=subprocess.PIPE, text=True)
        assert child.stdout is not None
        first_line = child.stdout.readline().split()
        assert first_line[0] == "start" and int(first_line[1]) >= synced + 1
        reports = 0
        for line in child.stdout:
            synced = int(line.split()[1])
            reports += 1
            if reports == 20 + 7 * round_:
                break
        os.kill(child.pid, signal.SIGKILL)
        for line in child.stdout:  # lines already in the pipe were synced too
            if line.startswith("synced"):
                synced = int(line.split()[1])
        assert child.wait(timeout=30) == -signal.SIGKILL
        with WriteAheadLog.open(tmp_path) as wal:
            assert wal.last_index >= synced
            assert wal.entries(1, synced + 1) == [expected_entry(i) for i in range(1, synced + 1)]
            assert wal.hard_state.term == 7 and wal.hard_state.commit >= synced - 64
    assert len(segments(tmp_path)) > 1


# -- model-based property test -----------------------------------------------------

operations = st.lists(
    st.one_of(
        # append n entries starting `back` entries before the end (0: plain append)
        st.tuples(st.just("append"), st.integers(1, 6), st.integers(0, 8), st.integers(0, 2), st.booleans()),
        st.tuples(st.just("hard_state"), st.integers(0, 50)),
        st.tuples(st.just("sync")),
        st.tuples(st.just("reopen")),
    ),
    max_size=40,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(operations)
def test_wal_matches_a_model_list(ops: list[tuple]) -> None:
    with tempfile.TemporaryDirectory() as directory:
        open_ = lambda: WriteAheadLog.open(directory, segment_bytes=700, fsync=False)  # noqa: E731
        wal, reader = open_(), WalReader(directory)
        model: list[Entry] = []
        hard_state = HardState()
        try:
            for op in ops:
                if op[0] == "append":
                    _, n, back, bump, with_hs = op
                    start = max(1, len(model) + 1 - back)
                    term = (model[start - 2].term if start > 1 else 1) + bump
                    entries = [
                        Entry(i, term + (i - start) // 3, data_for(i, term, 10 + i % 7))
                        for i in range(start, start + n)
                    ]
                    if with_hs:
                        hard_state = HardState(term, f"n{term}", start - 1)
                    wal.append(entries, hard_state if with_hs else None)
                    model = model[: start - 1] + entries
                elif op[0] == "hard_state":
                    hard_state = HardState(op[1], None, min(op[1], len(model)))
                    wal.append([], hard_state)
                elif op[0] == "sync":
                    wal.sync()
                else:
                    wal.close()
                    wal = open_()
                for log in (wal, reader):
                    assert (log.last_index, log.hard_state) == (len(model), hard_state)
                    assert log.last_term == (model[-1].term if model else 0)
                    assert log.entries(1, len(model) + 1) == model
                    assert [log.term_at(i) for i in range(1, len(model) + 2)] == [e.term for e in model] + [None]
        finally:
            wal.close()
            reader.close()
