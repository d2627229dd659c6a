"""What a decoder may believe: DecodeError, the integer bound, the validators.

Decoding trusts nothing: every decoder checks arity and exact types
(`type(x) is int`, so True is not a term), that every integer is in
[0, MAX_UINT] (so `term + 1` and `first_id + count` always encode, and a
value out of range is refused here rather than adopted and written to disk),
and raises DecodeError, never a stray TypeError or KeyError. What needs the
receiver's state (a term far ahead of its own, an acknowledgement of entries
never sent) is the receiver's to refuse.

The derived codecs (derive.py) inline the scalar checks; these functions are
for columns (checked per column in C: set(map(type, col)), min(col), not per
item in Python) and for the few decoders written by hand (entry payloads).
"""

from __future__ import annotations

from typing import Any

from sandzmq.raft.messages import MAX_INDEX, MAX_TERM


class DecodeError(ValueError):
    """A body that does not have the shape of the message it claims to be.

    The only exception a decoder raises on bad input, so a receive loop needs
    exactly one except clause, and the envelope counts it as `malformed`.
    """


#: The largest integer any message may carry: a term, an index, a request id,
#: a nonce. The same bound as the Raft core's MAX_TERM and MAX_INDEX.
MAX_UINT = MAX_INDEX
assert MAX_TERM == MAX_INDEX

_INT_ONLY = {int}
_BYTES_ONLY = {bytes}


def expect_uint(value: Any, what: str = "value") -> int:
    """An int in [0, MAX_UINT]; bool is refused (msgpack keeps the two apart)."""
    if type(value) is not int or not 0 <= value <= MAX_UINT:
        raise DecodeError(f"{what}: expected an int in [0, 2**62), got {value!r:.40}")
    return value


def expect_int(value: Any, what: str = "value") -> int:
    """An int of either sign; bool is refused."""
    if type(value) is not int:
        raise DecodeError(f"{what}: expected an int, got {value!r:.40}")
    return value


def expect_bool(value: Any, what: str = "value") -> bool:
    """A real bool; 0 and 1 are refused, so a shifted field is caught."""
    if type(value) is not bool:
        raise DecodeError(f"{what}: expected a bool, got {value!r:.40}")
    return value


def expect_str(value: Any, what: str = "value") -> str:
    """A str (msgpack str, decoded as UTF-8)."""
    if type(value) is not str:
        raise DecodeError(f"{what}: expected a str, got {value!r:.40}")
    return value


def expect_bytes(value: Any, what: str = "value") -> bytes:
    """Bytes (msgpack bin)."""
    if type(value) is not bytes:
        raise DecodeError(f"{what}: expected bytes, got {value!r:.40}")
    return value


def expect_list(value: Any, length: int | None = None, what: str = "body") -> list[Any]:
    """A list, of exactly `length` items when given."""
    if type(value) is not list or (length is not None and len(value) != length):
        want = "a list" if length is None else f"a list of {length}"
        raise DecodeError(f"{what}: expected {want}, got {value!r:.60}")
    return value


def uint_column(value: Any, length: int | None = None, what: str = "column") -> list[int]:
    """A list of ints in [0, MAX_UINT] (of `length` items when given)."""
    if type(value) is not list or (length is not None and len(value) != length):
        raise DecodeError(f"{what}: expected a list of {length if length is not None else 'some'} ints")
    if value and (set(map(type, value)) != _INT_ONLY or min(value) < 0 or max(value) > MAX_UINT):
        raise DecodeError(f"{what}: every item must be an int in [0, 2**62)")
    return value


def bytes_column(value: Any, what: str = "column") -> list[bytes]:
    """A list of bytes."""
    if type(value) is not list:
        raise DecodeError(f"{what}: expected a list")
    if value and set(map(type, value)) != _BYTES_ONLY:
        raise DecodeError(f"{what}: every item must be bytes")
    return value


def uniform_or_column(values: list[int]) -> int | list[int]:
    """One int when every value is the same (the usual case: one term, one
    status), else the list: the wire form of a column that rarely varies.
    Checked with count(), in C, over the whole column."""
    if values and values.count(values[0]) == len(values):
        return values[0]
    return values


def expand_column(value: Any, length: int, what: str = "column") -> list[int]:
    """The inverse of uniform_or_column, validated: `length` ints in [0, MAX_UINT]."""
    if type(value) is int:
        if not 0 <= value <= MAX_UINT:
            raise DecodeError(f"{what}: {value!r:.40} is out of range")
        return [value] * length
    return uint_column(value, length, what)
