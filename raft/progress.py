"""What a leader knows of each follower, after etcd-io/raft's tracker/progress.go.

A follower is in one of three states:
- PROBE: the leader does not know where the logs agree. It sends one
  AppendEntries and waits for the answer (or the next heartbeat response)
  before sending another, moving `next` back on each rejection.
- REPLICATE: the logs agree up to `match`. The leader streams entries
  optimistically, advancing `next` as it sends, with at most a window of
  AppendEntries (by count and by bytes) unacknowledged: pipelining.
- SNAPSHOT: the follower needs entries the leader compacted away: the
  leader streams its snapshot in chunks (InstallSnapshot), with at most
  max_snapshot_inflight chunks unacknowledged, and sends no AppendEntries
  until the follower reports it installed; then PROBE from after it.
"""

from __future__ import annotations

from collections import deque
from enum import Enum


class ProgressState(str, Enum):
    PROBE = "probe"
    REPLICATE = "replicate"
    SNAPSHOT = "snapshot"


class Inflights:
    """The AppendEntries sent to one follower and not yet acknowledged."""

    __slots__ = ("max_count", "max_bytes", "_sent", "_bytes")

    def __init__(self, max_count: int, max_bytes: int) -> None:
        self.max_count = max_count
        self.max_bytes = max_bytes
        self._sent: deque[tuple[int, int]] = deque()  # (last index, bytes)
        self._bytes = 0

    def add(self, last_index: int, size: int) -> None:
        self._sent.append((last_index, size))
        self._bytes += size

    def free_to(self, index: int) -> None:
        """Forget every message whose entries are acknowledged up to `index`."""
        sent = self._sent
        while sent and sent[0][0] <= index:
            self._bytes -= sent.popleft()[1]

    def free_first(self) -> None:
        if self._sent:
            self._bytes -= self._sent.popleft()[1]

    def reset(self) -> None:
        self._sent.clear()
        self._bytes = 0

    def full(self) -> bool:
        return len(self._sent) >= self.max_count or self._bytes >= self.max_bytes

    def __len__(self) -> int:
        return len(self._sent)


class Progress:
    """One follower's replication state, as its leader sees it."""

    __slots__ = (
        "match",
        "next",
        "state",
        "probe_sent",
        "inflights",
        "recent_active",
        "commit_sent",
        "sent",
        "snap_index",
        "snap_term",
        "snap_acked",
        "snap_sent",
        "snap_reading",
        "snap_chunks",
        "snap_done_sent",
        "snap_started",
        "snap_stall",
    )

    def __init__(self, next_index: int, max_inflight: int, max_inflight_bytes: int) -> None:
        self.match = 0
        self.next = next_index
        self.state = ProgressState.PROBE
        self.probe_sent = False
        self.inflights = Inflights(max_inflight, max_inflight_bytes)
        self.recent_active = False
        self.commit_sent = 0  # the highest commit index this follower was told
        # The highest index offered to this follower in this term: it cannot
        # truthfully acknowledge more (RaftCore refuses such an answer).
        self.sent = 0
        self._reset_snapshot()

    def _reset_snapshot(self) -> None:
        # The snapshot being streamed (SNAPSHOT state only): which one, the
        # follower's durable offset, the end of what was sent, the offset the
        # owner was asked to read (None: no read pending), the ends of the
        # chunks in flight, whether the last chunk went out, whether any
        # chunk did (an "installed" answer before that is unbelievable), and
        # heartbeat rounds without progress (a lost chunk: resend).
        self.snap_index = 0
        self.snap_term = 0
        self.snap_acked = 0
        self.snap_sent = 0
        self.snap_reading: int | None = None
        self.snap_chunks: deque[int] = deque()
        self.snap_done_sent = False
        self.snap_started = False
        self.snap_stall = 0

    def become_probe(self) -> None:
        self.state = ProgressState.PROBE
        self.next = self.match + 1
        self.probe_sent = False
        self.inflights.reset()
        self._reset_snapshot()

    def become_snapshot(self, index: int, term: int) -> None:
        """Stream snapshot (index, term) from offset 0: the follower needs
        entries at or below the leader's log base."""
        self.state = ProgressState.SNAPSHOT
        self.probe_sent = False
        self.inflights.reset()
        self._reset_snapshot()
        self.snap_index = index
        self.snap_term = term

    def snapshot_go_back(self, offset: int) -> None:
        """Resend from `offset` (the follower's durable offset): chunks were
        lost, or the follower lost its partial file."""
        self.snap_acked = offset
        self.snap_sent = offset
        self.snap_chunks.clear()
        self.snap_reading = None
        self.snap_done_sent = False
        self.snap_stall = 0

    def snapshot_acked(self, offset: int) -> None:
        """The follower holds every byte before `offset` durably."""
        if offset <= self.snap_acked:
            return
        self.snap_acked = offset
        self.snap_stall = 0
        chunks = self.snap_chunks
        while chunks and chunks[0] <= offset:
            chunks.popleft()

    def become_replicate(self) -> None:
        self.state = ProgressState.REPLICATE
        self.next = self.match + 1
        self.probe_sent = False
        self.inflights.reset()
        self._reset_snapshot()

    def is_paused(self) -> bool:
        if self.state is ProgressState.PROBE:
            return self.probe_sent
        if self.state is ProgressState.SNAPSHOT:
            return True  # no AppendEntries until the snapshot is installed
        return self.inflights.full()

    def maybe_update(self, index: int) -> bool:
        """An acknowledgement up to `index` arrived; False when it tells nothing new."""
        updated = index > self.match
        if updated:
            self.match = index
            self.probe_sent = False
        if self.next < index + 1:
            self.next = index + 1
        return updated

    def maybe_decrease(self, rejected: int, hint_index: int) -> bool:
        """A rejection of the AppendEntries whose prev_index was `rejected`.

        Returns False for a stale rejection (an answer to a message sent before
        the leader already moved on), which must be ignored.
        """
        if self.state is ProgressState.REPLICATE:
            if rejected <= self.match:
                return False
            self.next = self.match + 1
            return True
        if self.next - 1 != rejected:
            return False
        self.next = max(min(rejected, hint_index + 1), self.match + 1)
        self.probe_sent = False
        return True
