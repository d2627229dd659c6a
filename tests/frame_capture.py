"""A recording proxy: real frames of every peer and client message type, taken
from a running test cluster, as the corpus of the hostile-frame fuzzer
(tests/hostile_fuzz.py, issue 8).

Why a proxy and not hand-made frames: a fuzzer that mutates what the nodes
really send reaches the decoders and the core with messages that are right in
every field but the mutated one, which is where "decodes, but is not
believable" bugs live; hand-made frames mostly test the first arity check.

How the peer traffic is caught. Each node gets its own config file
(Cluster.write_node_config) in which the *other* nodes' raft addresses are
this proxy's ports; its own entry keeps its real address, so it binds there.
The proxy binds one ROUTER per node; a frame arriving there from a sender
whose routing id is, say, b"n2" is recorded and forwarded through a DEALER
that the proxy opens with that same routing id to the node's real raft port,
so the receiver sees exactly what it would see without the proxy. Raft
actors answer peers on their own DEALERs, never through the ROUTER, so the
forward path is all there is.

How client frames are caught. A second ROUTER per node stands in front of its
client port; each client connection gets its own DEALER to the real port, and
replies come back the same way, so a plain `sandzmq.Client.connect(proxy
address)` works through it (ClusterHello, ClientSubmit, ClientQuery,
StatusRequest: see capture_client_frames).

The forwarding DEALERs are sandzmq's own PeerLinks (a peer's with its node
id and `immediate`, as Peers makes them; a client's as the Client does), so
the proxied path has exactly the socket options of a real one (ZMTP
heartbeats, keepalives, reconnect intervals, frame limit), whatever they
become. Everything runs in one thread (sockets are not thread-safe).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import msgpack
import zmq
from cluster import Cluster, HarnessError, free_ports, wait_for
from sandzmq.protocol import CLIENT_REQUESTS, REGISTRY
from sandzmq.raft.messages import MESSAGE_TYPES
from sandzmq.transport import Envelope, PeerLink

#: The Raft peer messages, by wire tag (sandzmq.protocol declares them).
PEER_TYPES: dict[str, str] = {REGISTRY.by_cls(cls).tag: cls.__name__ for cls in MESSAGE_TYPES}
#: The messages a client sends to a node's client port.
CLIENT_TYPES: dict[str, str] = {REGISTRY.by_cls(cls).tag: cls.__name__ for cls in CLIENT_REQUESTS}

_POLL_MS = 50  # how often the proxy thread looks at its stop flag when idle


@dataclass(frozen=True, slots=True)
class CapturedFrame:
    """One frame as it travelled: to which port of which node, from whom."""

    port: str  # "raft" or "client"
    node: str  # the node it was addressed to
    identity: bytes  # the sender's routing id (a node id for peers, libzmq's for clients)
    frame: bytes

    @property
    def tag(self) -> Any:
        """The envelope's tag, or None if the frame is not a 4-item msgpack list."""
        try:
            obj = msgpack.unpackb(self.frame)
        except Exception:  # noqa: BLE001 - a capture of garbage has no tag
            return None
        return obj[2] if type(obj) is list and len(obj) == 4 else None


class Capture:
    """The frames recorded so far, in arrival order."""

    def __init__(self, frames: Iterable[CapturedFrame]) -> None:
        self.frames = list(frames)

    def by_tag(self) -> dict[Any, list[CapturedFrame]]:
        """Frames grouped by envelope tag, each group in arrival order."""
        out: dict[Any, list[CapturedFrame]] = {}
        for f in self.frames:
            out.setdefault(f.tag, []).append(f)
        return out

    def missing(self) -> list[str]:
        """Names of the peer and client message types with no frame yet."""
        tags = self.by_tag()
        wanted = {**PEER_TYPES, **CLIENT_TYPES}
        return [name for tag, name in wanted.items() if not tags.get(tag)]

    def counts(self) -> dict[str, int]:
        """Frames per message type name, for summaries."""
        names = {**PEER_TYPES, **CLIENT_TYPES}
        return {names.get(tag, repr(tag)): len(fs) for tag, fs in self.by_tag().items()}

    def max_term(self) -> int:
        """The highest term any captured peer frame carries (body[2]): a
        cluster whose every node is past it sees each replayed frame as stale."""
        best = 0
        for f in self.frames:
            if f.port != "raft":
                continue
            obj = msgpack.unpackb(f.frame)
            body = obj[3] if type(obj) is list and len(obj) == 4 else None
            if type(body) is list and len(body) > 2 and type(body[2]) is int:
                best = max(best, body[2])
        return best


