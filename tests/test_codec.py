"""transport/codec.py: every peer message round-trips, and bad bodies raise
DecodeError and nothing else."""
from __future__ import annotations

import contextlib

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sandzmq.raft.messages import (
    MESSAGE_TYPES,
    AppendEntries,
    AppendEntriesResponse,
    Entry,
    EntryKind,
    HardState,
    Heartbeat,
    HeartbeatResponse,
    Message,
    RequestVote,
    RequestVoteResponse,
)
from sandzmq.transport import codec
from sandzmq.transport.codec import (
    PEER_CODECS,
    PEER_TAGS,
    DecodeError,
    decode_entries,
    decode_hard_state,
    decode_message,
    encode_entries,
    encode_hard_state,
    encode_message,
)

U64 = 2**64 - 1
uints = st.integers(min_value=0, max_value=codec.MAX_UINT)
small_uints = st.integers(min_value=0, max_value=2**40)
node_ids = st.text(min_size=1, max_size=12)
kinds = st.sampled_from(list(EntryKind))


def header() -> st.SearchStrategy[tuple[str, str, int]]:
    return st.tuples(node_ids, node_ids, uints)


@st.composite
def entry_runs(draw: st.DrawFn, prev_index: int) -> list[Entry]:
    """Consecutive entries after prev_index; terms and kinds sometimes
    uniform (sent as one int) and sometimes mixed (sent as a column)."""
    n = draw(st.integers(min_value=0, max_value=20))
    uniform = draw(st.booleans())
    term0 = draw(uints)
    kind0 = draw(kinds)
    out = []
    terms = [term0] * n if uniform else sorted(draw(uints) for _ in range(n))  # terms never decrease
    for i in range(n):
        kind = kind0 if uniform else draw(kinds)
        out.append(Entry(prev_index + 1 + i, terms[i], draw(st.binary(max_size=64)), kind))
    return out


@st.composite
def append_entries(draw: st.DrawFn) -> AppendEntries:
    src, dst, term = draw(header())
    prev_index = draw(st.integers(min_value=0, max_value=codec.MAX_UINT - 20))
    return AppendEntries(
        src, dst, term, prev_index, draw(uints), draw(entry_runs(prev_index)), draw(uints)
    )


peer_messages: st.SearchStrategy[Message] = st.one_of(
    st.builds(RequestVote, node_ids, node_ids, uints, uints, uints, st.booleans()),
    st.builds(RequestVoteResponse, node_ids, node_ids, uints, st.booleans(), st.booleans()),
    append_entries(),
    st.builds(AppendEntriesResponse, node_ids, node_ids, uints, st.booleans(), uints, uints, uints),
    st.builds(Heartbeat, node_ids, node_ids, uints, uints, uints),
    st.builds(HeartbeatResponse, node_ids, node_ids, uints, uints),
)

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


def wire(body: object) -> object:
    """What the receiver sees: the body after a real msgpack round trip."""
    return msgpack.unpackb(msgpack.packb(body))


# -- tags and coverage ---------------------------------------------------------

def test_every_message_type_has_a_codec() -> None:
    assert set(PEER_CODECS) == set(MESSAGE_TYPES)
    assert set(PEER_TAGS) == set(MESSAGE_TYPES)


def test_tags_are_pinned() -> None:
    """Changing a tag breaks the wire between versions: bump PROTOCOL_VERSION
    and update this table on purpose, never by accident."""
    assert {cls.__name__: tag for cls, tag in PEER_TAGS.items()} == {
        "RequestVote": 0,
        "RequestVoteResponse": 1,
        "AppendEntries": 2,
        "AppendEntriesResponse": 3,
        "Heartbeat": 4,
        "HeartbeatResponse": 5,
    }


# -- round trips ---------------------------------------------------------------

@settings(max_examples=500)
@given(peer_messages)
def test_round_trip(msg: Message) -> None:
    tag, body = encode_message(msg)
    assert tag == PEER_TAGS[type(msg)]
    assert decode_message(tag, wire(body)) == msg


@given(append_entries())
def test_append_entries_indexes_follow_prev_index(msg: AppendEntries) -> None:
    out = decode_message(*map(wire, encode_message(msg)))
    assert isinstance(out, AppendEntries)
    assert [e.index for e in out.entries] == list(range(msg.prev_index + 1, msg.prev_index + 1 + len(msg.entries)))
    assert all(type(e.kind) is EntryKind for e in out.entries)


def test_uniform_columns_travel_as_one_int() -> None:
    msg = AppendEntries("a", "b", 5, 9, 4, [Entry(10 + i, 5, b"x" * i) for i in range(4)], 3)
    _, body = encode_message(msg)
    assert body[6:8] == [5, 0]
    mixed = AppendEntries("a", "b", 5, 9, 4, [Entry(10, 4, b"", EntryKind.NOOP), Entry(11, 5, b"")], 3)
    _, body = encode_message(mixed)
    assert body[6] == [4, 5] and body[7] == [1, 0]


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


# -- refusals ------------------------------------------------------------------

