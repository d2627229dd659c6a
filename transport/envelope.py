"""The one frame format on the wire, and the registry of message types.

Every frame is one msgpack array::

    [PROTOCOL_VERSION, cluster_name, tag, body]

- `tag` is an int for the Raft core's peer messages (their position in
  MESSAGE_TYPES, see codec.py) and a short str for the node's other messages
  (client requests and replies, log-store writes and acks, apply batches,
  status queries). Ints are reserved for the core, so modules that register
  str tags cannot collide with it, and a str tag names itself in a packet
  capture. Convention: "<actor>.<message>", e.g. "client.request".
- `body` is whatever the type's encoder returns: a plain msgpack value.

Validation stays honest by construction: a type is registered together with
the decoder that checks its body, so the envelope hands an actor either a
validated object or nothing. A frame that is not msgpack, is not a 4-item
array, comes from another protocol version or cluster, has an unregistered
tag, is larger than max_message_bytes, whose tag the receiving socket does
not take (`accept`: each socket has its own message set, SPEC 3), or whose
body its decoder refuses, is dropped and counted in DropCounters; decode()
then returns None and never raises. The socket check comes before the body
is decoded, so a message on the wrong port costs no decoding. Actors dispatch on the type of the returned object, so they do not
care whether it came over ZeroMQ or from a local call (DESIGN 1).
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import msgpack

from .codec import PEER_CODECS, PEER_TAGS, DecodeError
from .counters import DropCounters

#: Bumped on any incompatible change to the envelope or a body layout.
PROTOCOL_VERSION = 1

#: Frames above this are refused (SPEC 3). Must be the same on every node:
#: a sender refuses to build a bigger frame, a receiver's socket discards one.
DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024

#: Longest str tag: tags are sent with every message.
MAX_TAG_LENGTH = 32

#: What a socket takes, by sender identity (a ZMQ routing id; ANY_SENDER for
#: every sender without an entry of its own): the set of tags it decodes.
#: Everything else is dropped as `wrong_socket`.
ANY_SENDER = None
Acceptance = dict[bytes | None, frozenset[int | str]]

T = TypeVar("T")

_log = logging.getLogger(__name__)


class MessageTooLarge(ValueError):
    """Raised by Envelope.encode: the receiver would drop this frame, so
    sending it would lose it silently, forever (every retry is as large).
    Whoever builds batches must keep them under max_message_bytes."""


@dataclass(frozen=True, slots=True)
class MessageType:
    """A registered type: its tag, its class, and its body encoder/decoder.
    The decoder must raise codec.DecodeError on a bad body, nothing else."""

    tag: int | str
    cls: type
    encode: Callable[[Any], Any]
    decode: Callable[[Any], Any]


class Registry:
    """Tags <-> classes. One process-wide instance (REGISTRY) holds the Raft
    peer messages; modules add theirs at import time with register()."""

    __slots__ = ("_by_tag", "_by_cls")

    def __init__(self) -> None:
        self._by_tag: dict[int | str, MessageType] = {}
        self._by_cls: dict[type, MessageType] = {}

    @classmethod
    def with_peer_messages(cls) -> Registry:
        """A registry holding the Raft core's messages under their int tags."""
        reg = cls()
        for msg_cls, tag in PEER_TAGS.items():
            enc, dec = PEER_CODECS[msg_cls]
            reg._add(MessageType(tag, msg_cls, enc, dec))
        return reg

    def register(
        self,
        tag: str,
        cls: type[T],
        encode: Callable[[T], Any],
        decode: Callable[[Any], T],
    ) -> None:
        """Make `cls` sendable under `tag`.

        `encode(obj)` returns a msgpack-able body; `decode(body)` rebuilds
        the object and raises DecodeError if the body is wrong. Registering
        the same (tag, cls) again is a no-op (module reloads); reusing a tag
        or a class for something else raises ValueError, at import time,
        where it is cheap to find.
        """
        if type(tag) is not str or not 0 < len(tag) <= MAX_TAG_LENGTH:
            raise ValueError(f"a tag is a str of 1 to {MAX_TAG_LENGTH} characters (ints are the Raft core's): {tag!r}")
        old = self._by_tag.get(tag) or self._by_cls.get(cls)
        if old is not None:
            if old.tag == tag and old.cls is cls:
                return
            raise ValueError(f"{tag!r} -> {cls.__name__} clashes with {old.tag!r} -> {old.cls.__name__}")
        self._add(MessageType(tag, cls, encode, decode))

    def _add(self, mt: MessageType) -> None:
        self._by_tag[mt.tag] = mt
        self._by_cls[mt.cls] = mt

    def by_cls(self, cls: type) -> MessageType | None:
        """The registration of `cls`, if any."""
        return self._by_cls.get(cls)

    def by_tag(self, tag: Any) -> MessageType | None:
        """The registration of `tag`, if any. Exact int or str only: True is
        not tag 1, and an unhashable tag is simply unknown."""
        if type(tag) is int or type(tag) is str:
            return self._by_tag.get(tag)
        return None

    def tags(self) -> list[int | str]:
        """Every registered tag (diagnostics, tests)."""
        return list(self._by_tag)

    def tags_of(self, *classes: type) -> frozenset[int | str]:
        """The tags of these registered classes: a socket's message set.
        KeyError for a class that is not registered (a bug at import time)."""
        return frozenset(self._by_cls[cls].tag for cls in classes)


#: The process-wide registry; Envelope uses it unless given another.
REGISTRY = Registry.with_peer_messages()


def register(tag: str, cls: type[T], encode: Callable[[T], Any], decode: Callable[[Any], T]) -> None:
    """Register a node message type in the process-wide REGISTRY (see Registry.register)."""
    REGISTRY.register(tag, cls, encode, decode)


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

    def decode(self, frame: bytes | bytearray | memoryview, accept: frozenset[int | str] | None = None) -> Any | None:
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
        # Exact int or str only: True must not pass for tag 1.
        mt = self._by_tag.get(tag) if type(tag) is int or type(tag) is str else None
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