class RecordingProxy:
    """Forwards and records the peer and client traffic of a cluster's nodes.

    `raft_addresses`/`client_addresses`: node id -> the node's real address.
    `raft_proxies`/`client_proxies`: node id -> the proxy's address in front
    of it. Recording can be stopped (stop_recording) while forwarding goes on:
    the nodes keep talking through the proxy for as long as they run.
    """

    def __init__(self, raft_addresses: Mapping[str, str], client_addresses: Mapping[str, str]) -> None:
        self._real = {("raft", n): a for n, a in raft_addresses.items()}
        self._real.update({("client", n): a for n, a in client_addresses.items()})
        self._ctx = zmq.Context()
        self._routers: dict[tuple[str, str], zmq.Socket] = {}
        self._links: dict[tuple[str, str, bytes], PeerLink] = {}
        self._envelope = Envelope("recording-proxy")  # only for the links' frame limit; frames pass as they are
        self._by_socket: dict[zmq.Socket, tuple[str, str, bytes | None]] = {}
        self._poller = zmq.Poller()
        self._frames: list[CapturedFrame] = []
        self._lock = threading.Lock()
        self._recording = True
        self._stop = threading.Event()
        self.forwarded = 0
        self.unforwarded = 0  # a DEALER's queue was full or it had no connection yet
        self.error: BaseException | None = None
        ports = free_ports(len(self._real))
        try:
            for (kind, node), port in zip(self._real, ports):
                sock = self._socket(zmq.ROUTER)
                sock.bind(f"tcp://127.0.0.1:{port}")
                self._routers[(kind, node)] = sock
                self._by_socket[sock] = (kind, node, None)
                self._poller.register(sock, zmq.POLLIN)
        except BaseException:
            self._ctx.destroy(linger=0)
            raise
        self.raft_proxies = {n: self._address(("raft", n)) for n in raft_addresses}
        self.client_proxies = {n: self._address(("client", n)) for n in client_addresses}
        self._thread = threading.Thread(target=self._run, name="recording-proxy", daemon=True)

    # ------------------------------------------------------------ public

    def start(self) -> RecordingProxy:
        self._thread.start()
        return self

    def capture(self) -> Capture:
        """A copy of what has been recorded so far."""
        with self._lock:
            return Capture(self._frames)

    def stop_recording(self) -> Capture:
        """Stop recording (forwarding goes on); return what was recorded."""
        with self._lock:
            self._recording = False
            return Capture(self._frames)

    def close(self) -> None:
        """Stop the thread and close every socket. Idempotent."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(10)
        for link in self._links.values():
            link.close()
        if not self._ctx.closed:
            self._ctx.destroy(linger=0)

    def __enter__(self) -> RecordingProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------ the thread

    def _socket(self, kind: int) -> zmq.Socket:
        sock = self._ctx.socket(kind)
        sock.setsockopt(zmq.LINGER, 0)
        return sock

    def _address(self, key: tuple[str, str]) -> str:
        return self._routers[key].getsockopt_string(zmq.LAST_ENDPOINT)

    def _dealer(self, kind: str, node: str, identity: bytes) -> zmq.Socket:
        """The DEALER that carries `identity`'s traffic to the node's real port:
        a peer's keeps its routing id (the receiver must see the real one) and,
        like the node's own link, drops rather than queues while unconnected;
        a client's id is libzmq's own, which cannot be set, so it gets a new one."""
        key = (kind, node, identity)
        link = self._links.get(key)
        if link is None:
            if kind == "raft" and identity and identity[0] != 0:
                link = PeerLink(self._real[(kind, node)], self._envelope, identity, immediate=True)
            else:  # queues until connected: the client's own link to the proxy already decided what to send
                link = PeerLink(self._real[(kind, node)], self._envelope)
            self._links[key] = link
            self._by_socket[link.socket] = (kind, node, identity)
            self._poller.register(link.socket, zmq.POLLIN)
        return link.socket

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                for sock, _ in self._poller.poll(_POLL_MS):
                    self._pump(sock)
        except zmq.ContextTerminated:
            pass
        except BaseException as exc:  # noqa: BLE001 - reported through .error and the tests' checks
            self.error = exc

    def _pump(self, sock: zmq.Socket) -> None:
        kind, node, identity = self._by_socket[sock]
        for _ in range(1_000):  # bounded: one busy socket must not starve the others
            try:
                parts = sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            if identity is None:  # a ROUTER: from a sender to the node
                sender, payload = parts[0], parts[1:]
                if len(payload) == 1:
                    with self._lock:
                        if self._recording:
                            self._frames.append(CapturedFrame(kind, node, sender, payload[0]))
                self._send(self._dealer(kind, node, sender), payload)
            elif kind == "client":  # a node's reply to a client: back through the ROUTER
                self._send(self._routers[(kind, node)], [identity, *parts])
            # A raft port never answers on the connection it was sent on; anything else is dropped.

    def _send(self, sock: zmq.Socket, parts: list[bytes]) -> None:
        try:
            sock.send_multipart(parts, zmq.NOBLOCK)
            self.forwarded += 1
        except zmq.ZMQError:  # Again (queue full, or no connection under IMMEDIATE), or unroutable
            self.unforwarded += 1


# ----------------------------------------------------------------------------- with a Cluster


def route_peers_through(cluster: Cluster, proxy: RecordingProxy) -> None:
    """Give every node of `cluster` a config file in which the other nodes'
    raft addresses are the proxy's; call before starting the nodes."""
    for node in cluster.node_ids:
        others = {n: proxy.raft_proxies[n] for n in cluster.node_ids if n != node}
        cluster.write_node_config(node, others)


