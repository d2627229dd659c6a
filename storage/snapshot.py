"""Snapshot files: written streaming, verified before use, sent and received in chunks.

A snapshot replaces a prefix of the Raft log (issue 10, SPEC 7): it holds the
state machine's bytes, the client sessions, the membership, and the index and
term of the last entry it includes. The state machine writes into a sink
(SPEC 6 `snapshot(sink)`) and reads back from a source (`restore(source)`);
neither side ever holds the whole snapshot in memory (it may be a gigabyte).

File `snapshot-<index>-<term>.snap` (16 hex digits each, so names sort by
index, the newest last) in a private directory (0700, files 0600: files.py):

    prefix    8s magic b"SZMQSNAP", u32 format version, u32 header length   (16 bytes)
    header    msgpack map: index, term, cluster, voters, learners, sessions_len
    sessions  sessions_len bytes: the client sessions, opaque here
    state     the state machine's bytes, as long as it wrote
    trailer   8s b"SNAPEND\\n", u64 state length, 32-byte sha256 digest      (48 bytes)

Integers are little-endian. The digest covers every byte before it, so a
flipped byte in any section, or a file cut anywhere, is detected (the
lengths in the header and the trailer must also add up to the file's
size). The state's length is in the trailer because it is known only once
the state machine has finished writing. sha256, not blake2b or crc32: a
CRC misses some multi-bit damage in a gigabyte, and on this machine
(SHA extensions) hashlib's sha256 ran at 1.7 GB/s against blake2b's
1.1 GB/s (crc32: 5.4 GB/s), so verifying 1 GB costs about 0.6 s.

Crash safety: a file is written under a temporary name (TMP_SUFFIX), its
trailer written and fsynced, then renamed to its final name and the
directory fsynced; a crash anywhere leaves the older snapshots and perhaps a
temporary file, never a half file under a final name. Opening the store
removes leftover temporary files. After a commit only the `keep` newest
snapshots stay. The WAL's log prefix is dropped only after that rename is
durable (wal.py's compact() and reset()).

Reading: SnapshotStore.newest() verifies candidates newest first (one
streaming pass over the file) and falls back to an older one when the
newest is corrupt or truncated, reporting which file and why. Only then is
the file opened for restore, whose source is limited to the state section.

InstallSnapshot: read_chunk()/iter_chunks() read the file at offsets on the
leader; SnapshotReceiver takes chunks in order on the follower, fsyncs each
before reporting it durable, rejects what a peer should never send (gaps,
overlaps, oversized chunks or files, impossible headers) with a reason, and
installs the file only once its digest and header check out.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import io
import logging
import os
import re
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import msgpack
from sandzmq.raft.messages import MAX_INDEX

from .errors import StorageError
from .files import PRIVATE_FILE_MODE, TMP_SUFFIX, fsync_dir, make_private_dir, write_all

log = logging.getLogger(__name__)

MAGIC = b"SZMQSNAP"
END_MAGIC = b"SNAPEND\n"
VERSION = 1
PREFIX = struct.Struct("<8sII")  # magic, version, header length
TRAILER = struct.Struct("<8sQ32s")  # end magic, state length, sha256 digest
DIGEST_SIZE = 32
#: Bounds on what a header may claim: anything past them is garbage or hostile.
MAX_HEADER = 1 << 20
MAX_MEMBERS = 1024
MAX_NAME = 256
#: Reads, writes and hashing go in pieces of this size: the memory bound.
BUFFER = 1 << 20
_NAME = re.compile(r"^snapshot-([0-9a-f]{16})-([0-9a-f]{16})\.snap$")
_RECEIVING = "receiving.snap" + TMP_SUFFIX
_fdatasync = getattr(os, "fdatasync", os.fsync)


class SnapshotCorruptError(StorageError):
    """A snapshot file fails its checks; str() names the file and the problem."""

    def __init__(self, path: str | os.PathLike[str], problem: str) -> None:
        self.path = os.fspath(path)
        self.problem = problem
        super().__init__(f"{self.path}: unusable snapshot: {problem}")


class SnapshotTransferError(ValueError):
    """A chunk of an incoming snapshot was refused; `reason` says why and
    `durable_offset` where the sender may resume."""

    def __init__(self, reason: str, durable_offset: int) -> None:
        self.reason = reason
        self.durable_offset = durable_offset
        super().__init__(f"snapshot chunk refused: {reason} (durable up to offset {durable_offset})")


@dataclass(frozen=True, slots=True)
class SnapshotMeta:
    """What a snapshot says about the log it replaces."""

    index: int  # the last entry it includes
    term: int  # ... and that entry's term
    voters: tuple[str, ...] = ()
    learners: tuple[str, ...] = ()
    cluster: str = ""  # the cluster id, so a snapshot of another cluster is refused


@dataclass(frozen=True, slots=True)
class SnapshotInfo:
    """A verified snapshot file and where its sections are."""

    path: Path
    meta: SnapshotMeta
    sessions_offset: int
    sessions_len: int
    state_offset: int
    state_len: int
    size: int
    digest: bytes


def snapshot_name(index: int, term: int) -> str:
    return f"snapshot-{index:016x}-{term:016x}.snap"


def _check_meta(meta: SnapshotMeta) -> str | None:
    """Why `meta` cannot be a snapshot's, or None."""
    for name in ("index", "term"):
        value = getattr(meta, name)
        if type(value) is not int or not 0 <= value <= MAX_INDEX:
            return f"{name} {value!r} is not an integer in [0, {MAX_INDEX}]"
    if not isinstance(meta.cluster, str) or len(meta.cluster) > MAX_NAME:
        return "cluster is not a short string"
    for name in ("voters", "learners"):
        members = getattr(meta, name)
        if len(members) > MAX_MEMBERS or not all(isinstance(m, str) and 0 < len(m) <= MAX_NAME for m in members):
            return f"{name} is not a list of at most {MAX_MEMBERS} node ids"
    return None


