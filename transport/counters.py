"""Counters for what the transport threw away.

Raft tolerates message loss, so the transport drops rather than raises or
blocks; but silent loss looks exactly like a Raft bug (DESIGN 6), so every
drop is counted by reason. Inbound refusals (DropCounters) are what
`sandzmq status` reports as `dropped` (SPEC 5); outbound losses (SendDrops)
say that a peer or client is slow, dead or unknown.

Plain objects with int attributes: incrementing one is a single attribute
store on the hot path, and the owner reads them from its own thread.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

#: The per-message reasons a received frame is refused (SPEC 3).
DROP_REASONS: tuple[str, ...] = ("malformed", "oversized", "version", "cluster", "unknown_type", "wrong_socket")


@dataclass(slots=True)
class DropCounters:
    """Inbound frames refused, by reason.

    The first six fields are per-message refusals and make up `total`.
    The last two are connection-level events seen on a ROUTER's socket
    monitor; libzmq does not say why a connection ended, so they are kept
    apart from `total`:

    - `handshake_failed`: a connection that never spoke ZMTP (e.g. an HTTP
      probe on the port), or, with CURVE, a peer that failed authentication.
    - `disconnects`: connections closed. A frame larger than the socket's
      MAXMSGSIZE is discarded inside libzmq, which closes the connection, so
      from Python it is only visible here, as a disconnect.
    """

    malformed: int = 0  # not msgpack, not an envelope, bad body, or several frames
    oversized: int = 0  # larger than max_message_bytes
    version: int = 0  # another protocol version
    cluster: int = 0  # another cluster's name
    unknown_type: int = 0  # a type tag nobody registered
    wrong_socket: int = 0  # a type this socket, or this sender on it, does not take (SPEC 3 trust boundaries)
    handshake_failed: int = 0
    disconnects: int = 0

    @property
    def total(self) -> int:
        """Messages refused: the `dropped` of `sandzmq status`."""
        return self.malformed + self.oversized + self.version + self.cluster + self.unknown_type + self.wrong_socket

    def as_dict(self) -> dict[str, int]:
        """A JSON-able snapshot, `total` included, for status replies."""
        d = asdict(self)
        d["total"] = self.total
        return d


@dataclass(slots=True)
class SendDrops:
    """Outbound messages given up on, by reason.

    - `hwm`: the peer's queue was at its high-water mark (a slow or stopped
      peer, or, for a DEALER with IMMEDIATE, no connection at all);
    - `unroutable`: a ROUTER reply to an identity that is not connected
      (a client that went away);
    - `closed`: the socket or context was already closed;
    - `unencodable`: the message could not be encoded (not msgpack-able, or
      above the frame limit). Whoever builds messages keeps them in bounds;
      this is the last line, so that a bug there costs one message, not the
      actor.
    """

    hwm: int = 0
    unroutable: int = 0
    closed: int = 0
    unencodable: int = 0

    @property
    def total(self) -> int:
        """All messages lost on the way out."""
        return self.hwm + self.unroutable + self.closed + self.unencodable

    def as_dict(self) -> dict[str, int]:
        """A JSON-able snapshot, `total` included."""
        d = asdict(self)
        d["total"] = self.total
        return d