GOOD = {
    0: ["a", "b", 3, 10, 2, False],
    1: ["a", "b", 3, True, False],
    2: ["a", "b", 3, 10, 2, 9, 3, 0, [b"x", b"y"]],
    3: ["a", "b", 3, True, 12, 0, 0],
    4: ["a", "b", 3, 9, 0],
    5: ["a", "b", 3, 0],
}


def test_good_bodies_decode() -> None:
    for tag, body in GOOD.items():
        assert isinstance(decode_message(tag, body), MESSAGE_TYPES[tag])


@pytest.mark.parametrize(
    ("tag", "body"),
    [
        # wrong arity / not a list
        (0, ["a", "b", 3, 10, 2]),
        (0, ["a", "b", 3, 10, 2, False, 1]),
        (2, None),
        (2, {"src": "a"}),
        (5, "abc"),
        # negative term and indexes
        (0, ["a", "b", -1, 10, 2, False]),
        (2, ["a", "b", 3, -1, 2, 9, 3, 0, []]),
        (3, ["a", "b", 3, True, -5, 0, 0]),
        (2, ["a", "b", 3, 10, 2, 9, [1, -1], 0, [b"x", b"y"]]),
        (2, ["a", "b", 3, 10, 2, 9, -1, 0, [b"x"]]),
        # bool where an int is meant, and int where a bool is meant
        (0, ["a", "b", True, 10, 2, False]),
        (0, ["a", "b", 3, 10, 2, 0]),
        (1, ["a", "b", 3, 1, False]),
        (3, ["a", "b", 3, 1, 12, 0, 0]),
        (4, ["a", "b", 3, False, 0]),
        (2, ["a", "b", 3, 10, 2, 9, [True, 3], 0, [b"x", b"y"]]),
        (2, ["a", "b", 3, 10, 2, 9, 3, True, [b"x"]]),
        (2, ["a", "b", 3, 10, 2, 9, 3, [0, False], [b"x", b"y"]]),
        # wrong types
        (0, [1, "b", 3, 10, 2, False]),
        (0, ["a", b"b", 3, 10, 2, False]),
        (4, ["a", "b", 3, 1.5, 0]),
        (2, ["a", "b", 3, 10, 2, 9, 3, 0, ["text"]]),
        (2, ["a", "b", 3, 10, 2, 9, 3, 0, [b"x", None]]),
        (2, ["a", "b", 3, 10, 2, 9, 3, 0, b"x"]),
        (2, ["a", "b", 3, 10, 2, 9, "3", 0, []]),
        # columns that do not line up, unknown entry kinds
        (2, ["a", "b", 3, 10, 2, 9, [3], 0, [b"x", b"y"]]),
        (2, ["a", "b", 3, 10, 2, 9, 3, [0], [b"x", b"y"]]),
        (2, ["a", "b", 3, 10, 2, 9, [3], [0], []]),
        (2, ["a", "b", 3, 10, 2, 9, 3, 7, [b"x"]]),
        (2, ["a", "b", 3, 10, 2, 9, 3, [0, 9], [b"x", b"y"]]),
        # unknown tags
        (99, []),
        (True, GOOD[1]),
        ("0", GOOD[0]),
        (None, []),
        ([0], []),
    ],
)
def test_bad_bodies_raise_decode_error(tag: object, body: object) -> None:
    with pytest.raises(DecodeError):
        decode_message(tag, body)


@settings(max_examples=1000)
@given(st.sampled_from(sorted(PEER_TAGS.values())), msgpack_values)
def test_arbitrary_bodies_raise_only_decode_error(tag: int, body: object) -> None:
    try:
        msg = decode_message(tag, body)
    except DecodeError:
        return
    assert type(msg) is MESSAGE_TYPES[tag]


@settings(max_examples=1000)
@given(st.sampled_from(sorted(GOOD)), st.data())
def test_one_field_replaced_raises_only_decode_error(tag: int, data: st.DataObject) -> None:
    body = list(GOOD[tag])
    i = data.draw(st.integers(min_value=0, max_value=len(body) - 1))
    body[i] = data.draw(msgpack_values)
    try:
        msg = decode_message(tag, body)
    except DecodeError:
        return
    assert type(msg) is MESSAGE_TYPES[tag]


@given(msgpack_values)
def test_entries_and_hard_state_refuse_only_with_decode_error(body: object) -> None:
    for decode in (decode_entries, decode_hard_state):
        with contextlib.suppress(DecodeError):
            decode(body)


def test_validators() -> None:
    assert codec.expect_uint(0) == 0
    assert codec.expect_int(-3) == -3
    assert codec.expect_bool(False) is False
    assert codec.expect_str("x") == "x"
    assert codec.expect_bytes(b"x") == b"x"
    assert codec.expect_list([1, 2], 2) == [1, 2]
    for check, bad in [
        (codec.expect_uint, -1),
        (codec.expect_uint, True),
        (codec.expect_int, False),
        (codec.expect_bool, 1),
        (codec.expect_str, b"x"),
        (codec.expect_bytes, "x"),
        (codec.expect_list, (1,)),
    ]:
        with pytest.raises(DecodeError):
            check(bad)
    with pytest.raises(DecodeError):
        codec.expect_list([1], 2)


