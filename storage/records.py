"""Record framing of the write-ahead log: bytes in, bytes out, no files.

A segment file is a header followed by records:

    segment header   8s magic b"SZMQWAL\\n", u32 format version            (12 bytes)
    record           u32 length, u32 crc32, u8 type, payload[length]    (9-byte header)

Integers are little-endian. `length` counts the payload only; the CRC is
zlib.crc32 over the type byte followed by the payload, so a record whose type
byte flipped fails its check too. Payloads are msgpack, in the shapes the
wire uses for the same data (sandzmq.protocol.logdata: one shape each):

    ENTRIES (4)     [first_index, terms, kinds, datas]   one record per appended batch:
                                                         the entries of a LogWrite, as
                                                         they arrived (terms and kinds
                                                         one int when uniform)
    HARD_STATE (2)  [term, vote, commit]

Format versions: 2 writes ENTRIES records; 1 wrote ENTRY_ROWS (type 1,
`[[index, term, kind, data], ...]`), which this build still reads, so a log
written by version 1 opens as it was; new records always go to a version 2
segment, so a version 1 build refuses the new segments by their header
instead of misreading a record type it does not know.

SNAPSHOT (type 3) stays reserved and unused: compaction records where the
log starts in the WAL's BASE file instead (wal.py says why); until a format
version knows it, it is an unknown type like any other.

Everything here is per record, not per entry: entries stay in columns from
the wire to the disk and back, and each column is checked in C.
"""

from __future__ import annotations

import re
import struct
import zlib
from collections.abc import Callable, Sequence

import msgpack
from sandzmq.protocol import logdata
from sandzmq.raft.messages import Entry, EntryColumns, HardState

MAGIC = b"SZMQWAL\n"
VERSION = 2  # the format new segments get
READABLE_VERSIONS = (1, 2)
SEGMENT_HEADER = struct.Struct("<8sI")

HEADER = struct.Struct("<IIB")  # length, crc32, type

ENTRY_ROWS = 1  # format 1's entries: read, never written
HARD_STATE = 2
SNAPSHOT = 3  # reserved, unused (compaction keeps its base in wal/BASE); not accepted
ENTRIES = 4
KNOWN_TYPES = (ENTRY_ROWS, HARD_STATE, ENTRIES)
ENTRY_TYPES = (ENTRY_ROWS, ENTRIES)

# Larger than any batch the Raft actor builds, small enough that a garbled
# length field is recognised as garbage rather than read as a huge record.
MAX_PAYLOAD = 256 << 20

# crc32 of the type byte alone: the running value a record's payload CRC starts from.
_TYPE_CRC = {kind: zlib.crc32(bytes([kind])) for kind in KNOWN_TYPES}

# Where a valid record could start: a known type byte followed by the first
# byte its msgpack payload must have (a non-empty array; [term, vote, commit];
# [first_index, terms, kinds, datas]). Used only to look past a bad record at
# recovery, so a regex scan in C is enough.
_RECORD_START = re.compile(rb"(?s)(?=.{8}(?:\x01[\x91-\x9f\xdc\xdd]|\x02\x93|\x04\x94))")


def segment_header() -> bytes:
    return SEGMENT_HEADER.pack(MAGIC, VERSION)


def segment_header_problem(buf: bytes) -> str | None:
    """Why `buf` does not start with a segment header we can read, or None."""
    if len(buf) < SEGMENT_HEADER.size:
        return f"segment header is {len(buf)} bytes, expected {SEGMENT_HEADER.size}"
    magic, version = SEGMENT_HEADER.unpack_from(buf)
    if magic != MAGIC:
        return f"bad segment magic {magic!r}, expected {MAGIC!r}"
    if version not in READABLE_VERSIONS:
        readable = ", ".join(map(str, READABLE_VERSIONS))
        return f"unsupported segment format version {version} (this build reads {readable})"
    return None


def segment_version(buf: bytes) -> int:
    """The format version of a segment whose header segment_header_problem() accepted."""
    return SEGMENT_HEADER.unpack_from(buf)[1]


def frame(kind: int, payload: bytes) -> bytes:
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"record of {len(payload)} bytes exceeds {MAX_PAYLOAD}: append smaller batches")
    return HEADER.pack(len(payload), zlib.crc32(payload, _TYPE_CRC[kind]), kind) + payload


def encode_entries(entries: Sequence[Entry]) -> bytes:
    """An ENTRIES record of a non-empty run of consecutive entries."""
    if not entries:
        raise ValueError("an ENTRIES record holds at least one entry")
    return frame(ENTRIES, msgpack.packb(logdata.encode_entries(entries)))


def encode_hard_state(hs: HardState) -> bytes:
    return frame(HARD_STATE, msgpack.packb(logdata.encode_hard_state(hs)))


def decode_entries(kind: int, payload: bytes | memoryview) -> EntryColumns:
    """The entries of an ENTRIES (or format 1 ENTRY_ROWS) payload, as columns,
    validated as the wire's are: ValueError (DecodeError is one) if the
    content is impossible, which the CRC says the writer did not write."""
    body = msgpack.unpackb(payload)
    if kind == ENTRY_ROWS:
        body = _rows_to_columns(body)
    columns = logdata.decode_entries(body)
    if not columns.datas:
        raise ValueError("ENTRIES record without entries")
    return columns


def _rows_to_columns(rows: object) -> list[object]:
    """Format 1's [[index, term, kind, data], ...] as [first_index, terms, kinds, datas]."""
    if type(rows) is not list or not rows or not all(type(r) is list and len(r) == 4 for r in rows):
        raise ValueError("ENTRY_ROWS payload is not a non-empty list of [index, term, kind, data]")
    indexes, terms, kinds, datas = map(list, zip(*rows))
    if indexes != list(range(indexes[0], indexes[0] + len(indexes))):
        raise ValueError(f"ENTRY_ROWS record from {indexes[0]} holds {len(rows)} entries: not consecutive")
    return [indexes[0], terms, kinds, datas]


def decode_hard_state(payload: bytes | memoryview) -> HardState:
    """A HARD_STATE payload, validated (ValueError)."""
    return logdata.decode_hard_state(msgpack.unpackb(payload))


def entries_between(columns: EntryColumns, lo: int, hi: int) -> list[Entry]:
    """Entry objects for indexes [lo, hi) of a record's columns."""
    a, b = lo - columns.first_index, hi - columns.first_index
    return list(map(Entry, range(lo, hi), columns.terms[a:b], columns.datas[a:b], columns.kinds[a:b]))


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
