"""sandzmq's derived codecs against msgspec, derived from the same declarations.

    .venv/bin/python bench/compare_msgspec.py [--quick] [--json] [--sloc]

Issue 9 asks whether a library that declares and validates msgpack structs in
C (msgspec) beats the protocol's codecs on speed and on lines of code, the
wire format staying msgpack. To compare like with like, the msgspec side is
what adopting it would take: the section "the msgspec backend" below derives,
from each registered message's declaration (protocol.registry.CODECS: the
dataclass and its field specs), a msgspec type for the body (a fixed-length
tuple: exact arity, exact types, bool is not int, ints in [0, 2**62) and the
per-field bounds, all checked in C) and a converter, generated like derive.py's
decoders, that runs what msgspec cannot express (columns as long as another
field, terms that never decrease, a run of request ids within 2**62, entries
into Entry objects or EntryColumns) and builds the same dataclass, since the
Raft core's messages must stay plain. Frames are decoded in two steps, the
envelope as `(int, str, str, Raw)`, then the body by its tag; encoded with
msgspec's encoder from the derived encoder's list.

Layouts, per message, envelope included, medians over rounds in which the
layouts take turns (a shared machine drifts):
- `sandzmq`: Envelope.encode / Envelope.decode (protocol/derive.py).
- `msgspec`: the backend below, equivalent checks, the same objects out.
- `msgspec, no conversion`: decoded into the checked tuple only, encoded from
  a prepared list: the bound, if messages were msgspec's own types.

--sloc prints the source lines (no blanks, comments or docstrings) of the
backend section, against the lines of derive.py it would replace.

msgspec is not a dependency of sandzmq: `pip install msgspec` to run this.
"""

from __future__ import annotations

import argparse
import ast
import inspect
import io
import json
import os
import platform
import statistics
import sys
import time
import tokenize
from collections.abc import Callable
from itertools import repeat
from typing import Annotated, Any, Literal

import msgpack
import msgspec
from msgspec import Meta, Raw
from sandzmq.protocol import REGISTRY, ApplyResults, ClientSubmit, DecodeError, derive, encode_command
from sandzmq.protocol.logdata import Entries
from sandzmq.protocol.registry import CODECS
from sandzmq.raft.messages import (
    MAX_INDEX,
    AppendEntries,
    AppendEntriesResponse,
    Entry,
    EntryColumns,
    EntryKind,
    Heartbeat,
)
from sandzmq.transport import PROTOCOL_VERSION, Envelope

CLUSTER = "bench"
ENTRY_BYTES = 128

# ---------------------------------------------------------------- the msgspec backend

Kind = Literal[0, 1, 2]
_KINDS = {int(k): k for k in EntryKind}


def uint(maximum: int) -> Any:
    return Annotated[int, Meta(ge=0, le=maximum)]


def wire_types(spec: derive.Spec) -> list[Any]:
    """The msgspec types of a field's wire items."""
    if isinstance(spec, derive.UInt):
        return [uint(spec.max)]
    if isinstance(spec, derive.Str):
        return [str if spec.max_len is None else Annotated[str, Meta(max_length=spec.max_len)]]
    simple = {
        derive.Bool: bool,
        derive.Bytes: bytes,
        derive.Map: dict,
        derive.Anything: Any,
        derive.List: list,
        derive.BytesList: list[bytes],
    }
    if type(spec) in simple:
        return [simple[type(spec)]]
    if isinstance(spec, derive.UInts):
        u = uint(MAX_INDEX)
        return [u | list[u] if spec.uniform else list[u]]
    if isinstance(spec, derive.Optional):
        return [wire_types(spec.inner)[0] | None]
    if isinstance(spec, derive.Struct):
        return [tuple[tuple(t for s in spec.codec.specs for t in wire_types(s))]]
    if isinstance(spec, Entries):
        u = uint(MAX_INDEX)
        columns = [u | list[u], Kind | list[Kind], list[bytes]]
        return columns if spec.after else [tuple[(u, *columns)]]
    if isinstance(spec, derive.NotSent):
        return []
    raise TypeError(f"no msgspec type for {type(spec).__name__}")


