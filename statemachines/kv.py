"""The built-in `kv` state machine: a replicated map from str keys to str or bytes values.

Requests are msgpack arrays, `[op, key, *values]`, built by the encode_*
functions below so that clients never hand-roll msgpack:

    commands (replicate):  ["put", key, value]  ["del", key]  ["cas", key, expected, new]
    queries (query):       ["get", key]         ["ls", prefix]

Every result is a dict with "ok". On success it carries what the caller asked
for ("prev": the value before a write, None if the key was absent; "value";
"keys", sorted). On failure it carries "error", one of the *_ERROR codes
below, and for cas "current", the value that made it fail.

A malformed request gets {"ok": False, "error": "bad_request", "message": ...}
instead of an exception: every replica applies the same bytes, so an
exception would stop every apply actor at the same entry, and a log cannot
skip an entry.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, BinaryIO

import msgpack

from sandzmq.state_machine import StateMachine

NO_SUCH_KEY = "no_such_key"
KEY_EXISTS = "key_exists"  # cas expected the key to be absent
VALUE_DIFFERS = "value_differs"  # cas expected another value
BAD_REQUEST = "bad_request"

Value = str | bytes

# op -> the types each argument after the key (or prefix) may have.
_Ops = Mapping[str, tuple[tuple[type, ...], ...]]
_VALUE = (str, bytes)
_EXPECTED = (str, bytes, type(None))
_COMMANDS: _Ops = {"put": (_VALUE,), "del": (), "cas": (_EXPECTED, _VALUE)}
_QUERIES: _Ops = {"get": (), "ls": ()}
_SNAPSHOT_FORMAT = 1


def encode_put(key: str, value: Value) -> bytes:
    """Set `key` to `value`; the result's "prev" is the value it replaced."""
    return _encode(["put", key, value], _COMMANDS)


def encode_delete(key: str) -> bytes:
    """Remove `key`; fails with NO_SUCH_KEY when it is absent, as `rm` does."""
    return _encode(["del", key], _COMMANDS)


def encode_cas(key: str, expected: Value | None, new: Value) -> bytes:
    """Set `key` to `new` only if its value is `expected` (None: only if it is absent)."""
    return _encode(["cas", key, expected, new], _COMMANDS)


def encode_get(key: str) -> bytes:
    """Read `key`'s value."""
    return _encode(["get", key], _QUERIES)


def encode_list(prefix: str = "") -> bytes:
    """List the keys that start with `prefix`, sorted."""
    return _encode(["ls", prefix], _QUERIES)


class KVStateMachine(StateMachine):
    """A dict, changed only by committed commands."""

    def __init__(self) -> None:
        self._data: dict[str, Value] = {}

    def apply(self, command: bytes) -> dict[str, Any]:
        try:
            request = msgpack.unpackb(command)
        except Exception:  # the slow path below says what is wrong
            request = None
        # The fast path, for the one request a metadata service sends most:
        # a well-formed put (the full check below costs more than the put).
        if type(request) is list and len(request) == 3 and request[0] == "put":
            key, value = request[1], request[2]
            if type(key) is str and (type(value) is bytes or type(value) is str):
                data = self._data
                prev = data.get(key)
                data[key] = value
                return {"ok": True, "prev": prev}
        request = _decode(command, _COMMANDS)
        if isinstance(request, dict):
            return request
        op, key, *args = request
        if op == "put":
            prev = self._data.get(key)
            self._data[key] = args[0]
            return {"ok": True, "prev": prev}
        if op == "del":
            if key not in self._data:
                return {"ok": False, "error": NO_SUCH_KEY}
            return {"ok": True, "prev": self._data.pop(key)}
        expected, new = args
        current = self._data.get(key)
        if current == expected:
            self._data[key] = new
            return {"ok": True, "prev": current}
        if expected is None:
            error = KEY_EXISTS
        else:
            error = NO_SUCH_KEY if current is None else VALUE_DIFFERS
        return {"ok": False, "error": error, "current": current}

    def query(self, query: bytes) -> dict[str, Any]:
        request = _decode(query, _QUERIES)
        if isinstance(request, dict):
            return request
        op, key = request
        if op == "ls":
            return {"ok": True, "keys": sorted(k for k in self._data if k.startswith(key))}
        if key not in self._data:
            return {"ok": False, "error": NO_SUCH_KEY}
        return {"ok": True, "value": self._data[key]}

    def snapshot(self, sink: BinaryIO) -> None:
        # A header, then one small msgpack object per pair: neither side ever
        # holds the whole state as a single encoded blob.
        packer = msgpack.Packer()
        sink.write(packer.pack([_SNAPSHOT_FORMAT, len(self._data)]))
        for pair in self._data.items():
            sink.write(packer.pack(pair))

    def restore(self, source: BinaryIO) -> None:
        # Build the new state aside, so that a bad snapshot leaves the old one intact.
        unpacker = msgpack.Unpacker(source)
        data: dict[str, Value] = {}
        try:
            version, count = next(unpacker)
            if version != _SNAPSHOT_FORMAT:
                raise ValueError(f"kv snapshot format {version!r}, expected {_SNAPSHOT_FORMAT}")
            for _ in range(count):
                key, value = next(unpacker)
                data[key] = value
        except StopIteration:
            raise ValueError("kv snapshot is truncated") from None
        self._data = data


def _encode(request: list[Any], ops: _Ops) -> bytes:
    problem = _problem(request, ops)
    if problem:
        raise TypeError(problem)
    return msgpack.packb(request)


def _decode(data: bytes, ops: _Ops) -> list[Any] | dict[str, Any]:
    """Return the request as a list, or the bad_request result that answers it."""
    try:
        request = msgpack.unpackb(data)
    except Exception as exc:  # msgpack signals bad input with many exception types
        return _bad_request(f"not msgpack: {exc or type(exc).__name__}")
    return _bad_request(problem) if (problem := _problem(request, ops)) else request


def _problem(request: Any, ops: _Ops) -> str | None:
    """Say what is wrong with a request's shape and types, or None if nothing is."""
    if not (isinstance(request, list) and request and isinstance(request[0], str) and request[0] in ops):
        return f"expected [op, key, ...] with op one of {', '.join(ops)}"
    op, *args = request
    types = ops[op]
    if len(args) != 1 + len(types):
        return f"{op} takes {1 + len(types)} arguments, got {len(args)}"
    if not isinstance(args[0], str):
        return f"{op}: keys are str, got {type(args[0]).__name__}"
    for position, (arg, accepted) in enumerate(zip(args[1:], types), start=2):
        if not isinstance(arg, accepted):
            names = " or ".join("None" if t is type(None) else t.__name__ for t in accepted)
            return f"{op}: argument {position} must be {names}, got {type(arg).__name__}"
    return None


def _bad_request(message: str) -> dict[str, Any]:
    return {"ok": False, "error": BAD_REQUEST, "message": message}
