"""Client: talks to a sandzmq cluster from another process (SPEC 6).

    client = sandzmq.Client.from_config("cluster.toml")   # finds and follows the leader
    client.replicate(b"...")                              # the StateMachine's result
    future = client.replicate_async(b"...")               # many in flight, batched

Threads. One background I/O thread per Client owns every ZeroMQ socket
(sockets are not thread-safe) and all the bookkeeping below. Caller threads
only append requests to a queue and wake the I/O thread through a pipe; each
loop turn the I/O thread takes *everything* queued and sends it to a node as
ONE ClientSubmit, so replicate_async() calls in flight together travel
together (client-side batching, DESIGN 2). Futures are resolved on the I/O
thread, so their done-callbacks run there: keep them short, and never block
on another future of the same Client from one.

Exactly-once (Raft dissertation 6.3). A Client is one session: a random
16-byte client id, and sequence numbers 1, 2, 3... for its commands. Every
attempt at a command, to whichever node, carries the SAME seq, so the apply
actor applies it once and answers retries from its session cache; each
attempt also carries `first_incomplete`, the lowest seq still waiting for an
answer, so the cluster can forget older results. A command that timed out is
given up: it leaves the session window, and a later replicate() of the same
bytes is a new command.

Retries. Each attempt has its own request id, so every answer is matched to
the attempt (and node) it answers:

- NOT_LEADER: from_config (or follow_leader=True) goes to the hinted leader
  at once, or, when the hint is empty (an election), tries the next node
  after a short pause; connect mode raises NotLeaderError(leader_id,
  leader_address), or ReplicationTimeout if an earlier attempt may already
  have been proposed (then "not appended anywhere" would be a lie).
- LOST: proposed, then leadership changed; retried at the (new) leader with
  the same seq after a short pause.
- BUSY: retried at the same node after an exponential backoff.
- no answer within the resend interval: resent (same seq) to the believed
  leader; after a second silent interval that node is suspected and the next
  one is tried, so a stopped leader does not hold the client.
- a node not connected: links use ZMQ_IMMEDIATE, so a send with no
  connection is refused on the spot and *certainly* not delivered; the
  client tries again shortly (the next node, when following the leader).

Errors at the deadline keep sandzmq.errors' promises: ReplicationTimeout
(outcome unknown) if any attempt was handed to a connected node and not
refused, or the cluster answered LOST; ClusterUnavailable only when no
attempt can have been proposed (nothing could be sent, or every attempt was
refused with NOT_LEADER / BUSY). Success is reported only on an OK reply.
"""
from __future__ import annotations

import heapq
import itertools
import logging
import math
import os
import random
import sys
import threading
import traceback
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import msgpack

from sandzmq.protocol import (
    CLIENT_ANSWERS,
    ClientQuery,
    ClientReply,
    ClientSubmit,
    ReplyStatus,
    HELLO_REPLY_TAG,
    ClusterHello,
    encode_command,
    ClusterHelloReply,
    StatusReply,
    StatusRequest,
)
from sandzmq.config import MIN_CLIENT_FRAME_BYTES, ClusterConfig, load_config
from sandzmq.errors import ClusterUnavailable, NotLeaderError, ReplicationTimeout, SandzmqError
from sandzmq.replicator.futures import LightFuture
from sandzmq.state_machine import check_consistency
from sandzmq.transport import DEFAULT_MAX_MESSAGE_BYTES, Envelope, PeerLink, Poller

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 5.0
#: Requests per ClientSubmit, and their payload bytes: one message stays far
#: below the envelope's size limit and one loop turn's latency stays bounded.
MAX_SUBMIT_REQUESTS = 4096
MAX_SUBMIT_BYTES = 8 << 20
#: Room for the envelope and the payload's session header around a command.
_FRAME_OVERHEAD = 4096
#: A link with no connection: try again (elsewhere, when following) after this.
UNSENT_RETRY_S = 0.02
#: NOT_LEADER without a hint or LOST: an election is probably running.
ELECTION_PAUSE_S = 0.05
#: BUSY: first backoff, doubled per BUSY answer, capped.
BUSY_BACKOFF_S = (0.01, 0.25)


# ---------------------------------------------------------------- requests

