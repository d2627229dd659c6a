"""Client requests at a node, from arrival to answer, with no I/O.

A ClientSubmit is either refused as a whole (NOT_LEADER with the leader's id
and client address, BUSY while the node starts or has too much in flight) or
queued for this loop turn's proposal: every command of the turn goes to the
Raft core in ONE propose() call, so one turn is one batch of log entries.
Commands larger than max_batch_bytes are refused one by one (as log entries
they could never be replicated: they would exceed every AppendEntries); the
rest of their message is proposed in runs of consecutive request ids.

What was proposed is remembered in runs (node/proposals.py) until the apply
actor's results answer it, or a change of role or term answers it LOST (the
proposals of a lost leadership may or may not commit: the client retries
with the same sequence number, and the apply actor's sessions apply it once).

Reads: "linearizable" and "lease" go through the log as a READ entry until
ReadIndex lands (so the answer reflects every write committed before the
query arrived); "local" reads the apply actor's state directly (LocalQuery),
at most MAX_PENDING_LOCAL_QUERIES at a time.

Every answer goes to the turn's ClientReply for its client (Output.reply_to):
per-request work stays in columns (ClientReply.add_range, PendingProposals.resolve).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any

from sandzmq.protocol import (
    ApplyResults,
    ClientQuery,
    ClientSubmit,
    LocalQuery,
    LocalQueryResult,
    ReplyStatus,
    encode_read,
)
from sandzmq.raft import NotLeader, RaftCore, Role

from .output import Output
from .proposals import PendingProposals

MAX_PENDING_REQUESTS = 100_000  # proposals awaiting results on a leader; beyond it clients get BUSY
MAX_PENDING_LOCAL_QUERIES = 10_000  # local reads the apply actor has not answered; beyond it: BUSY
CONSISTENCY_LEVELS = ("linearizable", "lease", "local")


class ClientRequests:
    """This node's client requests: queued for the turn's proposal, pending
    their results, or waiting for a local read."""

    def __init__(self, client_addresses: Mapping[str, str], max_command_bytes: int) -> None:
        """`client_addresses`: node id -> client address, for NOT_LEADER hints;
        `max_command_bytes`: the largest command or query that can be proposed."""
        self.client_addresses = dict(client_addresses)
        self.max_command_bytes = max_command_bytes
        # Client messages waiting for this loop turn's proposal: (identity, first request id, payloads).
        self.queued: list[tuple[bytes, int, list[bytes]]] = []
        self.queued_count = 0
        self.pending = PendingProposals()  # proposed, awaiting the apply actor's results
        self.local_queries: dict[int, tuple[bytes, int]] = {}  # query id -> (identity, request id)
        self._query_ids = itertools.count(1)

    def leader_hint(self, leader: str | None) -> list[str | None]:
        """The value of a NOT_LEADER answer: [leader id, its client address], each None when unknown."""
        return [leader, self.client_addresses.get(leader or "")]

    def refusal(self, core: RaftCore | None) -> tuple[int, Any] | None:
        """Why this node cannot take a write now, or None if it can."""
        if core is None:
            return ReplyStatus.BUSY, "node is starting"
        if core.role is not Role.LEADER:
            return ReplyStatus.NOT_LEADER, self.leader_hint(core.leader)
        if len(self.pending) + self.queued_count >= MAX_PENDING_REQUESTS:
            return ReplyStatus.BUSY, "too many requests in flight"
        return None

    # ------------------------------------------------------------------ arrivals

    def submit(self, identity: bytes, submit: ClientSubmit, core: RaftCore | None, out: Output) -> None:
        payloads = submit.payloads
        if not payloads:
            return
        refusal = self.refusal(core)
        first = submit.first_request_id
        if refusal is not None:
            out.reply_to(identity).add_range(first, len(payloads), *refusal)
            return
        limit = self.max_command_bytes
        if max(map(len, payloads)) <= limit:
            self._queue(identity, first, payloads)
            return
        # Rare: refuse the oversized commands, propose the others in runs of consecutive ids.
        run: list[bytes] = []
        for request_id, payload in enumerate(payloads, first):
            if len(payload) > limit:
                if run:
                    self._queue(identity, request_id - len(run), run)
                    run = []
                out.reply_to(identity).add(
                    request_id, ReplyStatus.ERROR, f"command of {len(payload)} bytes exceeds max_batch_bytes ({limit})"
                )
            else:
                run.append(payload)
        if run:
            self._queue(identity, first + len(payloads) - len(run), run)

    def query(self, identity: bytes, query: ClientQuery, core: RaftCore | None, out: Output) -> None:
        if query.consistency not in CONSISTENCY_LEVELS:
            out.reply_to(identity).add(
                query.request_id, ReplyStatus.ERROR, f"unknown consistency {query.consistency!r}"
            )
            return
        if query.consistency == "local":
            if len(self.local_queries) >= MAX_PENDING_LOCAL_QUERIES:
                out.reply_to(identity).add(query.request_id, ReplyStatus.BUSY, "too many local queries in flight")
                return
            query_id = next(self._query_ids)
            self.local_queries[query_id] = (identity, query.request_id)
            out.apply.append(LocalQuery(query_id, query.query))
            return
        refusal = self.refusal(core)
        limit = self.max_command_bytes
        if refusal is None and len(query.query) > limit:
            refusal = ReplyStatus.ERROR, f"query of {len(query.query)} bytes exceeds max_batch_bytes ({limit})"
        if refusal is not None:
            out.reply_to(identity).add(query.request_id, *refusal)
        else:
            self._queue(identity, query.request_id, [encode_read(query.query)])

    def _queue(self, identity: bytes, first_request_id: int, payloads: list[bytes]) -> None:
        self.queued.append((identity, first_request_id, payloads))
        self.queued_count += len(payloads)

    # ------------------------------------------------------------------ the turn's proposal

    def propose(self, core: RaftCore, out: Output) -> None:
        """Propose every queued command as one batch (if any are queued)."""
        proposals = self.queued
        if not proposals:
            return
        self.queued = []
        self.queued_count = 0
        if len(proposals) == 1:
            payloads = proposals[0][2]
        else:
            payloads = [payload for _, _, run in proposals for payload in run]
        try:
            index = core.propose(payloads)
        except NotLeader as refused:
            hint = self.leader_hint(refused.leader)
            for identity, first, run in proposals:
                out.reply_to(identity).add_range(first, len(run), ReplyStatus.NOT_LEADER, hint)
            return
        term = core.term
        pending = self.pending
        for identity, first, run in proposals:
            pending.add(index, len(run), term, identity, first)
            index += len(run)

    # ------------------------------------------------------------------ answers

    def results(self, results: ApplyResults, out: Output) -> None:
        """The apply actor's results: answer the proposals they belong to."""
        if results.indexes:
            self.pending.resolve(results.indexes, results.terms, results.statuses, results.values, out.reply_to)

    def local_result(self, result: LocalQueryResult, out: Output) -> None:
        waiting = self.local_queries.pop(result.request_id, None)
        if waiting is not None:
            out.reply_to(waiting[0]).add(waiting[1], result.status, result.value)

    def leadership_changed(self, core: RaftCore, out: Output) -> None:
        """Role, term or leader changed: unless this node still leads the term
        of every pending proposal, they are all answered LOST."""
        pending = self.pending
        if pending and not (core.role is Role.LEADER and pending.all_in_term(core.term)):
            for run in pending.take_all():
                out.reply_to(run.identity).add_range(run.first_request_id, run.count, ReplyStatus.LOST, None)
