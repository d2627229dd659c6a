"""Record framing of the write-ahead log: bytes in, bytes out, no files.

A segment file is a header followed by records:

    segment header   8s magic b"SZMQWAL\\n", u32 format version            (12 bytes)
    record           u32 length, u32 crc32, u8 type, payload[length]    (9-byte header)

Integers are little-endian. `length` counts the payload only; the CRC is
zlib.crc32 over the type byte followed by the payload, so a record whose type
byte flipped fails its check too. Payloads are msgpack:

    ENTRIES     [[index, term, kind, data], ...]   one record per appended batch,
                                                   consecutive indexes
    HARD_STATE  [term, vote, commit]

SNAPSHOT (type 3) is reserved for the snapshot marker of log compaction (not
built yet); until a format version knows it, it is an unknown type like any
other.

Everything here is per record, not per entry, except the two comprehensions
that turn entries into rows and back: that is where a batch's per-entry cost
lives, so they stay single tight loops.
"""
from __future__ import annotations

import re
import struct
import zlib
from collections.abc import Callable, Sequence

import msgpack

from sandzmq.raft.messages import Entry, HardState, entry_rows

MAGIC = b"SZMQWAL\n"
VERSION = 1
SEGMENT_HEADER = struct.Struct("<8sI")

HEADER = struct.Struct("<IIB")  # length, crc32, type

ENTRIES = 1
HARD_STATE = 2
SNAPSHOT = 3  # reserved: snapshot marker (log compaction, not built yet); not accepted
KNOWN_TYPES = (ENTRIES, HARD_STATE)

# Larger than any batch the Raft actor builds, small enough that a garbled
# length field is recognised as garbage rather than read as a huge record.
MAX_PAYLOAD = 256 << 20

# crc32 of the type byte alone: the running value a record's payload CRC starts from.
_TYPE_CRC = {kind: zlib.crc32(bytes([kind])) for kind in KNOWN_TYPES}

# Where a valid record could start: a known type byte followed by the first
# byte its msgpack payload must have (a non-empty array; [term, vote, commit]).
# Used only to look past a bad record at recovery, so a regex scan in C is enough.
_RECORD_START = re.compile(rb"(?s)(?=.{8}(?:\x01[\x91-\x9f\xdc\xdd]|\x02\x93))")


def segment_header() -> bytes:
    return SEGMENT_HEADER.pack(MAGIC, VERSION)


def segment_header_problem(buf: bytes) -> str | None:
    """Why `buf` does not start with a segment header we can read, or None."""
    if len(buf) < SEGMENT_HEADER.size:
        return f"segment header is {len(buf)} bytes, expected {SEGMENT_HEADER.size}"
    magic, version = SEGMENT_HEADER.unpack_from(buf)
    if magic != MAGIC:
        return f"bad segment magic {magic!r}, expected {MAGIC!r}"
    if version != VERSION:
        return f"unsupported segment format version {version} (this build reads {VERSION})"
    return None


def frame(kind: int, payload: bytes) -> bytes:
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"record of {len(payload)} bytes exceeds {MAX_PAYLOAD}: append smaller batches")
    return HEADER.pack(len(payload), zlib.crc32(payload, _TYPE_CRC[kind]), kind) + payload


def encode_entries(entries: Sequence[Entry]) -> bytes:
    return frame(ENTRIES, msgpack.packb(list(entry_rows(entries))))


def encode_hard_state(hs: HardState) -> bytes:
    return frame(HARD_STATE, msgpack.packb((hs.term, hs.vote, hs.commit)))


def decode_rows(payload: bytes | memoryview) -> tuple[tuple[int, int, int, bytes], ...]:
    """An ENTRIES payload as (index, term, kind, data) tuples, checked only at its ends:
    the CRC already vouches that the writer produced it."""
    rows = msgpack.unpackb(payload, use_list=False)
    if not isinstance(rows, tuple) or not rows or len(rows[0]) != 4 or len(rows[-1]) != 4:
        raise ValueError("ENTRIES payload is not a non-empty list of [index, term, kind, data]")
    if rows[-1][0] - rows[0][0] != len(rows) - 1:
        raise ValueError(f"ENTRIES record {rows[0][0]}..{rows[-1][0]} holds {len(rows)} entries: not consecutive")
    return rows


def rows_to_entries(rows: Sequence[tuple[int, int, int, bytes]]) -> list[Entry]:
    return [Entry(index, term, data, kind) for index, term, kind, data in rows]


def decode_hard_state(payload: bytes | memoryview) -> HardState:
    term, vote, commit = msgpack.unpackb(payload)
    return HardState(term, vote, commit)


def read_record(buf: bytes, offset: int) -> tuple[int, int, int] | str:
    """The record at `offset` as (type, payload start, payload end), or what is wrong with it."""
    left = len(buf) - offset
    if left < HEADER.size:
        return f"short record header: {left} bytes left, a header is {HEADER.size}"
    length, crc, kind = HEADER.unpack_from(buf, offset)
    start = offset + HEADER.size
    end = start + length
    if length > MAX_PAYLOAD:
        return f"record length {length} exceeds the bound of {MAX_PAYLOAD}"
    if end > len(buf):
        return f"short payload: record needs {length} bytes, {len(buf) - start} left"
    if kind not in _TYPE_CRC:
        return f"unknown record type {kind}"
    if zlib.crc32(memoryview(buf)[start:end], _TYPE_CRC[kind]) != crc:
        return f"CRC mismatch in a {length}-byte record of type {kind}"
    return kind, start, end


def scan(buf: bytes, offset: int, on_record: Callable[[int, int, memoryview], None]) -> tuple[int, str | None]:
    """Call on_record(offset, type, payload) for each valid record from `offset` on.

    Returns (offset where scanning stopped, problem): problem is None when the
    buffer ended exactly after a record, else what is wrong at that offset.
    """
    view = memoryview(buf)
    end_of_buf = len(buf)
    while offset < end_of_buf:
        found = read_record(buf, offset)
        if isinstance(found, str):
            return offset, found
        kind, start, end = found
        on_record(offset, kind, view[start:end])
        offset = end
    return offset, None


def is_torn_tail(buf: bytes, offset: int) -> bool:
    """Can the bad record at `offset` be the remains of an interrupted append?

    A crash can leave a partial last record, or a record followed by (or made
    of) zeros where the file grew but the data never reached the disk. It cannot
    leave valid data after the damage. So: a complete (but bad) record is torn
    only if nothing but zeros follows it; a record that runs past the end of the
    file (or whose header is cut or garbled) is torn only if no valid record
    starts anywhere inside the rest. The second check is what stops a bit flip
    in a length field from silently discarding the durable records behind it.

    The last record of the log is the limit of what any CRC'd WAL can tell:
    damage confined to it looks exactly like a torn write (etcd's wal treats it
    the same way).
    """
    end_of_buf = len(buf)
    if end_of_buf - offset >= HEADER.size:
        (length,) = struct.unpack_from("<I", buf, offset)
        end = offset + HEADER.size + length
        if length <= MAX_PAYLOAD and end <= end_of_buf:
            return buf.count(0, end) == end_of_buf - end
    for match in _RECORD_START.finditer(buf, offset + 1):
        if not isinstance(read_record(buf, match.start()), str):
            return False
    return True