_COMMAND, _QUERY, _STATUS = "command", "query", "status"
# Request states in the I/O thread. Invariant: a READY request is in the
# ready list; a WAITING or SENT one is covered by exactly one valid timer
# entry, due no later than its deadline, so every request is looked at again
# by its deadline. A timer entry covers several requests (all those of one
# sent message); request i of an entry is valid while its token is the
# entry's first token + i (see _Timer).
_NEW, _READY, _WAITING, _SENT, _DONE = range(5)
#: Futures resolve this much before the deadline (at most), so that a caller's
#: own `future.result(timeout)` with the same timeout sees the answer.
_EARLY_S = 0.01


class _Request:
    """One replicate/query/status call, from hand-off to its final answer.

    A slotted class with a hand-written __init__ rather than a dataclass:
    one is built per call, and field default factories (a set per request,
    a clock read in __post_init__) were a measurable share of the client's
    CPU per request. Earlier attempts still unanswered live in `older`,
    made only when a request is sent a second time.
    """

    __slots__ = (
        "kind", "future", "body", "timeout", "consistency", "fixed", "deadline", "due", "seq", "state",
        "token", "current_rid", "current_open", "older", "current_node", "maybe_proposed", "silent",
        "busy", "attempts", "refusal", "sent_at",
    )  # fmt: skip

    def __init__(
        self, kind: str, future: Future[Any], body: bytes, timeout: float, consistency: str = "",
        fixed: str | None = None,
    ) -> None:
        self.kind = kind
        self.future = future
        self.body = body
        self.timeout = timeout
        self.consistency = consistency
        self.fixed = fixed  # an address it must go to (local query, status); None: the leader
        self.deadline = time.monotonic() + timeout - min(_EARLY_S, timeout / 10)
        self.due = 0.0  # SENT: when the current attempt counts as unanswered
        self.sent_at = 0.0  # when the latest attempt was sent (round-trip samples)
        # seq; state; token (matches one timer entry, 0: none); the latest attempt's id;
        # consecutive resend intervals without an answer; BUSY answers so far; attempts.
        self.seq = self.state = self.token = self.current_rid = self.silent = self.busy = self.attempts = 0
        self.current_open = False  # the latest attempt was sent and is not answered or refused
        self.older: set[int] | None = None  # earlier attempts sent and not answered or refused
        self.current_node: str | None = None
        self.maybe_proposed = False  # a LOST answer, or an attempt left unanswered
        self.refusal = ""  # why the last attempt did not go through, for the final error

    @property
    def outstanding(self) -> bool:
        """Some attempt was handed to a node and neither answered nor refused."""
        return self.current_open or bool(self.older)


#: A timer entry: (due time, tiebreak, first token, count, waiting request).
#: A request's token names the one entry that covers it. The requests of one
#: sent message have tokens equal to their request ids, which are
#: consecutive: their entry is (.., first id, count, None), and finds them in
#: _rids, so it keeps no finished request alive until it is due. A WAITING
#: request gets a negative token and an entry (.., token, 1, request) of its
#: own; READY and DONE requests have token 0.
_Timer = tuple[float, int, int, int, "_Request | None"]

_CLOSE = object()  # queued by close()
_KNOWN_STATUS = frozenset(int(s) for s in ReplyStatus)
_OK = int(ReplyStatus.OK)


def _parse_hint(value: Any) -> tuple[str | None, str | None]:
    """NOT_LEADER's value, [leader_id | None, leader_address | None], read defensively."""
    if isinstance(value, list | tuple) and len(value) == 2:
        leader_id, address = value
        return (leader_id if isinstance(leader_id, str) and leader_id else None,
                address if isinstance(address, str) and address else None)
    return None, None


def _resend_interval(timeout: float, srtt: float = 0.0, rttvar: float = 0.0) -> float:
    """Silence before a resend: long enough that a merely slow commit is not
    duplicated (duplicates are harmless, but cost the leader work), short
    enough to leave room for a few attempts within the timeout.

    Under a deep load the answers themselves take long, and resending
    requests that are merely queued doubles the leader's work exactly when
    it has none to spare (throughput fell by a third at 16k requests in
    flight, with a fixed 1 s interval). So, as TCP's retransmission timer
    (RFC 6298), it is never below the smoothed round trip plus four times
    its variation; capped at half the timeout, so a silent node is still
    given up on in time."""
    floor = max(0.25, min(1.0, timeout / 4))
    return max(floor, min(srtt + 4 * rttvar, timeout / 2))


