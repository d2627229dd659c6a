"""Thin, explicit wrappers over pyzmq for the actors' socket loops.

Shape: each actor binds one ROUTER (`Inbox`) and connects a DEALER
(`PeerLink`) to each ROUTER it talks to; `Peers` is the Raft actor's set of
links to the other nodes. Peer messages go one way on each link (A's DEALER
-> B's ROUTER, B's answer on B's DEALER -> A's ROUTER); only clients get
answers back through the ROUTER (`Inbox.reply`).

Rules every wrapper follows, because an actor's loop must never stop:

- Nothing blocks. Sends are NOBLOCK; a full queue or an unknown identity is
  a counted drop (SendDrops), never an exception or a wait. Raft tolerates
  loss; it does not tolerate a leader stuck on a dead follower.
- Nothing received raises. Bad frames are counted in DropCounters (see
  envelope.py) and skipped, and so are messages a socket does not take
  (`accept`: each socket has its own message set, by sender identity).
- Nothing sent raises on the message's content: one that cannot be encoded
  (not msgpack-able, above the frame limit) is counted as `unencodable`.
- LINGER is 0: close() and process exit never wait for unsent messages.
- One thread per wrapper: zmq sockets are not thread-safe, so each Inbox,
  PeerLink, Peers and Poller belongs to the thread that runs the actor loop
  (DESIGN 6 says to prefer that single thread anyway).

One zmq.Context per process (`context()`). A context must not cross a
fork(): start actor processes with multiprocessing's 'spawn' start method or
with subprocess, never 'fork'. context() makes a fresh one in a forked child
as a safety net, but sockets inherited from the parent stay unusable there.

Security: every constructor takes `security`, None today. CURVE (SPEC 8)
plugs in there, in `_apply_security`: server keys on an Inbox, client keys
and the server's public key on a PeerLink, a ZAP handler for the allow-list.
"""

from __future__ import annotations

import errno
import logging
import math
import os
import socket as pysocket
import struct
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Protocol

import zmq

from .counters import DropCounters, SendDrops
from .endpoints import ipc_path
from .envelope import ANY_SENDER, Acceptance, Envelope, MessageTooLarge

log = logging.getLogger(__name__)

# -- tuning -------------------------------------------------------------------
# Values and why. HWMs count messages, not bytes (a queued AppendEntries may be
# megabytes), so they bound memory only as HWM x message size.

#: Inbox (ROUTER) queues, per connected peer. A ROUTER silently drops a reply
#: to a peer whose queue holds SNDHWM messages (DESIGN 6); with
#: ROUTER_MANDATORY set here it reports EAGAIN instead, which reply() counts
#: as `hwm`. 10,000 is far above what one client or peer legitimately has in
#: flight, so only a stalled receiver ever reaches it. On the receive side
#: the actor drains every loop turn, so the queue is normally near empty; a
#: full RCVHWM pushes back on that sender's TCP connection (its own HWM then
#: drops), it loses nothing silently here.
INBOX_SNDHWM = 10_000
INBOX_RCVHWM = 10_000

#: A public port's receive queue, per connection, in bytes: HWMs count
#: messages, so a port that takes frames of up to F bytes gets an RCVHWM of
#: about this over F (receive_hwm). Past it libzmq stops reading from that
#: connection and TCP pushes back on the sender: one sender cannot fill the
#: node's memory. (Many senders still can, each with its own queue: that is
#: for authentication, CURVE, to close.)
RECEIVE_BUDGET_BYTES = 256 << 20


