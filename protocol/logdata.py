"""The shapes of log data, one each, shared by the wire and the write-ahead log.

Consecutive entries travel as columns rather than one small list each (the
costs that matter are per message and per entry, DESIGN 6)::

    [first_index, terms, kinds, datas]

- `datas` is a list of bytes, one per entry;
- `terms` is one int when every entry has that term (almost every batch),
  else a list of ints as long as `datas`; `kinds` likewise;
- indexes are not sent: entry i has index first_index + i.

LogWrite and ApplyBatch carry that list as one field (`Entries()`), and the
WAL's ENTRIES record is exactly it (storage/records.py); AppendEntries
carries only `terms, kinds, datas`, inline, after its prev_index
(`Entries(after="prev_index")`). The hard state is `[term, vote, commit]`,
derived from HardState, in LogWrite, LogState and the WAL's HARD_STATE record.

Decoding checks every column in C (set(map(type, col)), min(col)), not
every entry in Python: datas are bytes, terms and kinds ints of the same
length, kinds known, terms in [0, 2**62) and never decreasing along the
batch, the last index below 2**62.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import repeat
from typing import Any

from sandzmq.raft.messages import MAX_INDEX, Entry, EntryColumns, EntryKind, HardState

from .checks import DecodeError, bytes_column, expand_column, uniform_or_column
from .derive import Context, Field, Spec, derive

_KIND_BY_VALUE: dict[int, EntryKind] = {int(k): k for k in EntryKind}
_KIND_VALUES = frozenset(_KIND_BY_VALUE)
_KIND_NAMES = {int(k): k.name.lower() for k in EntryKind}


def entry_columns(entries: Sequence[Entry]) -> tuple[int | list[int], int | list[int], list[bytes]]:
    """(terms, kinds, datas) of a run of entries, terms and kinds collapsed to
    one int when uniform. One comprehension per column (the attribute load is
    specialised for slots); uniformity is checked over the whole column, so a
    bug elsewhere cannot be turned into wrong terms."""
    if type(entries) is EntryColumns:  # (not isinstance: an ABC's check costs more than the rest)
        return uniform_or_column(entries.terms), uniform_or_column(entries.kinds), entries.datas
    if not entries:
        return 0, 0, []
    kinds = uniform_or_column([e.kind for e in entries])
    terms = uniform_or_column([e.term for e in entries])
    return terms, kinds if isinstance(kinds, list) else int(kinds), [e.data for e in entries]


def check_consecutive(entries: Sequence[Entry], first: int) -> None:
    """Indexes are not sent, so a run that is not consecutive from `first`
    would be silently renumbered: the sender's bug, caught at the sender
    (first and last only: O(1)). ValueError, not DecodeError."""
    if entries and (entries[0].index != first or entries[-1].index != first + len(entries) - 1):
        raise ValueError(
            f"entries are not consecutive from {first}: {len(entries)} entries, {entries[0].index}..{entries[-1].index}"
        )


def columns_from_wire(first_index: Any, terms: Any, kinds: Any, datas: Any) -> EntryColumns:
    """Entries first_index, first_index + 1, ... from columns, validated, kept
    as columns (EntryColumns: the log-store and the apply actor stream them)."""
    datas = bytes_column(datas, "entries: datas")
    n = len(datas)
    if n == 0:
        if not (type(terms) is int or terms == []) or not (type(kinds) is int or kinds == []):
            raise DecodeError("entries: no datas, so terms and kinds must be ints or empty lists")
        return EntryColumns(first_index if type(first_index) is int else 0, [], [], [])
    if type(first_index) is not int or not 1 <= first_index <= MAX_INDEX - n + 1:
        raise DecodeError(f"entries: first index must be in [1, 2**62 - {n}], got {first_index!r:.40}")
    uniform_terms = type(terms) is int
    terms = expand_column(terms, n, "entries: terms")
    if not uniform_terms and terms != sorted(terms):  # (sorted() of a sorted list is one pass in C)
        raise DecodeError("entries: terms decrease along the batch")
    kinds = expand_column(kinds, n, "entries: kinds")
    if not set(kinds) <= _KIND_VALUES:
        raise DecodeError("entries: kinds must be known entry kinds")
    return EntryColumns(first_index, terms, kinds, datas)


def entries_from_columns(first_index: Any, terms: Any, kinds: Any, datas: Any) -> list[Entry]:
    """Like columns_from_wire, but Entry objects (what the Raft core takes):
    the only per-entry Python work is Entry's __init__."""
    columns = columns_from_wire(first_index, terms, kinds, datas)
    if not columns.datas:
        return []
    kind_col: Any = repeat(_KIND_BY_VALUE[kinds]) if type(kinds) is int else [_KIND_BY_VALUE[k] for k in columns.kinds]
    first = columns.first_index
    return list(map(Entry, range(first, first + len(columns.datas)), columns.terms, columns.datas, kind_col))


