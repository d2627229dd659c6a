"""The built-in kv state machine: operations, error results, snapshots, determinism."""

from __future__ import annotations

import io
from typing import Any

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sandzmq.statemachines import kv
from sandzmq.statemachines.kv import KVStateMachine, encode_cas, encode_delete, encode_get, encode_list, encode_put

from sandzmq.state_machine import load_state_machine


@pytest.fixture
def store() -> KVStateMachine:
    return KVStateMachine()


def test_put_get_and_prev(store: KVStateMachine) -> None:
    assert store.apply(encode_put("a", "1")) == {"ok": True, "prev": None}
    assert store.apply(encode_put("a", b"2")) == {"ok": True, "prev": "1"}
    assert store.query(encode_get("a")) == {"ok": True, "value": b"2"}
    assert store.query(encode_get("b")) == {"ok": False, "error": kv.NO_SUCH_KEY}


def test_str_and_bytes_values_keep_their_type(store: KVStateMachine) -> None:
    store.apply(encode_put("s", "text"))
    store.apply(encode_put("b", b"\x00\xff"))
    assert store.query(encode_get("s"))["value"] == "text"
    assert store.query(encode_get("b"))["value"] == b"\x00\xff"


def test_delete(store: KVStateMachine) -> None:
    store.apply(encode_put("a", "1"))
    assert store.apply(encode_delete("a")) == {"ok": True, "prev": "1"}
    assert store.apply(encode_delete("a")) == {"ok": False, "error": kv.NO_SUCH_KEY}
    assert store.query(encode_get("a"))["ok"] is False


def test_cas(store: KVStateMachine) -> None:
    assert store.apply(encode_cas("k", None, "v1")) == {"ok": True, "prev": None}
    assert store.apply(encode_cas("k", None, "v2")) == {"ok": False, "error": kv.KEY_EXISTS, "current": "v1"}
    assert store.apply(encode_cas("k", "v0", "v2")) == {"ok": False, "error": kv.VALUE_DIFFERS, "current": "v1"}
    assert store.apply(encode_cas("k", b"v1", "v2"))["error"] == kv.VALUE_DIFFERS  # bytes never equal str
    assert store.apply(encode_cas("k", "v1", "v2")) == {"ok": True, "prev": "v1"}
    assert store.apply(encode_cas("gone", "x", "y")) == {"ok": False, "error": kv.NO_SUCH_KEY, "current": None}
    assert store.query(encode_get("k"))["value"] == "v2"


def test_list_by_prefix_is_sorted(store: KVStateMachine) -> None:
    for key in ["dir/b", "dir/a", "other", "dir/c/d", "di"]:
        store.apply(encode_put(key, "x"))
    assert store.query(encode_list("dir/")) == {"ok": True, "keys": ["dir/a", "dir/b", "dir/c/d"]}
    assert store.query(encode_list())["keys"] == ["di", "dir/a", "dir/b", "dir/c/d", "other"]
    assert store.query(encode_list("zzz"))["keys"] == []


MALFORMED_COMMANDS = {
    "empty": b"",
    "not msgpack": b"\xc1",
    "truncated": encode_put("k", "v")[:-1],
    "trailing bytes": encode_put("k", "v") + b"\x00",
    "a map": msgpack.packb({"op": "put", "key": "k", "value": "v"}),
    "a string": msgpack.packb("put"),
    "empty array": msgpack.packb([]),
    "unknown op": msgpack.packb(["incr", "k"]),
    "op not a string": msgpack.packb([["put"], "k", "v"]),
    "query op as command": encode_get("k"),
    "missing value": msgpack.packb(["put", "k"]),
    "extra argument": msgpack.packb(["del", "k", "v"]),
    "integer key": msgpack.packb(["put", 1, "v"]),
    "bytes key": msgpack.packb(["put", b"k", "v"]),
    "integer value": msgpack.packb(["put", "k", 5]),
    "None as new cas value": msgpack.packb(["cas", "k", None, None]),
    "invalid utf-8 key": b"\x93\xa3put\xa1\xff\xa1v",
}


@pytest.mark.parametrize("command", MALFORMED_COMMANDS.values(), ids=MALFORMED_COMMANDS.keys())
def test_malformed_command_is_an_error_result_and_changes_nothing(store: KVStateMachine, command: bytes) -> None:
    store.apply(encode_put("k", "before"))
    result = store.apply(command)
    assert result["ok"] is False
    assert result["error"] == kv.BAD_REQUEST
    assert isinstance(result["message"], str) and result["message"]
    assert store.query(encode_get("k"))["value"] == "before"
    msgpack.packb(result)  # results travel back to clients