def receive_hwm(max_frame_bytes: int) -> int:
    """The RCVHWM for a public port taking frames of up to max_frame_bytes."""
    return max(16, min(INBOX_RCVHWM, RECEIVE_BUDGET_BYTES // max_frame_bytes))


#: PeerLink (DEALER) send queue. Raft traffic to one peer is bounded by the
#: core's flow control (max_inflight AppendEntries plus heartbeats and
#: votes), far below 1,000; reaching it means the peer is stalled (SIGSTOP,
#: a full disk), and queueing more would only cost memory and deliver stale
#: messages later, so further sends are dropped and counted.
LINK_SNDHWM = 1_000
LINK_RCVHWM = 10_000

#: Reconnect after 100 ms, backing off to 1 s: a restarted peer is reachable
#: again well within an election timeout's order of magnitude, and a dead one
#: costs one connection attempt a second.
RECONNECT_IVL_MS = 100
RECONNECT_IVL_MAX_MS = 1_000
#: A TCP connect to a blackholed host gives up after 1 s (the OS default is
#: minutes), so reconnection keeps trying at the pace above.
CONNECT_TIMEOUT_MS = 1_000

#: TCP keepalive: an idle connection to a crashed host is noticed after about
#: 10 + 3 x 2 = 16 s, so the DEALER reconnects instead of queueing forever.
TCP_KEEPALIVE_IDLE_S = 10
TCP_KEEPALIVE_INTVL_S = 2
TCP_KEEPALIVE_CNT = 3

#: ZMTP heartbeats (libzmq PING/PONG), also on busy and ipc connections,
#: where TCP keepalive says nothing. The timeout is long so that one large
#: AppendEntries crossing a slow link is not mistaken for a dead peer.
HEARTBEAT_IVL_MS = 1_000
HEARTBEAT_TIMEOUT_MS = 10_000

#: Default cap for drain(): bounds one loop turn's latency and memory while
#: still batching many messages per core step. Not larger: decoded messages
#: that carry entries are many small objects, and holding many more of them
#: at once made CPython's cyclic GC cost several times the decoding itself
#: (bench/micro_transport.py --gc-gen0 measures it; docs/PERFORMANCE.md).
DEFAULT_DRAIN = 1_024
#: ... and one drain stops once it holds this many bytes (at least one
#: message): a sender of large frames must not make one loop turn hold
#: gigabytes.
DEFAULT_DRAIN_BYTES = 32 << 20

_MONITOR_EVENTS = (
    zmq.EVENT_DISCONNECTED
    | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
    | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
    | zmq.EVENT_HANDSHAKE_FAILED_AUTH
)
_HANDSHAKE_FAILED = _MONITOR_EVENTS & ~zmq.EVENT_DISCONNECTED

# -- the process-wide context --------------------------------------------------

_context: zmq.Context | None = None
_context_pid: int | None = None
_inherited: list[zmq.Context] = []  # forked-in contexts, kept alive so no __del__ touches them
_context_lock = threading.Lock()


def context() -> zmq.Context:
    """The process's one zmq.Context, created on first use.

    One context per process: sockets of one context share its I/O thread,
    and inproc:// only works within one. A child made by fork() gets a new
    one (the parent's is left untouched: terminating it there would hang).
    """
    global _context, _context_pid
    ctx = _context
    if ctx is not None and _context_pid == os.getpid() and not ctx.closed:
        return ctx
    with _context_lock:
        if _context is not None and _context_pid != os.getpid():
            _inherited.append(_context)
        if _context is None or _context_pid != os.getpid() or _context.closed:
            _context = zmq.Context()
            _context_pid = os.getpid()
        return _context


def terminate_context() -> None:
    """Destroy the process's context (closing any socket still open, with
    LINGER 0). For orderly shutdown and tests; context() makes a new one."""
    global _context
    with _context_lock:
        ctx, _context = _context, None
        if ctx is not None and _context_pid == os.getpid() and not ctx.closed:
            ctx.destroy(linger=0)


def library_versions() -> dict[str, str]:
    """pyzmq and libzmq versions, for benchmark and status reports (so that
    nothing outside transport/ imports zmq for them)."""
    return {"pyzmq": zmq.__version__, "libzmq": zmq.zmq_version()}


# -- socket options ------------------------------------------------------------


def _apply_security(sock: zmq.Socket, security: object | None, *, server: bool) -> None:
    """The seam for CURVE (SPEC 8, not built yet). None: plain ZMTP."""
    if security is not None:
        raise NotImplementedError("CURVE security is not implemented yet (SPEC 8)")


def _configure(sock: zmq.Socket, *, sndhwm: int, rcvhwm: int, max_message_bytes: int) -> None:
    """Options every sandzmq socket gets (values documented above)."""
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.SNDHWM, sndhwm)
    sock.setsockopt(zmq.RCVHWM, rcvhwm)
    # libzmq discards a larger incoming frame (and closes that connection)
    # before it is ever copied into Python.
    sock.setsockopt(zmq.MAXMSGSIZE, max_message_bytes)
    sock.setsockopt(zmq.TCP_KEEPALIVE, 1)
    sock.setsockopt(zmq.TCP_KEEPALIVE_IDLE, TCP_KEEPALIVE_IDLE_S)
    sock.setsockopt(zmq.TCP_KEEPALIVE_INTVL, TCP_KEEPALIVE_INTVL_S)
    sock.setsockopt(zmq.TCP_KEEPALIVE_CNT, TCP_KEEPALIVE_CNT)
    sock.setsockopt(zmq.HEARTBEAT_IVL, HEARTBEAT_IVL_MS)
    sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, HEARTBEAT_TIMEOUT_MS)