def capture_client_frames(proxy: RecordingProxy, node: str, prefix: str = "capture") -> None:
    """Make a client send one of each client message through the proxy in
    front of `node`'s client port: ClusterHello (connect without a cluster
    name), ClientSubmit, ClientQuery (linearizable and local), StatusRequest.
    Refusals are fine (the node may not be the leader any more): the frames
    were sent all the same, and that is all a capture needs."""
    import sandzmq

    client = sandzmq.Client.connect(proxy.client_proxies[node])
    try:
        for call in (
            lambda: client.replicate(f"{prefix}-1".encode(), timeout=5.0),
            lambda: client.query(b"count", timeout=5.0),
            lambda: client.query(b"count", consistency="local", timeout=5.0),
            lambda: client.status(timeout=2.0),
        ):
            try:
                call()
            except sandzmq.SandzmqError:
                pass
    finally:
        client.close()


def wait_for_full_capture(proxy: RecordingProxy, timeout: float = 15.0) -> Capture:
    """Wait until the capture holds a frame of every peer and client message
    type; HarnessError naming the missing ones otherwise."""
    wait_for(
        lambda: not proxy.capture().missing() or proxy.error,
        timeout,
        "a captured frame of every peer and client message type",
        describe=lambda: f"missing: {proxy.capture().missing()}; captured: {proxy.capture().counts()}",
    )
    if proxy.error is not None:
        raise HarnessError(f"the recording proxy failed: {proxy.error!r}") from proxy.error
    return proxy.capture()
