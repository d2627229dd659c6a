"""Body codecs derived from a dataclass: the class is the declaration.

A message body is a positional msgpack list, one item per field in the
class's field order (no names on the wire; a decoder checks the arity in one
comparison). `derive(cls, **specs)` reads the fields and their annotations
and writes, as source code compiled once with exec (as dataclasses writes
__init__), an encoder `obj -> list` and a decoder `list -> obj` that checks
everything:

- scalars (int, bool, str, bytes, `X | None`, a map) in ONE inline
  condition per message: exact types (`type(x) is int`, so True is not a
  term), ints in [0, MAX_UINT], no function call per field;
- columns (list[int], list[bytes]) per column in C (checks.py);
- nested dataclasses (HardState) through their own derived codec;
- what the type alone does not say through a per-field spec: an entries
  field (logdata.Entries), a column as long as another field, a column
  sent as one int when uniform, a run of request ids, a bounded str or int,
  a field not sent at all.

A body that fails the inline condition is explained by a slow path that
checks the fields one by one and names the first bad one. Either way the
decoder raises DecodeError and nothing else.

Type -> default spec: int -> UInt(), bool -> Bool(), str -> Str(),
bytes -> Bytes(), Any -> Anything(), dict -> Map(), list[int] -> UInts(),
list[bytes] -> BytesList(), list[Any] -> List(), X | None ->
Optional(spec of X), a dataclass -> Struct(cls). Anything else needs a spec.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .checks import MAX_UINT, DecodeError, bytes_column, expand_column, uint_column, uniform_or_column

Encoder = Callable[[Any], list[Any]]
Decoder = Callable[[Any], Any]


class Code:
    """What a spec contributes to the generated functions: helper objects are
    bound to names in the functions' closure (`bind`), so the generated code
    loads them as fast locals, not globals."""

    def __init__(self) -> None:
        self.env: dict[str, Any] = {
            "_DecodeError": DecodeError,
            "_MAX": MAX_UINT,
            "_type": type,
            "_len": len,
            "_int": int,
            "_str": str,
            "_bytes": bytes,
            "_bool": bool,
            "_list": list,
            "_dict": dict,
            "_map": map,
        }
        self._ids: dict[int, str] = {}

    def bind(self, obj: Any, hint: str) -> str:
        """A name under which the generated code sees `obj`."""
        name = self._ids.get(id(obj))
        if name is None:
            name = f"_{hint}_{len(self.env)}"
            self.env[name] = obj
            self._ids[id(obj)] = name
        return name

    def compile(self, name: str, source: str) -> Callable[..., Any]:
        """Compile `source` (one def of `name`) as a closure over env."""
        names = ", ".join(self.env)
        body = "\n".join("  " + line for line in source.splitlines())
        outer = f"def _make({names}):\n{body}\n  return {name}\n"
        scope: dict[str, Any] = {}
        exec(outer, {}, scope)  # noqa: S102 - our own generated source, as dataclasses does
        return scope["_make"](**self.env)


@dataclass
class Field:
    """One field of a derived message: its name, spec, and the variables
    that hold its wire items in the generated decoder."""

    name: str
    spec: Spec
    wire: list[str]  # local names of its wire items (empty when not sent)
    var: str  # local name of its decoded value


class Context:
    """How a spec refers to the other fields of its message."""

    def __init__(self, cls: type, fields: dict[str, Field], code: Code) -> None:
        self.cls = cls
        self.fields = fields
        self.code = code

    def var(self, name: str) -> str:
        """The decoder's local holding field `name` (its wire item until decoded)."""
        try:
            return self.fields[name].var
        except KeyError:
            raise TypeError(f"{self.cls.__name__} has no field {name!r}") from None

    def what(self, name: str) -> str:
        return f"{self.cls.__name__}.{name}"


class Spec:
    """How one field travels. Subclasses override what they need:

    - width: how many wire items the field takes (0: not sent);
    - check(v): an inline condition on wire item `v`, true when it is valid
      (None: no inline check), and `expected`, said when it fails;
    - decode(f, ctx): statements that turn the wire item(s) into the value
      (raising DecodeError), run after every inline check passed;
    - post(f, ctx): statements run after every field is decoded (checks
      across fields);
    - encode(attr, f, ctx): (statements, expressions): the wire items of
      the value `attr`;
    - show(value): the value in a describe() line.
    """

    width = 1
    expected = "a valid value"

    def check(self, v: str) -> str | None:
        return None

    def decode(self, f: Field, ctx: Context) -> list[str]:
        return []

    def post(self, f: Field, ctx: Context) -> list[str]:
        return []

    def encode(self, attr: str, f: Field, ctx: Context) -> tuple[list[str], list[str]]:
        return [], [attr]

    def show(self, value: Any) -> str:
        return str(value)