def _encode_header(meta: SnapshotMeta, sessions_len: int) -> bytes:
    header = msgpack.packb(
        {
            "index": meta.index,
            "term": meta.term,
            "cluster": meta.cluster,
            "voters": list(meta.voters),
            "learners": list(meta.learners),
            "sessions_len": sessions_len,
        }
    )
    return PREFIX.pack(MAGIC, VERSION, len(header)) + header


def _header_length(prefix: bytes) -> int:
    """The header length a file's prefix announces; ValueError if the prefix is not ours."""
    if len(prefix) < PREFIX.size:
        raise ValueError(f"file is {len(prefix)} bytes, shorter than the {PREFIX.size}-byte prefix")
    magic, version, header_len = PREFIX.unpack_from(prefix)
    if magic != MAGIC:
        raise ValueError(f"bad magic {magic!r}, expected {MAGIC!r}")
    if version != VERSION:
        raise ValueError(f"unsupported snapshot format version {version} (this build reads {VERSION})")
    if header_len > MAX_HEADER:
        raise ValueError(f"header length {header_len} exceeds the bound of {MAX_HEADER}")
    return header_len


def _decode_header(raw: bytes) -> tuple[SnapshotMeta, int]:
    """(meta, sessions length) from a header's bytes; ValueError if impossible."""
    try:
        doc = msgpack.unpackb(raw)
    except Exception as exc:  # msgpack raises several types for garbage
        raise ValueError(f"header is not msgpack ({exc})") from None
    if type(doc) is not dict:
        raise ValueError("header is not a map")
    try:
        voters, learners = doc["voters"], doc["learners"]
        if type(voters) is not list or type(learners) is not list:
            raise ValueError("voters and learners must be lists")
        meta = SnapshotMeta(doc["index"], doc["term"], tuple(voters), tuple(learners), doc["cluster"])
        sessions_len = doc["sessions_len"]
    except KeyError as exc:
        raise ValueError(f"header lacks {exc}") from None
    problem = _check_meta(meta)
    if problem:
        raise ValueError(f"header: {problem}")
    if type(sessions_len) is not int or not 0 <= sessions_len <= MAX_INDEX:
        raise ValueError(f"header: sessions_len {sessions_len!r} is out of range")
    return meta, sessions_len


