"""The actor base: a pykka actor whose own thread also runs its sockets.

Why not a socket thread feeding a separate actor thread: every hand-off
between two runnable Python threads can wait for the GIL switch interval
(DESIGN.md section 6), and it would be paid per batch on the hot path. Here
the actor's thread alternates between waiting on its ZeroMQ sockets (the
GIL is released while it waits) and handling what arrived, so a message
from a socket costs no thread switch at all.

The loop is driven through pykka itself: the actor tells itself a _Pump
message, and handling it runs loop turns (poll the sockets, handle, flush)
until the pykka inbox holds something, then tells _Pump again. Any other
pykka message (an in-process `tell`/`ask`, a stop) waits in that inbox and
is handled between two pumps; the poll does not block while the inbox holds
something. So a message reaches `handle()` the same way whether
ZeroMQ or pykka delivered it (location transparency): the actors run as three
processes in production and can share one process in a test.

Subclasses implement:
- open():  create sockets and register them with watch(); runs in the actor's thread;
- handle(message, reply_to): one decoded message (reply_to is the sender's
  identity for ROUTER inboxes, None for in-process messages);
- flush(): called after each batch of messages: step the core once, send, write;
- on_tick(): called every `tick_interval` seconds (if set);
- close(): close sockets.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import pykka
from sandzmq.transport import Inbox, PeerLink, Poller

log = logging.getLogger(__name__)


class _Pump:
    """Poll the sockets once (pykka message to self)."""

    __slots__ = ()


_PUMP = _Pump()
_MAX_IDLE_MS = 100.0  # the longest poll when no tick is due: bounds how late a stop is seen


class SocketActor(pykka.ThreadingActor):
    """See the module docstring."""

    tick_interval: float | None = None  # seconds between on_tick() calls

    def __init__(self) -> None:
        super().__init__()
        self._poller = Poller()
        self._readers: dict[Any, Callable[[], None]] = {}
        self._next_tick = 0.0
        self._stopping = False

    # ------------------------------------------------------------------ to override

    def open(self) -> None:
        """Create and watch() the sockets (in the actor's thread)."""

    def handle(self, message: Any, reply_to: bytes | None) -> None:
        raise NotImplementedError

    def flush(self) -> None:
        """Called once after every batch of handled messages."""

    def on_tick(self) -> None:
        """Called every tick_interval seconds."""

    def close(self) -> None:
        """Close the sockets."""

    # ------------------------------------------------------------------ plumbing

    def watch_inbox(self, inbox: Inbox, max_messages: int = 4096) -> None:
        """Deliver everything arriving at a ROUTER inbox to handle(message, identity)."""

        def read() -> None:
            for identity, message in inbox.drain(max_messages):
                self._dispatch(message, identity)

        self._readers[inbox.socket] = read
        self._poller.register(inbox)

    def watch_link(self, link: PeerLink, max_messages: int = 4096) -> None:
        """Deliver replies arriving on a DEALER link to handle(message, None)."""

        def read() -> None:
            for message in link.drain(max_messages):
                self._dispatch(message, None)

        self._readers[link.socket] = read
        self._poller.register(link)

    def _dispatch(self, message: Any, reply_to: bytes | None) -> None:
        try:
            self.handle(message, reply_to)
        except Exception:
            # A message that makes a handler fail is a bug, but one bad message
            # must not take the node down: log it and count it as dropped.
            log.exception("%s: failed to handle %s", type(self).__name__, type(message).__name__)
            self.handle_failed(message)

    def handle_failed(self, message: Any) -> None:
        """Hook: a handler raised on `message` (already logged)."""

    def on_start(self) -> None:
        try:
            self.open()
        except BaseException:
            self.close()  # pykka calls neither on_stop nor on_failure when on_start raises
            raise
        self._next_tick = time.monotonic() + (self.tick_interval or 0.0)
        self.actor_ref.tell(_PUMP)

    def on_stop(self) -> None:
        self._stopping = True
        self.close()

    def on_failure(self, exception_type: Any, exception_value: Any, traceback: Any) -> None:
        log.error("%s stopped by %s: %s", type(self).__name__, exception_type.__name__, exception_value)
        try:
            self.close()
        except Exception:  # closing after a failure is best effort
            log.exception("closing after failure")

    def on_receive(self, message: Any) -> Any:
        if message is _PUMP:
            # Loop turns run back to back inside this one pykka message while
            # the actor's inbox is empty: a tell() to self per turn cost a lock,
            # a condition variable and an envelope every turn, for nothing.
            # A stop or an in-process message waits at most one turn (whose
            # poll does not block while the inbox holds something).
            inbox_empty = self.actor_inbox.empty
            self._pump()
            while inbox_empty() and not self._stopping:
                self._pump()
            if not self._stopping:
                self.actor_ref.tell(_PUMP)
            return None
        self.handle(message, None)
        self.flush()
        return None

    def _timeout_ms(self, now: float) -> float:
        # pykka's documented inbox protocol (ActorInbox.empty(), pykka 4): one
        # lock per loop turn, where reading the queue's private deque saved it.
        if not self.actor_inbox.empty():
            return 0.0
        if self.tick_interval is None:
            return _MAX_IDLE_MS
        return min(_MAX_IDLE_MS, max(0.0, (self._next_tick - now) * 1000.0))

    def _pump(self) -> None:
        now = time.monotonic()
        for source in self._poller.wait(self._timeout_ms(now)):
            self._readers[source.socket]()
        if self.tick_interval is not None:
            now = time.monotonic()
            if now >= self._next_tick:
                self.on_tick()
                # Keep the cadence, but never try to catch up a long stall tick by tick.
                self._next_tick = max(self._next_tick + self.tick_interval, now)
        self.flush()
