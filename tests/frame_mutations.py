"""The hostile-frame fuzzer's mutator (issue 8): seeded, pure, no sockets.

Given captured frames (tests/frame_capture.py) it makes an endless sequence
of hostile ones. Every choice comes from one random.Random(seed), so a seed
names a sequence of mutations: the same seed on the same corpus gives the
same frames (the corpus itself depends on timing; the choices do not).

Each frame gets ONE mutation, on purpose. The frames are replayed with the
routing ids of real peers, after the cluster has moved to a later term than
any captured frame (hostile_fuzz.py sees to that); a frame with one field
made implausible is then either stale or unbelievable, which a correct node
can tell. Stacking plausible changes could instead forge a message of the
current leader that no Raft without authentication can tell from a real one
(a Byzantine leader, which only CURVE stops): the fuzzer would then fail a
correct node, so it does not do that. The "int-all" kind is the exception
that proves the rule: every int becomes the same extreme value, so nothing
in the frame stays plausible.

Kinds (see MUTATIONS): integers anywhere in the body or the envelope set to
2**64-1, 2**63, -1, 10**12, 2**62 or 0; node ids and the cluster name
swapped; the tag changed to another type's; a body (or some of its fields)
put under another type's tag; lists shortened and lengthened (some by a lot);
bytes truncated and garbled; values of the wrong type; frames that are not
msgpack at all; multipart messages; and internal messages (log-store, apply
actor) and replies forged outright, since none of those may be accepted on a
public port (SPEC 3), some aimed at the cluster's current term and indexes.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import msgpack
from frame_capture import CLIENT_TYPES, PEER_TYPES, Capture
from sandzmq.protocol import (
    REGISTRY,
    ApplyBatch,
    ApplyResults,
    ApplyState,
    ClientReply,
    ClusterHelloReply,
    LocalQuery,
    LocalQueryResult,
    LogDurable,
    LogState,
    LogSync,
    LogWrite,
    StatusReply,
)

#: The integers of issue 8: past uint64, past int64, negative, large but
#: encodable, the bound the issue suggests (2**62), and zero.
EXTREME_INTS: tuple[int, ...] = (2**64 - 1, 2**63, -1, 10**12, 2**62, 0)

#: Routing ids a hostile sender takes: the real peers' (a DEALER with one of
#: them takes over that peer's connection, ROUTER_HANDOVER: part of the
#: attack) and the node's internal actors'.
PEER_IDENTITIES: tuple[bytes, ...] = (b"n1", b"n2", b"n3")
INTERNAL_IDENTITIES: tuple[bytes, ...] = (b"log", b"apply", b"raft")

#: Tags of the node's internal messages and of replies (sandzmq.protocol),
#: none of which a node may accept on its raft or client port.
INTERNAL_TYPES: dict[str, str] = {
    REGISTRY.by_cls(cls).tag: cls.__name__
    for cls in (
        LogWrite,
        LogDurable,
        LogSync,
        LogState,
        ApplyBatch,
        ApplyResults,
        ApplyState,
        LocalQuery,
        LocalQueryResult,
        ClientReply,
        StatusReply,
        ClusterHelloReply,
    )
}
ALL_TAGS: tuple[Any, ...] = (*PEER_TYPES, *CLIENT_TYPES, *INTERNAL_TYPES)
_NAMES: dict[Any, str] = {**PEER_TYPES, **CLIENT_TYPES, **INTERNAL_TYPES}

#: Captured frames kept per message type: the first and the last ones seen.
PER_TYPE = 32
#: Share of mutations made from a forged internal frame rather than a captured one.
FORGED_SHARE = 0.15
#: Upper bound of a "big" lengthening, in bytes: enough to cost a receiver
#: something, small enough not to turn a CI run into a memory test.
BIG_BYTES = 1 << 20


@dataclass(frozen=True, slots=True)
class Hint:
    """What the cluster looks like now (from `sandzmq status`), so that some
    forged internal messages hit live term and index ranges."""

    term: int
    last_index: int


@dataclass(frozen=True, slots=True)
class Seed:
    """A frame to mutate: its type name, decoded form and bytes."""

    name: str
    frame: list[Any]
    raw: bytes
    forged: bool = False


@dataclass(frozen=True, slots=True)
class Mutant:
    """A hostile message: what to send (one part, or several for a multipart
    message), with which routing id, and how it was made."""

    kind: str
    source: str
    identity: bytes
    parts: tuple[bytes, ...]

    def describe(self, limit: int = 200) -> str:
        """One line for logs and failure reports: how it was made, and what it is."""
        shown = []
        for part in self.parts:
            try:
                text = repr(msgpack.unpackb(part))
            except Exception:  # noqa: BLE001 - not msgpack: show the bytes
                text = repr(part)
            shown.append(text if len(text) <= limit else text[: limit - 3] + "...")
        return f"{self.kind} of {self.source} as {self.identity.decode(errors='replace')}: {' | '.join(shown)}"


# ----------------------------------------------------------------------------- paths into a decoded frame

Path = tuple[Any, ...]


def _paths(node: Any, want: Callable[[Any], bool], path: Path = ()) -> Iterator[Path]:
    """Paths (keys from the root) to every value for which want() holds, depth first."""
    if want(node):
        yield path
    if type(node) is list:
        for i, v in enumerate(node):
            yield from _paths(v, want, (*path, i))
    elif type(node) is dict:
        for k, v in node.items():
            yield from _paths(v, want, (*path, k))


def _get(root: Any, path: Path) -> Any:
    for key in path:
        root = root[key]
    return root


def _set(root: Any, path: Path, value: Any) -> Any:
    """Set the value at `path` (the root itself for ()); returns the new root."""
    if not path:
        return value
    _get(root, path[:-1])[path[-1]] = value
    return root


def _is_int(v: Any) -> bool:
    return type(v) is int  # not bool


def _is_leaf(v: Any) -> bool:
    return type(v) not in (list, dict)


# ----------------------------------------------------------------------------- forged internal messages


def forged_frames(version: int, cluster: str, term: int, last_index: int) -> list[Seed]:
    """Well-formed internal messages and replies, with the wire layouts of
    sandzmq.protocol; `term` and `last_index` aim some of them at the live
    cluster (a false OK for the entries just above the leader's last index,
    a durability acknowledgement far ahead, an apply actor "restarted" at 0)."""
    # Clamped: a cluster already broken by a term of 2**64-1 must not break the fuzzer too.
    t, i = min(max(term, 1), 2**62), min(max(last_index, 1), 2**62)
    entries = [i + 1, t, 0, [b"forged-entry"]]
    rng_ids = list(range(max(1, i - 16), i + 240))
    bodies: list[tuple[str, Any]] = [
        ("l.durable", [10**9, 10**9]),
        ("l.durable", [2**62, i + 1000]),
        ("l.sync", [1]),
        ("l.state", [0, 1, 424242, [2**64 - 1, "n2", 10**12], 1, 10**12, 2**62, 10**9]),
        ("l.state", [1, 1, 1, [t, None, 0], 1, 0, 0, 0]),
        ("l.write", [10**9, entries, [t + 1, "n2", i]]),
        ("a.batch", [entries, True]),
        ("a.results", [rng_ids, t, 0, [0] * len(rng_ids), i + 240]),
        ("a.results", [[10**12], 2**64 - 1, 0, ["forged"], 2**63]),
        ("a.state", [1, 0]),
        ("a.state", [1, 10**12]),
        ("a.query", [1, b"all"]),
        ("a.query_result", [1, 0, "forged"]),
        ("c.reply", [[1, 2, 3], [0, 0, 0], ["forged", "forged", "forged"]]),
        ("c.status_reply", [1, {"role": "leader", "term": 2**64 - 1}]),
        ("c.hello_reply", [1, "another-cluster"]),
    ]
    out = []
    for tag, body in bodies:
        frame = [version, cluster, tag, body]
        out.append(Seed(INTERNAL_TYPES[tag], frame, msgpack.packb(frame), forged=True))
    return out


def captured_seeds(capture: Capture, per_type: int = PER_TYPE) -> list[Seed]:
    """The corpus: per message type, the first and last frames captured, in a
    fixed order of types (so the seed alone decides what is picked)."""
    seeds: list[Seed] = []
    groups = capture.by_tag()
    for tag in sorted(groups, key=lambda t: (type(t).__name__, str(t))):
        frames = groups[tag]
        if len(frames) > per_type:
            frames = frames[: per_type // 2] + frames[-(per_type - per_type // 2) :]
        for f in frames:
            obj = msgpack.unpackb(f.frame)
            if type(obj) is list and len(obj) == 4:
                seeds.append(Seed(_NAMES.get(tag, repr(tag)), obj, f.frame))
    return seeds


def corpus_extent(seeds: Sequence[Seed]) -> Hint:
    """The highest term and log index in the captured peer frames."""
    term = index = 0
    for s in seeds:
        body = s.frame[3]
        name = PEER_TYPES.get(s.frame[2]) if type(s.frame[2]) is str else None
        if s.forged or name is None or type(body) is not list or len(body) < 3:
            continue
        if _is_int(body[2]):
            term = max(term, body[2])
        if name == "AppendEntries" and len(body) == 9 and _is_int(body[3]) and type(body[7]) is list:
            index = max(index, body[3] + len(body[7]))  # AppendEntries: prev_index + entries (datas)
        elif name == "AppendEntriesResponse" and len(body) == 7 and _is_int(body[4]):
            index = max(index, body[4])  # AppendEntriesResponse: index
    return Hint(term, index)


# ----------------------------------------------------------------------------- the mutator


class Mutator:
    """An endless, seeded sequence of hostile frames made from `seeds`."""

    def __init__(
        self,
        seeds: Sequence[Seed],
        *,
        seed: int,
        cluster: str,
        node_ids: Sequence[str] = ("n1", "n2", "n3"),
        identities: Sequence[bytes] = PEER_IDENTITIES + INTERNAL_IDENTITIES,
        kinds: Sequence[str] | None = None,
    ) -> None:
        """`kinds`: only these mutations (default: all of MUTATIONS), to
        look into one class of frames in a long run."""
        if not seeds:
            raise ValueError("no frames to mutate")
        unknown = set(kinds or ()) - set(MUTATIONS)
        if unknown:
            raise ValueError(f"unknown mutation kinds {sorted(unknown)}; known: {list(MUTATIONS)}")
        self.rng = random.Random(seed)
        self.seeds = list(seeds)
        self.cluster = cluster
        self.node_ids = list(node_ids)
        self.identities = list(identities)
        self.version = self.seeds[0].frame[0]
        self.extent = corpus_extent(self.seeds)
        self._kinds = [k for k in MUTATIONS if not kinds or k in kinds]
        self._weights = [MUTATIONS[k][1] for k in self._kinds]

    def next(self, hint: Hint | None = None) -> Mutant:
        """The next hostile message. `hint` (the cluster's current term and
        last index) only changes the values of aimed forgeries, never which
        choices are made, so a seed still names the sequence."""
        rng = self.rng
        kind = rng.choices(self._kinds, self._weights)[0]
        identity = rng.choice(self.identities)
        if kind == "forged":
            at = hint or self.extent
            seed = rng.choice(forged_frames(self.version, self.cluster, at.term, at.last_index))
            return Mutant(kind, seed.name, identity, (seed.raw,))
        seed = self._pick_seed()
        parts = MUTATIONS[kind][0](self, copy.deepcopy(seed.frame), seed)
        if parts is None:  # the kind does not apply to this frame (no bytes in a Heartbeat, ...)
            kind = "int-extreme" if "int-extreme" in self._kinds else "not-msgpack"
            parts = MUTATIONS[kind][0](self, copy.deepcopy(seed.frame), seed)
        return Mutant(kind, seed.name, identity, parts)

    def _pick_seed(self) -> Seed:
        rng = self.rng
        if rng.random() < FORGED_SHARE:
            return rng.choice(forged_frames(self.version, self.cluster, self.extent.term, self.extent.last_index))
        return rng.choice(self.seeds)

    def _other_seed(self, seed: Seed) -> Seed:
        """A seed of another message type (or the same one, if the corpus has one type)."""
        others = [s for s in self.seeds if s.frame[2] != seed.frame[2]] or self.seeds
        return self.rng.choice(others)

    def _value(self) -> Any:
        """A value of any msgpack type, for lengthening and type confusion."""
        rng = self.rng
        return rng.choice(
            [
                rng.choice(EXTREME_INTS),
                -(2**63),
                1.5,
                float("nan"),
                True,
                False,
                None,
                "",
                "n2",
                "x" * 300,
                b"",
                b"\x00" * 16,
                [],
                [1, 2, 3],
                {},
                {"a": 1},
                {1: [None]},
                msgpack.ExtType(7, b"ext"),
                msgpack.Timestamp(2**33, 999_999_999),
            ]
        )


# Each mutation: (function(mutator, frame (a deep copy), seed) -> message parts or None, weight).


def _pack(frame: Any) -> tuple[bytes, ...]:
    return (msgpack.packb(frame),)


def _int_extreme(m: Mutator, frame: list[Any], seed: Seed) -> tuple[bytes, ...] | None:
    paths = list(_paths(frame[3], _is_int, (3,)))
    if not paths:
        return None
    path = m.rng.choice(paths)
    current = _get(frame, path)
    choices = [v for v in EXTREME_INTS if v != current] or list(EXTREME_INTS)
    return _pack(_set(frame, path, m.rng.choice(choices)))


def _int_all(m: Mutator, frame: list[Any], seed: Seed) -> tuple[bytes, ...] | None:
    paths = list(_paths(frame[3], _is_int, (3,)))
    if not paths:
        return None
    value = m.rng.choice(EXTREME_INTS)
    for path in paths:
        _set(frame, path, value)
    return _pack(frame)


def _envelope_int(m: Mutator, frame: list[Any], seed: Seed) -> tuple[bytes, ...] | None:
    where = m.rng.choice([0, 2])  # the protocol version, or the tag
    return _pack(_set(frame, (where,), m.rng.choice([*EXTREME_INTS, frame[0] + 1])))


def _node_id(m: Mutator, frame: list[Any], seed: Seed) -> tuple[bytes, ...] | None:
    body = frame[3]
    rng = m.rng
    if type(body) is list and len(body) >= 2 and type(body[0]) is str and type(body[1]) is str and rng.random() < 0.3:
        body[0], body[1] = body[1], body[0]  # src and dst swapped
        return _pack(frame)
    paths = list(_paths(body, lambda v: type(v) is str, (3,)))
    if not paths:
        return None
    path = rng.choice(paths)
    current = _get(frame, path)
    choices = [n for n in m.node_ids if n != current] + ["n9", "", "N1", "n1\x00", "ñ" * 40, "x" * 300]
    return _pack(_set(frame, path, rng.choice(choices)))


def _cluster_name(m: Mutator, frame: list[Any], seed: Seed) -> tuple[bytes, ...] | None:
    name = m.cluster
    frame[1] = m.rng.choice(["another-cluster", "", name + "-x", name.upper(), name[:-1], 7, None, name.encode()])
    return _pack(frame)


def _tag_swap(m: Mutator, frame: list[Any], seed: Seed) -> tuple[bytes, ...] | None:
    frame[2] = m.rng.choice([t for t in ALL_TAGS if t != frame[2]])
    return _pack(frame)


def _body_transplant(m: Mutator, frame: list[Any], seed: Seed) -> tuple[bytes, ...] | None:
    frame[3] = copy.deepcopy(m._other_seed(seed).frame[3])
    return _pack(frame)


def _field_mix(m: Mutator, frame: list[Any], seed: Seed) -> tuple[bytes, ...] | None:
    """Some fields of another type's body in this one, position by position."""
    other = m._other_seed(seed).frame[3]
    body = frame[3]
    if type(body) is not list or type(other) is not list or not body or not other:
        return None
    rng = m.rng
    mixed = [copy.deepcopy(other[i]) if i < len(other) and rng.random() < 0.5 else v for i, v in enumerate(body)]
    if mixed == body:
        i = rng.randrange(min(len(body), len(other)))
        mixed[i] = copy.deepcopy(other[i])
    frame[3] = mixed
    return _pack(frame)