def _ipc_in_use(path: str) -> bool:
    """True if a live process listens on the Unix socket at `path`.

    libzmq's ipc bind unlinks whatever file is there, which is right for a
    stale file left by a crash but would silently steal the address from a
    running process (say, the same node started twice), where a tcp bind
    fails with EADDRINUSE. A plain connect() tells the two apart.
    """
    if not os.path.exists(path):
        return False
    with pysocket.socket(pysocket.AF_UNIX, pysocket.SOCK_STREAM) as probe:
        try:
            probe.connect(path)
        except OSError:
            return False  # refused (stale file) or not a socket: ours to take
    return True


def _os_error(e: zmq.ZMQError, what: str) -> OSError:
    """A bind/connect failure as an OSError (errno kept), so that callers
    outside transport/ can handle "address in use" without importing zmq."""
    return OSError(e.errno, f"{what}: {e.strerror}")


_NOTHING: frozenset[str] = frozenset()
_next_unencodable_log = 0.0


def encode_frames(envelope: Envelope, msg: Any, drops: SendDrops) -> list[bytes]:
    """The frames that carry `msg`: one, or, for a message above the frame
    limit that can be split (a `halves()` method: the columnar batches of
    answers and results), as many as it takes. A message that cannot be
    encoded at all is counted as unencodable and logged at most once a
    second (a sender that builds bad messages in a loop must not fill the
    disk). An unregistered class is a bug in the caller: it raises."""
    global _next_unencodable_log
    try:
        return [envelope.encode(msg)]
    except Exception as exc:  # MessageTooLarge, or msgpack's TypeError/ValueError/OverflowError
        if envelope.registry.by_cls(type(msg)) is None:
            raise
        halves = getattr(msg, "halves", None)
        parts = halves() if isinstance(exc, MessageTooLarge) and halves is not None else None
        if parts is not None:
            return encode_frames(envelope, parts[0], drops) + encode_frames(envelope, parts[1], drops)
        drops.unencodable += 1
        now = time.monotonic()
        if now >= _next_unencodable_log:
            _next_unencodable_log = now + 1.0
            log.error("dropped a %s that cannot be sent (%d so far): %s", type(msg).__name__, drops.unencodable, exc)
        return []


def _identity_bytes(identity: str | bytes) -> bytes:
    """A ZMQ routing id: 1 to 255 bytes, not starting with NUL (reserved by libzmq)."""
    ident = identity.encode() if isinstance(identity, str) else bytes(identity)
    if not 0 < len(ident) <= 255 or ident[0] == 0:
        raise ValueError(f"identity must be 1-255 bytes not starting with NUL: {identity!r}")
    return ident


# -- receiving -----------------------------------------------------------------