# ---------------------------------------------------------------- the client


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
        self._follow = follow_leader
        self._book: dict[str, str] = dict(node_addresses or {})  # node id -> client address
        self._rotation: list[str] = list(dict.fromkeys(addresses))
        self._rr = random.randrange(len(self._rotation)) if follow_leader else 0
        self._leader: str | None = None
        self._home = home if home is not None else (None if follow_leader else self._rotation[0])
        self._resend_fixed = resend_interval
        self._srtt = 0.0  # smoothed round trip of answered commands (0: none yet), and its variation
        self._rttvar = 0.0
        self.client_id = os.urandom(16)

        # Shared with caller threads (under _lock): the hand-off queue.
        self._lock = threading.Lock()
        self._queue: deque[Any] = deque()
        self._closed = False
        self._signalled = False
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)

        # Owned by the I/O thread from here on.
        self._links: dict[str, PeerLink] = {}
        self._poller = Poller([self._wake_r])
        self._ready: list[_Request] = []
        self._timers: list[_Timer] = []
        self._tiebreak = itertools.count()
        self._rids: dict[int, _Request] = {}
        self._next_rid = 1
        self._next_seq = 1
        self._next_token = -1  # WAITING timers' tokens: negative, so never a request id
        self._next_key = -1  # queries' and status requests' keys in _live (commands use their seq)
        #: Every request taken and not finished, by seq (commands) or negative key.
        self._live: dict[int, _Request] = {}
        self._low_seq = 1  # no seq below this is still live (see _first_incomplete)
        self._pack = msgpack.Packer().pack  # reused: cheaper than packb per entry; I/O thread only
        self._io_ident: int | None = None  # the I/O thread's id, once it runs
        self._closing = False
        #: Counters for tests, benchmarks and debugging (read them from any thread).
        self.stats: dict[str, int] = dict.fromkeys(
            ("submits", "requests_sent", "resends", "replies", "stale_replies",
             "bad_replies", "unsent", "not_leader", "busy", "lost"), 0)  # fmt: skip
        try:
            for address in self._rotation:
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
        return self._submit(_Request(_COMMAND, LightFuture(), command, _timeout(timeout)))

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
        request = _Request(_QUERY, LightFuture(), query, _timeout(timeout), consistency=consistency, fixed=fixed)
        return self._wait(self._submit(request), timeout)

    def status(self, timeout: float = 1.0, node: str | None = None) -> dict[str, Any]:
        """The node's status report (what `sandzmq status` prints): of node
        `node`, else of the connected node (connect mode) or the believed
        leader. ClusterUnavailable if it does not answer within `timeout`."""
        fixed = self._address_of(node) if node is not None else self._home
        request = _Request(_STATUS, LightFuture(), b"", _timeout(timeout), fixed=fixed)
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
        return self._leader

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
        return f"<Client {self.client_id.hex()[:8]} {mode}: {', '.join(self._rotation)}>"

    # ------------------------------------------------------------ caller side

    def _address_of(self, node: str) -> str:
        try:
            return self._book[node]
        except KeyError:
            known = ", ".join(sorted(self._book)) or "none (connect with config=... to name nodes)"
            raise ValueError(f"unknown node {node!r}; known nodes: {known}") from None

    def _submit(self, request: _Request) -> Future[Any]:
        # The future is born RUNNING (LightFuture): a request may be on the
        # wire any moment, so it cannot be cancelled.
        if threading.get_ident() == self._io_ident and not (self._closing or self._closed):
            # From the I/O thread itself (a done-callback issuing the next
            # call: the closed loop of `sandzmq bench` and of pipelined
            # callers): no hand-off needed, it owns the bookkeeping. Never
            # once closing: the thread is failing what is live, and a request
            # added to it now would never be answered.
            self._admit(request)
            return request.future
        with self._lock:
            if self._closed:
                request.future.set_exception(ClusterUnavailable("the client is closed"))
                return request.future
            self._queue.append(request)
            if not self._signalled:
                self._wake()
        return request.future

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
            raise RuntimeError("a blocking Client call from the Client's own I/O thread (a future callback) would deadlock")
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
        timers = self._timers
        state = (f"; queued {len(self._queue)}, signalled {self._signalled}, ready {len(self._ready)}, "
                 f"live {len(self._live)}, timers {len(timers)}"
                 + (f", next in {timers[0][0] - time.monotonic():.3f} s" if timers else ""))
        return ": " + " <- ".join(line.strip().splitlines()[0] for line in reversed(stack)) + state

    # ------------------------------------------------------------ the I/O thread

    def _run(self) -> None:
        self._io_ident = threading.get_ident()
        try:
            while True:
                for source in self._poller.wait(self._poll_timeout()):
                    if isinstance(source, int):
                        self._drain_wake()
                    else:
                        self._on_link(source)
                if self._queue:
                    self._take_new()
                now = time.monotonic()  # one clock read per turn, not per request
                if self._timers and self._timers[0][0] <= now:
                    self._fire_timers(now)
                if self._closing:
                    break
                if self._ready:
                    self._flush(now)
        except BaseException:
            log.exception("sandzmq client I/O thread failed")
        finally:
            with self._lock:
                self._closed = True
                leftovers = [item for item in self._queue if item is not _CLOSE]
                self._queue.clear()
            for request in leftovers:
                request.future.set_exception(ClusterUnavailable("the client is closed"))
            for request in list(self._live.values()):
                self._finish_closed(request)
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
        """Milliseconds until the next timer; 0 when there is work already
        (requests ready, or handed off by this thread's own callbacks).
        Timer entries of finished requests are not pruned here: each costs
        at most one early wake-up, and only while the client is idle."""
        if self._ready or self._queue:
            return 0.0
        timers = self._timers
        if not timers:
            return None
        return max(0.0, (timers[0][0] - time.monotonic()) * 1000.0)

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
        queue = self._queue
        while queue:
            item = queue.popleft()
            if item is _CLOSE:
                self._closing = True
                continue
            request: _Request = item
            if self._closing:
                self._finish_closed(request)
                continue
            self._admit(request)

    def _admit(self, request: _Request) -> None:
        """Number a new request and make it ready to send (I/O thread only)."""
        if request.kind == _COMMAND:
            request.seq = self._next_seq
            self._next_seq += 1
        else:
            request.seq = self._next_key
            self._next_key -= 1
        self._live[request.seq] = request
        request.state = _READY  # its token is 0: no timer covers it
        self._ready.append(request)

    # --- timers

    def _push_timer(self, when: float, first_token: int, count: int = 1, waiting: _Request | None = None) -> None:
        heapq.heappush(self._timers, (when, next(self._tiebreak), first_token, count, waiting))

    def _schedule(self, request: _Request, at: float) -> None:
        """Send `request` (again) at time `at`: now, or after a pause.

        A request whose send was just refused is still READY, but no longer in
        the ready list (the flush took it): it is put back unconditionally.
        (_set_ready would see READY and do nothing, leaving a live request in
        no list and under no timer: found by the stuck-I/O-thread check, when
        a flush outlasted UNSENT_RETRY_S while nodes were starting.) Its
        deadline is checked here too: only timers look at deadlines, and a
        request sent again at once gets none."""
        now = time.monotonic()
        if now >= request.deadline:
            self._expire(request)
            return
        if at <= now:
            request.state = _READY
            request.token = 0
            self._ready.append(request)
            return
        request.state = _WAITING
        token = request.token = self._next_token
        self._next_token -= 1
        self._push_timer(min(at, request.deadline), token, 1, request)

    def _set_ready(self, request: _Request) -> None:
        if request.state != _READY:
            request.state = _READY
            request.token = 0
            self._ready.append(request)

    def _fire_timers(self, now: float) -> None:
        """Look at every request that a due timer entry still covers."""
        timers, rids = self._timers, self._rids
        while timers and timers[0][0] <= now:
            _, _, first_token, count, waiting = heapq.heappop(timers)
            if waiting is not None:
                if waiting.token == first_token:
                    if now >= waiting.deadline:
                        self._expire(waiting)
                    else:
                        self._set_ready(waiting)
                continue
            for rid in range(first_token, first_token + count):
                request = rids.get(rid)
                if request is None or request.token != rid:
                    continue  # answered, finished, or moved on since
                if now >= request.deadline:
                    self._expire(request)
                elif now >= request.due:
                    self._on_silence(request)
                else:  # sent together with requests due earlier: a timer of its own
                    self._push_timer(request.due, rid)

    def _on_silence(self, request: _Request) -> None:
        """No answer within the resend interval: resend; suspect a node that stays silent."""
        request.silent += 1
        self.stats["resends"] += 1
        if request.silent >= 2 and request.fixed is None and request.current_node is not None:
            self._suspect(request.current_node)
            request.silent = 0
        self._set_ready(request)

    # --- leader tracking

    def _target(self, request: _Request) -> str:
        if request.fixed is not None:
            return request.fixed
        if not self._follow:
            return self._rotation[0]
        return self._leader or self._rotation[self._rr % len(self._rotation)]

    def _suspect(self, address: str) -> None:
        """`address` is not (or no longer) a usable leader: move on to the next node."""
        if not self._follow:
            return
        if self._leader == address:
            self._leader = None
        if self._rotation[self._rr % len(self._rotation)] == address:
            self._rr += 1

    def _learn_leader(self, refused_by: str, leader_id: str | None, address: str | None) -> bool:
        """Take a NOT_LEADER hint; True if it names a leader other than the node that refused."""
        if leader_id is not None and address is not None:
            self._book.setdefault(leader_id, address)
        if address is None and leader_id is not None:
            address = self._book.get(leader_id)
        if not self._follow:
            return False
        if address is None or address == refused_by:
            self._suspect(refused_by)
            return False
        try:
            self._link(address)
        except ValueError:  # a hint we cannot connect to is no hint
            self.stats["bad_replies"] += 1
            self._suspect(refused_by)
            return False
        if address not in self._rotation:
            self._rotation.append(address)
        self._leader = address
        return True

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

    # --- sending

    def _flush(self, now: float) -> None:
        """Send every READY request: all commands as ClientSubmits to the
        believed leader, then each query and status request on its own."""
        ready, self._ready = self._ready, []
        commands: list[_Request] = []
        others: list[_Request] = []
        for request in ready:
            if request.state == _READY:
                (commands if request.kind == _COMMAND else others).append(request)
        if commands:
            self._send_commands(self._target(commands[0]), commands, now)
        for request in others:
            address = self._target(request)
            if request.kind == _QUERY:
                self._send(address, [request], now, lambda rid, r=request: ClientQuery(rid, r.consistency, r.body))
            else:
                self._send(address, [request], now, StatusRequest)

    def _send_commands(self, address: str, commands: list[_Request], now: float) -> None:
        """Commands as few ClientSubmits as the size limits allow. Each
        payload is encode_command with the I/O thread's reused Packer."""
        pack, client_id, encode = self._pack, self.client_id, encode_command
        first_incomplete = self._first_incomplete()
        payloads = [encode(client_id, r.seq, first_incomplete, r.body, pack) for r in commands]
        if len(payloads) <= MAX_SUBMIT_REQUESTS and sum(map(len, payloads)) <= MAX_SUBMIT_BYTES:
            self._send(address, commands, now, lambda rid: ClientSubmit(rid, payloads))
            return
        for lo, hi in _chunk_bounds(payloads):
            chunk = payloads[lo:hi]
            self._send(address, commands[lo:hi], now, lambda rid, chunk=chunk: ClientSubmit(rid, chunk))

    def _send(self, address: str, requests: list[_Request], now: float, build: Callable[[int], object]) -> None:
        """Send one message carrying `requests`, numbered consecutively from
        the id given to `build`; one timer entry covers them all. On a
        refused send nothing was delivered, so the attempts do not count."""
        first = self._next_rid
        self._next_rid = first + len(requests)
        try:
            sent = self._link(address).send(build(first))
        except Exception as exc:  # an unencodable or oversized message: a bug, or a huge batch
            log.exception("cannot send to %s", address)
            for request in requests:
                self._finish(request, error=SandzmqError(f"cannot send the request: {exc}"))
            return
        if not sent:
            self.stats["unsent"] += len(requests)
            self._suspect(address)
            for request in requests:
                request.refusal = f"{address} is not reachable"
                self._schedule(request, now + UNSENT_RETRY_S)
            return
        self.stats["submits"] += 1
        self.stats["requests_sent"] += len(requests)
        rids, fixed_interval = self._rids, self._resend_fixed
        last_timeout, interval, first_due = -1.0, 0.0, math.inf
        for rid, request in enumerate(requests, first):
            rids[rid] = request
            if request.current_open:  # an earlier attempt is still unanswered
                if request.older is None:
                    request.older = set()
                request.older.add(request.current_rid)
            request.current_open = True
            request.current_rid = request.token = rid
            request.current_node = address
            request.attempts += 1
            request.state = _SENT
            request.sent_at = now
            if request.timeout != last_timeout:
                last_timeout = request.timeout
                interval = fixed_interval or _resend_interval(last_timeout, self._srtt, self._rttvar)
            due = now + interval
            if due > request.deadline:
                due = request.deadline
            request.due = due
            if due < first_due:
                first_due = due
        self._push_timer(first_due, first, len(requests))

    def _first_incomplete(self) -> int:
        """The lowest seq still live (or the next one). Seqs are consecutive,
        so a pointer that only moves up replaces a heap."""
        low, live, end = self._low_seq, self._live, self._next_seq
        while low < end and low not in live:
            low += 1
        self._low_seq = low
        return low

    # --- receiving

    def _on_link(self, link: PeerLink) -> None:
        for message in link.drain():
            try:
                if type(message) is ClientReply:
                    self._on_client_reply(link.remote, message)
                elif type(message) is StatusReply:
                    self._on_reply(link.remote, message.request_id, ReplyStatus.OK, message.status, status_reply=True)
                else:
                    self.stats["bad_replies"] += 1
            except Exception:  # never let one odd reply stop the thread
                self.stats["bad_replies"] += 1
                log.exception("ignoring a reply the client could not handle")

    def _on_client_reply(self, node: str, message: ClientReply) -> None:
        """The common case inline (OK for a command or query); anything else via _on_reply."""
        rids = self._rids
        follow = self._follow
        finished = 0
        sample = None
        try:
            for rid, status, value in zip(message.request_ids, message.statuses, message.values):
                request = rids.get(rid)
                if status == _OK and request is not None and request.kind != _STATUS:
                    del rids[rid]
                    finished += 1
                    if request.attempts == 1:
                        sample = request  # Karn: only an answer to a request sent once times the round trip
                    if follow and request.fixed is None:
                        self._leader = node  # it just acted as the leader
                    self._finish(request, result=value)
                else:
                    self._on_reply(node, rid, status, value)
        finally:
            self.stats["replies"] += finished
        if sample is not None:
            self._observe_round_trip(time.monotonic() - sample.sent_at)

    def _observe_round_trip(self, rtt: float) -> None:
        """One round-trip sample per reply message (RFC 6298's smoothing)."""
        if self._srtt == 0.0:
            self._srtt, self._rttvar = rtt, rtt / 2
        else:
            self._rttvar += (abs(self._srtt - rtt) - self._rttvar) / 4
            self._srtt += (rtt - self._srtt) / 8

    def _on_reply(self, node: str, rid: int, status: int, value: Any, status_reply: bool = False) -> None:
        request = self._rids.get(rid)
        if request is None or request.state == _DONE:
            self.stats["stale_replies"] += 1
            return
        if status not in _KNOWN_STATUS or (status == ReplyStatus.OK and status_reply != (request.kind == _STATUS)):
            self.stats["bad_replies"] += 1  # not an answer (or an OK of the wrong shape): the attempt stays open
            return
        del self._rids[rid]
        self.stats["replies"] += 1
        latest = rid == request.current_rid
        if latest:
            request.current_open = False
            request.silent = 0
        elif request.older is not None:
            request.older.discard(rid)
        if status == ReplyStatus.OK:
            if self._follow and request.fixed is None:
                self._leader = node  # it just acted as the leader
            self._finish(request, result=value)
        elif status == ReplyStatus.ERROR:
            self._finish(request, error=SandzmqError(f"{node} refused the request: {value}"))
        elif status == ReplyStatus.NOT_LEADER:
            self._on_not_leader(request, node, value, latest)
        elif status == ReplyStatus.BUSY:
            self.stats["busy"] += 1
            if latest:
                request.busy += 1
                request.refusal = f"{node} is busy"
                if request.fixed is None and self._leader != node:
                    self._suspect(node)  # a node that is starting (or overloaded) but not known to lead
                low, high = BUSY_BACKOFF_S
                pause = min(high, low * 2 ** (request.busy - 1)) * random.uniform(0.75, 1.25)
                self._schedule(request, time.monotonic() + pause)
        elif status == ReplyStatus.LOST:
            self.stats["lost"] += 1
            request.maybe_proposed = True
            if latest:
                request.refusal = f"{node} lost its leadership after proposing the command"
                self._suspect(node)
                self._schedule(request, time.monotonic() + ELECTION_PAUSE_S)

    def _on_not_leader(self, request: _Request, node: str, value: Any, latest: bool) -> None:
        self.stats["not_leader"] += 1
        leader_id, address = _parse_hint(value)
        redirected = self._learn_leader(node, leader_id, address)
        if not latest:
            return
        if not self._follow:
            if request.kind == _COMMAND and (request.maybe_proposed or request.outstanding):
                self._finish(request, error=ReplicationTimeout(
                    f"{node} is no longer the leader and an earlier attempt may have been proposed: "
                    "the command's outcome is unknown"))
            else:
                self._finish(request, error=NotLeaderError(leader_id, address or self._book.get(leader_id or "")))
            return
        request.refusal = f"{node} is not the leader" + ("" if leader_id else " and knows of none")
        if redirected:
            self._schedule(request, 0.0)
        else:
            self._schedule(request, time.monotonic() + ELECTION_PAUSE_S)

    # --- endings

    def _finish(self, request: _Request, *, result: Any = None, error: BaseException | None = None) -> None:
        if request.state == _DONE:
            return
        request.state = _DONE
        request.token = 0  # no timer entry covers it any more
        self._live.pop(request.seq, None)
        rids = self._rids
        rids.pop(request.current_rid, None)
        if request.older:
            for rid in request.older:
                rids.pop(rid, None)
        if error is None:
            request.future.set_result(result)
        else:
            request.future.set_exception(error)

    def _expire(self, request: _Request) -> None:
        """The deadline passed: say honestly what may have happened."""
        waited = f"{request.timeout:g} s"
        if request.kind == _STATUS:
            error: SandzmqError = ClusterUnavailable(
                f"no status from {request.fixed or 'the cluster'} within {waited}")
        elif request.maybe_proposed or request.outstanding:
            where = request.current_node or "the cluster"
            if request.kind == _COMMAND:
                error = ReplicationTimeout(
                    f"the command was not confirmed within {waited} (last sent to {where}, "
                    f"{request.attempts} attempt(s)): it may still commit")
            else:
                error = ReplicationTimeout(f"no answer to the query within {waited} (last sent to {where})")
        else:
            reason = request.refusal or "no node could be reached"
            error = ClusterUnavailable(f"no leader took the request within {waited}: {reason}")
        self._finish(request, error=error)

    def _finish_closed(self, request: _Request) -> None:
        if request.kind == _COMMAND and (request.maybe_proposed or request.outstanding):
            error: SandzmqError = ReplicationTimeout("the client was closed before the command was confirmed: it may still commit")
        else:
            error = ClusterUnavailable("the client was closed")
        self._finish(request, error=error)


def _timeout(timeout: float | None) -> float:
    if timeout is None:
        return math.inf
    if not timeout > 0:
        raise ValueError(f"timeout must be positive (or None), got {timeout!r}")
    return float(timeout)


def _chunk_bounds(payloads: list[bytes]) -> Iterable[tuple[int, int]]:
    """[lo, hi) slices of `payloads` for ClientSubmits that stay well inside
    the message size limit."""
    lo, size = 0, 0
    for i, payload in enumerate(payloads):
        if i > lo and (i - lo >= MAX_SUBMIT_REQUESTS or size + len(payload) > MAX_SUBMIT_BYTES):
            yield lo, i
            lo, size = i, 0
        size += len(payload)
    if lo < len(payloads):
        yield lo, len(payloads)


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
            if not link.socket.poll(left * 1000):
                break
            for message in link.drain():
                if isinstance(message, ClusterHelloReply) and message.nonce == nonce:
                    return message.cluster
    raise ClusterUnavailable(f"no node answered at {address} within {timeout:g} s (is it running?)")