def _layout(path: Path, fd: int) -> SnapshotInfo:
    """Parse a whole file's structure (not its digest); ValueError if it does not add up."""
    size = os.fstat(fd).st_size
    prefix = os.pread(fd, PREFIX.size, 0)
    header_len = _header_length(prefix)
    fixed = PREFIX.size + header_len + TRAILER.size
    if size < fixed:
        raise ValueError(f"truncated: {size} bytes, but the header alone announces {fixed}")
    raw = os.pread(fd, header_len, PREFIX.size)
    meta, sessions_len = _decode_header(raw)
    state_len = size - fixed - sessions_len
    if state_len < 0:
        raise ValueError(f"truncated: {size} bytes cannot hold the {sessions_len}-byte sessions section")
    end_magic, trailer_state_len, digest = TRAILER.unpack(os.pread(fd, TRAILER.size, size - TRAILER.size))
    if end_magic != END_MAGIC:
        raise ValueError(f"no trailer (bad end magic {end_magic!r}): truncated or damaged")
    if trailer_state_len != state_len:
        raise ValueError(f"trailer says {trailer_state_len} state bytes, the file's size leaves {state_len}")
    sessions_offset = PREFIX.size + header_len
    return SnapshotInfo(
        path, meta, sessions_offset, sessions_len, sessions_offset + sessions_len, state_len, size, digest
    )


