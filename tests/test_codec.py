"""sandzmq.protocol's body codecs: every registered message round-trips, and
bad bodies raise DecodeError and nothing else.

The codecs are derived from the message classes (protocol/derive.py), so
two property tests cover every registered type at once, whatever is declared
later: a round trip from values drawn per field spec, and every mutation of a
good body. The hand-picked refusals below pin the checks that matter most
(exact types, [0, 2**62), entry columns, the per-message extra checks).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from message_strategies import MAX, U64, any_message, entry_runs, message_of, node_ids, uints
from sandzmq.protocol import (
    REGISTRY,
    ApplyResults,
    ClientReply,
    ClientSubmit,
    CommandPayload,
    DecodeError,
    LogState,
    PeerHello,
    checks,
    command_fields,
    decode_payload,
    derive,
    describe,
    encode_command,
)
from sandzmq.protocol.logdata import (
    Entries,
    decode_entries,
    decode_hard_state,
    encode_entries,
    encode_hard_state,
)
from sandzmq.protocol.registry import CODECS
from sandzmq.raft.messages import (
    MESSAGE_TYPES,
    SNAPSHOT_MESSAGE_TYPES,
    AppendEntries,
    AppendEntriesResponse,
    Entry,
    EntryColumns,
    EntryKind,
    HardState,
    Heartbeat,
    HeartbeatResponse,
    Message,
    RequestVote,
    RequestVoteResponse,
    entry_rows,
)

TAG = {cls: REGISTRY.by_cls(cls).tag for cls in MESSAGE_TYPES}


def encode_message(msg: object) -> tuple[str, Any]:
    mt = REGISTRY.by_cls(type(msg))
    if mt is None:
        raise TypeError(f"no wire encoding for {type(msg).__name__}")
    return mt.tag, mt.encode(msg)


def decode_message(tag: object, body: object) -> Any:
    mt = REGISTRY.by_tag(tag)
    if mt is None:
        raise DecodeError(f"unknown tag {tag!r:.40}")
    return mt.decode(body)


def wire(body: object) -> object:
    """What the receiver sees: the body after a real msgpack round trip."""
    return msgpack.unpackb(msgpack.packb(body))


# Any value msgpack can carry, to throw at decoders.
msgpack_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=U64)
    | st.floats(allow_nan=False)
    | st.text(max_size=8)
    | st.binary(max_size=8),
    lambda children: st.lists(children, max_size=10) | st.dictionaries(st.text(max_size=4), children, max_size=4),
    max_leaves=30,
)


# -- coverage, tags ------------------------------------------------------------------


def test_every_core_message_is_declared() -> None:
    assert set(MESSAGE_TYPES) <= set(CODECS)
    assert set(SNAPSHOT_MESSAGE_TYPES) <= set(CODECS)
    for mt in REGISTRY.types():
        assert type(mt.tag) is str and mt.tag[:2] in ("p.", "c.", "l.", "a."), mt.tag


def test_tags_are_pinned() -> None:
    """Changing a tag breaks the wire between versions: bump PROTOCOL_VERSION
    and update this table on purpose, never by accident."""
    assert {mt.cls.__name__: mt.tag for mt in REGISTRY.types()} == {
        "RequestVote": "p.vote",
        "RequestVoteResponse": "p.vote_reply",
        "AppendEntries": "p.append",
        "AppendEntriesResponse": "p.append_reply",
        "Heartbeat": "p.beat",
        "HeartbeatResponse": "p.beat_reply",
        "InstallSnapshot": "p.snap",
        "InstallSnapshotResponse": "p.snap_reply",
        "PeerHello": "p.hello",
        "ClientSubmit": "c.submit",
        "ClientQuery": "c.query",
        "ClientReply": "c.reply",
        "StatusRequest": "c.status",
        "StatusReply": "c.status_reply",
        "ClusterHello": "c.hello",
        "ClusterHelloReply": "c.hello_reply",
        "LogWrite": "l.write",
        "LogDurable": "l.durable",
        "LogSync": "l.sync",
        "LogGap": "l.gap",
        "LogState": "l.state",
        "LogIdentity": "l.identity",
        "ApplyBatch": "a.batch",
        "ApplyResults": "a.results",
        "ApplyState": "a.state",
        "LocalQuery": "a.query",
        "LocalQueryResult": "a.query_result",
    }


def test_body_layouts_are_pinned() -> None:
    """The body is the fields in declaration order; reordering a class's
    fields changes the wire (bump PROTOCOL_VERSION)."""
    ae = AppendEntries("a", "b", 5, 9, 4, [Entry(10, 5, b"x"), Entry(11, 5, b"y")], 3)
    assert encode_message(ae) == ("p.append", ["a", "b", 5, 9, 4, 5, 0, [b"x", b"y"], 3])
    assert encode_message(Heartbeat("a", "b", 5, 3, 1)) == ("p.beat", ["a", "b", 5, 3, 1])
    assert encode_message(ClientSubmit(7, [b"p"])) == ("c.submit", [7, [b"p"]])
    assert encode_message(ApplyResults([4, 5], [2, 2], [0, 0], [None, 1], 5)) == (
        "a.results",
        [[4, 5], 2, 0, [None, 1], 5],
    )


# -- round trips -----------------------------------------------------------------


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(any_message)
def test_every_registered_message_type_round_trips(msg: Any) -> None:
    tag, body = encode_message(msg)
    out = decode_message(tag, wire(body))
    assert type(out) is type(msg)
    assert out == msg
    assert describe(out) == describe(msg) and "\n" not in describe(msg)


@given(st.sampled_from(MESSAGE_TYPES).flatmap(message_of))
def test_append_entries_indexes_follow_prev_index(msg: Message) -> None:
    out = decode_message(*map(wire, encode_message(msg)))
    if isinstance(msg, AppendEntries):
        assert [e.index for e in out.entries] == list(range(msg.prev_index + 1, msg.prev_index + 1 + len(msg.entries)))
        assert all(type(e.kind) is EntryKind for e in out.entries)
        assert out.sizes == ([len(e.data) for e in msg.entries] if msg.entries else None)


def test_uniform_columns_travel_as_one_int() -> None:
    msg = AppendEntries("a", "b", 5, 9, 4, [Entry(10 + i, 5, b"x" * i) for i in range(4)], 3)
    _, body = encode_message(msg)
    assert body[5:7] == [5, 0]
    mixed = AppendEntries("a", "b", 5, 9, 4, [Entry(10, 4, b"", EntryKind.NOOP), Entry(11, 5, b"")], 3)
    _, body = encode_message(mixed)
    assert body[5] == [4, 5] and body[6] == [1, 0]


@given(st.integers(min_value=1, max_value=2**40).flatmap(lambda first: entry_runs(first - 1)))
def test_entries_block_round_trip(entries: list[Entry]) -> None:
    assert decode_entries(wire(encode_entries(entries))) == entries


@given(st.builds(HardState, uints, st.none() | node_ids, uints))
def test_hard_state_round_trip(hs: HardState) -> None:
    assert decode_hard_state(wire(encode_hard_state(hs))) == hs


def test_encoder_refuses_non_consecutive_entries() -> None:
    with pytest.raises(ValueError):
        encode_message(AppendEntries("a", "b", 1, 5, 1, [Entry(7, 1, b"")]))
    with pytest.raises(ValueError):
        encode_message(AppendEntries("a", "b", 1, 5, 1, [Entry(6, 1, b""), Entry(8, 1, b"")]))
    with pytest.raises(ValueError):
        encode_entries([Entry(3, 1), Entry(5, 1)])


def test_unknown_class_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        encode_message(Message("a", "b", 1))  # the base class has no tag


# -- refusals --------------------------------------------------------------------

GOOD = {
    "p.vote": ["a", "b", 3, 10, 2, False],
    "p.vote_reply": ["a", "b", 3, True, False],
    "p.append": ["a", "b", 3, 10, 2, 3, 0, [b"x", b"y"], 9],
    "p.append_reply": ["a", "b", 3, True, 12, 0, 0],
    "p.beat": ["a", "b", 3, 9, 0],
    "p.beat_reply": ["a", "b", 3, 0],
    "p.snap": ["a", "b", 3, 7, 2, 0, b"chunk", False],
    "p.snap_reply": ["a", "b", 3, 7, 2, 5, False, False],
}


def test_good_bodies_decode() -> None:
    for tag, body in GOOD.items():
        assert isinstance(decode_message(tag, body), REGISTRY.by_tag(tag).cls)


@pytest.mark.parametrize(
    ("tag", "body"),
    [
        # wrong arity / not a list
        ("p.vote", ["a", "b", 3, 10, 2]),
        ("p.vote", ["a", "b", 3, 10, 2, False, 1]),
        ("p.append", None),
        ("p.append", {"src": "a"}),
        ("p.beat_reply", "abc"),
        ("p.snap", ["a", "b", 3, 7, 2, -1, b"x", False]),
        ("p.snap", ["a", "b", 3, 7, 2, 0, "text", False]),
        ("p.snap_reply", ["a", "b", 3, 7, 2, 5, 1, False]),
        # negative term and indexes
        ("p.vote", ["a", "b", -1, 10, 2, False]),
        ("p.append", ["a", "b", 3, -1, 2, 3, 0, [], 9]),
        ("p.append_reply", ["a", "b", 3, True, -5, 0, 0]),
        ("p.append", ["a", "b", 3, 10, 2, [1, -1], 0, [b"x", b"y"], 9]),
        ("p.append", ["a", "b", 3, 10, 2, -1, 0, [b"x"], 9]),
        # bool where an int is meant, and int where a bool is meant
        ("p.vote", ["a", "b", True, 10, 2, False]),
        ("p.vote", ["a", "b", 3, 10, 2, 0]),
        ("p.vote_reply", ["a", "b", 3, 1, False]),
        ("p.append_reply", ["a", "b", 3, 1, 12, 0, 0]),
        ("p.beat", ["a", "b", 3, False, 0]),
        ("p.append", ["a", "b", 3, 10, 2, [True, 3], 0, [b"x", b"y"], 9]),
        ("p.append", ["a", "b", 3, 10, 2, 3, True, [b"x"], 9]),
        ("p.append", ["a", "b", 3, 10, 2, 3, [0, False], [b"x", b"y"], 9]),
        ("p.append", ["a", "b", 3, 10, 2, 3, 0, [b"x"], True]),
        # wrong types
        ("p.vote", [1, "b", 3, 10, 2, False]),
        ("p.vote", ["a", b"b", 3, 10, 2, False]),
        ("p.beat", ["a", "b", 3, 1.5, 0]),
        ("p.append", ["a", "b", 3, 10, 2, 3, 0, ["text"], 9]),
        ("p.append", ["a", "b", 3, 10, 2, 3, 0, [b"x", None], 9]),
        ("p.append", ["a", "b", 3, 10, 2, 3, 0, b"x", 9]),
        ("p.append", ["a", "b", 3, 10, 2, "3", 0, [], 9]),
        # columns that do not line up, unknown entry kinds
        ("p.append", ["a", "b", 3, 10, 2, [3], 0, [b"x", b"y"], 9]),
        ("p.append", ["a", "b", 3, 10, 2, 3, [0], [b"x", b"y"], 9]),
        ("p.append", ["a", "b", 3, 10, 2, [3], [0], [], 9]),
        ("p.append", ["a", "b", 3, 10, 2, 3, 7, [b"x"], 9]),
        ("p.append", ["a", "b", 3, 10, 2, 3, [0, 9], [b"x", b"y"], 9]),
        # unknown tags (the old int tags among them)
        (99, []),
        (0, GOOD["p.vote"]),
        (True, GOOD["p.vote_reply"]),
        ("p.votes", GOOD["p.vote"]),
        (None, []),
        (["p.vote"], []),
    ],
)
def test_bad_bodies_raise_decode_error(tag: object, body: object) -> None:
    with pytest.raises(DecodeError):
        decode_message(tag, body)


def test_a_refusal_names_the_field() -> None:
    with pytest.raises(DecodeError, match=r"RequestVote\.last_term: expected an int in \[0, 2\*\*62\), got True"):
        decode_message("p.vote", ["a", "b", 3, 10, True, False])
    with pytest.raises(DecodeError, match=r"PeerHello\.state: expected an int in \[0, 3\]"):
        decode_message("p.hello", ["a", "b", True, 4, "", 0, 0, 0])


@settings(max_examples=500)
@given(st.sampled_from(sorted(REGISTRY.tags())), msgpack_values)
def test_arbitrary_bodies_raise_only_decode_error(tag: str, body: object) -> None:
    try:
        msg = decode_message(tag, body)
    except DecodeError:
        return
    assert type(msg) is REGISTRY.by_tag(tag).cls


def _mutations(body: Any) -> st.SearchStrategy[Any]:
    """One change to a good body, anywhere in it: a value replaced by any
    msgpack value or an extreme int, an item removed, duplicated or added,
    a list shortened or emptied."""
    paths: list[tuple[int, ...]] = []

    def walk(node: Any, path: tuple[int, ...]) -> None:
        paths.append(path)
        if type(node) is list:
            for i, v in enumerate(node):
                walk(v, (*path, i))

    walk(body, ())

    @st.composite
    def mutate(draw: st.DrawFn) -> Any:
        out = copy.deepcopy(body)
        path = draw(st.sampled_from(paths))
        parent = out
        for i in path[:-1]:
            parent = parent[i]
        target = parent[path[-1]] if path else out
        how = draw(st.sampled_from(["replace", "extreme", "remove", "duplicate", "append", "empty"]))
        if how in ("replace", "extreme") or type(target) is not list and how != "remove":
            value = draw(msgpack_values if how == "replace" else st.sampled_from([U64, 2**63, 2**62, MAX, -1, 0, True]))
            if not path:
                return value
            parent[path[-1]] = value
        elif how == "remove" and path:
            del parent[path[-1]]
        elif how == "duplicate" and type(target) is list and target:
            target.append(copy.deepcopy(target[draw(st.integers(0, len(target) - 1))]))
        elif how == "append" and type(target) is list:
            target.append(draw(msgpack_values))
        elif type(target) is list:
            target.clear()
        return out

    return mutate()


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_every_mutated_body_raises_only_decode_error(data: st.DataObject) -> None:
    msg = data.draw(any_message)
    tag, body = encode_message(msg)
    mutated = data.draw(_mutations(wire(body)))
    try:
        out = decode_message(tag, mutated)
    except DecodeError:
        return
    assert type(out) is type(msg)
    assert REGISTRY.by_cls(type(out)).encode(out) is not None  # what decodes re-encodes


@settings(max_examples=500)
@given(st.sampled_from(sorted(GOOD)), st.data())
def test_one_field_replaced_raises_only_decode_error(tag: str, data: st.DataObject) -> None:
    body = list(GOOD[tag])
    i = data.draw(st.integers(min_value=0, max_value=len(body) - 1))
    body[i] = data.draw(msgpack_values)
    try:
        msg = decode_message(tag, body)
    except DecodeError:
        return
    assert type(msg) is REGISTRY.by_tag(tag).cls


@given(msgpack_values)
def test_entries_and_hard_state_refuse_only_with_decode_error(body: object) -> None:
    for decode in (decode_entries, decode_hard_state):
        with contextlib.suppress(DecodeError):
            decode(body)


def test_validators() -> None:
    assert checks.expect_uint(0) == 0
    assert checks.expect_int(-3) == -3
    assert checks.expect_bool(False) is False
    assert checks.expect_str("x") == "x"
    assert checks.expect_bytes(b"x") == b"x"
    assert checks.expect_list([1, 2], 2) == [1, 2]
    for check, bad in [
        (checks.expect_uint, -1),
        (checks.expect_uint, True),
        (checks.expect_int, False),
        (checks.expect_bool, 1),
        (checks.expect_str, b"x"),
        (checks.expect_bytes, "x"),
        (checks.expect_list, (1,)),
    ]:
        with pytest.raises(DecodeError):
            check(bad)
    with pytest.raises(DecodeError):
        checks.expect_list([1], 2)


# -- the derivation itself -----------------------------------------------------------


def test_a_field_whose_type_says_too_little_must_get_a_spec() -> None:
    @dataclasses.dataclass
    class Odd:
        entries: list[Entry]

    with pytest.raises(TypeError, match="Odd.entries"):
        derive.derive(Odd)
    with pytest.raises(TypeError, match="no field"):
        derive.derive(Heartbeat, nope=derive.UInt())
    assert derive.derive(Odd, entries=Entries()).decode([[1, 1, 0, [b"a"]]]).entries == [Entry(1, 1, b"a")]


def test_the_generated_code_is_readable() -> None:
    source = CODECS[Heartbeat].source
    assert "def encode(m):" in source and "def decode(b):" in source
    assert "return [m.src, m.dst, m.term, m.commit, m.context]" in source


# -- the node's columnar client and apply messages ----------------------------


def test_node_column_messages_round_trip() -> None:
    from sandzmq.transport import Envelope

    envelope = Envelope("c")
    for message in (
        ClientSubmit(7, [b"a", b"bc"]),
        ClientReply.of([(1, 0, {"ok": True}), (5, 2, None)]),
        ApplyResults.of([(3, 2, 0, "x"), (4, 2, 3, "error")], 4),
        ApplyResults.of([(3, 1, 0, "x"), (4, 2, 0, "y")], 9),
        ApplyResults.of([], 9),
    ):
        assert envelope.decode(envelope.encode(message)) == message


@pytest.mark.parametrize(
    ("tag", "body"),
    [
        ("c.submit", [1, [b"a", "str"]]),
        ("c.submit", [-1, [b"a"]]),
        ("c.submit", [1, b"a"]),
        ("c.reply", [[1, 2], [0], ["x", "y"]]),
        ("c.reply", [[1, True], [0, 0], ["x", "y"]]),
        ("c.reply", [[1, -2], [0, 0], ["x", "y"]]),
        ("a.results", [[3], 1, 0, ["x", "y"], 4]),
        ("a.results", [[3], -1, 0, ["x"], 4]),
        ("a.results", [[3, 4], [1], 0, ["x", "y"], 4]),
        ("a.results", [[3], 1, 0.5, ["x"], 4]),
        ("a.results", [[3], 1, 0, ["x"]]),
        ("l.state", [0, 1, 1, [1, None, 0], 1, 0, 0, 0, "x" * 65, 0]),
        ("l.state", [0, 1, 1, [1, None], 1, 0, 0, 0, "", 0]),
        ("l.write", [1, [1, 1, 0, [b"a"]], [1, 7, 0], True, 0]),
        ("l.write", [1, [1, 1, 0, [b"a"]], None, 1, 0]),
        ("p.hello", ["a", "b", True, 4, "", 0, 0, 0]),
        ("p.hello", ["a", "b", 1, 0, "", 0, 0, 0]),
    ],
)
def test_bad_node_bodies_are_dropped_as_malformed(tag: str, body: object) -> None:
    from sandzmq.transport import PROTOCOL_VERSION, Envelope

    envelope = Envelope("c")
    assert envelope.decode(msgpack.packb([PROTOCOL_VERSION, "c", tag, body])) is None
    assert envelope.drops.malformed == 1


def test_entry_columns_read_like_a_list_of_entries() -> None:
    entries = [Entry(4, 2, b"a"), Entry(5, 2, b"", EntryKind.NOOP), Entry(6, 3, b"c")]
    columns = decode_entries(wire(encode_entries(entries)))
    assert isinstance(columns, EntryColumns)
    assert len(columns) == 3 and columns == entries and entries == columns
    assert columns[0] == entries[0] and columns[-1] == entries[-1] and columns[1:] == entries[1:]
    assert list(columns.rows()) == list(entry_rows(entries)) == [(4, 2, 0, b"a"), (5, 2, 1, b""), (6, 3, 0, b"c")]
    assert decode_entries(wire(encode_entries(columns))) == entries  # re-encodes from the columns
    with pytest.raises(IndexError):
        columns[3]
    assert decode_entries(wire(encode_entries([]))) == []


@pytest.mark.parametrize(
    "body",
    [
        [1, 1, 7, [b"a"]],
        [1, 1, [0, 9], [b"a", b"b"]],
        [0, 1, 0, [b"a"]],
        [1, [1], 0, [b"a", b"b"]],
        [1, 1, 0, [b"a", 3]],
    ],
)
def test_bad_entry_columns_raise_decode_error(body: list[object]) -> None:
    with pytest.raises(DecodeError):
        decode_entries(body)


# -- ranges (issue 8: what decodes must also be believable) ----------------------


@pytest.mark.parametrize("value", [2**62, 2**63, 2**64 - 1])
def test_every_peer_integer_above_2_62_is_refused(value: int) -> None:
    """A term or index at 2**64 - 1 decoded fine, was adopted and written to
    disk, and the next election's term + 1 could not be encoded."""
    bodies = {
        RequestVote: ["a", "b", value, 1, 1, False],
        Heartbeat: ["a", "b", value, 0, 0],
        AppendEntriesResponse: ["a", "b", 1, True, value, 0, 0],
        AppendEntries: ["a", "b", 1, value, 0, 1, 0, [b"x"], 0],
        RequestVoteResponse: ["a", "b", value, True, False],
        HeartbeatResponse: ["a", "b", 1, value],
    }
    for cls, body in bodies.items():
        with pytest.raises(DecodeError):
            decode_message(TAG[cls], body)
    with pytest.raises(DecodeError):  # an entry term
        decode_message(TAG[AppendEntries], ["a", "b", 1, 0, 0, value, 0, [b"x"], 0])
    with pytest.raises(DecodeError):
        checks.expect_uint(value)