def encode_entries(entries: Sequence[Entry]) -> list[Any]:
    """`[first_index, terms, kinds, datas]` for consecutive entries (an Entry
    list or EntryColumns); `[0, 0, 0, []]` for none. ValueError if the run is
    not consecutive."""
    if type(entries) is EntryColumns:
        return [entries.first_index, uniform_or_column(entries.terms), uniform_or_column(entries.kinds), entries.datas]
    first = entries[0].index if entries else 0
    check_consecutive(entries, first)
    terms, kinds, datas = entry_columns(entries)
    return [first, terms, kinds, datas]


def decode_entries(body: Any) -> EntryColumns:
    """The inverse of encode_entries, as columns; raises DecodeError."""
    if type(body) is not list or len(body) != 4:
        raise DecodeError("entries: expected [first_index, terms, kinds, datas]")
    return columns_from_wire(body[0], body[1], body[2], body[3])


def describe_entries(entries: Sequence[Entry]) -> str:
    """'8..10(t3)', '8(t3,noop)', '5..9(t2..t3,1 noop)', or '-' for none."""
    if not entries:
        return "-"
    if isinstance(entries, EntryColumns):
        first, terms, kinds = entries.first_index, entries.terms, entries.kinds
    else:
        first, terms, kinds = entries[0].index, [e.term for e in entries], [int(e.kind) for e in entries]
    last = first + len(terms) - 1
    span = str(first) if last == first else f"{first}..{last}"
    lo, hi = min(terms), max(terms)
    notes = [f"t{lo}" if lo == hi else f"t{lo}..t{hi}"]
    for value, name in _KIND_NAMES.items():
        count = kinds.count(value) if value else 0
        if count:
            notes.append(name if len(kinds) == 1 else f"{count} {name}")
    return f"{span}({','.join(notes)})"


class Entries(Spec):
    """A field of consecutive entries.

    Entries(): one item `[first_index, terms, kinds, datas]`, decoded as
    EntryColumns. Entries(after="prev_index", sizes="sizes"): three items
    `terms, kinds, datas` inline, the first index being that field plus one,
    decoded as Entry objects; `sizes` names a field (not sent) that gets the
    entries' data lengths, counted in C from the column.
    """

    expected = "entries"

    def __init__(self, after: str | None = None, sizes: str | None = None) -> None:
        if sizes is not None and after is None:
            raise TypeError("sizes is for inline entries (after=...)")
        self.after = after
        self.width = 1 if after is None else 3
        self.fills = () if sizes is None else (sizes,)

    def decode(self, f: Field, ctx: Context) -> list[str]:
        if self.after is None:
            return [f"{f.var} = {ctx.code.bind(decode_entries, 'decode_entries')}({f.var})"]
        fn = ctx.code.bind(entries_from_columns, "entries")
        terms, kinds, datas = f.wire
        lines = [f"{f.var} = {fn}({ctx.var(self.after)} + 1, {terms}, {kinds}, {datas})"]
        for name in self.fills:  # the data lengths, counted in C
            lines.append(f"{ctx.var(name)} = _list(_map(_len, {datas})) if {f.var} else None")
        return lines

    def encode(self, attr: str, f: Field, ctx: Context) -> tuple[list[str], list[str]]:
        if self.after is None:
            return [], [f"{ctx.code.bind(encode_entries, 'encode_entries')}({attr})"]
        check = ctx.code.bind(check_consecutive, "check_consecutive")
        columns = ctx.code.bind(entry_columns, "entry_columns")
        return [f"{check}({attr}, m.{self.after} + 1)", f"{', '.join(f.wire)} = {columns}({attr})"], list(f.wire)

    def show(self, value: Any) -> str:
        return describe_entries(value)


#: The hard state's body, `[term, vote, commit]`: derived from HardState.
HARD_STATE = derive(HardState)
encode_hard_state = HARD_STATE.encode
decode_hard_state = HARD_STATE.decode


def describe_hard_state(hs: HardState | None) -> str:
    """'(t3,n1,7)': term, vote ('-' for none), commit."""
    if hs is None:
        return "-"
    return f"(t{hs.term},{hs.vote if hs.vote is not None else '-'},{hs.commit})"
