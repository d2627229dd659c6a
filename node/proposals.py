"""Which client request each proposed log entry answers, in runs rather than one by one.

A leader proposes the commands of one ClientSubmit as consecutive log
entries, and the client numbered them with consecutive request ids, so one
run `(first index, count, term, client identity, first request id)` stands
for the whole message: entry `first + k` answers request `first_request_id + k`.
Results come back from the apply actor in log order, also in runs, so
matching them is a slice per run, not a dict operation per command (at tens
of thousands of commands a second, that per-command Python work was a good
part of the leader's CPU).

A result whose entry has another term than the one proposed means the
proposal was overwritten by another leader's entry: the client is told
LOST and retries with the same sequence number (the apply actor's sessions
make that exactly-once).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sandzmq.protocol import ClientReply, ReplyStatus

_LOST = int(ReplyStatus.LOST)


@dataclass(slots=True)
class Run:
    """Consecutive entries proposed for one client message."""

    first_index: int
    count: int
    term: int
    identity: bytes
    first_request_id: int

    @property
    def end(self) -> int:
        """One past the last index."""
        return self.first_index + self.count


class PendingProposals:
    """Runs of proposed entries awaiting their results, in log order."""

    __slots__ = ("_runs", "count")

    def __init__(self) -> None:
        self._runs: deque[Run] = deque()
        self.count = 0  # entries awaiting a result

    def __len__(self) -> int:
        return self.count

    def __bool__(self) -> bool:
        return self.count > 0

    def add(self, first_index: int, count: int, term: int, identity: bytes, first_request_id: int) -> None:
        """Entries first_index .. first_index + count - 1 answer requests first_request_id ..."""
        runs = self._runs
        if runs and first_index < runs[-1].end:
            raise ValueError(f"proposals out of log order: {first_index} after {runs[-1].end}")
        runs.append(Run(first_index, count, term, identity, first_request_id))
        self.count += count

    def all_in_term(self, term: int) -> bool:
        """Every pending entry was proposed in `term`."""
        return all(run.term == term for run in self._runs)

    def take_all(self) -> list[Run]:
        """Remove and return every run (a lost leadership: all become LOST)."""
        runs = list(self._runs)
        self._runs.clear()
        self.count = 0
        return runs

    def resolve(
        self,
        indexes: Sequence[int],
        terms: Sequence[int],
        statuses: Sequence[int],
        values: Sequence[Any],
        reply_to: Callable[[bytes], ClientReply],
    ) -> None:
        """Match results (ascending indexes) to runs and append the answers to
        `reply_to(identity)`. Entries of a run that the results pass over got
        no result and never will (the apply actor answers every NORMAL entry
        of a batch in order): they are answered LOST, so their clients retry
        at once instead of waiting for a timeout."""
        runs = self._runs
        n = len(indexes)
        position = 0
        while position < n and runs:
            run = runs[0]
            index = indexes[position]
            if index >= run.end:
                self._retire(run, run.end, reply_to)
                continue
            if index < run.first_index:
                position += 1  # not proposed here (a follower's era or an older leader)
                continue
            if index > run.first_index:
                self._retire(run, index, reply_to, keep_tail=True)
                continue
            # indexes[position] == run.first_index: take as many results as are consecutive.
            span = min(run.count, n - position)
            last = position + span - 1
            if indexes[last] != index + span - 1:
                span = _consecutive(indexes, position, span)
                last = position + span - 1
            reply = reply_to(run.identity)
            first_rid = run.first_request_id
            # Every term checked (in C), not just the ends: a wrong term here is a false success.
            if terms[position : last + 1].count(run.term) == span:
                reply.request_ids.extend(range(first_rid, first_rid + span))
                reply.statuses.extend(statuses[position : last + 1])
                reply.values.extend(values[position : last + 1])
            else:
                for k in range(position, last + 1):
                    same = terms[k] == run.term
                    reply.add(first_rid + k - position, statuses[k] if same else _LOST, values[k] if same else None)
            self.count -= span
            position += span
            if span == run.count:
                runs.popleft()
            else:
                run.first_index += span
                run.count -= span
                run.first_request_id += span

    def _retire(self, run: Run, upto: int, reply_to: Callable[[bytes], ClientReply], keep_tail: bool = False) -> None:
        """Answer LOST for the run's entries below `upto` (all of them unless keep_tail)."""
        skipped = upto - run.first_index
        if skipped > 0:
            reply_to(run.identity).add_range(run.first_request_id, skipped, _LOST, None)
            self.count -= skipped
        if keep_tail:
            run.first_index += skipped
            run.count -= skipped
            run.first_request_id += skipped
        else:
            self._runs.popleft()


def _consecutive(indexes: Sequence[int], position: int, limit: int) -> int:
    """How many of indexes[position:position + limit] follow on one by one (at least 1)."""
    first = indexes[position]
    span = 1
    while span < limit and indexes[position + span] == first + span:
        span += 1
    return span