def drain(
    sock: zmq.Socket, max_messages: int = DEFAULT_DRAIN, max_bytes: int = DEFAULT_DRAIN_BYTES
) -> list[list[bytes]]:
    """Every message waiting on `sock` (up to max_messages and about
    max_bytes), without blocking.

    The actors' batching primitive: the Raft actor drains all its sockets
    before stepping the core once, so many commands become one batch.
    Returns raw multipart messages; one Again ends the loop.
    """
    out: list[list[bytes]] = []
    recv = sock.recv_multipart
    flags = zmq.NOBLOCK
    append = out.append
    size = 0
    try:
        for _ in range(max_messages):
            frames = recv(flags)
            append(frames)
            size += len(frames[-1])
            if size >= max_bytes:
                break
    except zmq.Again:
        pass
    return out


class _HasSocket(Protocol):
    @property
    def socket(self) -> zmq.Socket: ...


class Poller:
    """Waits on several Inboxes/PeerLinks (or raw fds) with a timeout: the
    actor's only blocking call, and its timer (pass the time to the next
    tick)."""

    __slots__ = ("_poller", "_by_socket")

    def __init__(self, sources: Iterable[_HasSocket | int] = ()) -> None:
        self._poller = zmq.Poller()
        self._by_socket: dict[Any, Any] = {}
        for s in sources:
            self.register(s)

    def register(self, source: _HasSocket | int) -> None:
        """Wake on input from `source`: an object with a .socket, or an fd."""
        key = source if isinstance(source, int) else source.socket
        self._by_socket[key] = source
        self._poller.register(key, zmq.POLLIN)

    def unregister(self, source: _HasSocket | int) -> None:
        key = source if isinstance(source, int) else source.socket
        self._by_socket.pop(key, None)
        self._poller.unregister(key)

    def wait(self, timeout_ms: float | None) -> list[Any]:
        """The sources with input, after at most timeout_ms (None: forever;
        a negative timeout is treated as 0, a deadline already passed)."""
        if timeout_ms is not None:
            # Round up: zmq takes whole ms, and rounding 0.4 ms down to 0
            # would spin until the deadline instead of sleeping to it.
            timeout_ms = math.ceil(timeout_ms) if timeout_ms > 0 else 0
        by_socket = self._by_socket
        return [by_socket[s] for s, _ in self._poller.poll(timeout_ms)]


# -- the ROUTER ------------------------------------------------------------------