def columns_checked(first: int, terms: Any, kinds: Any, datas: list[bytes]) -> EntryColumns:
    """What msgspec cannot check of entry columns; their types it did."""
    n = len(datas)
    if n and first + n - 1 > MAX_INDEX or not n and first > MAX_INDEX:
        raise DecodeError("entries run past 2**62")
    if type(terms) is int:
        terms = [terms] * n
    elif len(terms) != n or terms != sorted(terms):
        raise DecodeError("entries: terms not one per entry, or decreasing")
    if type(kinds) is int:
        kinds = [kinds] * n
    elif len(kinds) != n:
        raise DecodeError("entries: kinds not one per entry")
    if n and first < 1:
        raise DecodeError("entries: first index 0")
    return EntryColumns(first, terms, kinds, datas)


def entries_checked(first: int, terms: Any, kinds: Any, datas: list[bytes]) -> list[Entry]:
    columns = columns_checked(first, terms, kinds, datas)
    kind_col: Any = repeat(_KINDS[kinds]) if type(kinds) is int else [_KINDS[k] for k in columns.kinds]
    return list(map(Entry, range(first, first + len(datas)), columns.terms, datas, kind_col))


def expand(value: Any, n: int) -> list[int]:
    if type(value) is int:
        return [value] * n
    if len(value) != n:
        raise DecodeError("a column not one per item")
    return value


def converter(codec: derive.Codec) -> Callable[[tuple[Any, ...]], Any]:
    """tuple (checked by msgspec) -> the dataclass, with the checks left over."""
    env: dict[str, Any] = {
        "_cls": codec.cls,
        "_Error": DecodeError,
        "_MAX": MAX_INDEX,
        "_columns": columns_checked,
        "_entries": entries_checked,
        "_expand": expand,
    }
    names, lines, args = [], [], []
    for name, spec in zip(codec.names, codec.specs):
        width = len(wire_types(spec))
        wire = [name] if width == 1 else [f"{name}_{i}" for i in range(width)]
        names += wire
        if isinstance(spec, derive.Struct):
            env[f"_c_{name}"] = spec.codec.cls
            lines.append(f"{name} = _c_{name}(*{name})")
        elif isinstance(spec, derive.Optional) and isinstance(spec.inner, derive.Struct):
            env[f"_c_{name}"] = spec.inner.codec.cls
            lines.append(f"{name} = None if {name} is None else _c_{name}(*{name})")
        elif isinstance(spec, Entries) and spec.after:
            lines.append(f"{name} = _entries({spec.after} + 1, {', '.join(wire)})")
            lines += [f"{fill} = list(map(len, {wire[2]})) if {name} else None" for fill in spec.fills]
        elif isinstance(spec, Entries):
            lines.append(f"{name} = _columns(*{name})")
        elif isinstance(spec, derive.UInts) and spec.length:
            lines.append(f"{name} = _expand({name}, len({spec.length}))")
        elif isinstance(spec, derive.RequestIds):
            lines.append(f"if {name} + len({spec.count}) > _MAX: raise _Error('request ids past 2**62')")
        elif isinstance(spec, derive.List) and spec.length:
            lines.append(f"if len({name}) != len({spec.length}): raise _Error('columns differ')")
        if width or any(name in getattr(s, "fills", ()) for s in codec.specs):
            args.append(name)
    source = f"def convert(t):\n    {', '.join(names)}{',' if len(names) == 1 else ''} = t\n"
    source += "".join(f"    {line}\n" for line in lines) + f"    return _cls({', '.join(args)})\n"
    exec(source, env)  # noqa: S102 - generated from our own declarations, as derive.py does
    return env["convert"]


class MsgspecEnvelope:
    """The envelope's checks with msgspec: version, cluster, tag, body."""

    def __init__(self, cluster: str, convert: bool = True) -> None:
        self.cluster = cluster
        self.malformed = 0
        self._frame = msgspec.msgpack.Decoder(tuple[int, str, str, Raw])
        self._encode = msgspec.msgpack.Encoder().encode
        self._by_tag: dict[str, tuple[Any, Callable[[Any], Any]]] = {}
        self._by_cls: dict[type, tuple[str, Callable[[Any], Any]]] = {}
        for cls, codec in CODECS.items():
            tag = REGISTRY.by_cls(cls).tag
            body = tuple[tuple(t for s in codec.specs for t in wire_types(s))]
            convert_fn = converter(codec) if convert else (lambda t: t)
            self._by_tag[tag] = (msgspec.msgpack.Decoder(body).decode, convert_fn)
            self._by_cls[cls] = (tag, codec.encode)

    def encode(self, msg: Any) -> bytes:
        tag, encode = self._by_cls[type(msg)]
        return self._encode((PROTOCOL_VERSION, self.cluster, tag, encode(msg)))

    def encode_body(self, tag: str, body: list[Any]) -> bytes:
        return self._encode((PROTOCOL_VERSION, self.cluster, tag, body))

    def decode(self, frame: bytes) -> Any | None:
        try:
            version, cluster, tag, raw = self._frame.decode(frame)
        except (msgspec.ValidationError, msgspec.DecodeError):
            self.malformed += 1  # (the real envelope would tell a version mismatch apart here)
            return None
        if version != PROTOCOL_VERSION or cluster != self.cluster:
            return None
        found = self._by_tag.get(tag)
        if found is None:
            return None
        decode, convert = found
        try:
            return convert(decode(raw))
        except (msgspec.ValidationError, msgspec.DecodeError, DecodeError):
            self.malformed += 1
            return None


