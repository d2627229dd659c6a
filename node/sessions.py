"""Client sessions: what makes a retried command apply exactly once.

The Raft dissertation (section 6.3) and LogCabin: every command carries its
client's id, a sequence number, and the lowest sequence number the client
still waits for (`first_incomplete`). The apply actor keeps, per client, the
result of every sequence number at or above first_incomplete, so that

- a retry of a command already applied (the leader changed before the client
  heard back) returns the first result instead of applying again;
- results below first_incomplete are dropped: the client has them;
- a command below first_incomplete with no result here is a stale duplicate
  (a retry that lost the race against the client's acknowledgement): it is
  answered with an error, never applied.

Results are kept per sequence number, not only the last one: a client has
many commands in flight, and they can commit out of order (seq 6 commits,
then the retry of 5 arrives; 5 must still be applied once, and 6 must not
be applied again).

Everything here is a deterministic function of the log: every node holds the
same sessions after applying the same entries, so any of them can become
leader and answer a retry. snapshot()/restore() move that state with the
state machine's snapshot (once snapshots exist: not yet).

Memory. Sessions are kept for ever for now: expiring them by log time (the
leader stamps entries with its clock, and every node expires the same
sessions at the same entry, as LogCabin does) is not built yet, so a
long-lived cluster with many short-lived clients grows. Per client, at most
`max_results` results are kept: a client that leaves more than that many
commands unacknowledged gets TOO_MANY_RESULTS for further ones (not applied;
the refusal itself is remembered as a shared constant, so a retry of the
same sequence number gets the same answer).

The state machine's result is kept by reference: it must be a fresh value,
not a live part of the state machine's state (StateMachine.apply's contract
asks for a msgpack-able value; the kv machine returns new dicts).
"""

from __future__ import annotations

from typing import Any

import msgpack
from sandzmq.protocol import ReplyStatus

#: A result as it travels back: (ReplyStatus, value).
Result = tuple[int, Any]

#: Results kept per client before further commands are refused.
MAX_RESULTS_PER_CLIENT = 100_000

STALE: Result = (
    ReplyStatus.ERROR,
    "stale request: already acknowledged (its sequence number is below the client's first incomplete one)",
)
TOO_MANY_RESULTS: Result = (
    ReplyStatus.ERROR,
    f"too many unacknowledged requests from this client (more than {MAX_RESULTS_PER_CLIENT} results held); not applied",
)

_SNAPSHOT_FORMAT = 1


class _Session:
    """One client: its acknowledgement point and the results above it."""

    __slots__ = ("first_incomplete", "results")

    def __init__(self, first_incomplete: int = 0) -> None:
        self.first_incomplete = first_incomplete
        self.results: dict[int, Result] = {}

    def advance(self, first_incomplete: int) -> None:
        """Forget the results below `first_incomplete` (the client has them).

        Every stored seq is >= the previous first_incomplete, so only
        [old, new) can hold results: scan that range or the dict, whichever is
        smaller (the dict with max() and clear() in C when everything in it
        is acknowledged, the usual case). Each seq is scanned once over the
        session's life."""
        old = self.first_incomplete
        if first_incomplete <= old:
            return
        self.first_incomplete = first_incomplete
        results = self.results
        if not results:
            return
        if first_incomplete - old < len(results):
            pop = results.pop
            for seq in range(old, first_incomplete):
                pop(seq, None)
        elif max(results) < first_incomplete:  # the usual case, everything held acknowledged: one C pass
            results.clear()
        else:
            for seq in [s for s in results if s < first_incomplete]:
                del results[seq]