def verify_file(path: str | os.PathLike[str]) -> SnapshotInfo:
    """Check a snapshot file's structure and digest in one streaming pass.

    Raises SnapshotCorruptError naming the file and the problem."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as exc:
        raise SnapshotCorruptError(path, f"cannot open: {exc}") from None
    try:
        try:
            info = _layout(path, fd)
        except ValueError as exc:
            raise SnapshotCorruptError(path, str(exc)) from None
        digest = hashlib.sha256()
        offset, end = 0, info.size - DIGEST_SIZE
        while offset < end:
            piece = os.pread(fd, min(BUFFER, end - offset), offset)
            if not piece:
                raise SnapshotCorruptError(path, f"file shrank while being read, at offset {offset}")
            digest.update(piece)
            offset += len(piece)
        if not hmac.compare_digest(digest.digest(), info.digest):
            raise SnapshotCorruptError(path, "checksum mismatch: a byte of the file changed")
    finally:
        os.close(fd)
    return info


def read_chunk(path: str | os.PathLike[str], offset: int, size: int) -> bytes:
    """`size` bytes of a snapshot file from `offset` (fewer at its end): what a
    leader sends in one InstallSnapshot message, read on demand so a lost
    chunk can be re-read at its offset."""
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.pread(fd, size, offset)
    finally:
        os.close(fd)


def iter_chunks(path: str | os.PathLike[str], chunk_size: int) -> Iterator[tuple[int, bytes]]:
    """(offset, bytes) pieces of a snapshot file in order, each at most chunk_size bytes."""
    if chunk_size <= 0:
        raise ValueError(f"chunk_size must be positive, not {chunk_size}")
    with open(path, "rb", buffering=0) as f:
        offset = 0
        while piece := f.read(chunk_size):
            yield offset, piece
            offset += len(piece)


class _Section(io.RawIOBase):
    """A read-only window [start, start + length) of a file: what restore() reads,
    so a state machine cannot read into the trailer or past the end."""

    def __init__(self, fd: int, start: int, length: int) -> None:
        self._fd, self._start, self._length, self._pos = fd, start, length, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        want = min(len(buffer), self._length - self._pos)
        if want <= 0:
            return 0
        piece = os.pread(self._fd, want, self._start + self._pos)
        buffer[: len(piece)] = piece
        self._pos += len(piece)
        return len(piece)


class SnapshotReader:
    """An open, verified snapshot: the sessions blob and a source for restore()."""

    def __init__(self, info: SnapshotInfo) -> None:
        self.info = info
        self.meta = info.meta
        self._fd = os.open(info.path, os.O_RDONLY)
        if os.fstat(self._fd).st_size != info.size:
            os.close(self._fd)
            raise SnapshotCorruptError(info.path, "its size changed since it was verified")

    def sessions(self) -> bytes:
        """The client sessions section (the apply actor held it whole when writing it)."""
        return os.pread(self._fd, self.info.sessions_len, self.info.sessions_offset)

    def state(self) -> BinaryIO:
        """A fresh buffered source over the state section, for StateMachine.restore()."""
        return io.BufferedReader(_Section(self._fd, self.info.state_offset, self.info.state_len), BUFFER)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> SnapshotReader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class SnapshotWriter:
    """The sink StateMachine.snapshot(sink) writes into (write() like a BinaryIO).

    Bytes are buffered up to BUFFER, hashed and written to a temporary file;
    commit() makes the file durable under its final name, abort() removes it.
    As a context manager, leaving without commit() aborts."""

    def __init__(self, store: SnapshotStore, meta: SnapshotMeta, sessions: bytes) -> None:
        problem = _check_meta(meta)
        if problem:
            raise ValueError(f"snapshot meta: {problem}")
        self.store = store
        self.meta = meta
        self.final = store.directory / snapshot_name(meta.index, meta.term)
        self.tmp = self.final.with_name(self.final.name + TMP_SUFFIX)
        self._digest = hashlib.sha256()
        self._buffer = bytearray()
        self._state_len = 0
        self._done = False
        self._fd = os.open(self.tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, PRIVATE_FILE_MODE)
        try:
            os.fchmod(self._fd, PRIVATE_FILE_MODE)
            self._put(_encode_header(meta, len(sessions)))
            self._put(sessions)
        except BaseException:
            self.abort()
            raise

    # BinaryIO's writing half, as much of it as state machines use.
    def write(self, data: bytes | bytearray | memoryview) -> int:
        if self._done:
            raise ValueError("write to a committed or aborted snapshot")
        n = len(memoryview(data).cast("B"))
        self._state_len += n
        self._put(data)
        return n

    def writable(self) -> bool:
        return True

    def flush(self) -> None:
        """Nothing to do: durability comes from commit()."""

    def tell(self) -> int:
        return self._state_len

    @property
    def closed(self) -> bool:
        return self._done

    def _put(self, data: bytes | bytearray | memoryview) -> None:
        self._buffer += data
        if len(self._buffer) >= BUFFER:
            self._drain()

    def _drain(self) -> None:
        self._digest.update(self._buffer)
        write_all(self._fd, bytes(self._buffer))
        self._buffer.clear()

    def commit(self) -> SnapshotInfo:
        """Write the trailer, fsync, rename into place, fsync the directory, then
        delete snapshots beyond the store's `keep`. Returns the new file's info."""
        if self._done:
            raise ValueError("snapshot already committed or aborted")
        try:
            self._buffer += TRAILER.pack(END_MAGIC, self._state_len, b"")[:-DIGEST_SIZE]
            self._drain()
            digest = self._digest.digest()
            write_all(self._fd, digest)
            if self.store.fsync:
                os.fsync(self._fd)
            os.close(self._fd)
            self._fd = -1
            os.replace(self.tmp, self.final)
        except BaseException:
            self.abort()
            raise
        self._done = True
        if self.store.fsync:
            fsync_dir(self.store.directory)
        log.info("%s: snapshot at index %d written (%d state bytes)", self.final, self.meta.index, self._state_len)
        self.store.retain()
        return verify_layout(self.final)

    def abort(self) -> None:
        """Remove the temporary file; the store is as it was. Idempotent."""
        self._done = True
        self._buffer.clear()
        self._fd = _discard(self._fd, self.tmp)

    def __enter__(self) -> SnapshotWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if not self._done:
            self.abort()


def verify_layout(path: Path) -> SnapshotInfo:
    """A file's structure without its digest pass (for a file this process just wrote)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        return _layout(path, fd)
    except ValueError as exc:
        raise SnapshotCorruptError(path, str(exc)) from None
    finally:
        os.close(fd)