def test_an_append_whose_last_index_would_pass_2_62_is_refused() -> None:
    with pytest.raises(DecodeError):
        decode_message(TAG[AppendEntries], ["a", "b", 1, MAX - 1, 1, 1, 0, [b"x", b"y"], 0])
    decode_message(TAG[AppendEntries], ["a", "b", 1, MAX - 2, 1, 1, 0, [b"x", b"y"], 0])


def test_a_batch_whose_terms_decrease_is_refused() -> None:
    """The write-ahead log refuses such a batch; the core must never take it."""
    with pytest.raises(DecodeError):
        decode_message(TAG[AppendEntries], ["a", "b", 3, 0, 0, [2, 1], 0, [b"x", b"y"], 0])
    m = decode_message(TAG[AppendEntries], ["a", "b", 3, 0, 0, [1, 3], 0, [b"x", b"y"], 0])
    assert [e.term for e in m.entries] == [1, 3]


def test_a_client_submit_whose_request_ids_pass_2_62_is_refused() -> None:
    """Replies name every request id: one past 2**64 - 1 could not be encoded."""
    from sandzmq.transport import PROTOCOL_VERSION, Envelope

    env = Envelope("c")
    frame = msgpack.packb([PROTOCOL_VERSION, "c", "c.submit", [MAX - 1, [b"a", b"b", b"c"]]])
    assert env.decode(frame) is None and env.drops.malformed == 1
    ok = msgpack.packb([PROTOCOL_VERSION, "c", "c.submit", [MAX - 3, [b"a", b"b", b"c"]]])
    assert isinstance(env.decode(ok), ClientSubmit)


