"""A client request as the client core (session.py) sees it: one replicate,
query or status call, from submit to its answer, and what to tell its
caller when it cannot be answered.

No I/O here, no clock and no future: a Request is built with the caller's
`now`, and the driver keeps whatever it answers the caller with (a future)
in `caller`, which the core never reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

from sandzmq.protocol import ClientQuery, ClientSubmit, StatusRequest

from sandzmq.errors import ClusterUnavailable, ReplicationTimeout, SandzmqError


class Kind(Enum):
    COMMAND = "command"  # replicate(): exactly once, with a session seq
    QUERY = "query"  # query(): answered by the leader, or by one node for "local"
    STATUS = "status"  # status(): a node's status report


class State(Enum):
    """Where a request is. A live request (not NEW, not DONE) is always in
    exactly one place that will look at it again by its deadline; the
    Schedule (schedule.py) writes these states, and places the request in
    the same step."""

    NEW = "new"  # built by the caller, not yet submitted
    READY = "ready"  # in the ready list: goes out with the next flush
    SENDING = "sending"  # in a Send handed to the driver, which must report what became of it
    SENT = "sent"  # an attempt is out; a timer entry looks at it again at `due` or its deadline
    WAITING = "waiting"  # paused (backoff, election, unsent retry); a timer entry makes it READY
    DONE = "done"  # answered or given up: `result` or `error` is set


_NEW = State.NEW

#: Requests resolve this much before their deadline (at most), so that a
#: caller's own `future.result(timeout)` with the same timeout sees the answer.
EARLY_S = 0.01


class Request:
    """One call, from hand-off to its final answer.

    A slotted class with a hand-written __init__ rather than a dataclass:
    one is built per call, and field default factories (a set per request,
    a clock read in __post_init__) were a measurable share of the client's
    CPU per request. Earlier attempts still unanswered live in `older`,
    made only when a request is sent a second time.
    """

    __slots__ = (
        "kind", "body", "timeout", "consistency", "fixed", "deadline", "due", "seq", "state", "token",
        "current_rid", "current_open", "older", "current_node", "maybe_proposed", "silent", "busy", "attempts",
        "refusal", "sent_at", "result", "error", "caller",
    )  # fmt: skip

    def __init__(
        self,
        kind: Kind,
        body: bytes,
        timeout: float,
        now: float,
        caller: Any = None,
        consistency: str = "",
        fixed: str | None = None,
    ) -> None:
        """`now`: when the caller made the call (its deadline counts from
        then, not from when the I/O thread takes it); `caller`: the driver's
        (a future), never read by the core; `fixed`: the address it must go
        to (a local query, a status request), None for the leader."""
        self.kind = kind
        self.body = body
        self.timeout = timeout
        self.caller = caller
        self.consistency = consistency
        self.fixed = fixed
        self.deadline = now + timeout - (EARLY_S if timeout >= 10 * EARLY_S else timeout / 10)
        self.state = _NEW
        self.due = 0.0  # SENT: when the current attempt counts as unanswered
        self.sent_at = 0.0  # when the latest attempt was sent (round-trip samples)
        # seq (commands; a negative key for the rest); token (names the one timer entry that
        # covers it, 0: none); the latest attempt's id; consecutive resend intervals without an
        # answer; BUSY answers so far; attempts that went out.
        self.seq = self.token = self.current_rid = self.silent = self.busy = self.attempts = 0
        self.current_open = False  # the latest attempt went out and is not answered or refused
        self.older: set[int] | None = None  # earlier attempts that went out and are not answered or refused
        self.current_node: str | None = None
        self.maybe_proposed = False  # a LOST answer: some leader proposed it
        self.refusal = ""  # why the last attempt did not go through, for the final error
        self.result: Any = None
        self.error: SandzmqError | None = None

    @property
    def may_have_been_proposed(self) -> bool:
        """A leader may hold it: an attempt is unanswered, or one was LOST."""
        return self.maybe_proposed or self.current_open or bool(self.older)

    def __repr__(self) -> str:
        return (
            f"<Request {self.kind.value} seq={self.seq} {self.state.value} attempts={self.attempts}"
            f" rid={self.current_rid} node={self.current_node}>"
        )


@dataclass(slots=True, eq=False)
class Send:
    """One message for the driver to hand to the link of `address`.

    Its requests are numbered consecutively from `first_rid` (the request
    id of each attempt). The driver must report what became of it, before it
    feeds the session anything else: sent(), refused(), unreachable() or
    failed()."""

    address: str
    message: ClientSubmit | ClientQuery | StatusRequest
    requests: list[Request]
    first_rid: int
    reported: bool = False


# ---------------------------------------------------------------- honest errors
#
# sandzmq.errors' promises: ReplicationTimeout (outcome unknown) if an
# attempt may have been proposed; ClusterUnavailable only when none can have
# been (nothing went out, or every attempt was refused with NOT_LEADER/BUSY).


def expired(request: Request) -> SandzmqError:
    """The deadline passed: say what may have happened."""
    waited = f"{request.timeout:g} s"
    if request.kind is Kind.STATUS:
        return ClusterUnavailable(f"no status from {request.fixed or 'the cluster'} within {waited}")
    if request.may_have_been_proposed:
        where = request.current_node or "the cluster"
        if request.kind is Kind.COMMAND:
            return ReplicationTimeout(
                f"the command was not confirmed within {waited} (last sent to {where}, "
                f"{request.attempts} attempt(s)): it may still commit"
            )
        return ReplicationTimeout(f"no answer to the query within {waited} (last sent to {where})")
    reason = request.refusal or "no node could be reached"
    return ClusterUnavailable(f"no leader took the request within {waited}: {reason}")


def closed(request: Request) -> SandzmqError:
    """The client was closed while the request was live."""
    if request.kind is Kind.COMMAND and request.may_have_been_proposed:
        return ReplicationTimeout("the client was closed before the command was confirmed: it may still commit")
    return ClusterUnavailable("the client was closed")