class SnapshotReceiver:
    """The follower's side of a chunked InstallSnapshot (one at a time per store).

    Chunks must arrive in order. A duplicate of the last chunk is tolerated
    (its acknowledgement was lost); a chunk at offset 0 restarts the transfer
    and discards the partial file; anything else out of order is refused with
    SnapshotTransferError, as are chunks over max_chunk_bytes, files over
    max_total_bytes and impossible headers (checked as soon as the header is
    in). Each chunk is fsynced before accept() returns: the returned
    durable_offset is what the leader may treat as received. finish() verifies
    the whole file and renames it into place; until then the old snapshots
    and state are untouched."""

    def __init__(self, store: SnapshotStore, *, max_total_bytes: int, max_chunk_bytes: int) -> None:
        self.store = store
        self.max_total_bytes = max_total_bytes
        self.max_chunk_bytes = max_chunk_bytes
        self.tmp = store.directory / _RECEIVING
        self._fd = os.open(self.tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, PRIVATE_FILE_MODE)
        os.fchmod(self._fd, PRIVATE_FILE_MODE)
        self._received = 0
        self._last: tuple[int, int, bytes] | None = None  # offset, length, digest of the last chunk
        self._header_checked = False
        self.meta: SnapshotMeta | None = None

    @property
    def durable_offset(self) -> int:
        """Bytes received and fsynced: where the sender continues."""
        return self._received

    def accept(self, offset: int, data: bytes) -> int:
        """Take one chunk; returns the durable offset (see the class docstring)."""
        if self._fd < 0:
            raise SnapshotTransferError("the transfer is finished or aborted", self._received)
        if len(data) > self.max_chunk_bytes:
            raise SnapshotTransferError(
                f"chunk of {len(data)} bytes exceeds the limit of {self.max_chunk_bytes}", self._received
            )
        if self._last is not None and offset == self._last[0] and len(data) == self._last[1]:
            if hashlib.sha256(data).digest() == self._last[2]:
                return self._received  # a resend of the last chunk: already durable
        if offset == 0 and self._received:
            log.info("%s: snapshot transfer restarted from offset 0, partial file discarded", self.tmp)
            self._restart()
        if offset != self._received:
            kind = "a gap" if offset > self._received else "an overlap"
            raise SnapshotTransferError(
                f"chunk at offset {offset} leaves {kind}: {self._received} bytes received so far", self._received
            )
        if self._received + len(data) > self.max_total_bytes:
            raise SnapshotTransferError(
                f"the snapshot would exceed the limit of {self.max_total_bytes} bytes", self._received
            )
        os.lseek(self._fd, offset, os.SEEK_SET)
        write_all(self._fd, data)
        if self.store.fsync:
            _fdatasync(self._fd)
        self._received += len(data)
        self._last = (offset, len(data), hashlib.sha256(data).digest())
        if not self._header_checked:
            self._check_header()
        return self._received

    def _check_header(self) -> None:
        """Refuse an impossible header as soon as it is complete, not a gigabyte later."""
        if self._received < PREFIX.size:
            return
        try:
            header_len = _header_length(os.pread(self._fd, PREFIX.size, 0))
            if self._received < PREFIX.size + header_len:
                return
            meta, sessions_len = _decode_header(os.pread(self._fd, header_len, PREFIX.size))
            if PREFIX.size + header_len + sessions_len + TRAILER.size > self.max_total_bytes:
                raise ValueError(f"its sessions section of {sessions_len} bytes exceeds the size limit")
            self.store.check_cluster(self.tmp, meta)
        except (ValueError, SnapshotCorruptError) as exc:
            self._restart()
            raise SnapshotTransferError(f"bad snapshot header ({exc}); partial file discarded", 0) from None
        self.meta = meta
        self._header_checked = True

    def _restart(self) -> None:
        os.ftruncate(self._fd, 0)
        self._received = 0
        self._last = None
        self._header_checked = False
        self.meta = None

    def finish(self) -> SnapshotInfo:
        """The last chunk is in: verify the file and rename it into place atomically.
        On a bad file, SnapshotCorruptError and the transfer restarts from 0."""
        if self._fd < 0:
            raise SnapshotTransferError("the transfer is finished or aborted", self._received)
        try:
            info = verify_file(self.tmp)
        except SnapshotCorruptError:
            self._restart()
            raise
        final = self.store.directory / snapshot_name(info.meta.index, info.meta.term)
        os.close(self._fd)
        self._fd = -1
        os.replace(self.tmp, final)
        if self.store.fsync:
            fsync_dir(self.store.directory)
        log.info("%s: snapshot at index %d installed from chunks", final, info.meta.index)
        self.store.retain()
        return dataclasses.replace(info, path=final)

    def abort(self) -> None:
        """Drop the partial file. Idempotent."""
        self._fd = _discard(self._fd, self.tmp)


