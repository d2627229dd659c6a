"""Where the client core keeps its live requests: the ready list and the
timer heap. Every change of a live request's State is made here, in the
same step that places it, so that a live request is always in exactly one
place that looks at it again by its deadline:

    READY    in the ready list (the next flush takes it: SENDING)
    SENDING  in a Send that the driver has not reported yet (the session's job)
    SENT     covered by one timer entry, due at its resend time or deadline
    WAITING  covered by one timer entry, due at its retry time or deadline

A request lost from all of them made a call hang until the caller's guard
(a refused send left a request READY in no list): placing and naming the
state in one method is what rules that out, and `misplaced()` checks it.

A timer entry is (due time, tiebreak, first token, count, waiting request).
A request's token names the one entry that covers it. The requests of one
sent message have tokens equal to their request ids, which are
consecutive: their entry is (.., first id, count, None) and finds them
through the session's attempts (request id -> request), so it keeps no
finished request alive until it is due. A WAITING request gets a negative
token and an entry (.., token, 1, request) of its own. A request that moves
on changes its token, which voids the entry that covered it.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Iterable, Iterator, Mapping

from sandzmq.replicator.requests import Request, State

_READY, _SENDING, _SENT, _WAITING = State.READY, State.SENDING, State.SENT, State.WAITING

Timer = tuple[float, int, int, int, "Request | None"]


class Schedule:
    """The ready list and the timer heap of one ClientSession."""

    def __init__(self, attempts: Mapping[int, Request]) -> None:
        """`attempts`: the session's request id -> request of every attempt
        out and not answered (the entries of sent messages look there)."""
        self._attempts = attempts
        self._ready: list[Request] = []
        self._heap: list[Timer] = []
        self._tiebreak = itertools.count()
        self._next_token = -1  # WAITING entries' tokens: negative, so never a request id

    # --- placing

    def make_ready(self, request: Request) -> None:
        """Send `request` with the next flush. A READY request is in the
        ready list already: the flush takes requests out of READY."""
        if request.state is not _READY:
            request.state = _READY
            request.token = 0  # voids any timer entry
            self._ready.append(request)

    def wake_at(self, request: Request, when: float) -> None:
        """Make `request` READY at `when`, or look at it at its deadline if that comes first."""
        request.state = _WAITING
        token = request.token = self._next_token
        self._next_token -= 1
        heapq.heappush(self._heap, (min(when, request.deadline), next(self._tiebreak), token, 1, request))

    def take_ready(self) -> list[Request]:
        """The READY requests, in order, now SENDING: the caller puts every
        one in a Send or gives it up. (The list may hold requests that moved
        on since they were listed; those are skipped.)"""
        ready, self._ready = self._ready, []
        taken = []
        for request in ready:
            if request.state is _READY:
                request.state = _SENDING
                taken.append(request)
        return taken

    def watch_sent(self, requests: list[Request], first_rid: int, due: float) -> None:
        """`requests` went out as one message, with request ids first_rid,
        first_rid + 1, ...: SENT, under one timer entry due at `due` (the
        earliest of their `due` times; each is looked at again then)."""
        for token, request in enumerate(requests, first_rid):
            request.state = _SENT
            request.token = token
        heapq.heappush(self._heap, (due, next(self._tiebreak), first_rid, len(requests), None))

    def watch_again(self, request: Request) -> None:
        """A SENT request looked at before its own `due` (it shared an entry
        with requests due earlier): an entry of its own, same token."""
        heapq.heappush(self._heap, (request.due, next(self._tiebreak), request.token, 1, None))

    # --- time

    def pop_due(self, now: float) -> Iterator[Request]:
        """Every request that a timer entry due by `now` still covers. The
        caller must place each one again (or finish it)."""
        heap, attempts = self._heap, self._attempts
        while heap and heap[0][0] <= now:
            _, _, first_token, count, waiting = heapq.heappop(heap)
            if waiting is not None:
                if waiting.token == first_token:
                    yield waiting
                continue
            for rid in range(first_token, first_token + count):
                request = attempts.get(rid)
                if request is not None and request.token == rid:
                    yield request

    def next_time(self) -> float | None:
        """When a timer is due next: -inf if requests are ready now, None if no timer is set.

        Entries of finished requests are not pruned: each costs at most
        one early wake-up, and only while the client is idle."""
        if self._ready:
            return -math.inf
        return self._heap[0][0] if self._heap else None

    # --- looking

    def counts(self) -> tuple[int, int]:
        """(ready list length, timer entries), for diagnostics."""
        return len(self._ready), len(self._heap)

    def misplaced(self, live: Iterable[Request], sending: Iterable[Request]) -> list[str]:
        """The live requests that are not in exactly one place that looks at
        them again by their deadline (see the module docstring); for tests."""
        in_sends: dict[int, int] = {}
        for request in sending:
            in_sends[id(request)] = in_sends.get(id(request), 0) + 1
        covers: dict[int, list[float]] = {}  # id(request) -> due times of the valid entries covering it
        for when, _, first_token, count, waiting in self._heap:
            if waiting is not None:
                if waiting.token == first_token:
                    covers.setdefault(id(waiting), []).append(when)
                continue
            for rid in range(first_token, first_token + count):
                attempt = self._attempts.get(rid)
                if attempt is not None and attempt.token == rid:
                    covers.setdefault(id(attempt), []).append(when)
        problems = []
        for request in live:
            listed = sum(1 for r in self._ready if r is request)
            timers = covers.get(id(request), [])
            sends = in_sends.get(id(request), 0)
            state = request.state
            if state is _READY:
                ok = listed >= 1 and not timers and not sends  # (listed twice is harmless: take_ready takes it once)
            elif state is _SENDING:
                ok = sends == 1 and not timers
            elif state is _SENT or state is _WAITING:
                ok = len(timers) == 1 and timers[0] <= request.deadline and not sends
            else:
                ok = False
            if not ok:
                problems.append(f"{request!r}: listed {listed}, in {sends} send(s), timers {timers}")
        return problems