# -- the node's columnar client and apply messages ----------------------------

def test_node_column_messages_round_trip() -> None:
    from sandzmq.protocol import ApplyResults, ClientReply, ClientSubmit
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
    ],
)
def test_bad_node_column_bodies_are_dropped_as_malformed(tag: str, body: object) -> None:
    import sandzmq.protocol  # noqa: F401  (registers the node's tags)
    from sandzmq.transport import PROTOCOL_VERSION, Envelope

    envelope = Envelope("c")
    assert envelope.decode(msgpack.packb([PROTOCOL_VERSION, "c", tag, body])) is None
    assert envelope.drops.malformed == 1


def test_entry_columns_read_like_a_list_of_entries() -> None:
    from sandzmq.raft.messages import EntryColumns, entry_rows

    entries = [Entry(4, 2, b"a"), Entry(5, 2, b"", EntryKind.NOOP), Entry(6, 3, b"c")]
    def wire(body: object) -> object:
        return msgpack.unpackb(msgpack.packb(body))

    columns = codec.decode_entries(wire(codec.encode_entries(entries)))
    assert isinstance(columns, EntryColumns)
    assert len(columns) == 3 and columns == entries and entries == columns
    assert columns[0] == entries[0] and columns[-1] == entries[-1] and columns[1:] == entries[1:]
    assert list(columns.rows()) == list(entry_rows(entries)) == [(4, 2, 0, b"a"), (5, 2, 1, b""), (6, 3, 0, b"c")]
    assert codec.decode_entries(wire(codec.encode_entries(columns))) == entries  # re-encodes from the columns
    with pytest.raises(IndexError):
        columns[3]
    assert codec.decode_entries(wire(codec.encode_entries([]))) == []


@pytest.mark.parametrize(
    "body",
    [[1, 1, 7, [b"a"]], [1, 1, [0, 9], [b"a", b"b"]], [0, 1, 0, [b"a"]], [1, [1], 0, [b"a", b"b"]], [1, 1, 0, [b"a", 3]]],
)
def test_bad_entry_columns_raise_decode_error(body: list[object]) -> None:
    with pytest.raises(DecodeError):
        codec.decode_entries(body)


# -- ranges (issue 8: what decodes must also be believable) ----------------------


@pytest.mark.parametrize("value", [2**62, 2**63, 2**64 - 1])
def test_every_peer_integer_above_2_62_is_refused(value: int) -> None:
    """A term or index at 2**64 - 1 decoded fine, was adopted and written to
    disk, and the next election's term + 1 could not be encoded."""
    bodies = {
        RequestVote: ["a", "b", value, 1, 1, False],
        Heartbeat: ["a", "b", value, 0, 0],
        AppendEntriesResponse: ["a", "b", 1, True, value, 0, 0],
        AppendEntries: ["a", "b", 1, value, 0, 0, 1, 0, [b"x"]],
    }
    for cls, body in bodies.items():
        with pytest.raises(DecodeError):
            decode_message(PEER_TAGS[cls], body)
    with pytest.raises(DecodeError):  # an entry term
        decode_message(PEER_TAGS[AppendEntries], ["a", "b", 1, 0, 0, 0, value, 0, [b"x"]])
    with pytest.raises(DecodeError):
        codec.expect_uint(value)


def test_an_append_whose_last_index_would_pass_2_62_is_refused() -> None:
    with pytest.raises(DecodeError):
        decode_message(PEER_TAGS[AppendEntries], ["a", "b", 1, codec.MAX_UINT - 1, 1, 0, 1, 0, [b"x", b"y"]])
    decode_message(PEER_TAGS[AppendEntries], ["a", "b", 1, codec.MAX_UINT - 2, 1, 0, 1, 0, [b"x", b"y"]])


def test_a_batch_whose_terms_decrease_is_refused() -> None:
    """The write-ahead log refuses such a batch; the core must never take it."""
    with pytest.raises(DecodeError):
        decode_message(PEER_TAGS[AppendEntries], ["a", "b", 3, 0, 0, 0, [2, 1], 0, [b"x", b"y"]])
    m = decode_message(PEER_TAGS[AppendEntries], ["a", "b", 3, 0, 0, 0, [1, 3], 0, [b"x", b"y"]])
    assert [e.term for e in m.entries] == [1, 3]


def test_a_client_submit_whose_request_ids_pass_2_62_is_refused() -> None:
    """Replies name every request id: one past 2**64 - 1 could not be encoded."""
    from sandzmq.protocol import ClientSubmit  # registers the node's message types
    from sandzmq.transport import Envelope

    env = Envelope("c")
    frame = msgpack.packb([1, "c", "c.submit", [codec.MAX_UINT - 1, [b"a", b"b", b"c"]]])
    assert env.decode(frame) is None and env.drops.malformed == 1
    ok = msgpack.packb([1, "c", "c.submit", [codec.MAX_UINT - 3, [b"a", b"b", b"c"]]])
    assert isinstance(env.decode(ok), ClientSubmit)
