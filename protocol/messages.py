"""The node's messages: between its three actors, and with clients.

Each class is its own wire declaration: `@message(tag, ...)` derives its body
codec from its fields (registry.py, derive.py), with a spec only where the
type does not say enough (entries, columns as long as another, a run of
request ids, bounded strs and ints). The decoder validates the body and
raises DecodeError, which the envelope counts as `malformed`, so an actor
receives either a well-formed object or nothing.

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

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

import msgpack
from sandzmq.raft.messages import Entry, HardState
from sandzmq.storage.identity import MAX_CLUSTER_ID

from .checks import MAX_UINT, DecodeError, expect_bytes, expect_str, expect_uint
from .derive import RequestIds, Str, UInt, UInts
from .logdata import Entries, describe_entries, describe_hard_state
from .registry import message

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


def command_fields(datas: Iterable[bytes]) -> list[list[Any] | None]:
    """For each entry's data, `[kind, client_id, seq, first_incomplete,
    command]` if it is a well-formed command, else None (decode_payload then
    says what it is). The apply loop's fast path: it runs once per entry on
    every node, so the checks decode_payload makes field by field are one
    expression here, no object is built, and a whole batch is one call."""
    unpack = msgpack.unpackb
    fields: list[list[Any] | None] = []
    keep = fields.append
    for data in datas:
        try:
            body = unpack(data)
        except Exception:  # msgpack raises several types
            keep(None)
            continue
        if (
            type(body) is list
            and len(body) == 5
            and body[0] == _COMMAND
            and type(body[1]) is bytes
            and type(body[2]) is int
            and type(body[3]) is int
            and type(body[4]) is bytes
            and 0 <= body[2] <= MAX_UINT
            and 0 <= body[3] <= MAX_UINT
        ):
            keep(body)
        else:
            keep(None)
    return fields


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


def _show_submit(m: ClientSubmit) -> str:
    n = len(m.payloads)
    ids = f"#{m.first_request_id}" + (f"..{m.first_request_id + n - 1}" if n > 1 else "")
    return f"ClientSubmit {ids} ({n} requests, {sum(map(len, m.payloads))}B)"


@message("c.submit", route="client->raft", show=_show_submit, first_request_id=RequestIds(count="payloads"))
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


@message("c.query", route="client->raft")
@dataclass(slots=True)
class ClientQuery:
    """A read. consistency: "linearizable" | "lease" | "local"."""

    request_id: int
    consistency: str
    query: bytes


def _show_reply(m: ClientReply) -> str:
    names = {int(s): s.name for s in ReplyStatus}
    counts: dict[str, int] = {}
    for status in m.statuses:
        name = names.get(status, str(status))
        counts[name] = counts.get(name, 0) + 1
    ids = UInts().show(m.request_ids)
    return f"ClientReply #{ids} " + " ".join(f"{name}x{n}" if n > 1 else name for name, n in counts.items())


@message(
    "c.reply",
    route="raft->client",
    show=_show_reply,
    request_ids=UInts(length="values"),
    statuses=UInts(length="values"),
)
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
        return (
            ClientReply(self.request_ids[:h], self.statuses[:h], self.values[:h]),
            ClientReply(self.request_ids[h:], self.statuses[h:], self.values[h:]),
        )


@message("c.status", route="client->raft")
@dataclass(slots=True)
class StatusRequest:
    request_id: int


@message("c.status_reply", route="raft->client")
@dataclass(slots=True)
class StatusReply:
    request_id: int
    status: dict[str, Any]


HELLO_TAG = "c.hello"
HELLO_REPLY_TAG = "c.hello_reply"


@message(HELLO_TAG, route="client->raft")
@dataclass(slots=True)
class ClusterHello:
    """Which cluster is this? The one message a node takes from any cluster
    name (Envelope open_tags): Client.connect(address) needs the name before
    it can say anything else."""

    nonce: int


@message(HELLO_REPLY_TAG, route="raft->client")
@dataclass(slots=True)
class ClusterHelloReply:
    nonce: int
    cluster: str


# ---------------------------------------------------------------- raft <-> log-store


#: The cluster id a node's identity may hold (storage/identity.py), on the wire.
ClusterId = Str(max_len=MAX_CLUSTER_ID)


def _show_write(m: LogWrite) -> str:
    parts = [f"LogWrite #{m.write_id}"]
    if m.entries:
        parts.append(f"entries={describe_entries(m.entries)}")
    if m.hard_state is not None:
        parts.append(f"hs={describe_hard_state(m.hard_state)}")
    parts.append("sync" if m.must_sync else "nosync")
    return " ".join(parts) + (f" epoch={m.epoch}" if m.epoch else "")


@message("l.write", route="raft->log", show=_show_write, entries=Entries())
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


@message("l.durable", route="log->raft")
@dataclass(slots=True)
class LogDurable:
    """Every write of `epoch` up to write_id is on disk (fsync'd, when fsync is
    on), and the log now ends at (last_index, last_term): the raft actor
    checks that against what the core expects after that write."""

    write_id: int
    last_index: int
    last_term: int = 0
    epoch: int = 0


@message("l.sync", route="raft->log")
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


@message("l.gap", route="log->raft")
@dataclass(slots=True)
class LogGap:
    """From the log-store: a write arrived that is not the next one of the
    current epoch (one was lost, or the epoch is not the one last synced),
    so nothing from `expected` on is taken until a LogSync. `sync_nonce` is
    the last LogSync it had: a raft actor that has synced since ignores it."""

    sync_nonce: int
    expected: int


@message("l.state", route="log->raft", cluster_id=ClusterId)
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


@message("l.identity", route="raft->log", cluster_id=ClusterId)
@dataclass(slots=True)
class LogIdentity:
    """From the raft actor, during the bootstrap handshake (node/bootstrap.py):
    record this identity (a proposal, or the cluster id), then answer with
    LogState(nonce). A cluster id once recorded is never changed."""

    nonce: int
    cluster_id: str
    proposal: int


def expect_cluster_id(value: Any) -> str:
    """A cluster id as the wire bounds it (a str of at most MAX_CLUSTER_ID characters)."""
    cluster_id = expect_str(value, "cluster_id")
    if len(cluster_id) > MAX_CLUSTER_ID:
        raise DecodeError(f"cluster_id: longer than {MAX_CLUSTER_ID} characters")
    return cluster_id


# ---------------------------------------------------------------- raft <-> apply


def _show_batch(m: ApplyBatch) -> str:
    results = " results" if m.want_results else ""
    generation = f" gen={m.generation}" if m.generation else ""
    return f"ApplyBatch entries={describe_entries(m.entries)}{results}{generation}"


@message("a.batch", route="raft->apply", show=_show_batch, entries=Entries())
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


def _show_results(m: ApplyResults) -> str:
    return f"ApplyResults indexes={UInts().show(m.indexes)} applied={m.applied_index}"


@message(
    "a.results",
    route="apply->raft",
    show=_show_results,
    indexes=UInts(length="values"),
    terms=UInts(length="values", uniform=True),
    statuses=UInts(length="values", uniform=True),
)
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
        return cls(
            [r[0] for r in rows], [r[1] for r in rows], [int(r[2]) for r in rows], [r[3] for r in rows], applied_index
        )

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


@message("a.state", route="apply->raft")
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


@message("a.query", route="raft->apply")
@dataclass(slots=True)
class LocalQuery:
    request_id: int
    query: bytes


@message("a.query_result", route="apply->raft")
@dataclass(slots=True)
class LocalQueryResult:
    request_id: int
    status: int  # ReplyStatus.OK or ERROR
    value: Any


# ---------------------------------------------------------------- raft <-> raft, besides the core's


def _show_hello(m: PeerHello) -> str:
    kind = "ask" if m.ask else "answer"
    return (
        f"{m.src}->{m.dst} PeerHello {kind} state={m.state} cluster_id={m.cluster_id or '-'} "
        f"proposal={m.proposal} t{m.term} nonce={m.nonce}"
    )


@message("p.hello", show=_show_hello, state=UInt(max=3), cluster_id=ClusterId)
@dataclass(slots=True)
class PeerHello:
    """The identity handshake between raft actors (node/bootstrap.py): what
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
    "command_fields",
    "decode_payload",
    "encode_command",
    "encode_read",
    "expect_cluster_id",
]