class Sessions:
    """Every client's session, keyed by client id. See the module docstring."""

    __slots__ = ("_sessions", "max_results")

    def __init__(self, max_results: int = MAX_RESULTS_PER_CLIENT) -> None:
        self._sessions: dict[bytes, _Session] = {}
        self.max_results = max_results

    def __len__(self) -> int:
        return len(self._sessions)

    def lookup(self, client_id: bytes, seq: int) -> Result | None:
        """The result to return instead of applying, or None: apply it.

        A cached result for a retry; STALE for a seq the client has already
        acknowledged whose result is gone. Changes nothing."""
        session = self._sessions.get(client_id)
        if session is None:
            return None
        cached = session.results.get(seq)
        if cached is not None:
            return cached
        if seq < session.first_incomplete:
            return STALE
        return None

    def admit(self, client_id: bytes, seq: int, first_incomplete: int) -> Result | dict[int, Result]:
        """The apply actor's one call per command before applying: lookup(),
        after taking the entry's acknowledgement into account, plus the
        per-client cap.

        Returns the answer to give instead of applying (a Result tuple), or,
        when the command must be applied, the dict to store its result in,
        under `seq` (the client's results: one dict store instead of a
        second call that finds the session again, at every command on every
        node). The acknowledgement counts even for a duplicate (it is
        information the client sent with this entry); the cap refusal is
        recorded like any result, so every retry of that seq is refused the
        same way."""
        session = self._sessions.get(client_id)
        if session is None:
            session = self._sessions[client_id] = _Session(first_incomplete)
        elif first_incomplete > session.first_incomplete:
            session.advance(first_incomplete)
        results = session.results
        cached = results.get(seq)
        if cached is not None:
            return cached
        if seq < session.first_incomplete:
            return STALE
        if len(results) >= self.max_results:
            results[seq] = TOO_MANY_RESULTS
            return TOO_MANY_RESULTS
        return results

    def record(self, client_id: bytes, seq: int, first_incomplete: int, result: Result) -> None:
        """Remember `result` for (client_id, seq), after forgetting what the
        client acknowledged (everything below first_incomplete). A result for
        a seq that is itself acknowledged is not kept. Overwrites: the apply
        actor replaces a result that turned out not to be msgpack-able."""
        session = self._sessions.get(client_id)
        if session is None:
            session = self._sessions[client_id] = _Session(first_incomplete)
        elif first_incomplete > session.first_incomplete:
            session.advance(first_incomplete)
        if seq >= session.first_incomplete:
            session.results[seq] = result

    def first_incomplete(self, client_id: bytes) -> int | None:
        """The client's acknowledgement point, None for an unknown client (tests, status)."""
        session = self._sessions.get(client_id)
        return None if session is None else session.first_incomplete

    def result_count(self, client_id: bytes) -> int:
        """How many results are held for the client."""
        session = self._sessions.get(client_id)
        return 0 if session is None else len(session.results)

    # ------------------------------------------------------------------ snapshots

    def snapshot(self) -> bytes:
        """Every session as bytes, canonical (clients and seqs sorted), so that
        two nodes with the same sessions produce the same bytes."""
        clients = [
            [client_id, s.first_incomplete, [[seq, r[0], r[1]] for seq, r in sorted(s.results.items())]]
            for client_id, s in sorted(self._sessions.items())
        ]
        return msgpack.packb([_SNAPSHOT_FORMAT, self.max_results, clients])

    def restore(self, data: bytes) -> None:
        """Replace every session with those of a snapshot(); ValueError if the
        bytes are not one (the current sessions are then left untouched)."""
        try:
            version, max_results, clients = msgpack.unpackb(data, strict_map_key=False)
            if version != _SNAPSHOT_FORMAT:
                raise ValueError(f"format {version!r}, expected {_SNAPSHOT_FORMAT}")
            sessions: dict[bytes, _Session] = {}
            for client_id, first_incomplete, results in clients:
                session = _Session(int(first_incomplete))
                session.results = {int(seq): (status, value) for seq, status, value in results}
                sessions[bytes(client_id)] = session
        except Exception as exc:  # msgpack and unpacking raise several types
            raise ValueError(f"not a sessions snapshot: {exc}") from None
        self._sessions = sessions
        self.max_results = max_results