class UInt(Spec):
    """An int in [0, max] (MAX_UINT by default); bool refused."""

    def __init__(self, max: int = MAX_UINT) -> None:  # noqa: A002 - the bound's natural name
        if not 0 <= max <= MAX_UINT:
            raise ValueError(f"UInt max must be in [0, {MAX_UINT}]")
        self.max = max
        self.expected = "an int in [0, 2**62)" if max == MAX_UINT else f"an int in [0, {max}]"

    def check(self, v: str) -> str:
        bound = "_MAX" if self.max == MAX_UINT else str(self.max)
        return f"_type({v}) is _int and 0 <= {v} <= {bound}"


class Bool(Spec):
    expected = "a bool"

    def check(self, v: str) -> str:
        return f"_type({v}) is _bool"


class Str(Spec):
    """A str, of at most max_len characters when given."""

    def __init__(self, max_len: int | None = None) -> None:
        self.max_len = max_len
        self.expected = "a str" if max_len is None else f"a str of at most {max_len} characters"

    def check(self, v: str) -> str:
        if self.max_len is None:
            return f"_type({v}) is _str"
        return f"_type({v}) is _str and _len({v}) <= {self.max_len}"


class Bytes(Spec):
    expected = "bytes"

    def check(self, v: str) -> str:
        return f"_type({v}) is _bytes"

    def show(self, value: Any) -> str:
        return f"{len(value)}B"


class Map(Spec):
    """A msgpack map, contents unchecked (a status report)."""

    expected = "a map"

    def check(self, v: str) -> str:
        return f"_type({v}) is _dict"

    def show(self, value: Any) -> str:
        if len(value) > 4:
            return f"{{{len(value)} keys}}"
        return "{" + ",".join(f"{k}={v}" for k, v in value.items()) + "}"


class Anything(Spec):
    """Any msgpack value, unchecked (a state machine's result)."""

    def show(self, value: Any) -> str:
        text = repr(value)
        return text if len(text) <= 24 else text[:21] + "..."


class List(Spec):
    """A list of any values, of the same length as field `length` when given."""

    expected = "a list"

    def __init__(self, length: str | None = None) -> None:
        self.length = length

    def check(self, v: str) -> str:
        return f"_type({v}) is _list"

    def post(self, f: Field, ctx: Context) -> list[str]:
        if self.length is None:
            return []
        return [
            f"if _len({f.var}) != _len({ctx.var(self.length)}):",
            f"    raise _DecodeError({ctx.what(f.name)!r} ': not one item per {self.length}')",
        ]

    def show(self, value: Any) -> str:
        return f"[{len(value)}]"


class UInts(Spec):
    """A column of ints in [0, MAX_UINT], as long as field `length` (a list)
    when given. uniform=True: sent as one int when every item is the same."""

    def __init__(self, length: str | None = None, uniform: bool = False) -> None:
        if uniform and length is None:
            raise TypeError("a uniform column needs the field whose length it has")
        self.length = length
        self.uniform = uniform

    def decode(self, f: Field, ctx: Context) -> list[str]:
        what = ctx.what(f.name)
        if self.length is None:
            fn = ctx.code.bind(uint_column, "uints")
            return [f"{f.var} = {fn}({f.var}, None, {what!r})"]
        fn = ctx.code.bind(expand_column if self.uniform else uint_column, "uints")
        return [f"{f.var} = {fn}({f.var}, _len({ctx.var(self.length)}), {what!r})"]

    def encode(self, attr: str, f: Field, ctx: Context) -> tuple[list[str], list[str]]:
        if self.uniform:
            return [], [f"{ctx.code.bind(uniform_or_column, 'uniform')}({attr})"]
        return [], [attr]

    def show(self, value: Any) -> str:
        return _run(value)


class BytesList(Spec):
    """A column of bytes."""

    def decode(self, f: Field, ctx: Context) -> list[str]:
        return [f"{f.var} = {ctx.code.bind(bytes_column, 'bytes_column')}({f.var}, {ctx.what(f.name)!r})"]

    def show(self, value: Any) -> str:
        return f"{len(value)}x{sum(map(len, value))}B" if value else "[]"


