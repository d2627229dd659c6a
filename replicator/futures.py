"""LightFuture: a concurrent.futures.Future that builds no Condition unless someone waits.

The base Future's __init__ builds a threading.Condition, which in CPython is
pure Python (an RLock, a deque and half a dozen bound methods): about a
microsecond per future, and a visible share of the client's CPU per request
when a loop resolves tens of thousands of futures a second that nobody ever
blocks on (callback-driven callers such as `sandzmq bench`).

A LightFuture holds a plain threading.Lock (built in C, cheap) as its mutex
and makes the Condition, *around that same lock*, only when a thread needs
one: result()/exception() on a future that is not done yet, or
concurrent.futures.wait()/as_completed(), which use `_condition` directly.
Every state change happens under that one lock, so a waiter that creates
the Condition and then checks the state under it cannot miss a
set_result()/set_exception() on another thread: either the resolver ran
first (the waiter sees FINISHED), or the resolver finds the Condition and
notifies it.

LightFutures are born RUNNING (Client requests may be on the wire at once,
so cancel() returns False), which saves the set_running_or_notify_cancel()
call as well.
"""
from __future__ import annotations

import threading
from concurrent.futures import InvalidStateError
from concurrent.futures._base import CANCELLED, CANCELLED_AND_NOTIFIED, FINISHED, RUNNING, Future
from typing import Any, Callable

_DONE_STATES = frozenset((CANCELLED, CANCELLED_AND_NOTIFIED, FINISHED))


class LightFuture(Future):  # type: ignore[type-arg]
    """A Future in the RUNNING state whose Condition is created on first wait."""

    def __init__(self) -> None:  # no super().__init__(): that builds the Condition
        self._lock = threading.Lock()
        self._cond: threading.Condition | None = None
        self._state = RUNNING
        self._result: Any = None
        self._exception: BaseException | None = None
        self._waiters: list[Any] = []
        self._done_callbacks: list[Callable[[Future[Any]], object]] = []

    @property
    def _condition(self) -> threading.Condition:  # type: ignore[override]
        """The base class's Condition, made on demand around the future's lock."""
        cond = self._cond
        if cond is None:
            with self._lock:
                cond = self._cond
                if cond is None:
                    cond = self._cond = threading.Condition(self._lock)
        return cond

    # -- cheap reads: a done future's state never changes again

    def done(self) -> bool:
        return self._state in _DONE_STATES

    def running(self) -> bool:
        return self._state == RUNNING

    def cancelled(self) -> bool:
        return self._state == CANCELLED or self._state == CANCELLED_AND_NOTIFIED

    def cancel(self) -> bool:
        """False: a request may already be on the wire, and is never cancelled."""
        with self._lock:
            if self._state == RUNNING or self._state == FINISHED:
                return False
        return super().cancel()

    def result(self, timeout: float | None = None) -> Any:
        if self._state == FINISHED:  # _result/_exception were written before _state
            if self._exception is not None:
                raise self._exception
            return self._result
        return super().result(timeout)

    def exception(self, timeout: float | None = None) -> BaseException | None:
        if self._state == FINISHED:
            return self._exception
        return super().exception(timeout)

    def add_done_callback(self, fn: Callable[[Future[Any]], object]) -> None:
        with self._lock:
            if self._state not in _DONE_STATES:
                self._done_callbacks.append(fn)
                return
        super().add_done_callback(fn)  # done: the base class calls it now, logging errors

    # -- resolution (the base class's logic, with the notify skipped when no Condition exists)

    def set_result(self, result: Any) -> None:
        self._resolve(result, None, failed=False)

    def set_exception(self, exception: BaseException | None) -> None:
        self._resolve(None, exception, failed=True)

    def _resolve(self, result: Any, exception: BaseException | None, *, failed: bool) -> None:
        with self._lock:
            resolved = self._state not in _DONE_STATES
            if resolved:
                self._result = result
                self._exception = exception
                self._state = FINISHED
                self._wake_waiters(failed=failed)
        self._after_resolution(resolved)

    def _after_resolution(self, resolved: bool) -> None:
        """Run the callbacks, or refuse a second resolution. Outside the lock:
        repr() takes it (the lock is not reentrant) and callbacks may call anything."""
        if not resolved:
            raise InvalidStateError(f"{self._state}: {self!r}")
        self._invoke_callbacks()

    def _wake_waiters(self, *, failed: bool) -> None:
        """Called with _lock held, right after the state became FINISHED."""
        for waiter in self._waiters:
            if failed:
                waiter.add_exception(self)
            else:
                waiter.add_result(self)
        if self._cond is not None:
            self._cond.notify_all()
