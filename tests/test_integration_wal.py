"""A node's write-ahead log damaged on disk while the node is down.

- a torn last record (a crash in the middle of an append) is cut off at
  recovery: the node starts and catches up from the leader;
- a corrupted record with valid data after it cannot be a torn write: the
  node refuses to start, with a message naming the file, and leaves the file
  as it was.

The record layout (storage/records.py): a segment starts with a 12-byte
header; each record is u32 length, u32 crc32, u8 type, then `length` bytes.
"""

from __future__ import annotations

import re
import struct
from pathlib import Path

import pytest
from cluster import Writer

pytestmark = pytest.mark.integration

NODES = ["n1", "n2", "n3"]
SEGMENT_HEADER = 12
RECORD_HEADER = struct.Struct("<IIB")
SEGMENT_NAME = re.compile(r"^[0-9a-f]{16}-[0-9a-f]{16}\.wal$")


def last_segment(wal_dir: Path) -> Path:
    segments = sorted(p for p in wal_dir.iterdir() if SEGMENT_NAME.match(p.name))
    assert segments, f"no WAL segment in {wal_dir}: {sorted(p.name for p in wal_dir.iterdir())}"
    return segments[-1]


def records(data: bytes) -> list[tuple[int, int]]:
    """(offset, total size) of each record in a segment's bytes."""
    out = []
    offset = SEGMENT_HEADER
    while offset + RECORD_HEADER.size <= len(data):
        length, _, _ = RECORD_HEADER.unpack_from(data, offset)
        size = RECORD_HEADER.size + length
        if offset + size > len(data):
            break
        out.append((offset, size))
        offset += size
    assert offset == len(data), f"could not parse the segment: stopped at {offset} of {len(data)} bytes"
    return out


@pytest.mark.parametrize("damage", ["cut-mid-record", "zero-filled-tail"])
def test_torn_last_record_is_cut_and_the_node_recovers(make_cluster, damage):
    c = make_cluster()
    c.start_all()
    leader = c.wait_for_leader(10)
    victim = next(n for n in NODES if n != leader)
    w = Writer(c.client(), "w")
    w.write(50)
    c.wait_caught_up(w.acked, nodes=[victim])

    c.kill9(victim)
    segment = last_segment(c.wal_dir(victim))
    data = segment.read_bytes()
    recs = records(data)
    assert len(recs) >= 2, f"{segment} holds {len(recs)} records"
    offset, size = recs[-1]
    if damage == "cut-mid-record":
        cut = offset + max(1, size // 2)
        with open(segment, "r+b") as f:  # a partial last record, as a crash mid-append leaves it
            f.truncate(cut)
        print(f"\ncut {segment.name} from {len(data)} to {cut} bytes (last record at {offset}, {size} bytes)")
    else:
        # The file grew but the last record's data never reached the disk: zeros.
        with open(segment, "r+b") as f:
            f.seek(offset)
            f.write(b"\0" * size + b"\0" * 512)
        print(f"\nzeroed the last record of {segment.name} at {offset} ({size} bytes) and 512 bytes after it")

    w.write(50, deadline=30)  # the other two carry on meanwhile
    c.start(victim)
    c.wait_role(victim, ["follower"], timeout=15)
    lists = c.wait_caught_up(w.acked, timeout=30)
    for n, recs_n in lists.items():
        assert not w.problems(recs_n), f"{n}: {w.problems(recs_n)}"
    w.write(10, deadline=30)
    assert c.is_running(victim)


def test_corrupted_middle_record_refuses_to_start_with_a_clear_message(make_cluster):
    c = make_cluster()
    c.start_all()
    leader = c.wait_for_leader(10)
    victim = next(n for n in NODES if n != leader)
    w = Writer(c.client(), "w")
    w.write(50)
    c.wait_caught_up(w.acked, nodes=[victim])

    c.kill9(victim)
    segment = last_segment(c.wal_dir(victim))
    data = bytearray(segment.read_bytes())
    recs = records(bytes(data))
    assert len(recs) >= 5, f"{segment} holds only {len(recs)} records"
    offset, size = recs[len(recs) // 2]  # valid records follow it: not a torn write
    data[offset + RECORD_HEADER.size + (size - RECORD_HEADER.size) // 2] ^= 0xFF
    segment.write_bytes(bytes(data))
    print(f"\nflipped a byte of the record at {offset} of {segment.name} ({len(recs)} records)")

    c.start(victim)
    status = c.wait_exit(victim, timeout=30)
    log = c.log_text(victim).split("==== harness: start #2", 1)[-1]
    assert status != 0, f"{victim} exited {status} on a corrupt WAL"
    # The test's own temp path may contain "corrupt": look at what the node wrote, minus that path.
    root = str(c.root)
    lines = [
        line
        for line in log.splitlines()
        if not line.startswith("==== harness") and "corrupt" in line.replace(root, "<tmp>").lower()
    ]
    assert lines, f"no line of {victim}'s log says 'corrupt':\n{log[-3000:]}"
    assert any(segment.name in line or str(c.wal_dir(victim)) in line for line in lines), (
        f"the message does not name the WAL file {segment}:\n" + "\n".join(lines)
    )
    print(f"`sandzmq start` exited {status}; message: {lines[0]}")
    if "Traceback" in log:
        print(f"note: {victim}'s log has a traceback besides the message")
    assert segment.read_bytes() == bytes(data), "the refused start changed the corrupt segment"

    # The cluster carries on without it.
    w.write(20, deadline=30)
    for n in NODES:
        if n != victim:
            recs_n = c.wait_caught_up(w.acked, nodes=[n])[n]
            assert not w.problems(recs_n), f"{n}: {w.problems(recs_n)}"