def test_bounded_fields() -> None:
    hs = [1, None, 0]
    assert isinstance(decode_message("l.state", [0, 1, 1, hs, 1, 0, 0, 0, "x" * 64, 0]), LogState)
    assert isinstance(decode_message("p.hello", ["a", "b", False, 3, "x" * 64, 0, 0, 0]), PeerHello)
    with pytest.raises(DecodeError):
        decode_message("p.hello", ["a", "b", False, 3, "x" * 65, 0, 0, 0])


# -- describe ----------------------------------------------------------------------


def test_describe_reads_like_a_protocol_trace() -> None:
    from sandzmq.protocol import ApplyBatch, LogDurable, LogWrite

    ae = AppendEntries("n1", "n2", 3, 7, 2, [Entry(8 + i, 3, b"x") for i in range(3)], 7)
    assert describe(ae) == "n1->n2 AppendEntries t3 prev=(7,t2) entries=8..10(t3) commit=7"
    assert describe(AppendEntries("n1", "n2", 3, 7, 2, [Entry(8, 3, b"", EntryKind.NOOP)], 7)) == (
        "n1->n2 AppendEntries t3 prev=(7,t2) entries=8(t3,noop) commit=7"
    )
    write = LogWrite(12, [Entry(8 + i, 3, b"x") for i in range(3)], HardState(3, "n1", 7))
    assert describe(write) == "raft->log LogWrite #12 entries=8..10(t3) hs=(t3,n1,7) sync"
    assert describe(LogDurable(12, 10, 3, 1)) == "log->raft LogDurable write_id=12 last_index=10 last_term=3 epoch=1"
    assert describe(ApplyBatch([Entry(8, 3, b"x")], True)) == "raft->apply ApplyBatch entries=8(t3) results"
    assert describe(RequestVote("n1", "n2", 4, 9, 3, True)) == "n1->n2 RequestVote t4 pre-vote last=(9,t3)"
    assert describe(ClientSubmit(100, [b"a", b"bc"])) == "client->raft ClientSubmit #100..101 (2 requests, 3B)"
    assert describe(ClientReply.of([(100, 0, None), (101, 0, 1)])) == "raft->client ClientReply #100..101 OKx2"
    assert describe(object()).startswith("<object")  # anything else: its repr