class RequestIds(UInt):
    """The first of a run of request ids, one per item of field `count`:
    the whole run must stay within [0, MAX_UINT], so every id encodes."""

    def __init__(self, count: str) -> None:
        super().__init__()
        self.count = count

    def post(self, f: Field, ctx: Context) -> list[str]:
        return [
            f"if {f.var} + _len({ctx.var(self.count)}) > _MAX:",
            f"    raise _DecodeError({ctx.what(f.name)!r} ': the request ids run past 2**62')",
        ]


class NotSent(Spec):
    """Not on the wire: the decoder leaves the field to its default, or to
    what another field's spec fills in."""

    width = 0

    def encode(self, attr: str, f: Field, ctx: Context) -> tuple[list[str], list[str]]:
        return [], []


class Optional(Spec):
    """The inner spec's value, or None."""

    def __init__(self, inner: Spec) -> None:
        if inner.width != 1:
            raise TypeError("only a one-item field can be optional")
        self.inner = inner
        self.expected = f"None or {inner.expected}"

    def check(self, v: str) -> str | None:
        inner = self.inner.check(v)
        return None if inner is None else f"({v} is None or {inner})"

    def decode(self, f: Field, ctx: Context) -> list[str]:
        inner = self.inner.decode(f, ctx)
        return [f"if {f.var} is not None:", *("    " + s for s in inner)] if inner else []

    def encode(self, attr: str, f: Field, ctx: Context) -> tuple[list[str], list[str]]:
        pre, exprs = self.inner.encode(attr, f, ctx)
        if pre or exprs != [attr]:
            if pre:
                raise TypeError("an optional field's encoder must be one expression")
            return [], [f"(None if {attr} is None else {exprs[0]})"]
        return [], [attr]

    def show(self, value: Any) -> str:
        return "-" if value is None else self.inner.show(value)


class Struct(Spec):
    """A nested dataclass, through its own derived codec (HardState)."""

    def __init__(self, cls: type, codec: Codec | None = None) -> None:
        self.codec = codec or derive(cls)
        self.expected = f"a {cls.__name__}"

    def decode(self, f: Field, ctx: Context) -> list[str]:
        return [f"{f.var} = {ctx.code.bind(self.codec.decode, 'dec')}({f.var})"]

    def encode(self, attr: str, f: Field, ctx: Context) -> tuple[list[str], list[str]]:
        return [], [f"{ctx.code.bind(self.codec.encode, 'enc')}({attr})"]

    def show(self, value: Any) -> str:
        return "(" + ",".join(str(getattr(value, n)) for n in self.codec.names) + ")"


def _run(values: list[int]) -> str:
    """A column for describe(): '7', '3..9' when consecutive, else the list (cut)."""
    if not values:
        return "[]"
    if len(values) == 1:
        return str(values[0])
    if values == list(range(values[0], values[0] + len(values))):
        return f"{values[0]}..{values[-1]}"
    if values.count(values[0]) == len(values):
        return f"{len(values)}x{values[0]}"
    text = ",".join(map(str, values[:6]))
    return f"[{text}{',...' if len(values) > 6 else ''}]"


# -- derivation ----------------------------------------------------------------------


@dataclass(frozen=True)
class Codec:
    """A derived body codec: encode(obj) -> list, decode(list) -> obj, and the
    pieces describe() and the tests use."""

    cls: type
    encode: Encoder
    decode: Decoder
    names: tuple[str, ...]  # the fields, in order
    specs: tuple[Spec, ...]
    width: int  # items in the body
    source: str  # the generated code, for the curious (print(codec.source))