class Inbox:
    """A bound ROUTER: receives (identity, message) pairs from any number of
    DEALERs, and replies to an identity (client answers).

    - ROUTER_MANDATORY: a reply to a full queue or an unknown identity
      reports an error (counted as `hwm` / `unroutable`) instead of
      vanishing.
    - ROUTER_HANDOVER (`handover`, only for a node's private ipc sockets): a
      partner that restarts with the same identity ("log", "apply") takes it
      over at once, instead of being refused while its dead predecessor's
      connection lingers. Never on a public port: there anyone could claim
      a peer's identity and cut its link (the displaced connection's
      messages are lost until its heartbeat times out, and libzmq 4.3.5
      then aborts the process: `!_io_error`, stream_engine_base.cpp:310).
      Without it a second connection with an identity already in use is
      refused, so peers and clients present no fixed identity there.
    - MAXMSGSIZE = max_frame_bytes: larger frames never reach Python; see
      DropCounters.disconnects for how they show up.
    - A socket monitor counts failed handshakes and disconnects; its events
      are read every 64 drains and by `drops`, so it adds no wake-ups.
    """

    __slots__ = ("envelope", "send_drops", "_sock", "_monitor", "_address", "_drains", "_accept")

    def __init__(
        self,
        address: str,
        envelope: Envelope,
        *,
        sndhwm: int = INBOX_SNDHWM,
        rcvhwm: int = INBOX_RCVHWM,
        max_frame_bytes: int | None = None,
        monitor: bool = True,
        send_drops: SendDrops | None = None,
        security: object | None = None,
        accept: Acceptance | None = None,
        handover: bool = False,
    ) -> None:
        """Bind at `address` (tcp://host:port, port 0 or * for any; or
        ipc://path, whose directory is created). max_frame_bytes defaults to
        the envelope's limit; raising it lets oversized frames reach Python,
        where they are counted precisely as `oversized`, at the cost of
        buffering them. `accept`: the tags taken from each sender identity
        (ANY_SENDER: from any other); None takes every registered type."""
        self.envelope = envelope
        self._accept = accept
        self.send_drops = send_drops if send_drops is not None else SendDrops()
        self._monitor: zmq.Socket | None = None
        self._drains = 0
        sock = context().socket(zmq.ROUTER)
        try:
            _configure(
                sock,
                sndhwm=sndhwm,
                rcvhwm=rcvhwm,
                max_message_bytes=max_frame_bytes or envelope.max_message_bytes,
            )
            sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
            sock.setsockopt(zmq.ROUTER_HANDOVER, 1 if handover else 0)
            _apply_security(sock, security, server=True)
            if monitor:
                self._monitor = sock.get_monitor_socket(_MONITOR_EVENTS)
            path = ipc_path(address)
            if path is not None:
                if os.path.dirname(path):
                    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
                if _ipc_in_use(path):
                    raise OSError(errno.EADDRINUSE, f"cannot bind {address}: a live process is listening there")
            try:
                sock.bind(address)
            except zmq.ZMQError as e:
                raise _os_error(e, f"cannot bind {address}") from e
            self._address = sock.getsockopt_string(zmq.LAST_ENDPOINT)
        except BaseException:
            self._close_sockets(sock)
            raise
        self._sock = sock

    @property
    def address(self) -> str:
        """The bound endpoint, with the real port when bound to port 0 or *."""
        return self._address

    @property
    def socket(self) -> zmq.Socket:
        """The ROUTER, for a Poller."""
        return self._sock

    @property
    def drops(self) -> DropCounters:
        """Inbound drops (the envelope's counters), monitor events included."""
        self.count_monitor_events()
        return self.envelope.drops

    def drain(self, max_messages: int = DEFAULT_DRAIN) -> list[tuple[bytes, Any]]:
        """(sender identity, decoded message) for everything waiting; bad
        frames are counted and skipped. Never blocks, never raises on input."""
        raw = drain(self._sock, max_messages)
        decode = self.envelope.decode
        accept = self._accept
        out: list[tuple[bytes, Any]] = []
        for frames in raw:
            if len(frames) != 2:  # a multi-part message: not ours
                self.envelope.drops.malformed += 1
                continue
            if accept is None:
                msg = decode(frames[1])
            else:
                allowed = accept.get(frames[0])
                if allowed is None:
                    allowed = accept.get(ANY_SENDER, _NOTHING)
                msg = decode(frames[1], allowed)
            if msg is not None:
                out.append((frames[0], msg))
        if self._monitor is not None:
            self._drains += 1
            if not self._drains & 63:  # connection events are rare: look every 64 drains, and in `drops`
                self.count_monitor_events()
        return out

    def reply(self, identity: bytes, msg: object) -> bool:
        """Send `msg` to the DEALER `identity` (in parts if it is too large
        for one frame and can be split). False (and counted) if it is gone,
        its queue is full, or `msg` cannot be encoded."""
        frames = encode_frames(self.envelope, msg, self.send_drops)
        return bool(frames) and all([self.reply_frame(identity, frame) for frame in frames])

    def reply_frame(self, identity: bytes, frame: bytes) -> bool:
        """Send an already encoded frame; for one message to many clients."""
        try:
            self._sock.send_multipart((identity, frame), zmq.NOBLOCK)
            return True
        except zmq.Again:
            self.send_drops.hwm += 1
        except zmq.ZMQError as e:
            if e.errno == zmq.EHOSTUNREACH:
                self.send_drops.unroutable += 1
            elif e.errno in (zmq.ENOTSOCK, zmq.ETERM):
                self.send_drops.closed += 1
            else:
                raise
        return False

    def count_monitor_events(self) -> None:
        """Fold the socket monitor's events (failed handshakes, disconnects) into
        the drop counters; drain() does it every 64 calls, status asks for it."""
        mon = self._monitor
        if mon is None or mon.closed:
            return
        drops = self.envelope.drops
        while int(mon.getsockopt(zmq.EVENTS)) & zmq.POLLIN:
            frames = mon.recv_multipart()
            event = struct.unpack_from("=H", frames[0])[0]
            if event == zmq.EVENT_DISCONNECTED:
                drops.disconnects += 1
            elif event & _HANDSHAKE_FAILED:
                drops.handshake_failed += 1

    def _close_sockets(self, sock: zmq.Socket) -> None:
        if self._monitor is not None:
            try:
                self.count_monitor_events()
                sock.disable_monitor()
            except zmq.ZMQError:
                pass
            self._monitor.close(linger=0)
            self._monitor = None
        sock.close(linger=0)

    def close(self) -> None:
        """Close the socket (LINGER 0: pending replies are discarded). Idempotent."""
        if not self._sock.closed:
            self._close_sockets(self._sock)

    def __enter__(self) -> Inbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- the DEALER ------------------------------------------------------------------


