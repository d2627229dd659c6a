"""What a leader knows of each follower, after etcd-io/raft's tracker/progress.go.

A follower is in one of two states:
- PROBE: the leader does not know where the logs agree. It sends one
  AppendEntries and waits for the answer (or the next heartbeat response)
  before sending another, moving `next` back on each rejection.
- REPLICATE: the logs agree up to `match`. The leader streams entries
  optimistically, advancing `next` as it sends, with at most a window of
  AppendEntries (by count and by bytes) unacknowledged: pipelining.
A third state, SNAPSHOT (etcd-io/raft's), has no use until InstallSnapshot exists.
"""

from __future__ import annotations

from collections import deque
from enum import Enum


class ProgressState(str, Enum):
    PROBE = "probe"
    REPLICATE = "replicate"


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

    __slots__ = ("match", "next", "state", "probe_sent", "inflights", "recent_active", "commit_sent", "sent")

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

    def become_probe(self) -> None:
        self.state = ProgressState.PROBE
        self.next = self.match + 1
        self.probe_sent = False
        self.inflights.reset()

    def become_replicate(self) -> None:
        self.state = ProgressState.REPLICATE
        self.next = self.match + 1
        self.probe_sent = False
        self.inflights.reset()

    def is_paused(self) -> bool:
        if self.state is ProgressState.PROBE:
            return self.probe_sent
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
