"""The apply actor: hosts the StateMachine and applies committed entries in log order.

The raft actor sends committed entries in ApplyBatches; this actor applies a
batch only if it follows on from its applied index, and otherwise answers
ApplyState so the raft actor resends from the right place (after a restart
of either side, or a lost message). It starts at applied index 0 and is
brought back to its state by replay: the raft actor hands it the committed
entries from the start of the log (there are no snapshots yet to start
from).

Per entry (SPEC 6):
- NOOP and CONFIG entries are Raft's own: they advance the applied index,
  the StateMachine never sees them, and they get no result;
- a command goes through the client sessions (sessions.py): a retry returns
  the first result, a stale duplicate gets an error, anything else is
  applied once and its result remembered;
- a read (ReadPayload) is StateMachine.query at that point of the log: a
  linearizable read until ReadIndex lands; nothing is remembered;
- a payload that does not decode, a StateMachine that raises, a result that
  is not msgpack-able or too large: the entry still counts as applied, and
  its result is (ERROR, one line). That must be the same on every node (the
  sessions keep it for retries), so the message depends only on the entry
  and the state: memory addresses are blanked out of exception texts, and the
  msgpack check runs on every node, not only on the leader that sends results.
  A StateMachine exception never stops the actor; it is logged (at most once
  a second, with a count, so a machine that fails on every entry cannot flood
  the log).

The apply actor answers with one ApplyResults per batch when the raft actor
asks (want_results: the leader has clients waiting), one result per NORMAL
entry. Otherwise it still reports its applied index, with an empty
ApplyResults at most every REPORT_INTERVAL_S seconds or REPORT_ENTRIES
entries, for status and for the raft actor's bookkeeping.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Sequence
from typing import Any

import msgpack
from sandzmq.node.sessions import Result, Sessions
from sandzmq.protocol import (
    TO_APPLY,
    ApplyBatch,
    ApplyResults,
    ApplyState,
    CommandPayload,
    LocalQuery,
    LocalQueryResult,
    ReadPayload,
    ReplyStatus,
    command_fields,
    decode_payload,
)
from sandzmq.raft.messages import Entry, EntryColumns, EntryKind, entry_rows
from sandzmq.transport import DEFAULT_MAX_MESSAGE_BYTES, Acceptance, Envelope, Inbox, PeerLink

from sandzmq.config import ClusterConfig
from sandzmq.state_machine import StateMachine, load_state_machine

from .base import SocketActor
from .layout import APPLY_IDENTITY, RAFT_IDENTITY, NodeLayout
from .process import EXIT_FAILURE, EXIT_REFUSED, bind_inbox, request_exit

log = logging.getLogger(__name__)

#: Largest packed result of one entry: beyond it the result is replaced by an
#: error (it could never reach the client: the raft actor batches replies
#: into messages of at most DEFAULT_MAX_MESSAGE_BYTES).
MAX_RESULT_BYTES = DEFAULT_MAX_MESSAGE_BYTES // 4
#: Without want_results, the applied index is reported this often at most...
REPORT_INTERVAL_S = 0.1
#: ... or after this many entries.
REPORT_ENTRIES = 10_000
#: Reported even when nothing changed, this often: a sign of life.
ALIVE_INTERVAL_S = 0.5
#: Longest error text in a result.
MAX_ERROR_CHARS = 500

_OK = int(ReplyStatus.OK)
_ERROR = int(ReplyStatus.ERROR)
_NORMAL = int(EntryKind.NORMAL)
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")
_SPACE = re.compile(r"\s+")


def one_line(text: str) -> str:
    """`text` as one deterministic line: whitespace collapsed, object
    addresses (which differ between nodes) removed, length capped."""
    text = _SPACE.sub(" ", _ADDRESS.sub("", text)).strip()
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 3] + "..."


def result_problem(value: Any) -> str | None:
    """Why `value` cannot be a result (not msgpack-able, too large), or None."""
    try:
        size = len(msgpack.packb(value))
    except Exception as exc:  # msgpack raises TypeError, ValueError, OverflowError, ...
        return one_line(f"result is not msgpack-able: {type(exc).__name__}: {exc}")
    if size > MAX_RESULT_BYTES:
        return f"result is {size} bytes packed, above the limit of {MAX_RESULT_BYTES} bytes"
    return None


def _normal_entries(entries: Sequence[Entry]) -> tuple[list[int], list[int], list[bytes]]:
    """(indexes, terms, datas) of the NORMAL entries: the ones with results.
    A batch of only NORMAL entries (all but one per term) is taken as its
    columns, without a look at each entry."""
    if isinstance(entries, EntryColumns) and entries.kinds.count(_NORMAL) == len(entries):
        first = entries.first_index
        return list(range(first, first + len(entries))), list(entries.terms), entries.datas
    rows = [row for row in entry_rows(entries) if row[2] == _NORMAL]
    return [r[0] for r in rows], [r[1] for r in rows], [r[3] for r in rows]


class ApplyActor(SocketActor):
    """See the module docstring."""

    tick_interval = REPORT_INTERVAL_S

    def __init__(self, config: ClusterConfig, node_id: str) -> None:
        super().__init__()
        self.config = config
        self.node_id = node_id
        self.layout = NodeLayout.of(config, node_id)
        self.envelope = Envelope(config.name)
        self.sm: StateMachine | None = None
        self.sessions = Sessions()
        self.applied_index = 0
        self.inbox: Inbox | None = None
        self.link: PeerLink | None = None
        self._pid = os.getpid()
        self.incarnation = int.from_bytes(os.urandom(6), "big") | 1  # a new value: this apply actor restarted
        self._rejected_generation = -1  # of the last batch answered with ApplyState
        self._reported_index = -1  # applied index last sent to the raft actor
        self._reported_at = 0.0
        self._next_error_log = 0.0
        self.sm_errors = 0  # entries or queries whose StateMachine call raised
        self.unexpected = 0  # well-formed messages that are not for the apply actor

    @property
    def dropped(self) -> int:
        """Messages refused: malformed or foreign frames, and unexpected types."""
        return self.envelope.drops.total + self.unexpected

    # ------------------------------------------------------------------ life cycle

    def open(self) -> None:
        spec = self.config.state_machine
        try:
            self.sm = load_state_machine(spec, dict(self.config.state_machine_options))
        except Exception as exc:  # import errors, bad options, a constructor that raises
            log.error("cannot build the state machine %r: %s: %s", spec, type(exc).__name__, one_line(str(exc)))
            request_exit(self, EXIT_REFUSED)
            return
        try:
            accept: Acceptance = {RAFT_IDENTITY.encode(): self.envelope.registry.tags_of(*TO_APPLY)}
            self.inbox = bind_inbox(self.layout.apply_ipc, self.envelope, accept=accept)
            self.link = PeerLink(
                self.layout.raft_ipc, self.envelope, APPLY_IDENTITY, immediate=False, accept=frozenset()
            )
        except OSError as exc:
            log.error("cannot open the apply actor's sockets: %s", exc)
            request_exit(self, EXIT_FAILURE)
            return
        self.watch_inbox(self.inbox)
        self.watch_link(self.link)
        log.info("apply actor up on %s with state machine %s", self.layout.apply_ipc, type(self.sm).__qualname__)
        self._send_state()

    def close(self) -> None:
        for sock in (self.inbox, self.link):
            if sock is not None:
                sock.close()

    # ------------------------------------------------------------------ messages

    def handle(self, message: Any, reply_to: bytes | None) -> None:
        kind = type(message)
        if kind is ApplyBatch:
            self._on_batch(message)
        elif kind is LocalQuery:
            self._on_query(message)
        else:
            self.unexpected += 1

    def handle_failed(self, message: Any) -> None:
        self.unexpected += 1

    def on_tick(self) -> None:
        # Also when nothing changed, every ALIVE_INTERVAL_S: the raft actor
        # takes silence for a dead apply actor and stops leading.
        if self.link is not None and (
            self.applied_index != self._reported_index or time.monotonic() - self._reported_at >= ALIVE_INTERVAL_S
        ):
            self._report()

    # ------------------------------------------------------------------ batches

    def _on_batch(self, batch: ApplyBatch) -> None:
        entries = batch.entries
        if (
            not entries
            or entries[0].index != self.applied_index + 1
            or entries[-1].index - entries[0].index + 1 != len(entries)
        ):
            if batch.generation != self._rejected_generation:  # once per generation (see ApplyBatch)
                self._rejected_generation = batch.generation
                self._send_state(batch.generation)
            return
        results = self._apply(entries)
        self.applied_index = results.applied_index = entries[-1].index
        if not results.indexes:
            if batch.want_results:
                self._report(results)
            else:
                self._maybe_report()
            return
        if batch.want_results:
            # The leader's encode doubles as the msgpack check (see _vet).
            try:
                frame = self.envelope.encode(results)
            except Exception:
                frame = None
            if frame is not None and len(frame) <= MAX_RESULT_BYTES:
                self._send_frame(frame)
                return
            self._vet(results, entries)
            self._report(results)
            return
        try:
            vetted = len(msgpack.packb(results.values)) <= MAX_RESULT_BYTES
        except Exception:
            vetted = False
        if not vetted:
            self._vet(results, entries)
        self._maybe_report()

    def _apply(self, entries: list[Entry]) -> ApplyResults:
        """The hot loop: one result per NORMAL entry, in columns. Locals only,
        no logging. A well-formed command payload takes command_fields' fast
        path (the general decode_payload, with its error messages, is the
        fallback)."""
        assert self.sm is not None
        indexes, terms, datas = _normal_entries(entries)
        statuses: list[int] = []
        values: list[Any] = []
        admit = self.sessions.admit
        sm_apply = self.sm.apply
        sm_query = self.sm.query
        OK, ERROR = _OK, _ERROR
        for index, data, body in zip(indexes, datas, command_fields(datas)):
            if body is not None:
                _, client_id, seq, first_incomplete, command = body
            else:  # not the usual command: the general decoder, with its error messages
                try:
                    payload = decode_payload(data)
                except Exception as exc:
                    statuses.append(ERROR)
                    values.append(one_line(f"undecodable entry payload: {exc}"))
                    continue
                if isinstance(payload, ReadPayload):  # a read through the log
                    try:
                        values.append(sm_query(payload.query))
                        statuses.append(OK)
                    except Exception as exc:
                        statuses.append(ERROR)
                        values.append(self._sm_failed(index, "query", exc))
                    continue
                client_id, seq, first_incomplete, command = (
                    payload.client_id,
                    payload.seq,
                    payload.first_incomplete,
                    payload.command,
                )
            admitted = admit(client_id, seq, first_incomplete)
            if isinstance(admitted, dict):  # not seen before: apply, and keep the result for retries
                try:
                    result: Result = (OK, sm_apply(command))
                except Exception as exc:
                    result = (ERROR, self._sm_failed(index, "apply", exc))
                admitted[seq] = result
            else:
                result = admitted
            statuses.append(result[0])
            values.append(result[1])
        return ApplyResults(indexes, terms, statuses, values, self.applied_index)

    def _vet(self, results: ApplyResults, entries: list[Entry]) -> None:
        """Replace every result that cannot travel by an error, here and in
        the sessions. The slow path, taken only when packing the whole
        batch's results failed or was too large; the outcome for each result
        depends on that result alone, so every node ends up with the same."""
        first = entries[0].index
        for position, (index, value) in enumerate(zip(results.indexes, results.values)):
            problem = result_problem(value)
            if problem is None:
                continue
            results.statuses[position] = _ERROR
            results.values[position] = problem
            try:
                payload = decode_payload(entries[index - first].data)
            except Exception:
                continue
            if type(payload) is CommandPayload:
                self.sessions.record(payload.client_id, payload.seq, payload.first_incomplete, (_ERROR, problem))

    def _sm_failed(self, index: int, call: str, exc: Exception) -> str:
        """The error result for a StateMachine call that raised; logged at most once a second."""
        self.sm_errors += 1
        message = one_line(f"state machine {call}() raised {type(exc).__name__}: {exc}")
        now = time.monotonic()
        if now >= self._next_error_log:
            self._next_error_log = now + 1.0
            log.error("at index %d (%d state machine errors so far): %s", index, self.sm_errors, message, exc_info=exc)
        return message

    # ------------------------------------------------------------------ local reads

    def _on_query(self, query: LocalQuery) -> None:
        assert self.sm is not None
        try:
            reply = LocalQueryResult(query.request_id, _OK, self.sm.query(query.query))
        except Exception as exc:
            reply = LocalQueryResult(query.request_id, _ERROR, self._sm_failed(self.applied_index, "query", exc))
        try:
            frame = self.envelope.encode(reply)
        except Exception:
            problem = result_problem(reply.value) or "result too large for one message"
            frame = self.envelope.encode(LocalQueryResult(query.request_id, _ERROR, problem))
        self._send_frame(frame, carries_applied_index=False)

    # ------------------------------------------------------------------ sending

    def _send_state(self, generation: int = 0) -> None:
        assert self.link is not None
        self.link.send(ApplyState(self._pid, self.applied_index, self.incarnation, generation))
        self._reported_index, self._reported_at = self.applied_index, time.monotonic()

    def _maybe_report(self) -> None:
        if (
            self.applied_index - self._reported_index >= REPORT_ENTRIES
            or time.monotonic() - self._reported_at >= REPORT_INTERVAL_S
        ):
            self._report()

    def _report(self, results: ApplyResults | None = None) -> None:
        """Send results (already vetted; none: only the applied index); the
        link splits them into as many messages as the frame limit needs."""
        if results is None:
            results = ApplyResults([], [], [], [], self.applied_index)
        assert self.link is not None
        self.link.send(results)
        self._reported_index, self._reported_at = self.applied_index, time.monotonic()

    def _send_frame(self, frame: bytes, carries_applied_index: bool = True) -> None:
        """Send a frame; one that carries the applied index (ApplyResults,
        ApplyState) also counts as the periodic report."""
        assert self.link is not None
        self.link.send_frame(frame)
        if carries_applied_index:
            self._reported_index, self._reported_at = self.applied_index, time.monotonic()