_PAYLOAD_PARTS = st.one_of(st.integers(-1, U64), st.booleans(), st.binary(max_size=4), st.text(max_size=2), st.none())
_NEAR_COMMANDS = st.tuples(
    st.sampled_from([0, 1, False, -1]),
    st.one_of(st.binary(max_size=4), st.text(max_size=2)),
    st.one_of(st.integers(-1, U64), st.booleans()),
    st.one_of(st.integers(-1, U64), st.booleans()),
    st.one_of(st.binary(max_size=4), st.none()),
).map(list)


@settings(max_examples=400, deadline=None)
@given(st.one_of(_NEAR_COMMANDS, st.lists(_PAYLOAD_PARTS, max_size=6)))
def test_the_apply_fast_path_agrees_with_decode_payload(parts: list[Any]) -> None:
    """command_fields (the apply loop's fast path) takes exactly the command
    payloads decode_payload takes, with the same fields: a payload it lets
    through unchecked would be applied on every node."""
    data = msgpack.packb(parts)
    (fields,) = command_fields([data])
    try:
        payload = decode_payload(data)
    except DecodeError:
        payload = None
    if isinstance(payload, CommandPayload):
        assert fields == [0, payload.client_id, payload.seq, payload.first_incomplete, payload.command]
    else:
        assert fields is None


def test_the_apply_fast_path_refuses_what_is_not_msgpack() -> None:
    assert command_fields(
        [b"\xc1", encode_command(b"c", 2**62, 0, b"x"), encode_command(b"c", 3, 1, b"x")]  # 2**62: past the bound
    ) == [None, None, [0, b"c", 3, 1, b"x"]]
