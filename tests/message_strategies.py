"""Hypothesis strategies for every declared message, drawn from the declarations.

`message_of(cls)` draws an instance of any class registered with a derived
codec (sandzmq.protocol.registry.CODECS), field by field from its specs, so
that a message type declared later is covered without a new strategy;
`any_message` draws one of every declared type. A spec this module does not
know fails loudly (value_for).
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st
from sandzmq.protocol import REGISTRY, checks, derive
from sandzmq.protocol.logdata import Entries
from sandzmq.protocol.registry import CODECS
from sandzmq.raft.messages import Entry, EntryKind

U64 = 2**64 - 1
MAX = checks.MAX_UINT
uints = st.integers(min_value=0, max_value=MAX)
node_ids = st.text(min_size=1, max_size=12)
kinds = st.sampled_from(list(EntryKind))


@st.composite
def entry_runs(draw: st.DrawFn, prev_index: int, max_size: int = 20) -> list[Entry]:
    """Consecutive entries after prev_index; terms and kinds sometimes
    uniform (sent as one int) and sometimes mixed (sent as a column)."""
    n = draw(st.integers(min_value=0, max_value=max_size))
    uniform = draw(st.booleans())
    term0, kind0 = draw(uints), draw(kinds)
    terms = [term0] * n if uniform else sorted(draw(uints) for _ in range(n))  # terms never decrease
    return [
        Entry(prev_index + 1 + i, terms[i], draw(st.binary(max_size=64)), kind0 if uniform else draw(kinds))
        for i in range(n)
    ]


# Any value msgpack carries and gives back equal (no tuples, no NaN).
plain_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=U64)
    | st.floats(allow_nan=False)
    | st.text(max_size=8)
    | st.binary(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=4), children, max_size=3),
    max_leaves=10,
)


def _referenced(codec: derive.Codec) -> set[str]:
    """Fields other fields refer to (a length, a count, an index): drawn first."""
    names = set()
    for spec in codec.specs:
        for attr in ("length", "count", "after"):
            if isinstance(getattr(spec, attr, None), str):
                names.add(getattr(spec, attr))
    return names


def value_for(draw: st.DrawFn, spec: derive.Spec, name: str, drawn: dict[str, Any], n: int) -> Any:
    """A value that the spec's encoder takes and its decoder gives back."""
    if isinstance(spec, derive.RequestIds):
        return draw(st.integers(min_value=0, max_value=MAX - len(drawn[spec.count])))
    if isinstance(spec, derive.UInt):
        return draw(st.integers(min_value=0, max_value=spec.max))
    if isinstance(spec, derive.Bool):
        return draw(st.booleans())
    if isinstance(spec, derive.Str):
        return draw(st.text(max_size=spec.max_len or 16))
    if isinstance(spec, derive.Bytes):
        return draw(st.binary(max_size=16))
    if isinstance(spec, derive.Map):
        return draw(st.dictionaries(st.text(max_size=6), plain_values, max_size=4))
    if isinstance(spec, derive.Anything):
        return draw(plain_values)
    if isinstance(spec, derive.List):
        return draw(st.lists(plain_values, min_size=n, max_size=n))
    if isinstance(spec, derive.UInts):
        if spec.uniform and draw(st.booleans()):
            return [draw(uints)] * n
        return draw(st.lists(uints, min_size=n, max_size=n) if spec.length else st.lists(uints, max_size=8))
    if isinstance(spec, derive.BytesList):
        return draw(st.lists(st.binary(max_size=16), max_size=8))
    if isinstance(spec, derive.Optional):
        return None if draw(st.booleans()) else value_for(draw, spec.inner, name, drawn, n)
    if isinstance(spec, derive.Struct):
        codec = spec.codec
        return codec.cls(*(value_for(draw, s, f, {}, n) for f, s in zip(codec.names, codec.specs)))
    if isinstance(spec, Entries):
        if spec.after is not None:
            return draw(entry_runs(drawn[spec.after]))
        return draw(st.integers(min_value=1, max_value=2**40).flatmap(lambda first: entry_runs(first - 1)))
    if isinstance(spec, derive.NotSent):
        return None
    raise AssertionError(f"no strategy for {type(spec).__name__} ({name}): teach value_for")


@st.composite
def message_of(draw: st.DrawFn, cls: type) -> Any:
    codec = CODECS[cls]
    specs = dict(zip(codec.names, codec.specs))
    n = draw(st.integers(min_value=0, max_value=6))  # the length of every column tied to another
    drawn: dict[str, Any] = {}
    first = _referenced(codec)
    for name in sorted(specs, key=lambda f: f not in first):
        spec = specs[name]
        if name == "prev_index" and isinstance(specs.get("entries"), Entries):
            drawn[name] = draw(st.integers(min_value=0, max_value=MAX - 20))
        else:
            drawn[name] = value_for(draw, spec, name, drawn, n)
    return cls(**drawn)


DECLARED = sorted(CODECS, key=lambda c: REGISTRY.by_cls(c).tag)
any_message = st.sampled_from(DECLARED).flatmap(message_of)
