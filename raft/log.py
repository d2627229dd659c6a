"""The core's view of the replicated log.

The core reads and rewrites its log only through this class, in memory. Where
entries live on disk is the log-store's business: the core says what to
persist in each Ready and learns what became durable through
RaftCore.persisted(). Log compaction (snapshots, a later issue) moves
`base_index`/`base_term` forward; today they stay at (0, 0).
"""
from __future__ import annotations

from collections.abc import Iterable

from .messages import Entry


class MemoryLog:
    """Entries (base_index, last_index], indexed by position for O(1) access."""

    __slots__ = ("base_index", "base_term", "_entries")

    def __init__(self, entries: Iterable[Entry] = (), base_index: int = 0, base_term: int = 0) -> None:
        self.base_index = base_index
        self.base_term = base_term
        self._entries: list[Entry] = list(entries)
        for offset, entry in enumerate(self._entries):
            if entry.index != base_index + 1 + offset:
                raise ValueError(f"log entries are not consecutive at index {entry.index}")

    @property
    def first_index(self) -> int:
        return self.base_index + 1

    @property
    def last_index(self) -> int:
        return self.base_index + len(self._entries)

    @property
    def last_term(self) -> int:
        return self._entries[-1].term if self._entries else self.base_term

    def term(self, index: int) -> int | None:
        """The term of the entry at `index`, or None where the log has no such entry."""
        if index == self.base_index:
            return self.base_term
        offset = index - self.base_index - 1
        if 0 <= offset < len(self._entries):
            return self._entries[offset].term
        return None

    def match_term(self, index: int, term: int) -> bool:
        return self.term(index) == term

    def is_up_to_date(self, last_index: int, last_term: int) -> bool:
        """Raft's election restriction (paper 5.4.1): is a candidate's log at
        least as up to date as this one?"""
        mine = self.last_term
        return last_term > mine or (last_term == mine and last_index >= self.last_index)

    def entries(self, lo: int, hi: int, max_entries: int | None = None, max_bytes: int | None = None) -> list[Entry]:
        """Entries [lo, hi), at most max_entries, and cut at max_bytes of data
        (always at least one entry, so a huge entry still makes progress)."""
        start = max(lo, self.first_index) - self.base_index - 1
        stop = min(hi, self.last_index + 1) - self.base_index - 1
        if max_entries is not None:
            stop = min(stop, start + max_entries)
        if stop <= start:
            return []
        batch = self._entries[start:stop]
        if max_bytes is not None:
            size = 0
            for count, entry in enumerate(batch):
                size += len(entry.data)
                if size > max_bytes and count > 0:
                    return batch[:count]
        return batch

    def find_conflict(self, entries: list[Entry]) -> int:
        """Index of the first entry that is new or whose term differs from ours; 0 if
        every entry is already present (the Figure 2 receiver rule 3 scan)."""
        for entry in entries:
            if self.term(entry.index) != entry.term:
                return entry.index
        return 0

    def find_conflict_by_term(self, index: int, term: int) -> tuple[int, int]:
        """The largest index <= `index` whose term is <= `term`, with its term.

        A rejecting follower answers with this, so that the leader can skip
        every entry of a term the follower does not share (etcd-io/raft's
        findConflictByTerm); the leader uses it the other way round too.
        """
        index = min(index, self.last_index)
        while index > self.base_index:
            entry_term = self._entries[index - self.base_index - 1].term
            if entry_term <= term:
                return index, entry_term
            index -= 1
        return self.base_index, self.base_term

    def append(self, entries: list[Entry]) -> None:
        """Append entries, first dropping whatever the log holds from entries[0].index on."""
        if not entries:
            return
        first = entries[0].index
        if first > self.last_index + 1 or first <= self.base_index:
            raise ValueError(f"append at {first} does not fit a log of ({self.base_index}, {self.last_index}]")
        del self._entries[first - self.base_index - 1 :]
        self._entries.extend(entries)

    def __len__(self) -> int:
        return len(self._entries)