class SnapshotStore:
    """The snapshot directory: writers, the newest valid snapshot, retention."""

    def __init__(
        self, directory: str | os.PathLike[str], *, keep: int = 2, fsync: bool = True, cluster: str = ""
    ) -> None:
        """`cluster`: when set, a snapshot of another cluster id is refused (read or received)."""
        if keep < 1:
            raise ValueError(f"keep must be at least 1, not {keep}")
        self.directory = Path(directory)
        self.keep = keep
        self.fsync = fsync
        self.cluster = cluster
        self.problems: list[SnapshotCorruptError] = []  # what newest() skipped, and why
        make_private_dir(self.directory)
        self.removed_temp_files = sorted(n for n in os.listdir(self.directory) if n.endswith(TMP_SUFFIX))
        for name in self.removed_temp_files:  # writes or transfers a crash cut short
            os.unlink(self.directory / name)
        if self.removed_temp_files:
            log.info("%s: removed unfinished snapshot files %s", self.directory, self.removed_temp_files)
            if fsync:
                fsync_dir(self.directory)

    def paths(self) -> list[Path]:
        """Snapshot files by their names, newest (highest index, then term) first."""
        found = []
        for name in os.listdir(self.directory):
            match = _NAME.match(name)
            if match:
                found.append((int(match.group(1), 16), int(match.group(2), 16), self.directory / name))
        return [path for *_, path in sorted(found, reverse=True)]

    def begin(self, meta: SnapshotMeta, sessions: bytes) -> SnapshotWriter:
        """A sink for a new snapshot at meta.index (commit() or abort() it)."""
        return SnapshotWriter(self, meta, sessions)

    def newest(self) -> SnapshotInfo | None:
        """The newest snapshot that verifies, or None. Each one skipped is logged
        (which file, why) and kept in self.problems; it is never applied."""
        self.problems = []
        for path in self.paths():
            try:
                info = verify_file(path)
                match = _NAME.match(path.name)
                assert match is not None
                named = int(match.group(1), 16), int(match.group(2), 16)
                if named != (info.meta.index, info.meta.term):
                    raise SnapshotCorruptError(
                        path, f"its header says index {info.meta.index}, term {info.meta.term}: not its name"
                    )
                self.check_cluster(path, info.meta)
                return info
            except SnapshotCorruptError as exc:
                log.error("%s; trying an older snapshot", exc)
                self.problems.append(exc)
        return None

    def check_cluster(self, path: Path, meta: SnapshotMeta) -> None:
        """SnapshotCorruptError if `meta` belongs to another cluster than this store's."""
        if self.cluster and meta.cluster != self.cluster:
            raise SnapshotCorruptError(path, f"it belongs to cluster {meta.cluster!r}, not {self.cluster!r}")

    def open(self, info: SnapshotInfo) -> SnapshotReader:
        """Open a snapshot that newest() (or a commit) returned, for restore."""
        return SnapshotReader(info)

    def receiver(self, *, max_total_bytes: int, max_chunk_bytes: int = 4 << 20) -> SnapshotReceiver:
        """Start receiving a snapshot in chunks (discarding any partial one)."""
        return SnapshotReceiver(self, max_total_bytes=max_total_bytes, max_chunk_bytes=max_chunk_bytes)

    def retain(self) -> list[Path]:
        """Delete all but the `keep` newest snapshot files; returns what was deleted."""
        old = self.paths()[self.keep :]
        for path in old:
            os.unlink(path)
        if old and self.fsync:
            fsync_dir(self.directory)
        return old


__all__ = [
    "SnapshotCorruptError",
    "SnapshotInfo",
    "SnapshotMeta",
    "SnapshotReader",
    "SnapshotReceiver",
    "SnapshotStore",
    "SnapshotTransferError",
    "SnapshotWriter",
    "iter_chunks",
    "read_chunk",
    "snapshot_name",
    "verify_file",
]


def _discard(fd: int, path: Path) -> int:
    """Close `fd` (if open) and remove the temporary file at `path` (if
    there): what a writer or receiver that gives up leaves behind. Returns
    -1, the closed fd, for the caller to store."""
    if fd >= 0:
        os.close(fd)
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    return -1
