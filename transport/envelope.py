"""The one frame format on the wire.

Every frame is one msgpack array::

    [PROTOCOL_VERSION, cluster_name, tag, body]

- `tag` is a short str "<scope>.<name>" (e.g. "p.append", "c.submit",
  "l.write"): sandzmq.protocol declares every message type and its tag.
- `body` is whatever the type's encoder returns: a plain msgpack value.

Validation stays honest by construction: a type is registered together with
the decoder that checks its body (sandzmq.protocol.registry), so the envelope
hands an actor either a validated object or nothing. A frame that is not
msgpack, is not a 4-item array, comes from another protocol version or
cluster, has an unregistered tag, is larger than max_message_bytes, whose tag
the receiving socket does not take (`accept`: each socket has its own message
set, SPEC 3), or whose body its decoder refuses, is dropped and counted in
DropCounters; decode() then returns None and never raises. The socket check
comes before the body is decoded, so a message on the wrong port costs no
decoding. Actors dispatch on the type of the returned object, so they do not
care whether it came over ZeroMQ or from a local call (DESIGN 1).
"""

from __future__ import annotations

import logging
from typing import Any

import msgpack
from sandzmq.protocol.checks import DecodeError
from sandzmq.protocol.registry import MAX_TAG_LENGTH, REGISTRY, MessageType, Registry, register

from .counters import DropCounters

#: Bumped on any incompatible change to the envelope or a body layout.
#: 2: every tag a str (the Raft core's messages had int tags 0..5), and
#: AppendEntries' commit after its entry columns (its fields' order).
PROTOCOL_VERSION = 2

#: Frames above this are refused (SPEC 3). Must be the same on every node:
#: a sender refuses to build a bigger frame, a receiver's socket discards one.
DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024

#: What a socket takes, by sender identity (a ZMQ routing id; ANY_SENDER for
#: every sender without an entry of its own): the set of tags it decodes.
#: Everything else is dropped as `wrong_socket`.
ANY_SENDER = None
Acceptance = dict[bytes | None, frozenset[str]]

__all__ = [
    "ANY_SENDER",
    "Acceptance",
    "DEFAULT_MAX_MESSAGE_BYTES",
    "Envelope",
    "MAX_TAG_LENGTH",
    "MessageTooLarge",
    "MessageType",
    "PROTOCOL_VERSION",
    "REGISTRY",
    "Registry",
    "register",
]

_log = logging.getLogger(__name__)


class MessageTooLarge(ValueError):
    """Raised by Envelope.encode: the receiver would drop this frame, so
    sending it would lose it silently, forever (every retry is as large).
    Whoever builds batches must keep them under max_message_bytes."""


class Envelope:
    """Frames for one cluster: encode objects, decode and vet frames.

    Holds no socket and no lock; msgpack.packb/unpackb keep no shared state,
    so one Envelope may be shared by the threads of a process. The drop
    counters are plain ints (see counters.py): share one DropCounters per
    actor for its `dropped` statistic.
    """

    __slots__ = ("cluster", "max_message_bytes", "registry", "drops", "open_tags", "_by_cls", "_by_tag")

    def __init__(
        self,
        cluster: str,
        *,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        registry: Registry | None = None,
        drops: DropCounters | None = None,
        open_tags: frozenset[str] = frozenset(),
    ) -> None:
        """`open_tags` are accepted whatever cluster name they carry: only for
        the discovery handshake (a client that knows a node's address but not
        its cluster's name asks for it); everything else must match."""
        if not isinstance(cluster, str) or not cluster:
            raise ValueError("cluster name must be a non-empty str")
        if max_message_bytes <= 0:
            raise ValueError("max_message_bytes must be positive")
        self.cluster = cluster
        self.max_message_bytes = max_message_bytes
        self.registry = registry if registry is not None else REGISTRY
        self.drops = drops if drops is not None else DropCounters()
        self.open_tags = open_tags
        # The registry's own dicts (not copies): types registered later are seen.
        self._by_cls = self.registry._by_cls
        self._by_tag = self.registry._by_tag

    def encode(self, msg: object) -> bytes:
        """The frame for `msg`. TypeError if its class is not registered,
        MessageTooLarge if the frame exceeds max_message_bytes: both are bugs
        at the sender, so they raise rather than count."""
        mt = self._by_cls.get(type(msg))
        if mt is None:
            raise TypeError(f"{type(msg).__name__} is not a registered message type")
        frame = msgpack.packb([PROTOCOL_VERSION, self.cluster, mt.tag, mt.encode(msg)])
        if len(frame) > self.max_message_bytes:
            raise MessageTooLarge(
                f"{type(msg).__name__} is {len(frame)} bytes, above max_message_bytes={self.max_message_bytes}"
            )
        return frame

    def decode(self, frame: bytes | bytearray | memoryview, accept: frozenset[str] | None = None) -> Any | None:
        """The validated object in `frame`, or None after counting why it was
        dropped. `accept`: the tags the receiving socket takes (None: all).
        Never raises on bad input."""
        drops = self.drops
        if len(frame) > self.max_message_bytes:
            drops.oversized += 1
            return None
        try:
            obj = msgpack.unpackb(frame)
        except Exception:  # msgpack raises several types (ExtraData, FormatError, ValueError, ...)
            drops.malformed += 1
            return None
        if type(obj) is not list or not obj:
            drops.malformed += 1
            return None
        # The version is checked before the arity: a newer protocol may have a
        # different layout, and should be counted as a version mismatch.
        version = obj[0]
        if type(version) is not int:  # True is not version 1
            drops.malformed += 1
            return None
        if version != PROTOCOL_VERSION:
            drops.version += 1
            return None
        if len(obj) != 4:
            drops.malformed += 1
            return None
        _, cluster, tag, body = obj
        if cluster != self.cluster and not (type(tag) is str and tag in self.open_tags):
            drops.cluster += 1
            return None
        # Exact str only (an unhashable tag must not raise).
        mt = self._by_tag.get(tag) if type(tag) is str else None
        if mt is None:
            drops.unknown_type += 1
            return None
        if accept is not None and tag not in accept:
            drops.wrong_socket += 1
            return None
        try:
            return mt.decode(body)
        except DecodeError:
            drops.malformed += 1
            return None
        except Exception:
            # A decoder must raise only DecodeError; one that raises anything
            # else has a bug, which must not let a bad frame kill the actor.
            drops.malformed += 1
            _log.exception("decoder of %r raised instead of DecodeError", tag)
            return None
