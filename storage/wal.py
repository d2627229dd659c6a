"""The segmented write-ahead log: the log-store actor's durable Raft log.

Layout: a private directory (0700, files 0600: files.py) of segment files
`<seq>-<first index>.wal` (16 hex digits each, so names sort in log order),
each a header plus records (records.py), and a LOCK file that keeps a second
writer out. A segment is created with files.write_file_atomically (written
under a temporary name with its header and a copy of the current hard
state, fsynced, renamed into place, directory fsynced): a segment is either
absent or whole, and every segment carries the hard state of its time, so
older segments can later be deleted whole (compact()).

Writes only ever append. Overwriting a divergent suffix (a follower taking a
new leader's entries) is an ENTRIES record whose first index is <= the last
index: it supersedes every entry from that index on, as in etcd's wal. The
file is never cut back, because cutting at the superseded entries would also
cut the HARD_STATE records written after them -- a vote already reported
durable could be lost, and with it election safety. The only truncation is
of a torn tail, at recovery, before anything is appended.

Durability is explicit: append() hands bytes to the OS; sync() makes
everything appended so far durable with one fdatasync (group commit). The
caller reports entries durable only after sync() returns.

After a failed fsync the page cache cannot be trusted: Linux may have
marked the pages it could not write clean, so they read back as records the
disk does not have ("fsyncgate"). The log then refuses all further use,
and records, in a small marker file (SYNC_FAILED), the segment and the
byte offset its last successful sync covered. The next open() cuts the
segment back to that offset (nothing after it was acknowledged: that needs
a successful sync) and removes the marker. Writing the marker may fail too,
so open() never appends to a segment it cannot vouch for: it appends to the
last segment only if that holds nothing but what its creation wrote and
fsynced, and otherwise starts a new one. The price is one more segment per
restart of a log that was written to (compaction will delete old segments
whole); the gain is that open() needs no way to tell a clean stop from a
failed one.

In memory there is no entry data: per live ENTRIES record its first index and
location (parallel arrays searched with bisect), and the terms as runs (Raft
terms never decrease along a log, so runs are few). entries() reads records
back from disk, keeping the last decoded record for sequential readers.

WalReader is the same view of the log for another process (the Raft actor):
it indexes what the writer has written, incrementally, and never writes.

Compaction (issue 10). Once a snapshot covers a prefix of the log, whole
segments are deleted. Where the log then starts is recorded in a small file,
BASE (JSON with a CRC, replaced atomically: files.py): the first segment
number still in use, and the index and term of the entry just before that
segment's first entry (the log's base: term_at(first_index - 1) must keep
answering after the entry itself is gone). The BASE file is the commit
point, and the crash ordering is:

    compact(upto):  1. write BASE {first_seq: k, index: f_k - 1, term}  (fsynced, renamed, dir fsynced)
                    2. unlink segments 1..k-1, oldest first; fsync the directory
    reset(i, t):    0. (the caller) the snapshot file at (i, t) is renamed into place and
                       its directory fsynced -- before the log that it replaces goes
                    1. write BASE {first_seq: active + 1, index: i, term: t}
                    2. create segment active + 1 starting at index i + 1 (atomically)
                    3. unlink every older segment; fsync the directory

open() reads BASE first and finishes whatever a crash interrupted: segments
numbered below first_seq are deleted again, and a missing first_seq segment
(a reset cut short before step 2) is created. A crash before step 1 leaves
the old BASE and every segment: the log as it was. So a crash leaves the old
log or the new one, never a log with a hole. A segment k is only ever chosen
as the new first segment when every record in it and after it starts at or
after its nominal first index f_k (the index in its name): then recovery can
index it from the base without the segments before it. Compaction never
deletes the active segment nor any segment holding an entry above `upto`.

Why a file and not the reserved SNAPSHOT record type: recovery must know the
base before it indexes the first remaining segment, and a record lives in
the last segment; a file read first needs no second pass.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import time
import zlib
from array import array
from bisect import bisect_left, bisect_right
from dataclasses import dataclass, field
from pathlib import Path

import msgpack
from sandzmq.protocol import logdata
from sandzmq.raft.messages import MAX_INDEX, Entry, EntryColumns, HardState

from . import records
from .errors import LogCompactedError, StorageError, WalCorruptError
from .files import PRIVATE_FILE_MODE, TMP_SUFFIX, fsync_dir, make_private_dir, write_all, write_file_atomically

log = logging.getLogger(__name__)

_SEGMENT_NAME = re.compile(r"^([0-9a-f]{16})-([0-9a-f]{16})\.wal$")
_LOCK_NAME = "LOCK"
_SYNC_FAILED_NAME = "SYNC_FAILED"
_BASE_NAME = "BASE"
_BASE_FORMAT = 1
_MAX_INDEX = MAX_INDEX + 1  # indexes and terms are below this (raft/messages.py)
# fdatasync flushes the data and the size, which is all a log needs. Platforms
# without it get fsync (on macOS even that stops at the drive's cache).
_fdatasync = getattr(os, "fdatasync", os.fsync)


def segment_name(seq: int, first_index: int) -> str:
    return f"{seq:016x}-{first_index:016x}.wal"


def list_segments(directory: Path) -> list[tuple[int, Path]]:
    """(seq, path) of every segment in `directory`, oldest first."""
    found = []
    for name in os.listdir(directory):
        match = _SEGMENT_NAME.match(name)
        if match:
            found.append((int(match.group(1), 16), directory / name))
    found.sort()
    return found


@dataclass(frozen=True, slots=True)
class LogBase:
    """Where a compacted log starts: segment `first_seq` on, entries after `index`,
    whose entry `index` (gone) had term `term`. LogBase() is an uncompacted log.
    `hard_state` is the one durable when the base was written: a reset() cut
    short before it created its segment has deleted the segments holding it."""

    first_seq: int = 1
    index: int = 0
    term: int = 0
    hard_state: HardState = field(default_factory=HardState)


def _base_crc(fields: dict[str, object]) -> int:
    return zlib.crc32(json.dumps(fields, sort_keys=True).encode())


def read_base(directory: Path) -> LogBase:
    """The BASE file of `directory` (LogBase() if there is none); WalCorruptError if damaged."""
    path = directory / _BASE_NAME
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return LogBase()
    try:
        doc = json.loads(raw)
        crc = doc.pop("crc")
        if doc.get("format") != _BASE_FORMAT or crc != _base_crc(doc):
            raise ValueError("unknown format or checksum mismatch")
        numbers = doc["first_seq"], doc["index"], doc["term"]
        if not all(type(v) is int and 0 <= v < _MAX_INDEX for v in numbers) or numbers[0] < 1:
            raise ValueError("a field is out of range")
        hard_state = records.decode_hard_state(msgpack.packb(doc["hard_state"]))
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise WalCorruptError(path, 0, f"unreadable log base ({exc})") from None
    return LogBase(*numbers, hard_state)


def write_base(directory: Path, base: LogBase, *, fsync: bool) -> None:
    """Replace the BASE file atomically: the commit point of compact() and reset()."""
    doc: dict[str, object] = {
        "format": _BASE_FORMAT,
        "first_seq": base.first_seq,
        "index": base.index,
        "term": base.term,
        "hard_state": logdata.encode_hard_state(base.hard_state),
    }
    doc["crc"] = _base_crc(doc)
    write_file_atomically(directory / _BASE_NAME, json.dumps(doc, sort_keys=True).encode() + b"\n", fsync=fsync)


def segment_first_index(path: Path) -> int:
    """The first index a segment was created for (from its name)."""
    match = _SEGMENT_NAME.match(path.name)
    assert match is not None
    return int(match.group(2), 16)


@dataclass
class RecoveryReport:
    """What WriteAheadLog.open() found and did; str() is a one-line summary for the log."""

    directory: str
    segments: list[str] = field(default_factory=list)
    records: int = 0  # valid records read
    created: bool = False  # the directory held no log: a new one was started
    torn_segment: str | None = None  # the segment whose torn tail was cut off
    torn_offset: int | None = None  # ... at this byte offset
    torn_bytes: int = 0  # ... this many bytes
    torn_problem: str | None = None  # ... because of this
    unsynced_segment: str | None = None  # the segment cut back after a failed sync (SYNC_FAILED)
    unsynced_bytes: int = 0  # ... by this many bytes, never synced
    started_segment: str | None = None  # a new segment for the appends (the last one had been written to)
    removed_temp_files: list[str] = field(default_factory=list)
    removed_compacted: list[str] = field(default_factory=list)  # segments below the base, left by a crash
    base_index: int = 0  # the log's base (LogBase.index): 0 unless compacted
    seconds: float = 0.0

    def __str__(self) -> str:
        text = f"{self.directory}: recovered {self.records} records from {len(self.segments)} segments"
        if self.created:
            text += " (new log)"
        if self.base_index:
            text += f", compacted up to index {self.base_index}"
        if self.removed_compacted:
            text += f"; removed {len(self.removed_compacted)} compacted segments a crash left behind"
        if self.torn_segment:
            text += (
                f"; cut a torn tail of {self.torn_bytes} bytes from {self.torn_segment} at offset "
                f"{self.torn_offset} ({self.torn_problem})"
            )
        if self.unsynced_segment:
            text += f"; cut {self.unsynced_bytes} bytes never synced from {self.unsynced_segment} (a sync had failed)"
        if self.started_segment:
            text += f"; appending to a new segment {self.started_segment}"
        return text + f" in {self.seconds * 1000:.1f} ms"


class _LogIndex:
    """Where each live entry is on disk and what its term is, without its data.

    Row k of (firsts, segs, offsets, sizes) is an ENTRIES record still (partly)
    live: its first index and its location. Its last live index is the next
    row's first index minus one (the last row's: last_index); a superseded
    record keeps its bytes on disk, only the rows after the supersede point
    go. Terms are runs (run_starts[k] is the first index of term run_terms[k]).
    first_index/base_term are 1/0 until compaction moves them (rebase()).
    """

    __slots__ = (
        "first_index",
        "base_term",
        "last_index",
        "hard_state",
        "firsts",
        "segs",
        "offsets",
        "sizes",
        "run_starts",
        "run_terms",
    )

    def __init__(self) -> None:
        self.first_index = 1
        self.base_term = 0
        self.last_index = 0
        self.hard_state = HardState()
        self.firsts, self.segs, self.offsets, self.sizes = (array("q") for _ in range(4))
        self.run_starts, self.run_terms = array("q"), array("q")

    def term_at(self, index: int) -> int | None:
        if index == self.first_index - 1:
            return self.base_term
        if not self.first_index <= index <= self.last_index:
            return None
        return self.run_terms[bisect_right(self.run_starts, index) - 1]

    def problem(self, first: int, terms: int | list[int]) -> str | None:
        """Why a batch starting at `first` with these terms (one term for the whole
        batch, or each entry's) cannot be appended, or None."""
        if first > self.last_index + 1:
            return f"entries start at index {first} but the log ends at {self.last_index}: a gap"
        if first < self.first_index:
            return f"entries start at index {first}, before the log's first index {self.first_index}"
        previous = self.term_at(first - 1)
        assert previous is not None  # first - 1 is within [first_index - 1, last_index]: checked above
        for term in (terms,) if isinstance(terms, int) else terms:
            if term < previous:
                return f"term {term} at or after index {first} follows term {previous}: terms never decrease"
            previous = term
        return None

    def add(self, first: int, last: int, terms: int | list[int], seg: int, offset: int, size: int) -> None:
        """Index an ENTRIES record [first, last] (already checked by problem())."""
        if first <= self.last_index:  # supersede: forget everything from `first` on
            cut = bisect_left(self.firsts, first)
            for column in (self.firsts, self.segs, self.offsets, self.sizes):
                del column[cut:]
            cut = bisect_left(self.run_starts, first)
            del self.run_starts[cut:]
            del self.run_terms[cut:]
        self.firsts.append(first)
        self.segs.append(seg)
        self.offsets.append(offset)
        self.sizes.append(size)
        current = self.run_terms[-1] if self.run_terms else -1
        for index, term in enumerate((terms,) if isinstance(terms, int) else terms, first):
            if term != current:
                self.run_starts.append(index)
                self.run_terms.append(term)
                current = term
        self.last_index = last

    def rebase(self, base: LogBase) -> None:
        """Forget what segments below base.first_seq held (compact() or reset() removed
        them): rows there go; the log starts after base.index, whose term was base.term.
        When nothing indexed survives, the log is empty at the base (a reset)."""
        cut = bisect_left(self.segs, base.first_seq)  # segment numbers never decrease along the rows
        for column in (self.firsts, self.segs, self.offsets, self.sizes):
            del column[:cut]
        if not self.firsts and self.last_index != base.index:
            self.last_index = base.index
            del self.run_starts[:], self.run_terms[:]
        self.first_index, self.base_term = base.index + 1, base.term
        keep = bisect_right(self.run_starts, base.index + 1) - 1  # the run holding the first entry
        if keep > 0:
            del self.run_starts[:keep], self.run_terms[:keep]

    def load(self, kind: int, payload: memoryview, seg: int, offset: int) -> None:
        """Index a record read back from disk; ValueError if its content is impossible."""
        if kind == records.HARD_STATE:
            self.hard_state = records.decode_hard_state(payload)
            return
        columns = records.decode_entries(kind, payload)
        first, all_terms = columns.first_index, columns.terms
        # The decoder checked that terms never decrease: equal ends, one term.
        terms = all_terms[0] if all_terms[0] == all_terms[-1] else all_terms
        problem = self.problem(first, terms)
        if problem:
            raise ValueError(problem)
        self.add(first, first + len(all_terms) - 1, terms, seg, offset, records.HEADER.size + len(payload))


class _LogView:
    """Reads shared by the writer and the reader: terms from memory, entries from disk."""

    _index: _LogIndex

    def _refresh(self) -> None:
        """Bring the index up to date with the files (the reader's hook)."""

    def _fd(self, seq: int) -> int:
        raise NotImplementedError

    def _path(self, seq: int) -> Path:
        raise NotImplementedError

    @property
    def hard_state(self) -> HardState:
        self._refresh()
        hs = self._index.hard_state
        return HardState(hs.term, hs.vote, hs.commit)

    @property
    def first_index(self) -> int:
        self._refresh()
        return self._index.first_index

    @property
    def last_index(self) -> int:
        self._refresh()
        return self._index.last_index

    @property
    def last_term(self) -> int:
        self._refresh()
        term = self._index.term_at(self._index.last_index)
        assert term is not None  # the last index is always in the log (or its base)
        return term

    def term_at(self, index: int) -> int | None:
        """The term of the entry at `index`; first_index - 1 answers the base term
        (0 for index 0); None outside the log."""
        self._refresh()
        return self._index.term_at(index)

    def entries(self, lo: int, hi: int, max_bytes: int | None = None) -> list[Entry]:
        """Entries [lo, hi), read from disk. With max_bytes, stop once their data
        exceeds it (always at least one entry, as raft/log.py's MemoryLog does).
        IndexError if the range is not within [first_index, last_index + 1)."""
        self._refresh()
        ix = self._index
        if lo >= hi:
            return []
        if lo < ix.first_index:
            raise LogCompactedError(lo, ix.first_index)
        if hi > ix.last_index + 1:
            raise IndexError(f"entries [{lo}, {hi}) are outside the log [{ix.first_index}, {ix.last_index}]")
        out: list[Entry] = []
        k = bisect_right(ix.firsts, lo) - 1
        index, size = lo, 0
        while index < hi:
            first = ix.firsts[k]
            stop = min(hi, ix.firsts[k + 1]) if k + 1 < len(ix.firsts) else hi
            columns = self._columns(k)
            if columns.first_index != first or len(columns.datas) < stop - first:
                raise WalCorruptError(
                    self._path(ix.segs[k]),
                    ix.offsets[k],
                    f"record does not hold entries {index}..{stop - 1} as indexed",
                )
            if max_bytes is not None:
                for n, data in enumerate(columns.datas[index - first : stop - first]):
                    size += len(data)
                    if size > max_bytes and (out or n):
                        out += records.entries_between(columns, index, index + n)
                        return out
            out += records.entries_between(columns, index, stop)
            index, k = stop, k + 1
        return out

    _cached: tuple[tuple[int, int], EntryColumns | None] = ((0, 0), None)

    def _columns(self, k: int) -> EntryColumns:
        """The decoded entries of index row k, re-checking the CRC (disks rot)."""
        ix = self._index
        key = (ix.segs[k], ix.offsets[k])
        cached = self._cached
        if cached[0] == key and cached[1] is not None:
            return cached[1]
        buf = os.pread(self._fd(key[0]), ix.sizes[k], key[1])
        found = records.read_record(buf, 0)
        try:
            if isinstance(found, str):
                raise ValueError(found)
            if found[0] not in records.ENTRY_TYPES:
                raise ValueError(f"record type {found[0]} where entries were indexed")
            columns = records.decode_entries(found[0], memoryview(buf)[found[1] : found[2]])
        except (ValueError, TypeError) as exc:
            raise WalCorruptError(self._path(key[0]), key[1], f"re-reading an indexed record: {exc}") from None
        self._cached = (key, columns)
        return columns


class WriteAheadLog(_LogView):
    """The writer. One per directory (a LOCK file enforces it); not thread-safe:
    the log-store actor owns it. Build it with WriteAheadLog.open()."""

    def __init__(self, directory: Path, segment_bytes: int, fsync: bool) -> None:
        self.directory = directory
        self.segment_bytes = segment_bytes
        self.fsync = fsync
        self._index = _LogIndex()
        self._paths: dict[int, Path] = {}  # seq -> path, every segment
        self._read_fds: dict[int, int] = {}  # seq -> O_RDONLY fd, opened on first read
        self._seq = 0  # the active (last) segment
        self._wfd = -1  # its fd, positioned at its end
        self._size = 0  # its size
        self._synced = 0  # bytes of it that the last successful sync covered
        self._dirty = False  # appended since the last sync
        self._failed: BaseException | None = None
        self._lock_fd = -1
        self.recovery_report = RecoveryReport(str(directory))

    @classmethod
    def open(
        cls, directory: str | os.PathLike[str], *, segment_bytes: int = 64 << 20, fsync: bool = True
    ) -> WriteAheadLog:
        """Open (creating if needed) the log in `directory` and recover it.

        Raises WalCorruptError when the log is damaged other than by a crash,
        StorageError when another writer holds the directory."""
        if segment_bytes <= 0:
            raise ValueError(f"segment_bytes must be positive, not {segment_bytes}")
        wal = cls(Path(directory), segment_bytes, fsync)
        try:
            wal._lock()
            wal._recover()
        except BaseException:
            wal._close_fds()
            raise
        return wal

    # -- writing ---------------------------------------------------------------

    def append(self, entries: list[Entry], hard_state: HardState | None = None) -> None:
        """Write a batch of consecutive entries (one record) and/or a hard state to
        the OS; not durable until sync(). A batch starting at or before last_index
        supersedes the log from its first index on. ValueError on a gap, on
        non-consecutive indexes, on decreasing terms or below first_index.

        The checks cost O(1) per batch, not per entry: consecutive indexes are
        checked at the ends, and a batch whose first and last terms are equal is
        taken to be all of that term (terms never decrease along a Raft log)."""
        self._check_usable()
        ix = self._index
        data = b""
        if entries:
            first, last = entries[0].index, entries[-1].index
            if last - first + 1 != len(entries):
                raise ValueError(f"batch {first}..{last} has {len(entries)} entries: indexes not consecutive")
            first_term, last_term = entries[0].term, entries[-1].term
            terms = first_term if first_term == last_term else [e.term for e in entries]
            problem = ix.problem(first, terms)
            if problem:
                raise ValueError(problem)
            data = records.encode_entries(entries)
        elif hard_state is None:
            return
        size = len(data)
        if hard_state is not None:
            data += records.encode_hard_state(hard_state)
        if self._size >= self.segment_bytes:
            self._rotate(first if entries else ix.last_index + 1)
        offset = self._size
        self._write(data)
        if entries:
            ix.add(first, last, terms, self._seq, offset, size)
        if hard_state is not None:
            ix.hard_state = HardState(hard_state.term, hard_state.vote, hard_state.commit)

    def sync(self) -> None:
        """Make everything appended so far durable: one fdatasync for all of it
        (group commit). With fsync=False this does nothing: os.write already
        handed the bytes to the OS, which keeps them across a process crash but
        not across a machine crash."""
        self._check_usable()
        if self._dirty:
            if self.fsync:
                try:
                    _fdatasync(self._wfd)
                except OSError as exc:
                    self._fail(exc)
            self._dirty = False
            self._synced = self._size

    def compact(self, upto_index: int) -> int:
        """Delete the segments whose entries are all at or below `upto_index`, once a
        durable snapshot covers them (the caller's duty: the log cannot check it).

        Deletes whole segments only, never the active one nor one holding an entry
        after `upto_index`, so what remains may start before `upto_index` (the
        trailing window a briefly absent follower catches up from). Returns the
        log's first index afterwards. Crash-safe: the BASE file is written first,
        and open() finishes a deletion a crash interrupted (module docstring)."""
        self._check_usable()
        if upto_index < 0 or upto_index >= _MAX_INDEX:
            raise ValueError(f"compaction index {upto_index} is out of range")
        ix = self._index
        first_seq = min(self._paths)
        target = None
        for seq in sorted(self._paths, reverse=True):  # the newest segment that can become the first
            if seq <= first_seq:
                break
            first = segment_first_index(self._paths[seq])
            if first - 1 <= upto_index and self._can_start_log(seq, first):
                target = seq, first
                break
        if target is None:
            return ix.first_index
        seq, first = target
        base_term = ix.term_at(first - 1)
        assert base_term is not None  # _can_start_log: first - 1 is within [first_index - 1, last_index]
        base = LogBase(seq, first - 1, base_term, ix.hard_state)
        write_base(self.directory, base, fsync=self.fsync)
        self._drop_segments_below(seq)
        ix.rebase(base)
        self.recovery_report.base_index = base.index
        log.info("%s: compacted the log up to index %d (segments before %d deleted)", self.directory, base.index, seq)
        return ix.first_index

    def _can_start_log(self, seq: int, first: int) -> bool:
        """Can segment `seq` (created for index `first`) be the log's first segment:
        does every record from it on start at or after `first`? The first live row
        in it or later starts at the smallest first index written there (a record
        cuts only rows from its own first index on), so one comparison says it."""
        ix = self._index
        k = bisect_left(ix.segs, seq)
        if k < len(ix.firsts):
            return ix.firsts[k] == first
        return ix.last_index == first - 1  # nothing written since: it was created at last_index + 1

    def reset(self, snapshot_index: int, snapshot_term: int) -> None:
        """Discard the whole log for an installed snapshot at (index, term): the log
        becomes empty, starting after it, in a new segment; the hard state stays.

        Call only once the snapshot file is renamed into place and its directory
        fsynced: from the BASE write on, a crash leaves the new, empty log."""
        self._check_usable()
        if not (0 <= snapshot_index < _MAX_INDEX and 0 <= snapshot_term < _MAX_INDEX):
            raise ValueError(f"snapshot index {snapshot_index} / term {snapshot_term} out of range")
        if snapshot_term < self._index.base_term:
            raise ValueError(f"snapshot term {snapshot_term} is below the log's base term {self._index.base_term}")
        self.sync()
        base = LogBase(self._seq + 1, snapshot_index, snapshot_term, self._index.hard_state)
        write_base(self.directory, base, fsync=self.fsync)
        old_fd = self._wfd
        self._create_segment(base.first_seq, snapshot_index + 1)
        os.close(old_fd)
        self._drop_segments_below(base.first_seq)
        self._index.rebase(base)
        self._cached = ((0, 0), None)
        self.recovery_report.base_index = base.index
        log.info("%s: log reset to start after a snapshot at index %d, term %d", self.directory, base.index, base.term)

    def _drop_segments_below(self, first_seq: int) -> None:
        """Unlink segments numbered below first_seq, oldest first, then fsync the directory."""
        for seq in sorted(s for s in self._paths if s < first_seq):
            fd = self._read_fds.pop(seq, None)
            if fd is not None:
                os.close(fd)
            try:
                os.unlink(self._paths.pop(seq))
            except FileNotFoundError:
                pass
        if self.fsync:
            fsync_dir(self.directory)

    def close(self) -> None:
        """Sync what is pending and release the files; idempotent."""
        try:
            if self._wfd >= 0 and self._failed is None:
                self.sync()
        finally:
            self._close_fds()

    def __enter__(self) -> WriteAheadLog:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- internals -------------------------------------------------------------

    def _check_usable(self) -> None:
        if self._failed is not None:
            raise StorageError(
                f"{self.directory}: the write-ahead log failed earlier ({self._failed}); "
                "restart the log store to recover from what is on disk"
            )
        if self._wfd < 0:
            raise StorageError(f"{self.directory}: the write-ahead log is closed")

    def _fail(self, exc: OSError) -> None:
        """After a failed write or fsync the file's state is unknown (a partial
        record, or pages the kernel dropped: retrying fsync can falsely succeed).
        Refuse all further use, and tell the next open() where the active
        segment stops being trustworthy (the module docstring)."""
        self._failed = exc
        if self._wfd >= 0:
            self._record_failure(exc)
        raise StorageError(f"{self.directory}: write-ahead log I/O failed: {exc}; restart to recover") from exc

    def _record_failure(self, exc: OSError) -> None:
        """Best effort: the disk that failed may fail this write too."""
        marker = {"segment": self._paths[self._seq].name, "synced_bytes": self._synced, "error": str(exc)}
        try:
            write_file_atomically(self.directory / _SYNC_FAILED_NAME, json.dumps(marker).encode(), fsync=self.fsync)
        except OSError as marker_exc:
            log.error(
                "%s: cannot record the failure in %s (%s); the next open starts a new segment anyway",
                self.directory,
                _SYNC_FAILED_NAME,
                marker_exc,
            )

    def _write(self, data: bytes) -> None:
        try:
            write_all(self._wfd, data)
        except OSError as exc:
            self._fail(exc)
        self._size += len(data)
        self._dirty = True

    def _rotate(self, first_index: int) -> None:
        """Start segment seq+1. The old segment is made durable first: once a newer
        segment exists, recovery reads damage in the old one as corruption."""
        self.sync()
        old_fd = self._wfd
        self._create_segment(self._seq + 1, first_index)
        os.close(old_fd)

    def _create_segment(self, seq: int, first_index: int) -> None:
        path = self.directory / segment_name(seq, first_index)
        data = records.segment_header() + records.encode_hard_state(self._index.hard_state)
        try:
            write_file_atomically(path, data, fsync=self.fsync)
            fd = os.open(path, os.O_RDWR)
        except OSError as exc:
            self._fail(exc)
        os.lseek(fd, len(data), os.SEEK_SET)
        self._paths[seq] = path
        self._seq, self._wfd, self._size, self._dirty = seq, fd, len(data), False
        self._synced = len(data)

    def _lock(self) -> None:
        make_private_dir(self.directory)
        self._lock_fd = os.open(self.directory / _LOCK_NAME, os.O_RDWR | os.O_CREAT, PRIVATE_FILE_MODE)
        os.fchmod(self._lock_fd, PRIVATE_FILE_MODE)  # the umask, or an older version's 0644
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StorageError(f"{self.directory}: the write-ahead log is already open in another writer") from None

    def _recover(self) -> None:
        started = time.monotonic()
        report = self.recovery_report
        for name in os.listdir(self.directory):
            if name.endswith(TMP_SUFFIX):  # a file write (a rotation) that never completed
                os.unlink(self.directory / name)
                report.removed_temp_files.append(name)
        if report.removed_temp_files and self.fsync:
            fsync_dir(self.directory)
        failed_sync = self._read_sync_failure()
        base = read_base(self.directory)
        segments = list_segments(self.directory)
        stale = [(seq, path) for seq, path in segments if seq < base.first_seq]
        if stale:  # a compact() or reset() that a crash interrupted after its BASE write
            for _, path in stale:
                os.unlink(path)
                report.removed_compacted.append(path.name)
            if self.fsync:
                fsync_dir(self.directory)
            segments = segments[len(stale) :]
            if failed_sync is not None and failed_sync[0] in report.removed_compacted:
                failed_sync = None  # its segment is gone whole: nothing of it to cut
        if base.first_seq > 1:
            self._index.rebase(base)
            self._index.hard_state = base.hard_state  # the segments' own records, newer, override it
            report.base_index = base.index
            if not segments or segments[0][0] != base.first_seq:
                # A reset() cut short before it created its segment: the log is empty at the base.
                if segments:
                    raise WalCorruptError(
                        segments[0][1], 0, f"segment number {base.first_seq} is missing before this one"
                    )
                self._create_segment(base.first_seq, base.index + 1)
                os.close(self._wfd)  # reopened below, like any segment holding only its creation
                self._wfd = -1
                segments = [(base.first_seq, self._paths[base.first_seq])]
            elif segment_first_index(segments[0][1]) != base.index + 1:
                raise WalCorruptError(
                    segments[0][1], 0, f"the first segment does not start right after the log base {base.index}"
                )
        if not segments:
            if failed_sync is not None:
                raise WalCorruptError(
                    self.directory / _SYNC_FAILED_NAME, 0, f"names segment {failed_sync[0]}, but there is no segment"
                )
            report.created = True
            self._create_segment(1, 1)
            report.segments = [self._paths[1].name]
            report.seconds = time.monotonic() - started
            return
        # compact() deletes the oldest segments only: numbering has no holes from the first.
        for expected, (seq, path) in enumerate(segments, base.first_seq):
            if seq != expected:
                raise WalCorruptError(path, 0, f"segment number {expected} is missing before this one")
        if failed_sync is not None:
            self._cut_unsynced(*failed_sync)
        end = count = 0
        for seq, path in segments:
            end, count, version = self._recover_segment(seq, path, last=seq == segments[-1][0])
            self._paths[seq] = path
            report.segments.append(path.name)
        seq, path = segments[-1]
        if failed_sync is None and count == 1 and report.torn_segment is None and version == records.VERSION:
            # Nothing but its creation's hard state, which was fsynced before the
            # rename (and of this format: an older build must not find newer records in it).
            self._seq, self._size, self._synced = seq, end, end
            self._wfd = os.open(path, os.O_RDWR)
            os.lseek(self._wfd, end, os.SEEK_SET)
        else:
            self._create_segment(seq + 1, self._index.last_index + 1)
            report.started_segment = self._paths[seq + 1].name
        if failed_sync is not None:
            os.unlink(self.directory / _SYNC_FAILED_NAME)
            if self.fsync:
                fsync_dir(self.directory)
        report.seconds = time.monotonic() - started
        log.info("%s", report)

    def _read_sync_failure(self) -> tuple[str, int] | None:
        """(segment name, bytes synced) from the marker _record_failure() wrote, or None."""
        path = self.directory / _SYNC_FAILED_NAME
        try:
            text = path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            marker = json.loads(text)
            name, synced = marker["segment"], marker["synced_bytes"]
            if not (isinstance(name, str) and _SEGMENT_NAME.match(name) and isinstance(synced, int)):
                raise ValueError(name, synced)
        except (ValueError, KeyError, TypeError):
            raise WalCorruptError(path, 0, "unreadable record of a failed sync") from None
        return name, synced

    def _cut_unsynced(self, name: str, synced: int) -> None:
        """Cut segment `name` back to the `synced` bytes its last successful
        sync covered: what follows may exist only in the page cache."""
        path = self.directory / name
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            raise WalCorruptError(
                self.directory / _SYNC_FAILED_NAME, 0, f"names segment {name}, which does not exist"
            ) from None
        if size < synced:
            raise WalCorruptError(
                path,
                size,
                f"the segment ends before the {synced} bytes that its last "
                f"successful sync covered ({_SYNC_FAILED_NAME})",
            )
        if size > synced:
            self._truncate(path, synced)
        report = self.recovery_report
        report.unsynced_segment, report.unsynced_bytes = name, size - synced
        log.warning(
            "%s: a sync had failed: cut the %d bytes after offset %d, never synced", path, size - synced, synced
        )

    def _truncate(self, path: Path, size: int) -> None:
        fd = os.open(path, os.O_RDWR)
        try:
            os.ftruncate(fd, size)
            if self.fsync:
                os.fsync(fd)
        finally:
            os.close(fd)

    def _recover_segment(self, seq: int, path: Path, last: bool) -> tuple[int, int, int]:
        """Index one segment's records; cut a torn tail if it is the last.
        Returns its end, how many valid records it holds, and its format version."""
        report = self.recovery_report
        count = 0
        data = path.read_bytes()
        problem = records.segment_header_problem(data)
        if problem:
            raise WalCorruptError(path, 0, problem)
        version = records.segment_version(data)

        def on_record(offset: int, kind: int, payload: memoryview) -> None:
            nonlocal count
            try:
                self._index.load(kind, payload, seq, offset)
            except (ValueError, TypeError) as exc:  # msgpack raises both for bad data
                raise WalCorruptError(path, offset, f"record content: {exc}") from None
            report.records += 1
            count += 1

        end, problem = records.scan(data, records.SEGMENT_HEADER.size, on_record)
        if problem is None:
            return end, count, version
        if not last:
            raise WalCorruptError(path, end, f"{problem} (in a segment that a newer one follows)")
        if not records.is_torn_tail(data, end):
            raise WalCorruptError(path, end, f"{problem}, and valid data follows it")
        self._truncate(path, end)
        report.torn_segment, report.torn_offset = path.name, end
        report.torn_bytes, report.torn_problem = len(data) - end, problem
        log.warning("%s: cut a torn tail of %d bytes at offset %d: %s", path, len(data) - end, end, problem)
        return end, count, version

    def _fd(self, seq: int) -> int:
        if seq == self._seq:
            return self._wfd
        fd = self._read_fds.get(seq)
        if fd is None:
            fd = self._read_fds[seq] = os.open(self._paths[seq], os.O_RDONLY)
        return fd

    def _path(self, seq: int) -> Path:
        return self._paths[seq]

    def _close_fds(self) -> None:
        for fd in [self._wfd, self._lock_fd, *self._read_fds.values()]:
            if fd >= 0:
                os.close(fd)
        self._wfd = self._lock_fd = -1
        self._read_fds.clear()


class WalReader(_LogView):
    """A read-only view of a log that another process is writing.

    Every read first indexes what the writer appended since the last read:
    it lists the directory for new segments, then reads only the new bytes of
    the segments it has not finished. A partial record at the end of the
    newest segment is "not written yet", never an error. Superseding records
    update the index exactly as in the writer. The caller reads only what the
    writer reported durable; the reader itself cannot tell synced from
    merely written bytes, and need not.

    Compaction: the BASE file is stat'ed before and after the listing; when
    it changed, the reader forgets the deleted segments (their open fds are
    closed) and starts from the base, and lists again, so a listing is always
    read against the base it was taken under.

    Cost: a directory listing, two stats and an fstat per call (about 6 microseconds).
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self._index = _LogIndex()
        self._paths: dict[int, Path] = {}
        self._fds: dict[int, int] = {}
        self._seq = 0  # the newest segment indexed so far
        self._scanned = 0  # bytes of it indexed
        self._base_stamp: tuple[int, int, int] | None = None  # the BASE file last applied (inode, mtime, size)
        self._base = LogBase()

    def _base_changed(self) -> bool:
        try:
            st = os.stat(self.directory / _BASE_NAME)
        except FileNotFoundError:
            return False  # never compacted (BASE is replaced, never removed)
        return (st.st_ino, st.st_mtime_ns, st.st_size) != self._base_stamp

    def _apply_base(self) -> bool:
        """Move to the base the writer's BASE file records (compact() or reset());
        False if it is the base already applied."""
        st = os.stat(self.directory / _BASE_NAME)
        base = read_base(self.directory)
        self._base_stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        if base == self._base:
            return False
        self._base = base
        for seq in [seq for seq in self._fds if seq < base.first_seq]:
            os.close(self._fds.pop(seq))
            del self._paths[seq]
        if self._seq < base.first_seq:
            self._seq = base.first_seq - 1
            self._scanned = 0
        self._index.rebase(base)
        self._cached = ((0, 0), None)
        return True

    def refresh(self) -> None:
        """Index whatever the writer has appended since the last call."""
        try:
            self._refresh_once()
        except WalCorruptError:
            # Two BASE writes within the file system's timestamp granularity, with
            # the inode reused and the same size, look unchanged to stat: before
            # calling the log corrupt, read the BASE itself.
            if not (self.directory / _BASE_NAME).exists() or not self._apply_base():
                raise
            self._refresh_once()

    def _refresh_once(self) -> None:
        while True:
            if self._base_changed():
                self._apply_base()
            try:
                names = os.listdir(self.directory)
            except FileNotFoundError:  # the writer has not created the log yet
                return
            if not self._base_changed():
                break
        # Names sort by segment number: one string comparison skips the known ones.
        after = f"{self._seq:016x}-~"
        newer = sorted(
            (int(match.group(1), 16), self.directory / name)
            for name in names
            if name > after and (match := _SEGMENT_NAME.match(name))
        )
        # A segment no longer grows once a newer one exists, and the listing
        # came first: so finishing the current one now misses nothing.
        if self._seq in self._fds:
            self._scan(sealed=bool(newer))
        for n, (seq, path) in enumerate(newer):
            if seq != self._seq + 1:
                raise WalCorruptError(path, 0, f"segment {self._seq + 1} is missing before this one")
            fd = os.open(path, os.O_RDONLY)
            self._paths[seq], self._fds[seq] = path, fd
            problem = records.segment_header_problem(os.pread(fd, records.SEGMENT_HEADER.size, 0))
            if problem:
                raise WalCorruptError(path, 0, problem)
            self._seq, self._scanned = seq, records.SEGMENT_HEADER.size
            self._scan(sealed=n < len(newer) - 1)

    _refresh = refresh

    def _scan(self, sealed: bool) -> None:
        seq, path, fd = self._seq, self._paths[self._seq], self._fds[self._seq]
        base = self._scanned
        size = os.fstat(fd).st_size
        if size <= base:
            return
        data = os.pread(fd, size - base, base)

        def on_record(offset: int, kind: int, payload: memoryview) -> None:
            try:
                self._index.load(kind, payload, seq, base + offset)
            except (ValueError, TypeError) as exc:
                raise WalCorruptError(path, base + offset, f"record content: {exc}") from None

        end, problem = records.scan(data, 0, on_record)
        self._scanned = base + end
        if problem and sealed:
            raise WalCorruptError(path, base + end, f"{problem} (in a segment that a newer one follows)")

    def _fd(self, seq: int) -> int:
        return self._fds[seq]

    def _path(self, seq: int) -> Path:
        return self._paths[seq]

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()

    def __enter__(self) -> WalReader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