class PeerLink:
    """A DEALER connected to one remote ROUTER: a non-blocking outbox, and
    for clients also the way answers come back.

    `immediate` (ZMQ_IMMEDIATE) decides what happens while there is no
    connection: True drops at once (Raft peers: stale traffic to a dead
    node is worthless and Raft retries anyway); False (the default) queues
    up to SNDHWM until the connection is up, so a client's first request is
    not lost to the TCP handshake.
    """

    __slots__ = ("envelope", "send_drops", "remote", "_sock", "_accept")

    def __init__(
        self,
        address: str,
        envelope: Envelope,
        identity: str | bytes | None = None,
        *,
        immediate: bool = False,
        sndhwm: int = LINK_SNDHWM,
        rcvhwm: int = LINK_RCVHWM,
        send_drops: SendDrops | None = None,
        security: object | None = None,
        accept: frozenset[str] | None = None,
    ) -> None:
        """Connect to the ROUTER at `address` (tcp:// or ipc://). `identity`
        (the local node/process id) is how the ROUTER knows us; None lets
        libzmq pick one, which is fine for a client that only gets replies.
        `accept`: the tags taken from the remote (None: every registered type)."""
        self.envelope = envelope
        self._accept = accept
        self.send_drops = send_drops if send_drops is not None else SendDrops()
        self.remote = address
        sock = context().socket(zmq.DEALER)
        try:
            _configure(sock, sndhwm=sndhwm, rcvhwm=rcvhwm, max_message_bytes=envelope.max_message_bytes)
            if identity is not None:
                sock.setsockopt(zmq.ROUTING_ID, _identity_bytes(identity))
            sock.setsockopt(zmq.IMMEDIATE, 1 if immediate else 0)
            sock.setsockopt(zmq.RECONNECT_IVL, RECONNECT_IVL_MS)
            sock.setsockopt(zmq.RECONNECT_IVL_MAX, RECONNECT_IVL_MAX_MS)
            sock.setsockopt(zmq.CONNECT_TIMEOUT, CONNECT_TIMEOUT_MS)
            _apply_security(sock, security, server=False)
            try:
                sock.connect(address)
            except zmq.ZMQError as e:
                raise _os_error(e, f"cannot connect to {address}") from e
        except BaseException:
            sock.close(linger=0)
            raise
        self._sock = sock

    @property
    def socket(self) -> zmq.Socket:
        """The DEALER, for a Poller."""
        return self._sock

    def send(self, msg: object) -> bool:
        """Encode and send without blocking (in parts if it is too large for
        one frame and can be split). False (and counted) if dropped, or if
        `msg` cannot be encoded."""
        frames = encode_frames(self.envelope, msg, self.send_drops)
        return bool(frames) and all([self.send_frame(frame) for frame in frames])

    def send_frame(self, frame: bytes) -> bool:
        """Send an already encoded frame without blocking."""
        try:
            self._sock.send(frame, zmq.NOBLOCK)
            return True
        except zmq.Again:
            self.send_drops.hwm += 1
        except zmq.ZMQError as e:
            if e.errno in (zmq.ENOTSOCK, zmq.ETERM):
                self.send_drops.closed += 1
            else:
                raise
        return False

    def writable(self, timeout_ms: float) -> bool:
        """Wait until a send would not be dropped for a full queue. For tools
        and benchmarks that prefer backpressure to loss; an actor must not
        call it (it blocks on a dead peer, which is the point of dropping)."""
        return bool(self._sock.poll(timeout_ms, zmq.POLLOUT))

    def drain(self, max_messages: int = DEFAULT_DRAIN) -> list[Any]:
        """Decoded messages waiting (answers from the ROUTER); bad frames
        are counted and skipped."""
        decode = self.envelope.decode
        accept = self._accept
        out: list[Any] = []
        for frames in drain(self._sock, max_messages):
            if len(frames) != 1:
                self.envelope.drops.malformed += 1
                continue
            msg = decode(frames[0], accept)
            if msg is not None:
                out.append(msg)
        return out

    def close(self) -> None:
        """Close at once (LINGER 0: queued messages are discarded). Idempotent."""
        self._sock.close(linger=0)

    def __enter__(self) -> PeerLink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Peers:
    """The Raft actor's links to the other nodes, keyed by node id.

    Links use IMMEDIATE (see PeerLink) and share one SendDrops, so the
    actor reports one number; membership changes call connect/disconnect.
    """

    __slots__ = ("envelope", "identity", "send_drops", "_links", "_options")

    def __init__(
        self,
        envelope: Envelope,
        identity: str | bytes | None,
        addresses: Mapping[str, str] | None = None,
        *,
        security: object | None = None,
        **link_options: Any,
    ) -> None:
        """`identity` is the id presented to every peer (None: one libzmq
        picks per connection, as a node's raft actor does: see Inbox on
        handover); `addresses` maps node id -> raft address; `link_options`
        go to each PeerLink (sndhwm, rcvhwm, immediate)."""
        self.envelope = envelope
        self.identity = identity
        self.send_drops = SendDrops()
        self._links: dict[str, PeerLink] = {}
        self._options = {"immediate": True, "security": security, **link_options}
        try:
            for node_id, address in (addresses or {}).items():
                self.connect(node_id, address)
        except BaseException:
            self.close()
            raise

    def connect(self, node_id: str, address: str) -> None:
        """Link to `node_id` at `address`, replacing any link it had."""
        self.disconnect(node_id)
        self._links[node_id] = PeerLink(
            address, self.envelope, self.identity, send_drops=self.send_drops, **self._options
        )

    def disconnect(self, node_id: str) -> None:
        """Drop the link to `node_id` (no-op if none)."""
        link = self._links.pop(node_id, None)
        if link is not None:
            link.close()

    def send(self, node_id: str, msg: object) -> bool:
        """Send `msg` to `node_id` without blocking; False (and counted as
        `unroutable`) if there is no link to it, or if it was dropped."""
        link = self._links.get(node_id)
        if link is None:
            self.send_drops.unroutable += 1
            return False
        return link.send(msg)

    def __contains__(self, node_id: object) -> bool:
        return node_id in self._links

    def __iter__(self) -> Iterator[str]:
        return iter(self._links)

    def __len__(self) -> int:
        return len(self._links)

    def link(self, node_id: str) -> PeerLink:
        """The link to `node_id` (KeyError if none)."""
        return self._links[node_id]

    def close(self) -> None:
        """Close every link. Idempotent."""
        for node_id in list(self._links):
            self.disconnect(node_id)

    def __enter__(self) -> Peers:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