def spec_for(hint: Any) -> Spec:
    """The default spec of a field's type; TypeError when the type does not say enough."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType) and type(None) in args and len(args) == 2:
        return Optional(spec_for(next(a for a in args if a is not type(None))))
    simple = {int: UInt, bool: Bool, str: Str, bytes: Bytes, dict: Map}
    if hint in simple:
        return simple[hint]()
    if hint is Any:
        return Anything()
    if origin is dict:
        return Map()
    if origin is list and len(args) == 1:
        inner = {int: UInts, bytes: BytesList}.get(args[0])
        if inner is not None:
            return inner()
        if args[0] is Any:
            return List()
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return Struct(hint)
    raise TypeError(f"no default wire spec for {hint!r}: give the field a spec")


_CODECS: dict[type, Codec] = {}


def derive(cls: type, **specs: Spec) -> Codec:
    """The body codec of dataclass `cls`. `specs` override the default spec of
    the fields they name; a field whose type has no default must be given one.
    The same class derived twice without specs gives the same Codec."""
    if not specs and cls in _CODECS:
        return _CODECS[cls]
    hints = typing.get_type_hints(cls)
    unknown = set(specs) - {f.name for f in dataclasses.fields(cls)}
    if unknown:
        raise TypeError(f"{cls.__name__} has no field(s) {sorted(unknown)}")
    code = Code()
    fields: dict[str, Field] = {}
    for f in dataclasses.fields(cls):
        try:
            spec = specs[f.name] if f.name in specs else spec_for(hints[f.name])
        except TypeError as exc:
            raise TypeError(f"{cls.__name__}.{f.name}: {exc}") from None
        var = f"x_{f.name}"
        wire = [var] if spec.width == 1 else [f"{var}_{i}" for i in range(spec.width)]
        fields[f.name] = Field(f.name, spec, wire, var)
    ctx = Context(cls, fields, code)
    enc_src = _encoder_source(cls, fields, ctx)
    dec_src = _decoder_source(cls, fields, ctx, code)
    encode = code.compile("encode", enc_src)
    decode = code.compile("decode", dec_src)
    codec = Codec(
        cls,
        encode,
        decode,
        tuple(fields),
        tuple(f.spec for f in fields.values()),
        sum(f.spec.width for f in fields.values()),
        enc_src + "\n" + dec_src,
    )
    if not specs:
        _CODECS[cls] = codec
    return codec


def _encoder_source(cls: type, fields: dict[str, Field], ctx: Context) -> str:
    pre: list[str] = []
    items: list[str] = []
    for f in fields.values():
        statements, exprs = f.spec.encode(f"m.{f.name}", f, ctx)
        pre += statements
        items += exprs
    body = [*pre, f"return [{', '.join(items)}]"]
    return "def encode(m):\n" + "\n".join("    " + line for line in body) + "\n"


def _decoder_source(cls: type, fields: dict[str, Field], ctx: Context, code: Code) -> str:
    name = cls.__name__
    wire = [v for f in fields.values() for v in f.wire]
    checks = [c for f in fields.values() if f.spec.width == 1 and (c := f.spec.check(f.var)) is not None]
    explain = code.bind(_explainer(cls, fields), "explain")
    lines = [
        f"if _type(b) is not _list or _len(b) != {len(wire)}:",
        f"    raise _DecodeError({name!r} f': expected a list of {len(wire)}, got {{b!r:.60}}')",
    ]
    if len(wire) == 1:
        lines.append(f"{wire[0]}, = b")
    elif wire:
        lines.append(f"{', '.join(wire)} = b")
    if checks:
        lines.append("if not (" + "\n        and ".join(checks) + "):")
        lines.append(f"    raise {explain}(b)")
    for f in fields.values():
        lines += f.spec.decode(f, ctx)
    for f in fields.values():
        lines += f.spec.post(f, ctx)
    args, keywords = [], False
    for f in fields.values():
        if f.spec.width == 0 and not _filled(f, fields):
            keywords = True  # left to its default: the fields after it go by name
            continue
        args.append(f"{f.name}={f.var}" if keywords else f.var)
    lines.append(f"return {code.bind(cls, 'cls')}({', '.join(args)})")
    return "def decode(b):\n" + "\n".join("    " + line for line in lines) + "\n"


def _filled(f: Field, fields: dict[str, Field]) -> bool:
    """Does another field's spec set this not-sent field's variable?"""
    return any(f.name in getattr(g.spec, "fills", ()) for g in fields.values())


def _explainer(cls: type, fields: dict[str, Field]) -> Callable[[list[Any]], DecodeError]:
    """The slow path: which field failed its inline check, and how."""
    checks: list[tuple[str, int, Callable[[Any], bool], str]] = []
    position = 0
    for f in fields.values():
        condition = f.spec.check("v") if f.spec.width == 1 else None
        if condition is not None:
            code = Code()
            test = code.compile("test", f"def test(v):\n    return {condition}\n")
            checks.append((f.name, position, test, f.spec.expected))
        position += f.spec.width

    def explain(body: list[Any]) -> DecodeError:
        for name, i, test, expected in checks:
            if not test(body[i]):
                return DecodeError(f"{cls.__name__}.{name}: expected {expected}, got {body[i]!r:.40}")
        return DecodeError(f"{cls.__name__}: refused")  # unreachable: some check failed

    return explain
