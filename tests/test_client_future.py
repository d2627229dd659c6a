"""LightFuture (sandzmq.replicator.futures): still a real concurrent.futures.Future.

It builds its Condition only when a thread waits; these tests pin down that
everything a Future promises still holds, across threads, and that a waiter
racing a resolver on another thread is never left asleep. It relies on
private internals of concurrent.futures: the first tests fail loudly when
those are not the ones it was checked against.
"""

from __future__ import annotations

import concurrent.futures._base as base
import hashlib
import inspect
import sys
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, InvalidStateError, as_completed, wait

import pytest
from sandzmq.replicator.futures import (
    CHECKED_PYTHONS,
    CHECKED_SOURCE,
    LIGHT_FUTURES,
    LightFuture,
    _running_future,
    base_layout_matches,
    new_future,
)

RECHECK = (
    "LightFuture relies on private internals of concurrent.futures (listed in replicator/futures.py's "
    "docstring); check them against this Python's concurrent/futures/_base.py, then update "
    "CHECKED_PYTHONS and CHECKED_SOURCE"
)


def test_the_running_python_is_one_light_future_was_checked_against() -> None:
    low, high = CHECKED_PYTHONS
    assert low <= sys.version_info[:2] <= high, f"Python {sys.version_info[:2]} is outside {CHECKED_PYTHONS}: {RECHECK}"


def test_the_private_internals_it_relies_on_are_unchanged() -> None:
    pieces = (
        base.Future,
        base._AcquireFutures,
        base._create_and_install_waiters,
        base.wait,
        base.as_completed,
        base._Waiter,
        base._AsCompletedWaiter,
        base._FirstCompletedWaiter,
        base._AllCompletedWaiter,
    )
    source = "".join(inspect.getsource(piece) for piece in pieces)
    assert hashlib.sha256(source.encode()).hexdigest()[:16] == CHECKED_SOURCE, f"the source changed: {RECHECK}"
    assert base_layout_matches(), f"Future's attributes changed: {RECHECK}"
    assert (base.RUNNING, base.FINISHED, base.CANCELLED, base.CANCELLED_AND_NOTIFIED) == (
        "RUNNING",
        "FINISHED",
        "CANCELLED",
        "CANCELLED_AND_NOTIFIED",
    )
    assert LIGHT_FUTURES and new_future is LightFuture


def test_the_fallback_is_a_plain_running_future() -> None:
    future = _running_future()
    assert type(future) is Future and future.running() and future.cancel() is False
    future.set_result(1)
    assert future.result(0) == 1


def resolve_later(future: LightFuture, value: object, started: threading.Event) -> threading.Thread:
    """Resolve `future` from another thread once `started` is set."""

    def run() -> None:
        started.wait(5)
        future.set_result(value)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_it_is_a_running_future_that_cannot_be_cancelled() -> None:
    future = LightFuture()
    assert isinstance(future, Future)
    assert future.running() and not future.done() and not future.cancelled()
    assert future.cancel() is False
    assert future.running()
    future.set_result(7)
    assert future.done() and not future.running() and future.cancel() is False
    assert future.result() == 7 and future.result(0) == 7 and future.exception() is None
    assert "finished" in repr(future)


def test_an_exception_is_raised_by_result_and_returned_by_exception() -> None:
    future = LightFuture()
    error = ValueError("boom")
    future.set_exception(error)
    assert future.exception() is error
    with pytest.raises(ValueError, match="boom"):
        future.result()


def test_a_second_resolution_is_refused() -> None:
    future = LightFuture()
    future.set_result(1)
    with pytest.raises(InvalidStateError):
        future.set_result(2)
    with pytest.raises(InvalidStateError):
        future.set_exception(ValueError())
    assert future.result() == 1


def test_result_with_a_timeout_times_out_while_nobody_resolves() -> None:
    future = LightFuture()
    with pytest.raises(TimeoutError):
        future.result(timeout=0.01)
    with pytest.raises(TimeoutError):
        future.exception(timeout=0.01)
    future.set_result("late")
    assert future.result(timeout=0.01) == "late"


def test_done_callbacks_run_once_before_and_after_resolution() -> None:
    future = LightFuture()
    seen: list[tuple[str, object]] = []
    future.add_done_callback(lambda f: seen.append(("before", f.result())))
    future.add_done_callback(lambda f: 1 / 0)  # logged by the base class, does not stop the others
    future.add_done_callback(lambda f: seen.append(("before2", f.result())))
    future.set_result(5)
    future.add_done_callback(lambda f: seen.append(("after", f.result())))
    assert seen == [("before", 5), ("before2", 5), ("after", 5)]


def test_a_waiter_on_another_thread_is_woken() -> None:
    future = LightFuture()
    started = threading.Event()
    thread = resolve_later(future, "x", started)
    started.set()
    assert future.result(timeout=5) == "x"
    thread.join(5)


def test_no_lost_wakeup_between_a_waiter_and_a_resolver() -> None:
    """Many races of result(timeout) against set_result/set_exception on
    another thread: every waiter returns long before its timeout."""
    for i in range(2000):
        future = LightFuture()
        barrier = threading.Barrier(2)

        def resolve(f: LightFuture = future, n: int = i) -> None:
            barrier.wait(5)
            if n % 2:
                f.set_result(n)
            else:
                f.set_exception(KeyError(n))

        thread = threading.Thread(target=resolve)
        thread.start()
        barrier.wait(5)
        started = time.monotonic()
        if i % 2:
            assert future.result(timeout=10) == i
        else:
            assert isinstance(future.exception(timeout=10), KeyError)
        assert time.monotonic() - started < 5
        thread.join(5)


def test_concurrent_futures_wait_and_as_completed_work() -> None:
    futures = [LightFuture() for _ in range(4)]
    started = threading.Event()
    resolve_later(futures[2], "third", started)
    started.set()
    done, not_done = wait(futures, timeout=5, return_when=FIRST_COMPLETED)
    assert done == {futures[2]} and len(not_done) == 3
    for n, future in enumerate(futures):
        if n != 2:
            threading.Thread(target=future.set_result, args=(n,), daemon=True).start()
    assert sorted(str(f.result()) for f in as_completed(futures, timeout=5)) == ["0", "1", "3", "third"]
    done, not_done = wait(futures, timeout=0)
    assert len(done) == 4 and not not_done


def test_wait_on_futures_already_done_and_mixed_with_plain_futures() -> None:
    light, plain = LightFuture(), Future()
    light.set_exception(RuntimeError("x"))
    plain.set_running_or_notify_cancel()
    threading.Thread(target=plain.set_result, args=(1,), daemon=True).start()
    done, _ = wait([light, plain], timeout=5)
    assert done == {light, plain}
