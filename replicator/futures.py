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

Private internals. There is no public way to build a Future without its
Condition, so this class relies on these internals of
concurrent/futures/_base.py:

- the state constants RUNNING, FINISHED, CANCELLED, CANCELLED_AND_NOTIFIED
  (imported from the private module);
- the instance attributes Future.__init__ sets, which LightFuture sets
  itself: _state, _result, _exception, _waiters, _done_callbacks, and
  _condition (a property here, built on first use);
- the readers of those attributes: the base class's own methods
  (result/exception while not done, cancel, __repr__), and wait(),
  as_completed() and their waiters (_AcquireFutures takes `_condition`;
  _create_and_install_waiters appends to `_waiters`, which set_result and
  set_exception must notify with add_result/add_exception);
- the private method _invoke_callbacks, called after a resolution.

They are pinned: `CHECKED_PYTHONS` is the range of Python versions whose
_base.py this class was checked against (3.11, 3.12 and 3.13 ship the same
file), and tests/test_client_future.py fails loudly when the running
Python is outside it or when the source of any of those pieces differs from
the one checked. Outside the range, or if the attribute layout of a plain
Future is not the expected one, `new_future` makes plain (slower) running
Futures instead, so a newer Python costs speed, never correctness.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from concurrent.futures import InvalidStateError
from concurrent.futures._base import CANCELLED, CANCELLED_AND_NOTIFIED, FINISHED, RUNNING, Future
from typing import Any

_DONE_STATES = frozenset((CANCELLED, CANCELLED_AND_NOTIFIED, FINISHED))

#: Python versions (major, minor), inclusive, whose concurrent/futures/_base.py
#: LightFuture was checked against: widen only after checking the next one.
CHECKED_PYTHONS = ((3, 11), (3, 13))
#: The first 16 hex digits of the sha256 of the source of Future, wait(),
#: as_completed() and their helpers in the checked versions (the test computes it).
CHECKED_SOURCE = "95f3f28b17ad7d18"
#: What Future.__init__ sets, in the checked versions.
FUTURE_ATTRIBUTES = frozenset(("_condition", "_state", "_result", "_exception", "_waiters", "_done_callbacks"))


def base_layout_matches() -> bool:
    """A plain Future has exactly the attributes and methods LightFuture mirrors."""
    return set(vars(Future())) == FUTURE_ATTRIBUTES and callable(getattr(Future, "_invoke_callbacks", None))


class LightFuture(Future):  # type: ignore[type-arg]
    """A Future in the RUNNING state whose Condition is created on first wait."""

    def __init__(self) -> None:
        # No super().__init__(): that builds the Condition. These are the
        # base class's private attributes (checked: see the module docstring).
        self._lock = threading.Lock()
        self._cond: threading.Condition | None = None
        self._state = RUNNING
        self._result: Any = None
        self._exception: BaseException | None = None
        self._waiters: list[Any] = []
        self._done_callbacks: list[Callable[[Future[Any]], object]] = []

    @property
    def _condition(self) -> threading.Condition:  # type: ignore[override]
        """The base class's Condition (a private attribute that its methods,
        wait() and as_completed() take), made on demand around the future's lock."""
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
        self._invoke_callbacks()  # type: ignore[attr-defined]  # the base class's private method (checked: see the module docstring)

    def _wake_waiters(self, *, failed: bool) -> None:
        """Called with _lock held, right after the state became FINISHED: what
        the base class's set_result/set_exception do for the private waiters
        of wait() and as_completed(), and for result() waiting on _condition."""
        for waiter in self._waiters:
            if failed:
                waiter.add_exception(self)
            else:
                waiter.add_result(self)
        if self._cond is not None:
            self._cond.notify_all()


def _running_future() -> Future[Any]:
    """A plain Future, RUNNING as a LightFuture is born: the fallback."""
    future: Future[Any] = Future()
    future.set_running_or_notify_cancel()
    return future


#: True where LightFuture's internals were checked (see the module docstring).
LIGHT_FUTURES = CHECKED_PYTHONS[0] <= sys.version_info[:2] <= CHECKED_PYTHONS[1] and base_layout_matches()
#: Makes the Client's futures: a LightFuture where that is safe, else a plain running Future.
new_future: Callable[[], Future[Any]] = LightFuture if LIGHT_FUTURES else _running_future