def _list_shorten(m: Mutator, frame: list[Any], seed: Seed) -> tuple[bytes, ...] | None:
    # The envelope itself too: a 3-item frame.
    paths = [p for p in _paths(frame, lambda v: type(v) is list and len(v) > 0) if p == () or p[0] == 3]
    path = m.rng.choice(paths)
    lst = _get(frame, path)
    how = m.rng.randrange(4)
    if how == 0:
        lst.pop()
    elif how == 1:
        lst.pop(m.rng.randrange(len(lst)))
    elif how == 2:
        del lst[m.rng.randrange(len(lst)) :]
    else:
        lst.clear()
    return _pack(frame)


def _list_lengthen(m: Mutator, frame: list[Any], seed: Seed) -> tuple[bytes, ...] | None:
    paths = [p for p in _paths(frame, lambda v: type(v) is list) if p == () or p[0] == 3]
    path = m.rng.choice(paths)
    lst = _get(frame, path)
    rng = m.rng
    how = rng.randrange(10)
    if how < 4 or not lst:
        lst.append(m._value())
    elif how < 7:
        lst.insert(rng.randrange(len(lst) + 1), copy.deepcopy(rng.choice(lst)))
    elif how < 9:  # many more items of the same kind: columns of the wrong length, long batches
        item = rng.choice(lst)
        lst.extend(copy.deepcopy(item) for _ in range(rng.choice([2, 16, 256, 4096])))
    else:  # one big item
        lst.append(rng.randbytes(rng.choice([64 << 10, 256 << 10, BIG_BYTES])))
    return _pack(frame)


