"""The core's view of the replicated log.

The core reads and rewrites its log only through this class, in memory. Where
entries live on disk is the log-store's business: the core says what to
persist in each Ready and learns what became durable through
RaftCore.persisted(). Log compaction moves `base_index`/`base_term`
forward (`compact`, once a snapshot covers the entries), and installing a
snapshot that conflicts with the log replaces it with an empty log after
the snapshot (`reset`); without snapshots they stay at (0, 0).

Memory stays bounded without snapshots: the owner may `trim()` old entries
out of memory once they are durable and committed, and reads below the
in-memory tail then go to a `cold` reader (the Raft actor passes a reader of
the log-store's write-ahead log). Only a follower that lags far behind causes
such reads; the fast path (new entries, recent acknowledgements) never does.
The core stays free of I/O in the sense that matters: it makes no decision
about files, and the simulation runs it entirely in memory.

Sizes. Batches are cut by bytes of entry data (AppendEntries, writes,
committed batches), and the in-flight windows count bytes. The log keeps
the running total of its in-memory entries' data sizes (one pass when
entries are appended, none at all when the caller already has them, as a
leader does with its commands), so a cut is a bisection and a range's size
a subtraction, not a pass over the entries each time.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Sequence
from itertools import accumulate
from typing import Protocol

from .messages import Entry


class ColdReader(Protocol):
    """Durable entries that are no longer held in memory."""

    def entries(self, lo: int, hi: int) -> list[Entry]: ...

    def term_at(self, index: int) -> int | None: ...


class MemoryLog:
    """Entries (base_index, last_index]: those after `mem_base` in a list indexed
    by position for O(1) access, older ones (once trimmed) through `cold`."""

    __slots__ = ("base_index", "base_term", "_entries", "_cum", "_mem_base", "_mem_base_term", "_cold")

    def __init__(
        self,
        entries: Iterable[Entry] = (),
        base_index: int = 0,
        base_term: int = 0,
        *,
        cold: ColdReader | None = None,
        mem_base: int | None = None,
        mem_base_term: int | None = None,
    ) -> None:
        """`entries` start after `mem_base` (default: base_index); entries in
        (base_index, mem_base] must then be readable from `cold`."""
        self.base_index = base_index
        self.base_term = base_term
        self._cold = cold
        self._mem_base = base_index if mem_base is None else mem_base
        self._mem_base_term: int = base_term if mem_base is None or mem_base_term is None else mem_base_term
        if self._mem_base > base_index and (cold is None or mem_base_term is None):
            raise ValueError("entries below the in-memory tail need a cold reader and mem_base_term")
        self._entries: list[Entry] = list(entries)
        for offset, entry in enumerate(self._entries):
            if entry.index != self._mem_base + 1 + offset:
                raise ValueError(f"log entries are not consecutive at index {entry.index}")
        # _cum[k]: data bytes of the in-memory entries before position k (len(_entries) + 1 items;
        # the values are offsets: trimming drops a prefix and leaves differences as they were).
        # (A list, not an array: extending a list from accumulate() is twice as fast.)
        self._cum: list[int] = list(accumulate([len(e.data) for e in self._entries], initial=0))

    @property
    def first_index(self) -> int:
        return self.base_index + 1

    @property
    def last_index(self) -> int:
        return self._mem_base + len(self._entries)

    @property
    def last_term(self) -> int:
        return self._entries[-1].term if self._entries else self._mem_base_term

    @property
    def memory_first_index(self) -> int:
        """The first index held in memory."""
        return self._mem_base + 1

    def term(self, index: int) -> int | None:
        """The term of the entry at `index`, or None where the log has no such entry."""
        offset = index - self._mem_base - 1
        if offset >= 0:
            return self._entries[offset].term if offset < len(self._entries) else None
        if index == self._mem_base:
            return self._mem_base_term
        if index == self.base_index:
            return self.base_term
        if index > self.base_index and self._cold is not None:
            return self._cold.term_at(index)
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
        lo = max(lo, self.first_index)
        hi = min(hi, self.last_index + 1)
        if max_entries is not None:
            hi = min(hi, lo + max_entries)
        if hi <= lo:
            return []
        mem_base = self._mem_base
        if lo > mem_base:
            start = lo - mem_base - 1
            stop = hi - mem_base - 1
            if max_bytes is not None:
                cum = self._cum
                if cum[stop] - cum[start] > max_bytes:
                    # The last position whose running total stays within max_bytes, and at least one entry.
                    stop = max(start + 1, bisect_right(cum, cum[start] + max_bytes, start, stop + 1) - 1)
            return self._entries[start:stop]
        assert self._cold is not None  # mem_base > base_index only with a cold reader
        batch = self._cold.entries(lo, min(hi, mem_base + 1))
        if hi > mem_base + 1:
            batch = batch + self._entries[: hi - mem_base - 1]
        if max_bytes is not None and sum([len(e.data) for e in batch]) > max_bytes:  # (cold reads are rare)
            size = 0
            for count, entry in enumerate(batch):
                size += len(entry.data)
                if size > max_bytes and count > 0:
                    return batch[:count]
        return batch

    def data_bytes(self, lo: int, hi: int) -> int:
        """Data bytes of entries [lo, hi): a subtraction for entries in memory,
        a read for those trimmed from it."""
        cum, mem_base = self._cum, self._mem_base
        if lo > mem_base:
            return cum[hi - mem_base - 1] - cum[lo - mem_base - 1]
        return sum([len(e.data) for e in self.entries(lo, hi)])

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
        # Terms never decrease along a log, so the answer is found by bisection:
        # a linear walk let one message with a small term cost a scan of the log.
        lo, hi = self.base_index, min(index, self.last_index)
        if hi <= lo:
            return self.base_index, self.base_term
        hi_term = self.term(hi)
        if hi_term is not None and hi_term <= term:
            return hi, hi_term
        # Invariant: term(lo) <= term (or lo is the base), term(hi) > term.
        while hi - lo > 1:
            mid = (lo + hi) // 2
            mid_term = self.term(mid)
            if mid_term is not None and mid_term <= term:
                lo = mid
            else:
                hi = mid
        lo_term = self.term(lo)
        return lo, self.base_term if lo_term is None else lo_term

    def append(self, entries: list[Entry], sizes: Sequence[int] | None = None) -> None:
        """Append entries, first dropping whatever the log holds from entries[0].index on.
        `sizes`: their data lengths, when the caller has them (saves a pass)."""
        if not entries:
            return
        first = entries[0].index
        if first > self.last_index + 1 or first <= self._mem_base:
            raise ValueError(f"append at {first} does not fit the writable log ({self._mem_base}, {self.last_index}]")
        cut = first - self._mem_base - 1
        del self._entries[cut:]
        self._entries.extend(entries)
        cum = self._cum
        del cum[cut + 1 :]
        base = cum.pop()
        cum.extend(accumulate([len(e.data) for e in entries] if sizes is None else sizes, initial=base))

    def trim(self, upto: int) -> int:
        """Drop entries up to `upto` from memory; they stay readable through the
        cold reader. Only for entries that are durable and committed (the
        caller's promise: such entries are never rewritten). Returns how many
        entries left memory."""
        if self._cold is None:
            raise ValueError("trimming needs a cold reader")
        count = min(upto, self.last_index) - self._mem_base
        if count <= 0:
            return 0
        self._mem_base_term = self._entries[count - 1].term
        del self._entries[:count]
        del self._cum[:count]
        self._mem_base += count
        return count

    def compact(self, index: int) -> None:
        """Forget every entry up to `index`: a durable snapshot covers them.
        The log then starts after (index, term(index)); entries between the
        old base and the in-memory tail stay readable through `cold` only if
        above the new base."""
        if index <= self.base_index:
            return
        term = self.term(index)
        if term is None or index > self.last_index:
            raise ValueError(f"cannot compact to {index}: not in the log ({self.base_index}, {self.last_index}]")
        if index >= self._mem_base:
            count = index - self._mem_base
            del self._entries[:count]
            del self._cum[:count]
            self._mem_base = index
            self._mem_base_term = term
        self.base_index = index
        self.base_term = term

    def reset(self, index: int, term: int) -> None:
        """Discard the whole log: it is now empty after (index, term), the
        snapshot just installed (Raft paper section 7, when the log does not
        hold the snapshot's last entry)."""
        self._entries = []
        self._cum = [0]
        self.base_index = self._mem_base = index
        self.base_term = self._mem_base_term = term

    def __len__(self) -> int:
        return self.last_index - self.base_index