# ---------------------------------------------------------------- end of the msgspec backend


def append_entries(n: int) -> AppendEntries:
    data = os.urandom(ENTRY_BYTES)
    return AppendEntries("n1", "n2", 7, 1000, 7, [Entry(1001 + i, 7, data) for i in range(n)], 999)


def cases() -> list[tuple[str, Any]]:
    payload = encode_command(os.urandom(16), 12345, 12300, os.urandom(ENTRY_BYTES))
    return [
        ("Heartbeat", Heartbeat("n1", "n2", 7, 999)),
        ("AppendEntriesResponse", AppendEntriesResponse("n2", "n1", 7, True, 1512)),
        ("AppendEntries x1", append_entries(1)),
        ("AppendEntries x64", append_entries(64)),
        ("AppendEntries x512", append_entries(512)),
        ("ClientSubmit x64", ClientSubmit(1_000_000, [payload] * 64)),
        ("ApplyResults x64", ApplyResults(list(range(5000, 5064)), [7] * 64, [0] * 64, [None] * 64, 5063)),
    ]


def check_equivalence(env: Envelope, ms: MsgspecEnvelope) -> None:
    """Both sides take and refuse the same bodies: every mutation of every
    case's body that one side refuses, the other refuses too."""
    import random

    rng = random.Random(1)
    values = [None, True, False, -1, 0, 3, 2**62, 2**64 - 1, "", "x" * 70, b"", b"x", 1.5, [], [1], [b"x"], {}]
    for _, msg in cases() + [(None, m) for m in extra_cases()]:
        mt = REGISTRY.by_cls(type(msg))
        body = msgpack.unpackb(msgpack.packb(mt.encode(msg)))
        for _ in range(300):
            mutated = (
                json.loads(json.dumps(body, default=lambda b: None))
                if rng.random() < 0.1
                else _mutate(rng, body, values)
            )
            frame = msgpack.packb([PROTOCOL_VERSION, CLUSTER, mt.tag, mutated])
            a, b = env.decode(frame), ms.decode(frame)
            assert (a is None) == (b is None) and (a is None or a == b), (mt.tag, mutated, a, b)


def _mutate(rng: Any, body: list[Any], values: list[Any]) -> list[Any]:
    out = msgpack.unpackb(msgpack.packb(body))
    target, i = out, rng.randrange(len(out)) if out else 0
    while type(target[i]) is list and target[i] and rng.random() < 0.5:
        target, i = target[i], rng.randrange(len(target[i]))
    choice = rng.random()
    if choice < 0.8:
        target[i] = rng.choice(values)
    elif choice < 0.9:
        del target[i]
    else:
        target.append(rng.choice(values))
    return out


def extra_cases() -> list[Any]:
    from sandzmq.protocol import LogState, LogWrite, PeerHello
    from sandzmq.raft.messages import HardState

    return [
        LogWrite(3, [Entry(5, 2, b"a"), Entry(6, 3, b"b")], HardState(3, "n1", 4)),
        LogState(1, 2, 3, HardState(1, None, 0), 1, 6, 3, 3, "c" * 64, 9),
        PeerHello("a", "b", True, 3, "", 1, 2, 3),
    ]


def calibrate(fn: Callable[[], object], seconds: float) -> int:
    loops = 1
    while True:
        t0 = time.perf_counter()
        for _ in range(loops):
            fn()
        elapsed = time.perf_counter() - t0
        if elapsed >= seconds / 4:
            return max(1, int(loops * seconds / elapsed))
        loops *= 2