@pytest.mark.parametrize(
    "query",
    [b"", encode_put("k", "v"), msgpack.packb(["get"]), msgpack.packb(["ls", 3])],
    ids=["empty", "command as query", "missing key", "integer prefix"],
)
def test_malformed_query_is_an_error_result(store: KVStateMachine, query: bytes) -> None:
    assert store.query(query)["error"] == kv.BAD_REQUEST


@pytest.mark.parametrize(
    "build",
    [
        lambda: encode_put(1, "v"),  # type: ignore[arg-type]
        lambda: encode_put("k", 1),  # type: ignore[arg-type]
        lambda: encode_put("k", None),  # type: ignore[arg-type]
        lambda: encode_cas("k", 1, "v"),  # type: ignore[arg-type]
        lambda: encode_get(b"k"),  # type: ignore[arg-type]
        lambda: encode_list(None),  # type: ignore[arg-type]
    ],
)
def test_encoders_reject_wrong_types(build: Any) -> None:
    with pytest.raises(TypeError):
        build()


def snapshot_bytes(store: KVStateMachine) -> bytes:
    sink = io.BytesIO()
    store.snapshot(sink)
    return sink.getvalue()


def restored(data: bytes) -> KVStateMachine:
    store = KVStateMachine()
    store.restore(io.BytesIO(data))
    return store


def test_snapshot_round_trip(store: KVStateMachine) -> None:
    for i in range(100):
        store.apply(encode_put(f"k{i:03}", f"v{i}" if i % 2 else bytes([i])))
    store.apply(encode_delete("k050"))
    copy = restored(snapshot_bytes(store))
    assert copy.query(encode_list()) == store.query(encode_list())
    for i in range(100):
        assert copy.query(encode_get(f"k{i:03}")) == store.query(encode_get(f"k{i:03}"))
    assert snapshot_bytes(copy) == snapshot_bytes(store)


def test_empty_snapshot_round_trip(store: KVStateMachine) -> None:
    assert restored(snapshot_bytes(store)).query(encode_list())["keys"] == []


def test_restore_replaces_the_old_state(store: KVStateMachine) -> None:
    store.apply(encode_put("old", "x"))
    other = KVStateMachine()
    other.apply(encode_put("new", "y"))
    store.restore(io.BytesIO(snapshot_bytes(other)))
    assert store.query(encode_list())["keys"] == ["new"]


@pytest.mark.parametrize(
    "data",
    [b"", msgpack.packb([99, 0]), msgpack.packb([1, 2]) + msgpack.packb(["a", "b"])],
    ids=["empty", "unknown format", "truncated"],
)
def test_bad_snapshot_fails_and_keeps_the_state(store: KVStateMachine, data: bytes) -> None:
    store.apply(encode_put("keep", "me"))
    with pytest.raises(ValueError):
        store.restore(io.BytesIO(data))
    assert store.query(encode_get("keep"))["value"] == "me"


def test_kv_is_the_builtin_named_kv() -> None:
    assert isinstance(load_state_machine("kv", {}), KVStateMachine)


keys = st.sampled_from(["a", "b", "c", "dir/x", "dir/y"])
values = st.one_of(st.text(max_size=4), st.binary(max_size=4))
operations = st.one_of(
    st.tuples(st.just("put"), keys, values),
    st.tuples(st.just("del"), keys),
    st.tuples(st.just("cas"), keys, st.one_of(st.none(), values), values),
)


@given(st.lists(operations, max_size=40))
def test_behaves_like_a_dict_and_replicas_agree(ops: list[tuple[Any, ...]]) -> None:
    """Two replicas fed the same commands give the same results and the same snapshot."""
    model: dict[str, Any] = {}
    first, second = KVStateMachine(), KVStateMachine()
    for op in ops:
        if op[0] == "put":
            command, expected_ok = encode_put(op[1], op[2]), True
            model[op[1]] = op[2]
        elif op[0] == "del":
            command, expected_ok = encode_delete(op[1]), op[1] in model
            model.pop(op[1], None)
        else:
            _, key, expected, new = op
            command, expected_ok = encode_cas(key, expected, new), model.get(key) == expected
            if expected_ok:
                model[key] = new
        result = first.apply(command)
        assert result == second.apply(command)
        assert result["ok"] is expected_ok
    assert first.query(encode_list())["keys"] == sorted(model)
    for key, value in model.items():
        assert first.query(encode_get(key))["value"] == value
    assert snapshot_bytes(first) == snapshot_bytes(second)
    assert restored(snapshot_bytes(first)).query(encode_list())["keys"] == sorted(model)