def _bytes_garble(m: Mutator, frame: list[Any], seed: Seed) -> tuple[bytes, ...] | None:
    paths = list(_paths(frame[3], lambda v: type(v) is bytes, (3,)))
    if not paths:
        return None
    rng = m.rng
    path = rng.choice(paths)
    data: bytes = _get(frame, path)
    how = rng.randrange(6)
    if how == 0 and data:
        new = data[: rng.randrange(len(data))]
    elif how == 1 and data:
        i = rng.randrange(len(data))
        new = data[:i] + bytes([data[i] ^ (1 << rng.randrange(8))]) + data[i + 1 :]
    elif how == 2:
        new = rng.randbytes(len(data) or 8)
    elif how == 3:
        new = b""
    elif how == 4:  # a payload that is msgpack, but not a command's shape
        new = msgpack.packb(
            rng.choice([[0, b"c", 2**64 - 1, 2**63, b"x"], [0, b"c", -1, 0, b"x"], [1], [9, 9], {}, 2**64 - 1])
        )
    else:
        new = (data or b"\xff") * max(1, rng.choice([64 << 10, BIG_BYTES]) // max(1, len(data)))
    return _pack(_set(frame, path, new))


def _type_swap(m: Mutator, frame: list[Any], seed: Seed) -> tuple[bytes, ...] | None:
    paths = list(_paths(frame[3], _is_leaf, (3,)))
    if not paths:
        return None
    path = m.rng.choice(paths)
    current = _get(frame, path)
    value = m._value()
    for _ in range(8):  # a value of another type than the one it replaces
        if type(value) is not type(current):
            break
        value = m._value()
    return _pack(_set(frame, path, value))


def _not_msgpack(m: Mutator, frame: list[Any], seed: Seed) -> tuple[bytes, ...] | None:
    rng = m.rng
    raw = seed.raw
    choices: list[bytes] = [
        rng.randbytes(rng.randrange(1, 65)),
        raw[: rng.randrange(max(1, len(raw)))],  # truncated
        raw + b"\xc1",  # trailing garbage (0xc1 is never used by msgpack)
        raw + raw,  # two frames in one
        b"",
        b"\x91" * 100_000 + b"\xc0",  # nested deeper than any unpacker's stack
        b"\xdd\xff\xff\xff\xff",  # an array32 header claiming 4 G items
        b"\xdf\xff\xff\xff\xff",  # a map32 header claiming 4 G pairs
        b"\xdb\xff\xff\xff\xff" + b"a" * 16,  # a str32 claiming 4 GB
        msgpack.packb(rng.choice([{"a": 1}, 5, "frame", None, b"bin", 1.5, [], [frame[0]]])),  # not a 4-list
        msgpack.packb(frame[:3]),
        msgpack.packb([*frame, None]),
    ]
    return (rng.choice(choices),)


def _multipart(m: Mutator, frame: list[Any], seed: Seed) -> tuple[bytes, ...] | None:
    raw = seed.raw
    return m.rng.choice([(b"", raw), (raw, raw), (raw, b""), (raw, raw, raw), (b"n1", raw)])


MUTATIONS: dict[str, tuple[Callable[[Mutator, list[Any], Seed], tuple[bytes, ...] | None], int]] = {
    "int-extreme": (_int_extreme, 6),
    "int-all": (_int_all, 1),
    "envelope-int": (_envelope_int, 1),
    "node-id": (_node_id, 2),
    "cluster-name": (_cluster_name, 1),
    "tag-swap": (_tag_swap, 2),
    "body-transplant": (_body_transplant, 1),
    "field-mix": (_field_mix, 1),
    "list-shorten": (_list_shorten, 2),
    "list-lengthen": (_list_lengthen, 2),
    "bytes-garble": (_bytes_garble, 2),
    "type-swap": (_type_swap, 2),
    "not-msgpack": (_not_msgpack, 1),
    "multipart": (_multipart, 1),
    "forged": (None, 2),  # type: ignore[dict-item] - handled in Mutator.next
}