def timed(fn: Callable[[], object], loops: int) -> float:
    t0 = time.perf_counter()
    for _ in range(loops):
        fn()
    return (time.perf_counter() - t0) / loops


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    env, ms, bare = Envelope(CLUSTER), MsgspecEnvelope(CLUSTER), MsgspecEnvelope(CLUSTER, convert=False)
    check_equivalence(env, ms)
    rows = []
    for name, msg in cases():
        tag = REGISTRY.by_cls(type(msg)).tag
        body = REGISTRY.by_cls(type(msg)).encode(msg)
        frame = env.encode(msg)
        assert ms.encode(msg) == frame or msgpack.unpackb(ms.encode(msg)) == msgpack.unpackb(frame)
        assert env.decode(frame) == msg and ms.decode(frame) == msg and bare.decode(frame) is not None
        jobs = [
            ("sandzmq", lambda msg=msg: env.encode(msg), lambda frame=frame: env.decode(frame)),
            ("msgspec", lambda msg=msg: ms.encode(msg), lambda frame=frame: ms.decode(frame)),
            (
                "msgspec, no conversion",
                lambda tag=tag, body=body: bare.encode_body(tag, body),
                lambda frame=frame: bare.decode(frame),
            ),
        ]
        loops = {layout: (calibrate(enc, args.min_time), calibrate(dec, args.min_time)) for layout, enc, dec in jobs}
        samples: dict[str, tuple[list[float], list[float]]] = {layout: ([], []) for layout, _, _ in jobs}
        for _ in range(args.repeats):
            for layout, enc, dec in jobs:
                samples[layout][0].append(timed(enc, loops[layout][0]))
                samples[layout][1].append(timed(dec, loops[layout][1]))
        for layout, _, _ in jobs:
            e, d = (statistics.median(v) for v in samples[layout])
            rows.append(
                {
                    "message": name,
                    "layout": layout,
                    "bytes": len(frame),
                    "encode_us": e * 1e6,
                    "decode_us": d * 1e6,
                    "total_us": (e + d) * 1e6,
                }
            )
    return rows


def sloc(source: str) -> int:
    """Lines holding code: no blank lines, comments or docstrings."""
    doc_lines: set[int] = set()
    for node in ast.walk(ast.parse(source)):
        body = getattr(node, "body", None)
        if (
            isinstance(body, list)
            and body
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)
        ):
            doc_lines.update(range(body[0].lineno, body[0].end_lineno + 1))
    code_lines = set()
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if (
            tok.type
            not in (
                tokenize.COMMENT,
                tokenize.NL,
                tokenize.NEWLINE,
                tokenize.INDENT,
                tokenize.DEDENT,
                tokenize.ENDMARKER,
            )
            and tok.start[0] not in doc_lines
        ):
            code_lines.update(range(tok.start[0], tok.end[0] + 1))
    return len(code_lines)


def print_sloc() -> None:
    here = open(__file__).read()
    start = here.index("# " + "-" * 64 + " the msgspec backend")
    end = here.index("# " + "-" * 64 + " end of the msgspec backend")
    derive_src = inspect.getsource(derive)
    print(f"msgspec backend (this file): {sloc(here[start:end])} source lines")
    print(
        f"protocol/derive.py (all of it; the backend would replace its decoder half): {sloc(derive_src)} source lines"
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--json", action="store_true")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--sloc", action="store_true", help="print the lines of code compared, and stop")
    p.add_argument("--repeats", type=int, default=15, help="rounds (the layouts take turns each round)")
    p.add_argument("--min-time", type=float, default=0.05, help="seconds per timed run")
    args = p.parse_args(argv)
    if args.sloc:
        print_sloc()
        return 0
    if args.quick:
        args.repeats, args.min_time = 3, 0.02
    params = {
        "python": platform.python_version(),
        "msgspec": msgspec.__version__,
        "msgpack": ".".join(map(str, msgpack.version)),
        "cpus": os.cpu_count(),
        "repeats": args.repeats,
        "entry_bytes": ENTRY_BYTES,
        "loadavg": [round(x, 2) for x in os.getloadavg()],
    }
    rows = run(args)
    if args.json:
        json.dump({"params": params, "rows": rows}, sys.stdout, indent=1)
        print()
        return 0
    print("sandzmq codec vs msgspec, envelope encode + decode (median us per message)")
    print("  " + ", ".join(f"{k}={v}" for k, v in params.items()))
    print(f"  {'message':<22} {'layout':<23} {'bytes':>6} {'encode':>8} {'decode':>8} {'total':>8}")
    for r in rows:
        print(
            f"  {r['message']:<22} {r['layout']:<23} {r['bytes']:>6} {r['encode_us']:>8.2f} {r['decode_us']:>8.2f}"
            f" {r['total_us']:>8.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
