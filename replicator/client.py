"""Client: talks to a sandzmq cluster from another process (SPEC 6).

    client = sandzmq.Client.from_config("cluster.toml")   # finds and follows the leader
    client.replicate(b"...")                              # the StateMachine's result
    future = client.replicate_async(b"...")               # many in flight, batched

The protocol (exactly-once sessions, retries, leader following, timers and
the honest errors) is ClientSession's (session.py), which does no I/O. This
module drives it: the public API, the hand-off from caller threads, the I/O
thread and its sockets, and the futures.

Threads. One background I/O thread per Client owns every ZeroMQ socket
(sockets are not thread-safe) and the session. Caller threads only append
requests to a queue and wake the I/O thread through a pipe; each loop turn
the I/O thread takes *everything* queued and the session sends it to a node
as ONE ClientSubmit, so replicate_async() calls in flight together travel
together (client-side batching, DESIGN 2). Futures are resolved on the I/O
thread, so their done-callbacks run there: keep them short, and never block
on another future of the same Client from one.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Mapping, Sequence
from concurrent.futures import Future
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from sandzmq.protocol import CLIENT_ANSWERS, HELLO_REPLY_TAG, ClusterHello, ClusterHelloReply
from sandzmq.replicator.futures import new_future
from sandzmq.replicator.requests import Kind, Request
from sandzmq.replicator.retry import RetryPolicy
from sandzmq.replicator.session import ClientSession
from sandzmq.transport import DEFAULT_MAX_MESSAGE_BYTES, Envelope, PeerLink, Poller

from sandzmq.config import MIN_CLIENT_FRAME_BYTES, ClusterConfig, load_config
from sandzmq.errors import ClusterUnavailable, ReplicationTimeout
from sandzmq.state_machine import check_consistency

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 5.0
#: Room for the envelope and the payload's session header around a command.
_FRAME_OVERHEAD = 4096
_CLOSE = object()  # queued by close()
_COMMAND = Kind.COMMAND
_monotonic = time.monotonic


class Client:
    """A session with a sandzmq cluster; thread-safe; one background I/O thread.

    Build one with `Client.from_config(path)` (follows the leader among every
    node of the file) or `Client.connect(address, cluster=...)` (one node).
    """

    def __init__(
        self,
        addresses: Sequence[str],
        *,
        cluster: str,
        follow_leader: bool = True,
        node_addresses: Mapping[str, str] | None = None,
        resend_interval: float | None = None,
        home: str | None = None,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        max_frame_bytes: int = MIN_CLIENT_FRAME_BYTES,
    ) -> None:
        """`addresses`: client addresses to try, in order; `node_addresses`:
        node id -> client address, for query(node=...) and leader hints that
        name only an id; `resend_interval`: fixed silence before a resend
        (default: from each call's timeout); `home`: the connected node of
        connect mode, which status() and local queries ask by default
        (default: the first address when not following the leader);
        `max_message_bytes`: the largest answer taken; `max_frame_bytes`:
        the largest frame the nodes' client ports take (a command is at
        most that, less the framing)."""
        if not addresses:
            raise ValueError("a Client needs at least one node address")
        self._envelope = Envelope(cluster, max_message_bytes=max_message_bytes)
        self._answers = self._envelope.registry.tags_of(*CLIENT_ANSWERS)  # all a node may send back
        self._max_command = min(max_message_bytes, max_frame_bytes) - _FRAME_OVERHEAD
        self.client_id = os.urandom(16)
        self._session = ClientSession(
            addresses,
            client_id=self.client_id,
            follow_leader=follow_leader,
            node_addresses=node_addresses,
            policy=RetryPolicy(resend_interval=resend_interval),
        )
        self._follow = follow_leader
        self._home = home if home is not None else (None if follow_leader else addresses[0])
        #: Counters for tests, benchmarks and debugging (read them from any thread).
        self.stats: dict[str, int] = self._session.stats

        # Shared with caller threads (under _lock): the hand-off queue.
        self._lock = threading.Lock()
        self._queue: deque[Any] = deque()
        self._closed = False
        self._signalled = False
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)

        # Owned by the I/O thread from here on.
        self._links: dict[str, PeerLink] = {}
        self._poller = Poller([self._wake_r])
        self._io_ident: int | None = None  # the I/O thread's id, once it runs
        self._closing = False
        try:
            for address in self._session.leader.rotation:
                self._link(address)
        except BaseException:
            self._close_sockets()
            raise
        self._thread = threading.Thread(target=self._run, name="sandzmq-client-io", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------ construction

    @classmethod
    def from_config(cls, path: str | Path | ClusterConfig, *, resend_interval: float | None = None) -> Self:
        """A client that knows every node's client address and follows the leader.

        Raises ConfigError for an invalid file.
        """
        config = path if isinstance(path, ClusterConfig) else load_config(path)
        return cls(
            [node.client for node in config.nodes],
            cluster=config.name,
            follow_leader=True,
            node_addresses={node.id: node.client for node in config.nodes},
            resend_interval=resend_interval,
            max_frame_bytes=config.raft.client_frame_bytes,
        )

    @classmethod
    def connect(
        cls,
        address: str,
        follow_leader: bool = False,
        *,
        cluster: str | None = None,
        config: str | Path | ClusterConfig | None = None,
        resend_interval: float | None = None,
    ) -> Self:
        """A client of the one node at `address` (its client address).

        replicate() on a follower raises NotLeaderError unless follow_leader
        is set, in which case the client follows leader hints from there.
        Every message carries the cluster's name (SPEC 3): give `cluster`, or
        `config` (a config file, which also gives node ids for
        query(node=...)), or neither, and the node is asked for it
        (ClusterUnavailable if it does not answer within a few seconds).
        """
        book: dict[str, str] = {}
        frame_bytes = MIN_CLIENT_FRAME_BYTES
        if config is not None:
            loaded = config if isinstance(config, ClusterConfig) else load_config(config)
            cluster = cluster or loaded.name
            book = {node.id: node.client for node in loaded.nodes}
            frame_bytes = loaded.raft.client_frame_bytes
        if not cluster:
            cluster = discover_cluster(address)
        return cls(
            [address],
            cluster=cluster,
            follow_leader=follow_leader,
            node_addresses=book,
            resend_interval=resend_interval,
            home=address,
            max_frame_bytes=frame_bytes,
        )

    # ------------------------------------------------------------ public API

    def replicate(self, command: bytes, timeout: float | None = DEFAULT_TIMEOUT) -> Any:
        """Commit `command` and return the StateMachine's result.

        Raises NotLeaderError (connect mode, on a follower), and
        ReplicationTimeout or ClusterUnavailable within `timeout` seconds
        (None: no limit) when the commit cannot be confirmed.
        """
        return self._wait(self.replicate_async(command, timeout), timeout)

    def replicate_async(self, command: bytes, timeout: float | None = DEFAULT_TIMEOUT) -> Future[Any]:
        """Like replicate(), but returns at once with a Future that resolves,
        with the result or one of replicate()'s errors, within `timeout`."""
        if not isinstance(command, bytes):
            raise TypeError(f"command must be bytes, got {type(command).__name__}")
        if len(command) > self._max_command:
            raise ValueError(f"command of {len(command)} bytes is above the limit of {self._max_command}")
        return self._submit(Request(_COMMAND, command, _timeout(timeout), _monotonic(), new_future()))

    def query(
        self,
        query: bytes,
        consistency: str = "linearizable",
        node: str | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
    ) -> Any:
        """StateMachine.query()'s answer. `linearizable` and `lease` go to the
        leader; `local` reads the node with id `node` (default: the connected
        node, or the believed leader of a from_config client)."""
        if not isinstance(query, bytes):
            raise TypeError(f"query must be bytes, got {type(query).__name__}")
        check_consistency(consistency)
        fixed = None
        if node is not None:
            if consistency != "local":
                raise ValueError("node= only applies to consistency='local' (the others ask the leader)")
            fixed = self._address_of(node)
        elif consistency == "local":
            fixed = self._home
        request = Request(Kind.QUERY, query, _timeout(timeout), time.monotonic(), new_future(), consistency, fixed)
        return self._wait(self._submit(request), timeout)

    def status(self, timeout: float = 1.0, node: str | None = None) -> dict[str, Any]:
        """The node's status report (what `sandzmq status` prints): of node
        `node`, else of the connected node (connect mode) or the believed
        leader. ClusterUnavailable if it does not answer within `timeout`."""
        fixed = self._address_of(node) if node is not None else self._home
        request = Request(Kind.STATUS, b"", _timeout(timeout), time.monotonic(), new_future(), fixed=fixed)
        return self._wait(self._submit(request), timeout)

    def close(self) -> None:
        """Stop the I/O thread. Calls still waiting fail: ReplicationTimeout
        for a command that may have been proposed, ClusterUnavailable for
        the rest. Idempotent."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._queue.append(_CLOSE)
                self._wake()
        if threading.current_thread() is not self._thread:
            self._thread.join()

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def leader_address(self) -> str | None:
        """The client address of the node believed to lead, if any."""
        return self._session.leader.current

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        mode = "following the leader" if self._follow else "connected"
        return f"<Client {self.client_id.hex()[:8]} {mode}: {', '.join(self._session.leader.rotation)}>"

    # ------------------------------------------------------------ caller side

    def _address_of(self, node: str) -> str:
        book = self._session.leader.book  # (the I/O thread may add to it: a dict read is atomic)
        try:
            return book[node]
        except KeyError:
            known = ", ".join(sorted(book)) or "none (connect with config=... to name nodes)"
            raise ValueError(f"unknown node {node!r}; known nodes: {known}") from None

    def _submit(self, request: Request) -> Future[Any]:
        """Hand `request` to the I/O thread; its `caller` is the future to
        return (born RUNNING, see futures.py: a request may be on the wire
        any moment, so it cannot be cancelled)."""
        future: Future[Any] = request.caller
        if threading.get_ident() == self._io_ident and not (self._closing or self._closed):
            # From the I/O thread itself (a done-callback issuing the next
            # call: the closed loop of `sandzmq bench` and of pipelined
            # callers): no hand-off needed, it owns the session. Never once
            # closing: the thread is failing what is live, and a request
            # added to it now would never be answered.
            self._session.submit(request)
            return future
        with self._lock:
            if self._closed:
                future.set_exception(ClusterUnavailable("the client is closed"))
                return future
            self._queue.append(request)
            if not self._signalled:
                self._wake()
        return future

    def _wake(self) -> None:
        """Wake the I/O thread (called with _lock held): one byte per batch of
        hand-offs. A hand-off from the I/O thread itself (a done-callback
        that issues the next call: the usual closed loop) writes none: that
        thread takes the queue before it next sleeps (see _poll_timeout), and
        the byte would only cost a write, a wake-up and a read."""
        if self._signalled or threading.get_ident() == self._io_ident:
            return
        self._signalled = True
        try:
            os.write(self._wake_w, b"\0")
        except BlockingIOError:  # the pipe is full: the thread is awake anyway
            pass
        except OSError:  # closed: the I/O thread is gone, and fails what is queued
            pass

    def _wait(self, future: Future[Any], timeout: float | None) -> Any:
        if threading.current_thread() is self._thread:
            raise RuntimeError(
                "a blocking Client call from the Client's own I/O thread (a future callback) would deadlock"
            )
        # The I/O thread resolves every future by its deadline; the margin only
        # guards against a bug there leaving a caller blocked forever.
        guard = None if timeout is None else timeout + 10.0
        try:
            return future.result(guard)
        except TimeoutError:
            raise ReplicationTimeout(
                f"no answer within {timeout} s (the client's I/O thread is stuck{self._io_thread_whereabouts()})"
            ) from None

    def _io_thread_whereabouts(self) -> str:
        """Where the I/O thread is now, for the error that says it is stuck."""
        frame = sys._current_frames().get(self._thread.ident or -1)
        if frame is None:
            return ", and no longer running"
        stack = traceback.format_stack(frame, limit=6)
        state = f"; queued {len(self._queue)}, signalled {self._signalled}, " + self._session.describe(time.monotonic())
        return ": " + " <- ".join(line.strip().splitlines()[0] for line in reversed(stack)) + state

    # ------------------------------------------------------------ the I/O thread

    def _run(self) -> None:
        self._io_ident = threading.get_ident()
        session = self._session
        try:
            while True:
                for source in self._poller.wait(self._poll_timeout()):
                    if isinstance(source, int):
                        self._drain_wake()
                    else:
                        self._receive(source)
                if self._queue:
                    self._take_new()
                if self._closing:
                    break
                now = time.monotonic()  # one clock read per turn, not per request
                session.tick(now)
                self._resolve(session.take_resolved())  # (done-callbacks may submit more: flushed next)
                self._flush(now)
        except BaseException:
            log.exception("sandzmq client I/O thread failed")
        finally:
            with self._lock:
                self._closed = True
                leftovers = [item for item in self._queue if item is not _CLOSE]
                self._queue.clear()
            for request in leftovers:
                request.caller.set_exception(ClusterUnavailable("the client is closed"))
            session.close()
            self._resolve(session.take_resolved())
            self._close_sockets()

    def _close_sockets(self) -> None:
        for link in self._links.values():
            link.close()
        self._links.clear()
        for fd in (self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass

    def _poll_timeout(self) -> float | None:
        """Milliseconds until the session's next deadline; 0 when there is
        work already (requests ready, or handed off by this thread's own
        callbacks)."""
        if self._queue:
            return 0.0
        deadline = self._session.next_deadline()
        if deadline is None:
            return None
        return max(0.0, (deadline - time.monotonic()) * 1000.0)

    def _drain_wake(self) -> None:
        # Empty the pipe first, then clear the flag: a caller that finds the
        # flag still set has queued its request before the clearing, so the
        # _take_new() that follows sees it. (The other order can swallow the
        # byte of a caller that wrote after the clearing, and leave the flag
        # set with the pipe empty: every later hand-off would then sleep.)
        try:
            while os.read(self._wake_r, 4096):
                pass
        except BlockingIOError:
            pass
        with self._lock:
            self._signalled = False

    def _take_new(self) -> None:
        """Hand every queued request to the session (those queued after
        close() too: the session fails them with the rest)."""
        queue, submit = self._queue, self._session.submit
        while queue:
            item = queue.popleft()
            if item is _CLOSE:
                self._closing = True
            else:
                submit(item)

    def _receive(self, link: PeerLink) -> None:
        now = time.monotonic()
        receive = self._session.receive
        for message in link.drain():
            try:
                receive(link.remote, message, now)
            except Exception:  # never let one odd reply stop the thread
                self.stats["bad_replies"] += 1
                log.exception("ignoring a reply the client could not handle")

    def _flush(self, now: float) -> None:
        """Hand each Send of the session's flush to its link, and tell the
        session what became of it. (A method of its own so that nothing of
        a flush outlives it: the Sends hold their requests' futures.)"""
        session = self._session
        for send in session.flush(now):
            try:
                link = self._link(send.address)
            except ValueError as exc:
                session.unreachable(send, str(exc), now)
                continue
            try:
                delivered = link.send(send.message)
            except Exception as exc:  # an unencodable or oversized message: a bug, or a huge batch
                log.exception("cannot send to %s", send.address)
                session.failed(send, str(exc))
                continue
            if delivered:
                session.sent(send, now)
            else:
                session.refused(send, now)
        self._resolve(session.take_resolved())

    @staticmethod
    def _resolve(resolved: list[Request]) -> None:
        """Answer the callers (done-callbacks run here, on the I/O thread).

        Each request is dropped as soon as it is answered: its callback
        typically makes the next call, and a list holding a whole turn's
        answered requests while the next ones are built kept the garbage
        collector's young generation full (a collection every turn)."""
        resolved.reverse()
        pop = resolved.pop
        while resolved:
            request = pop()
            error = request.error
            if error is None:
                request.caller.set_result(request.result)
            else:
                request.caller.set_exception(error)

    def _link(self, address: str) -> PeerLink:
        link = self._links.get(address)
        if link is None:
            try:
                link = PeerLink(address, self._envelope, immediate=True, accept=self._answers)
            except OSError as exc:
                raise ValueError(f"cannot connect to {address!r}: {exc.strerror or exc}") from None
            self._links[address] = link
            self._poller.register(link)
        return link


def _timeout(timeout: float | None) -> float:
    if timeout is None:
        return math.inf
    if not timeout > 0:
        raise ValueError(f"timeout must be positive (or None), got {timeout!r}")
    return float(timeout)


def discover_cluster(address: str, timeout: float = 5.0) -> str:
    """The name of the cluster whose node listens at `address` (its client
    port): the one question a node answers whatever cluster name it is asked
    in (protocol.ClusterHello)."""
    nonce = int.from_bytes(os.urandom(6), "big")
    envelope = Envelope("?", open_tags=frozenset({HELLO_REPLY_TAG}))
    deadline = time.monotonic() + timeout
    with PeerLink(address, envelope, accept=envelope.registry.tags_of(ClusterHelloReply)) as link:
        link.send(ClusterHello(nonce))
        while (left := deadline - time.monotonic()) > 0:
            if not link.socket.poll(int(left * 1000) + 1):
                break
            for message in link.drain():
                if isinstance(message, ClusterHelloReply) and message.nonce == nonce:
                    return message.cluster
    raise ClusterUnavailable(f"no node answered at {address} within {timeout:g} s (is it running?)")
