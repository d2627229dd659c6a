"""The node's messages: between its three actors, and with clients.

Every class here is registered with the transport's envelope under a str tag,
with a decoder that validates the body (raising DecodeError, which the
envelope counts as `malformed`), so an actor receives either a well-formed
object or nothing.

A write travels:  client --ClientSubmit--> raft --LogWrite--> log-store
                  log-store --LogDurable--> raft --ApplyBatch--> apply
                  apply --ApplyResults--> raft --ClientReply--> client

Entry payloads. The raft actor never parses a command: the client encodes
each request as the exact bytes of a log entry (`encode_command` /
`encode_read`), the raft actor proposes those bytes, and the apply actor
decodes them. A command entry carries the client's session id and sequence
number (exactly-once across retries, Raft dissertation 6.3) and the lowest
sequence number the client still waits for, so the apply actor can forget
older results.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from collections.abc import Callable, Iterable
from typing import Any

import msgpack

from sandzmq.raft.messages import Entry, HardState
from sandzmq.storage.identity import MAX_CLUSTER_ID
from sandzmq.transport import register
from sandzmq.transport.codec import (
    MAX_UINT,
    DecodeError,
    bytes_column,
    decode_entries,
    decode_hard_state,
    encode_entries,
    encode_hard_state,
    expect_bool,
    expect_bytes,
    expect_list,
    expect_str,
    expand_column,
    expect_uint,
    uint_column,
    uniform_or_column,
)

# ---------------------------------------------------------------- entry payloads


class PayloadKind(IntEnum):
    COMMAND = 0  # [0, client_id, seq, first_incomplete, command]: StateMachine.apply
    READ = 1  # [1, query]: StateMachine.query at this point of the log (linearizable read)


_COMMAND = int(PayloadKind.COMMAND)


def encode_command(
    client_id: bytes, seq: int, first_incomplete: int, command: bytes, pack: Callable[[Any], bytes] = msgpack.packb
) -> bytes:
    """The log entry for one client command. `pack`: a reused Packer's pack,
    for a thread that encodes many (packb builds a Packer per call)."""
    return pack([_COMMAND, client_id, seq, first_incomplete, command])


def encode_read(query: bytes) -> bytes:
    """The log entry for a read that goes through the log (until ReadIndex)."""
    return msgpack.packb([PayloadKind.READ, query])


@dataclass(slots=True)
class CommandPayload:
    client_id: bytes
    seq: int
    first_incomplete: int
    command: bytes


@dataclass(slots=True)
class ReadPayload:
    query: bytes


def decode_payload(data: bytes) -> CommandPayload | ReadPayload:
    """Raises DecodeError for anything that is not a well-formed payload."""
    try:
        body = msgpack.unpackb(data)
    except Exception as exc:  # msgpack raises several types
        raise DecodeError(f"payload is not msgpack: {exc}") from None
    if type(body) is not list or not body:
        raise DecodeError("payload is not a non-empty list")
    if body[0] == PayloadKind.COMMAND and len(body) == 5:
        return CommandPayload(
            expect_bytes(body[1], "client_id"),
            expect_uint(body[2], "seq"),
            expect_uint(body[3], "first_incomplete"),
            expect_bytes(body[4], "command"),
        )
    if body[0] == PayloadKind.READ and len(body) == 2:
        return ReadPayload(expect_bytes(body[1], "query"))
    raise DecodeError("payload has an unknown kind or arity")


# ---------------------------------------------------------------- client <-> raft


class ReplyStatus(IntEnum):
    OK = 0  # value: the StateMachine's result
    NOT_LEADER = 1  # refused before proposing; value: [leader_id | None, leader_client_address | None]
    LOST = 2  # proposed, then leadership changed: outcome unknown, retry with the same seq
    ERROR = 3  # value: a one-line message (bad request, too large, state machine raised)
    BUSY = 4  # refused before proposing: too much in flight; back off and retry


@dataclass(slots=True)
class ClientSubmit:
    """Writes and log reads from one client, in columns: request i has the id
    first_request_id + i (a client numbers the attempts of one message
    consecutively), so only the payloads travel one by one."""

    first_request_id: int
    payloads: list[bytes]

    @property
    def requests(self) -> list[tuple[int, bytes]]:
        """(request id, payload) pairs: for tests and diagnostics, not the hot path."""
        first = self.first_request_id
        return [(first + i, p) for i, p in enumerate(self.payloads)]


@dataclass(slots=True)
class ClientQuery:
    """A read. consistency: "linearizable" | "lease" | "local"."""

    request_id: int
    consistency: str
    query: bytes


@dataclass(slots=True)
class ClientReply:
    """Answers, batched, in three columns of equal length."""

    request_ids: list[int]
    statuses: list[int]  # ReplyStatus values
    values: list[Any]

    @classmethod
    def of(cls, replies: Iterable[tuple[int, int, Any]]) -> ClientReply:
        """From (request id, status, value) triples: for tests and rare replies."""
        rows = list(replies)
        return cls([r[0] for r in rows], [int(r[1]) for r in rows], [r[2] for r in rows])

    @property
    def replies(self) -> list[tuple[int, int, Any]]:
        """(request id, status, value) triples: for tests and diagnostics."""
        return list(zip(self.request_ids, self.statuses, self.values))

    def add(self, request_id: int, status: int, value: Any) -> None:
        """One more answer."""
        self.request_ids.append(request_id)
        self.statuses.append(int(status))
        self.values.append(value)

    def add_range(self, first_request_id: int, count: int, status: int, value: Any) -> None:
        """The same answer for `count` consecutive request ids (one client
        message refused, or lost, as a whole)."""
        self.request_ids.extend(range(first_request_id, first_request_id + count))
        self.statuses.extend([int(status)] * count)
        self.values.extend([value] * count)

    def halves(self) -> tuple[ClientReply, ClientReply] | None:
        """Two replies with half the answers each, for a reply too large for
        one frame (the transport splits it); None for one answer."""
        n = len(self.request_ids)
        if n < 2:
            return None
        h = n // 2
        return (ClientReply(self.request_ids[:h], self.statuses[:h], self.values[:h]),
                ClientReply(self.request_ids[h:], self.statuses[h:], self.values[h:]))


@dataclass(slots=True)
class StatusRequest:
    request_id: int


@dataclass(slots=True)
class StatusReply:
    request_id: int
    status: dict[str, Any]


def _dec_submit(body: Any) -> ClientSubmit:
    b = expect_list(body, 2, "ClientSubmit")
    first = expect_uint(b[0], "first_request_id")
    payloads = bytes_column(b[1], "ClientSubmit payloads")
    if first + len(payloads) > MAX_UINT:  # every request id must encode in the reply
        raise DecodeError("ClientSubmit: request ids run past 2**62")
    return ClientSubmit(first, payloads)


def _dec_query(body: Any) -> ClientQuery:
    b = expect_list(body, 3, "ClientQuery")
    return ClientQuery(expect_uint(b[0], "request_id"), expect_str(b[1], "consistency"), expect_bytes(b[2], "query"))


def _dec_reply(body: Any) -> ClientReply:
    b = expect_list(body, 3, "ClientReply")
    values = expect_list(b[2], what="ClientReply values")
    n = len(values)
    return ClientReply(uint_column(b[0], n, "ClientReply request ids"), uint_column(b[1], n, "ClientReply statuses"), values)


def _dec_status_reply(body: Any) -> StatusReply:
    b = expect_list(body, 2, "StatusReply")
    if type(b[1]) is not dict:
        raise DecodeError("StatusReply: status is not a map")
    return StatusReply(expect_uint(b[0], "request_id"), b[1])


@dataclass(slots=True)
class ClusterHello:
    """Which cluster is this? The one message a node takes from any cluster
    name (Envelope open_tags): Client.connect(address) needs the name before
    it can say anything else."""

    nonce: int


@dataclass(slots=True)
class ClusterHelloReply:
    nonce: int
    cluster: str


HELLO_TAG = "c.hello"
HELLO_REPLY_TAG = "c.hello_reply"


register("c.submit", ClientSubmit, lambda m: [m.first_request_id, m.payloads], _dec_submit)
register("c.query", ClientQuery, lambda m: [m.request_id, m.consistency, m.query], _dec_query)
register("c.reply", ClientReply, lambda m: [m.request_ids, m.statuses, m.values], _dec_reply)
register(HELLO_TAG, ClusterHello, lambda m: [m.nonce], lambda b: ClusterHello(expect_uint(expect_list(b, 1, "ClusterHello")[0], "nonce")))
register(
    HELLO_REPLY_TAG,
    ClusterHelloReply,
    lambda m: [m.nonce, m.cluster],
    lambda b: ClusterHelloReply(expect_uint(expect_list(b, 2, "ClusterHelloReply")[0], "nonce"), expect_str(b[1], "cluster")),
)
register("c.status", StatusRequest, lambda m: [m.request_id], lambda b: StatusRequest(expect_uint(expect_list(b, 1, "StatusRequest")[0], "request_id")))
register("c.status_reply", StatusReply, lambda m: [m.request_id, m.status], _dec_status_reply)

# ---------------------------------------------------------------- raft <-> log-store


@dataclass(slots=True)
class LogWrite:
    """Append (superseding from entries[0].index) and/or record hard state.
    Applied strictly in write_id order, and only if it is the next write of
    the current `epoch` (a raft actor's life): anything else is a gap, never
    applied (LogGap). Acknowledged by LogDurable. `must_sync` is the core's
    word that the write carries something messages wait for (entries, term or
    vote); one that only moves the commit index is not fsync'd."""

    write_id: int
    entries: list[Entry]
    hard_state: HardState | None
    must_sync: bool = True
    epoch: int = 0


@dataclass(slots=True)
class LogDurable:
    """Every write of `epoch` up to write_id is on disk (fsync'd, when fsync is
    on), and the log now ends at (last_index, last_term): the raft actor
    checks that against what the core expects after that write."""

    write_id: int
    last_index: int
    last_term: int = 0
    epoch: int = 0


@dataclass(slots=True)
class LogSync:
    """From the raft actor: report what is durable (LogState), and take
    write `next_write_id` of `epoch` next (a raft actor's start, or its
    resend of every unacknowledged write after a restart of the log-store
    or a LogGap). Epoch 0 with next_write_id 1 is a log-store's state
    before any raft actor spoke (tests drive it that way)."""

    nonce: int
    epoch: int = 0
    next_write_id: int = 1


@dataclass(slots=True)
class LogGap:
    """From the log-store: a write arrived that is not the next one of the
    current epoch (one was lost, or the epoch is not the one last synced),
    so nothing from `expected` on is taken until a LogSync. `sync_nonce` is
    the last LogSync it had: a raft actor that has synced since ignores it."""

    sync_nonce: int
    expected: int


@dataclass(slots=True)
class LogState:
    """What the log-store holds, after everything it received before the
    LogSync it answers is durable. Sent unprompted (nonce 0) when it starts."""

    nonce: int
    pid: int
    incarnation: int  # random per start: a new value means the log-store restarted
    hard_state: HardState
    first_index: int
    last_index: int
    last_term: int
    write_id: int  # the last write_id it made durable (0 after a restart)
    cluster_id: str = ""  # the node's identity (storage/identity.py); "" while it has none
    proposal: int = 0  # its bootstrap proposal, 0 before it made one


@dataclass(slots=True)
class LogIdentity:
    """From the raft actor, during the bootstrap handshake (actors/bootstrap.py):
    record this identity (a proposal, or the cluster id), then answer with
    LogState(nonce). A cluster id once recorded is never changed."""

    nonce: int
    cluster_id: str
    proposal: int


def _dec_log_write(body: Any) -> LogWrite:
    b = expect_list(body, 5, "LogWrite")
    hs = None if b[2] is None else decode_hard_state(b[2])
    return LogWrite(
        expect_uint(b[0], "write_id"), decode_entries(b[1]), hs, expect_bool(b[3], "must_sync"), expect_uint(b[4], "epoch")
    )


def _dec_log_state(body: Any) -> LogState:
    b = expect_list(body, 10, "LogState")
    return LogState(
        expect_uint(b[0], "nonce"), expect_uint(b[1], "pid"), expect_uint(b[2], "incarnation"),
        decode_hard_state(b[3]), expect_uint(b[4], "first_index"), expect_uint(b[5], "last_index"),
        expect_uint(b[6], "last_term"), expect_uint(b[7], "write_id"), expect_cluster_id(b[8]), expect_uint(b[9], "proposal"),
    )


def expect_cluster_id(value: Any) -> str:
    cluster_id = expect_str(value, "cluster_id")
    if len(cluster_id) > MAX_CLUSTER_ID:
        raise DecodeError(f"cluster_id: longer than {MAX_CLUSTER_ID} characters")
    return cluster_id


register(
    "l.write",
    LogWrite,
    lambda m: [
        m.write_id, encode_entries(m.entries), None if m.hard_state is None else encode_hard_state(m.hard_state),
        m.must_sync, m.epoch,
    ],
    _dec_log_write,
)
register(
    "l.durable",
    LogDurable,
    lambda m: [m.write_id, m.last_index, m.last_term, m.epoch],
    lambda b: LogDurable(*(expect_uint(v, "LogDurable") for v in expect_list(b, 4, "LogDurable"))),
)
register(
    "l.sync",
    LogSync,
    lambda m: [m.nonce, m.epoch, m.next_write_id],
    lambda b: LogSync(*(expect_uint(v, "LogSync") for v in expect_list(b, 3, "LogSync"))),
)
register(
    "l.gap",
    LogGap,
    lambda m: [m.sync_nonce, m.expected],
    lambda b: LogGap(*(expect_uint(v, "LogGap") for v in expect_list(b, 2, "LogGap"))),
)
register(
    "l.state",
    LogState,
    lambda m: [
        m.nonce, m.pid, m.incarnation, encode_hard_state(m.hard_state),
        m.first_index, m.last_index, m.last_term, m.write_id, m.cluster_id, m.proposal,
    ],
    _dec_log_state,
)
register(
    "l.identity",
    LogIdentity,
    lambda m: [m.nonce, m.cluster_id, m.proposal],
    lambda b: LogIdentity(
        expect_uint(expect_list(b, 3, "LogIdentity")[0], "nonce"), expect_cluster_id(b[1]), expect_uint(b[2], "proposal")
    ),
)

# ---------------------------------------------------------------- raft <-> apply


@dataclass(slots=True)
class ApplyBatch:
    """Committed entries, in order. The apply actor takes them only if
    entries[0].index is its applied index + 1, and otherwise answers with
    ApplyState so the raft actor resends from the right place: once per
    `generation`, which the raft actor bumps at every such rewind, so that
    batches sent before a rewind (queued for a restarting apply actor, say)
    cause one rewind in all, not one each."""

    entries: list[Entry]
    want_results: bool  # the leader waits for results; followers do not
    generation: int = 0


@dataclass(slots=True)
class ApplyResults:
    """The results of one batch's NORMAL entries (only when asked for), in
    columns of equal length, and how far the apply actor now is. On the wire
    `terms` and `statuses` collapse to one int when uniform (the usual case)."""

    indexes: list[int]
    terms: list[int]
    statuses: list[int]  # ReplyStatus values
    values: list[Any]
    applied_index: int

    @classmethod
    def of(cls, results: Iterable[tuple[int, int, int, Any]], applied_index: int) -> ApplyResults:
        """From (index, term, status, value) tuples: for tests and the slow path."""
        rows = list(results)
        return cls([r[0] for r in rows], [r[1] for r in rows], [int(r[2]) for r in rows], [r[3] for r in rows], applied_index)

    @property
    def results(self) -> list[tuple[int, int, int, Any]]:
        """(index, term, status, value) tuples: for tests and the slow path."""
        return list(zip(self.indexes, self.terms, self.statuses, self.values))

    def halves(self) -> tuple[ApplyResults, ApplyResults] | None:
        """Two messages with half the results each (both with the applied
        index), for results too large for one frame; None for one result."""
        n = len(self.indexes)
        if n < 2:
            return None
        h = n // 2
        return tuple(  # type: ignore[return-value]
            ApplyResults(self.indexes[s], self.terms[s], self.statuses[s], self.values[s], self.applied_index)
            for s in (slice(0, h), slice(h, n))
        )


@dataclass(slots=True)
class ApplyState:
    """How far the apply actor is: sent when it starts (generation 0, a new
    `incarnation`), and when a batch of `generation` does not follow on from
    its applied index. The raft actor rewinds to applied_index for a new
    incarnation or a rejection of its current generation, and ignores the
    rest (rejections of batches sent before its last rewind)."""

    pid: int
    applied_index: int
    incarnation: int = 0
    generation: int = 0


@dataclass(slots=True)
class LocalQuery:
    request_id: int
    query: bytes


@dataclass(slots=True)
class LocalQueryResult:
    request_id: int
    status: int  # ReplyStatus.OK or ERROR
    value: Any


def _dec_apply_results(body: Any) -> ApplyResults:
    b = expect_list(body, 5, "ApplyResults")
    values = expect_list(b[3], what="ApplyResults values")
    n = len(values)
    return ApplyResults(
        uint_column(b[0], n, "ApplyResults indexes"),
        expand_column(b[1], n, "ApplyResults terms"),
        expand_column(b[2], n, "ApplyResults statuses"),
        values,
        expect_uint(b[4], "applied_index"),
    )


def _dec_local_query_result(body: Any) -> LocalQueryResult:
    b = expect_list(body, 3, "LocalQueryResult")
    return LocalQueryResult(expect_uint(b[0], "request_id"), expect_uint(b[1], "status"), b[2])


register(
    "a.batch",
    ApplyBatch,
    lambda m: [encode_entries(m.entries), m.want_results, m.generation],
    lambda b: ApplyBatch(
        decode_entries(expect_list(b, 3, "ApplyBatch")[0]), expect_bool(b[1], "want_results"), expect_uint(b[2], "generation")
    ),
)
register(
    "a.results",
    ApplyResults,
    lambda m: [m.indexes, uniform_or_column(m.terms), uniform_or_column(m.statuses), m.values, m.applied_index],
    _dec_apply_results,
)
register(
    "a.state",
    ApplyState,
    lambda m: [m.pid, m.applied_index, m.incarnation, m.generation],
    lambda b: ApplyState(*(expect_uint(v, "ApplyState") for v in expect_list(b, 4, "ApplyState"))),
)
register(
    "a.query",
    LocalQuery,
    lambda m: [m.request_id, m.query],
    lambda b: LocalQuery(expect_uint(expect_list(b, 2, "LocalQuery")[0], "request_id"), expect_bytes(b[1], "query")),
)
register("a.query_result", LocalQueryResult, lambda m: [m.request_id, m.status, m.value], _dec_local_query_result)



# ---------------------------------------------------------------- raft <-> raft, besides the core's


@dataclass(slots=True)
class PeerHello:
    """The identity handshake between raft actors (actors/bootstrap.py): what
    the sender knows of its own data. `ask`: answer with yours, echoing
    `nonce`. Only an answer that echoes the nonce of an ask is believed (a
    blind forger cannot know it); what an ask claims counts for nothing."""

    src: str
    dst: str
    ask: bool
    state: int  # bootstrap.DataState
    cluster_id: str
    proposal: int
    term: int
    nonce: int


def _dec_peer_hello(body: Any) -> PeerHello:
    b = expect_list(body, 8, "PeerHello")
    state = expect_uint(b[3], "state")
    if state > 3:
        raise DecodeError("PeerHello: unknown state")
    return PeerHello(
        expect_str(b[0], "src"), expect_str(b[1], "dst"), expect_bool(b[2], "ask"), state,
        expect_cluster_id(b[4]), expect_uint(b[5], "proposal"), expect_uint(b[6], "term"), expect_uint(b[7], "nonce"),
    )


register(
    "p.hello",
    PeerHello,
    lambda m: [m.src, m.dst, m.ask, m.state, m.cluster_id, m.proposal, m.term, m.nonce],
    _dec_peer_hello,
)


# ---------------------------------------------------------------- trust boundaries
# Which socket takes which messages (SPEC 3): each Inbox and PeerLink decodes
# only its own set, by sender identity; everything else is dropped and
# counted as `wrong_socket` before its body is read.

#: The client port: what clients send (ClusterHello from any cluster name).
CLIENT_REQUESTS: tuple[type, ...] = (ClientSubmit, ClientQuery, StatusRequest, ClusterHello)
#: What a client takes back on its link to a node.
CLIENT_ANSWERS: tuple[type, ...] = (ClientReply, StatusReply, ClusterHelloReply)
#: The raft actor's private ipc socket, from the log-store (identity "log")...
FROM_LOG_STORE: tuple[type, ...] = (LogDurable, LogState, LogGap)
#: ... and from the apply actor (identity "apply").
FROM_APPLY: tuple[type, ...] = (ApplyResults, ApplyState, LocalQueryResult)
#: The log-store's and the apply actor's sockets, from the raft actor (identity "raft").
TO_LOG_STORE: tuple[type, ...] = (LogWrite, LogSync, LogIdentity)
TO_APPLY: tuple[type, ...] = (ApplyBatch, LocalQuery)

__all__ = [
    "ApplyBatch",
    "ApplyResults",
    "ApplyState",
    "CLIENT_ANSWERS",
    "CLIENT_REQUESTS",
    "ClientQuery",
    "ClientReply",
    "ClientSubmit",
    "ClusterHello",
    "ClusterHelloReply",
    "CommandPayload",
    "FROM_APPLY",
    "FROM_LOG_STORE",
    "HELLO_REPLY_TAG",
    "HELLO_TAG",
    "LocalQuery",
    "LocalQueryResult",
    "LogDurable",
    "LogGap",
    "LogIdentity",
    "LogState",
    "LogSync",
    "LogWrite",
    "PayloadKind",
    "PeerHello",
    "ReadPayload",
    "ReplyStatus",
    "StatusReply",
    "StatusRequest",
    "TO_APPLY",
    "TO_LOG_STORE",
    "decode_payload",
    "encode_command",
    "encode_read",
    "expect_cluster_id",
]
