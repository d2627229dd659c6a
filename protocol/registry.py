"""Every message type, by wire tag and by class; declarations; describe().

One tag convention: a short str "<scope>.<name>", the scope saying who talks
to whom: "p." raft actor <-> raft actor (the Raft core's messages and the
identity handshake), "c." client <-> raft actor, "l." raft actor <->
log-store, "a." raft actor <-> apply actor. A tag is sent with every frame,
so it stays short; it names itself in a packet capture.

`declare(tag, cls, **specs)` (or the `@message(tag, ...)` decorator) derives
the class's body codec (derive.py) and registers it in REGISTRY, the
process-wide registry the envelope uses (transport/envelope.py). A type
with a hand-written codec registers with `register(tag, cls, encode,
decode)`; its decoder must raise DecodeError on a bad body, nothing else.

`describe(msg)` is one line per message, readable as a protocol trace:

    n1->n2 AppendEntries t3 prev=(7,t2) entries=8..10(t3) commit=7
    raft->log LogWrite #12 entries=8..10(t3) hs=(t3,n1,7) sync
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from .derive import Codec, Spec, derive

T = TypeVar("T")

#: Longest tag: tags are sent with every message.
MAX_TAG_LENGTH = 32

Show = Callable[[Any], str]


@dataclass(frozen=True, slots=True)
class MessageType:
    """A registered type: its tag, its class, its body encoder/decoder, and
    how describe() shows it."""

    tag: str
    cls: type
    encode: Callable[[Any], Any]
    decode: Callable[[Any], Any]
    show: Show | None = None


class Registry:
    """Tags <-> classes. REGISTRY is the process-wide one; a test may build
    its own (copy())."""

    __slots__ = ("_by_tag", "_by_cls")

    def __init__(self) -> None:
        self._by_tag: dict[str, MessageType] = {}
        self._by_cls: dict[type, MessageType] = {}

    def copy(self) -> Registry:
        """A new registry holding the same types; what is added to it later
        stays out of this one."""
        other = Registry()
        other._by_tag = dict(self._by_tag)
        other._by_cls = dict(self._by_cls)
        return other

    @classmethod
    def with_peer_messages(cls) -> Registry:
        """A new registry holding every declared message (peer and node), for
        a test that adds its own types without touching REGISTRY."""
        return REGISTRY.copy()

    def register(
        self,
        tag: str,
        cls: type[T],
        encode: Callable[[T], Any],
        decode: Callable[[Any], T],
        show: Show | None = None,
    ) -> None:
        """Make `cls` sendable under `tag`.

        `encode(obj)` returns a msgpack-able body; `decode(body)` rebuilds
        the object and raises DecodeError if the body is wrong. Registering
        the same (tag, cls) again is a no-op (module reloads); reusing a tag
        or a class for something else raises ValueError, at import time,
        where it is cheap to find.
        """
        if type(tag) is not str or not 0 < len(tag) <= MAX_TAG_LENGTH:
            raise ValueError(f"a tag is a str of 1 to {MAX_TAG_LENGTH} characters: {tag!r}")
        old = self._by_tag.get(tag) or self._by_cls.get(cls)
        if old is not None:
            if old.tag == tag and old.cls is cls:
                return
            raise ValueError(f"{tag!r} -> {cls.__name__} clashes with {old.tag!r} -> {old.cls.__name__}")
        mt = MessageType(tag, cls, encode, decode, show)
        self._by_tag[tag] = mt
        self._by_cls[cls] = mt

    def by_cls(self, cls: type) -> MessageType | None:
        """The registration of `cls`, if any."""
        return self._by_cls.get(cls)

    def by_tag(self, tag: Any) -> MessageType | None:
        """The registration of `tag`, if any. Exact str only; an unhashable
        tag is simply unknown."""
        return self._by_tag.get(tag) if type(tag) is str else None

    def tags(self) -> list[str]:
        """Every registered tag (diagnostics, tests)."""
        return list(self._by_tag)

    def types(self) -> list[MessageType]:
        """Every registration (tests: every type must round-trip)."""
        return list(self._by_tag.values())

    def tags_of(self, *classes: type) -> frozenset[str]:
        """The tags of these registered classes: a socket's message set.
        KeyError for a class that is not registered (a bug at import time)."""
        return frozenset(self._by_cls[cls].tag for cls in classes)


#: The process-wide registry; the envelope uses it unless given another.
REGISTRY = Registry()

#: The derived codec of each declared class (tests read the specs from it).
CODECS: dict[type, Codec] = {}


def register(tag: str, cls: type[T], encode: Callable[[T], Any], decode: Callable[[Any], T]) -> None:
    """Register a type with a hand-written codec in REGISTRY (see Registry.register)."""
    REGISTRY.register(tag, cls, encode, decode)


def declare(tag: str, cls: type[T], *, route: str | None = None, show: Show | None = None, **specs: Spec) -> type[T]:
    """Derive dataclass `cls`'s body codec (specs: see derive.py) and register
    it under `tag`. `route` ("raft->log") prefixes its describe() lines when
    the message names no src and dst; `show(msg)` replaces the default line."""
    codec = derive(cls, **specs)
    CODECS[cls] = codec
    if show is None:
        show = _default_show(codec, route)
    elif route is not None:
        custom = show
        show = lambda m: f"{route} {custom(m)}"  # noqa: E731
    REGISTRY.register(tag, cls, codec.encode, codec.decode, show)
    return cls


def message(
    tag: str, *, route: str | None = None, show: Show | None = None, **specs: Spec
) -> Callable[[type[T]], type[T]]:
    """Class decorator form of declare(), above @dataclass."""
    return lambda cls: declare(tag, cls, route=route, show=show, **specs)


def _default_show(codec: Codec, route: str | None) -> Show:
    """'<route> Name field=value ...', or 'src->dst Name t<term> ...' for a
    message with src, dst and term."""
    name = codec.cls.__name__
    fields = list(zip(codec.names, codec.specs))
    peer = codec.names[:3] == ("src", "dst", "term")
    if peer:
        fields = fields[3:]

    def show(m: Any) -> str:
        parts = [f"{m.src}->{m.dst} {name} t{m.term}" if peer else (f"{route} {name}" if route else name)]
        for field, spec in fields:
            if spec.width == 0:
                continue
            value = getattr(m, field)
            parts.append(f"{field}={spec.show(value) if value is not None else '-'}")
        return " ".join(parts)

    return show


def describe(msg: Any) -> str:
    """One line for any registered message (peer, client or internal), as a
    protocol trace shows it; the repr for anything else. Characters that are
    not printable (a newline in a hostile node id) are escaped: one message,
    one line."""
    mt = REGISTRY.by_cls(type(msg))
    line = repr(msg) if mt is None or mt.show is None else mt.show(msg)
    if not line.isprintable():
        line = "".join(c if c.isprintable() else repr(c)[1:-1] for c in line)
    return line
