"""ClientSession: the client's protocol as a state machine with no I/O.

The Client (client.py) owns the thread, the sockets and the futures, and
drives a ClientSession the way the raft actor drives RaftCore (the sans-I/O
style of h11 and etcd-io/raft). Every input that depends on time carries
`now`; the session never reads a clock, touches a socket or a thread, or
resolves a future:

    session.submit(request)               a call (Request, built with the caller's clock)
    session.receive(node, message, now)   a decoded answer from the node at address `node`
    session.tick(now)                     the clock reached `now`: fire due timers
    sends = session.flush(now)            what to send: Sends, each to one address
    session.sent(send, now)               ... and what became of each Send: handed to a
    session.refused(send, now)                connected link, refused for want of a connection,
    session.unreachable(send, why, now)       no link can be made to its address, or it
    session.failed(send, why)                 cannot be sent at all
    session.close()                       give up every live request

    session.take_resolved()               requests answered or given up since the last call
                                          (`result` or `error` set)
    session.next_deadline()               when tick() and flush() are due next

Exactly-once (Raft dissertation 6.3). A session is a random 16-byte client
id and sequence numbers 1, 2, 3... for its commands. Every attempt at a
command, to whichever node, carries the SAME seq, so the apply actor applies
it once and answers retries from its session cache; each attempt also
carries `first_incomplete`, the lowest seq still waiting for an answer, so
the cluster can forget older results. A command given up leaves the window,
and a later call with the same bytes is a new command.

Retries. Each attempt has its own request id, so every answer is matched to
the attempt (and node) it answers:

- NOT_LEADER: a following session goes to the hinted leader at once, or,
  when the hint is empty (an election), tries the next node after a pause;
  a connect-mode session fails the call with NotLeaderError(leader_id,
  leader_address), or ReplicationTimeout if an earlier attempt may already
  have been proposed (then "not appended anywhere" would be a lie).
- LOST: proposed, then leadership changed; retried at the (new) leader with
  the same seq after a pause.
- BUSY: retried after an exponential backoff (elsewhere, if that node is not
  known to lead).
- no answer within the resend interval (retry.py): resent, same seq, to the
  believed leader; after a second silent interval that node is suspected and
  the next one is tried, so a stopped leader does not hold the client.
- a send refused for want of a connection (links use ZMQ_IMMEDIATE, so such
  a send is *certainly* not delivered): tried again shortly (the next node,
  when following).

Every live request is looked at again by its deadline (schedule.py), and
resolves then with the honest error (requests.expired): ReplicationTimeout
if an attempt may have been proposed, ClusterUnavailable otherwise. Success
is reported only on an OK answer.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import msgpack
from sandzmq.protocol import (
    ClientQuery,
    ClientReply,
    ClientSubmit,
    ReplyStatus,
    StatusReply,
    StatusRequest,
    encode_command,
)
from sandzmq.replicator.leader import LeaderTracker, parse_hint
from sandzmq.replicator.requests import Kind, Request, Send, State, closed, expired
from sandzmq.replicator.retry import RetryPolicy, RoundTrip
from sandzmq.replicator.schedule import Schedule

from sandzmq.errors import NotLeaderError, ReplicationTimeout, SandzmqError

#: Requests per ClientSubmit, and their payload bytes: one message stays far
#: below the envelope's size limit and one loop turn's latency stays bounded.
MAX_SUBMIT_REQUESTS = 4096
MAX_SUBMIT_BYTES = 8 << 20

_COMMAND, _STATUS = Kind.COMMAND, Kind.STATUS
_WAITING, _DONE = State.WAITING, State.DONE
_OK, _NOT_LEADER, _LOST, _ERROR, _BUSY = (
    int(s) for s in (ReplyStatus.OK, ReplyStatus.NOT_LEADER, ReplyStatus.LOST, ReplyStatus.ERROR, ReplyStatus.BUSY)
)
_KNOWN_STATUS = frozenset(int(s) for s in ReplyStatus)
_STATS = (
    "submits",
    "requests_sent",
    "resends",
    "replies",
    "stale_replies",
    "bad_replies",
    "unsent",
    "not_leader",
    "busy",
    "lost",
)


class ClientSession:
    """One client session with a cluster: requests, their attempts, timers and the leader."""

    def __init__(
        self,
        addresses: Sequence[str],
        *,
        client_id: bytes,
        follow_leader: bool = True,
        node_addresses: Mapping[str, str] | None = None,
        policy: RetryPolicy | None = None,
        rng: random.Random | None = None,
    ) -> None:
        """`addresses`: client addresses to try, in order; `node_addresses`:
        node id -> client address (for hints that name only an id);
        `rng`: for the first node to try and the BUSY jitter."""
        self.client_id = client_id
        self.policy = policy or RetryPolicy()
        self._rng = rng or random.Random()
        rotation = list(dict.fromkeys(addresses))
        start = self._rng.randrange(len(rotation)) if follow_leader and rotation else 0
        self.leader = LeaderTracker(rotation, follow=follow_leader, book=node_addresses, start=start)
        self.rtt = RoundTrip()
        #: Counters for tests, benchmarks and debugging.
        self.stats: dict[str, int] = dict.fromkeys(_STATS, 0)
        #: Every attempt out and not answered or refused: request id -> request.
        self._attempts: dict[int, Request] = {}
        self._schedule = Schedule(self._attempts)
        #: Every request submitted and not finished, by seq (commands) or negative key.
        self._live: dict[int, Request] = {}
        self._next_seq = 1
        self._low_seq = 1  # no seq below this is live (see _first_incomplete)
        self._next_key = -1
        self._next_rid = 1
        self._sends: list[Send] = []  # of the last flush
        self._unreported = 0  # ... of which the driver has not said what became
        self._resolved: list[Request] = []
        self._pack = msgpack.Packer().pack  # reused: cheaper than packb per payload

    # ------------------------------------------------------------------ inputs

    def submit(self, request: Request) -> None:
        """A new call: numbered (commands get the next seq) and ready to send."""
        if request.kind is _COMMAND:
            request.seq = self._next_seq
            self._next_seq += 1
        else:
            request.seq = self._next_key
            self._next_key -= 1
        self._live[request.seq] = request
        self._schedule.make_ready(request)

    def receive(self, node: str, message: object, now: float) -> None:
        """A decoded message from the node whose client address is `node`."""
        self._check_reported()
        kind = type(message)
        if kind is ClientReply:
            answer, sample = self._answer, None
            for rid, status, value in zip(message.request_ids, message.statuses, message.values):  # type: ignore[attr-defined]
                done = answer(node, rid, status, value, now, False)
                if done is not None and done.attempts == 1:
                    sample = done  # Karn's rule: only an answer to a request sent once times the round trip
            if sample is not None:  # one sample per message
                self.rtt.observe(now - sample.sent_at)
        elif kind is StatusReply:
            self._answer(node, message.request_id, _OK, message.status, now, True)  # type: ignore[attr-defined]
        else:
            self.stats["bad_replies"] += 1

    def tick(self, now: float) -> None:
        """Look at every request whose timer is due: give up the expired,
        wake the paused, resend the unanswered."""
        self._check_reported()
        schedule = self._schedule
        for request in schedule.pop_due(now):
            if now >= request.deadline:
                self._finish(request, None, expired(request))
            elif request.state is _WAITING:
                schedule.make_ready(request)
            elif now >= request.due:
                self._on_silence(request)
            else:  # sent with requests due earlier
                schedule.watch_again(request)

    def flush(self, now: float) -> list[Send]:
        """Every READY request as Sends: all commands as ClientSubmits to the
        believed leader, then each query and status request on its own. A
        request whose deadline has passed is given up instead. The driver
        must report each Send (sent, refused, unreachable or failed)."""
        self._check_reported()
        taken = self._schedule.take_ready()
        if not taken:
            return []
        sends: list[Send] = []
        commands, others = [], []
        for request in taken:
            if now >= request.deadline:
                self._finish(request, None, expired(request))
            elif request.kind is _COMMAND:
                commands.append(request)
            else:
                others.append(request)
        if commands:
            self._add_submits(sends, self.leader.target(), commands)
        for request in others:
            address = request.fixed if request.fixed is not None else self.leader.target()
            rid = self._new_rids(1)
            if request.kind is _STATUS:
                message: StatusRequest | ClientQuery = StatusRequest(rid)
            else:
                message = ClientQuery(rid, request.consistency, request.body)
            sends.append(Send(address, message, [request], rid))
        self._sends = sends
        self._unreported = len(sends)
        return sends

    def sent(self, send: Send, now: float) -> None:
        """`send` was handed to a connected link: its attempts are out."""
        self._reported(send)
        requests, first = send.requests, send.first_rid
        self.stats["submits"] += 1
        self.stats["requests_sent"] += len(requests)
        attempts, address = self._attempts, send.address
        fixed_interval, resend_after = self.policy.resend_interval, self.rtt.resend_after
        last_timeout, interval, first_due = -1.0, 0.0, math.inf
        for rid, request in enumerate(requests, first):
            attempts[rid] = request
            if request.current_open:  # an earlier attempt is still unanswered
                if request.older is None:
                    request.older = set()
                request.older.add(request.current_rid)
            request.current_open = True
            request.current_rid = rid
            request.current_node = address
            request.attempts += 1
            request.sent_at = now
            if request.timeout != last_timeout:
                last_timeout = request.timeout
                interval = fixed_interval or resend_after(last_timeout)
            due = now + interval
            if due > request.deadline:
                due = request.deadline
            request.due = due
            if due < first_due:
                first_due = due
        self._schedule.watch_sent(requests, first, first_due)

    def refused(self, send: Send, now: float) -> None:
        """The link of `send.address` has no connection: nothing was
        delivered, so the attempts do not count. Try again shortly."""
        self._reported(send)
        self.stats["unsent"] += len(send.requests)
        self.leader.suspect(send.address)
        for request in send.requests:
            request.refusal = f"{send.address} is not reachable"
            self._retry(request, now + self.policy.unsent_retry, now)

    def unreachable(self, send: Send, reason: str, now: float) -> None:
        """No link can be made to `send.address` (a bad address). A request
        bound to that address fails; a leader-bound one (the address came
        from a hint) is retried after the election pause, elsewhere."""
        self._reported(send)
        if send.requests[0].fixed is not None:
            self._fail(send, reason)
            return
        self.stats["bad_replies"] += 1
        self.leader.forget(send.address)
        for request in send.requests:
            request.refusal = reason
            self._retry(request, now + self.policy.election_pause, now)

    def failed(self, send: Send, reason: str) -> None:
        """`send` cannot be sent at all (it cannot be encoded): its requests fail."""
        self._reported(send)
        self._fail(send, reason)

    def close(self) -> None:
        """Give up every live request (the client is closing)."""
        for request in list(self._live.values()):
            self._finish(request, None, closed(request))

    # ----------------------------------------------------------------- outputs

    def take_resolved(self) -> list[Request]:
        """The requests answered or given up since the last call, each with
        `result` or `error` set, in the order they resolved."""
        resolved, self._resolved = self._resolved, []
        return resolved

    def next_deadline(self) -> float | None:
        """When tick() and flush() are due next: -inf if there is work now,
        None if the session waits only for input."""
        if self._resolved:
            return -math.inf
        return self._schedule.next_time()

    # ------------------------------------------------------------------- views

    @property
    def live(self) -> int:
        """Requests submitted and not resolved."""
        return len(self._live)

    @property
    def attempts_out(self) -> int:
        """Attempts that went out and are neither answered nor refused."""
        return len(self._attempts)

    def describe(self, now: float) -> str:
        """One line on what the session holds, for diagnostics."""
        ready, timers = self._schedule.counts()
        due = self._schedule.next_time()
        when = f", next in {due - now:.3f} s" if due is not None and due > -math.inf else ""
        return (
            f"live {len(self._live)}, ready {ready}, sending {self._unreported}, attempts out "
            f"{len(self._attempts)}, timers {timers}{when}"
        )

    def audit(self) -> list[str]:
        """Live requests that are not in exactly one place that looks at
        them again by their deadline (empty: all is well); for tests."""
        sending = [r for s in self._sends if not s.reported for r in s.requests]
        return self._schedule.misplaced(self._live.values(), sending)

    # ----------------------------------------------------------------- answers

    def _answer(self, node: str, rid: int, status: int, value: Any, now: float, status_reply: bool) -> Request | None:
        """One answer to the attempt `rid`; the request it completed with OK, if any."""
        request = self._attempts.get(rid)
        if request is None:
            self.stats["stale_replies"] += 1
            return None
        if status == _OK:
            if status_reply is not (request.kind is _STATUS):
                self.stats["bad_replies"] += 1  # an OK of the wrong shape is no answer: the attempt stays open
                return None
            del self._attempts[rid]
            self.stats["replies"] += 1
            if request.fixed is None:
                self.leader.acted_as_leader(node)
            self._finish(request, value, None)
            return request
        if status not in _KNOWN_STATUS:
            self.stats["bad_replies"] += 1  # not an answer: the attempt stays open
            return None
        del self._attempts[rid]
        self.stats["replies"] += 1
        latest = rid == request.current_rid
        if latest:
            request.current_open = False
            request.silent = 0
        elif request.older is not None:
            request.older.discard(rid)
        if status == _ERROR:
            self._finish(request, None, SandzmqError(f"{node} refused the request: {value}"))
        elif status == _NOT_LEADER:
            self._on_not_leader(request, node, value, latest, now)
        elif status == _BUSY:
            self.stats["busy"] += 1
            if latest:
                request.busy += 1
                request.refusal = f"{node} is busy"
                if request.fixed is None and self.leader.current != node:
                    self.leader.suspect(node)  # a node that is starting (or overloaded) but not known to lead
                self._retry(request, now + self.policy.busy_pause(request.busy, self._rng), now)
        elif status == _LOST:
            self.stats["lost"] += 1
            request.maybe_proposed = True
            if latest:
                request.refusal = f"{node} lost its leadership after proposing the command"
                self.leader.suspect(node)
                self._retry(request, now + self.policy.election_pause, now)
        return None

    def _on_not_leader(self, request: Request, node: str, value: Any, latest: bool, now: float) -> None:
        self.stats["not_leader"] += 1
        leader_id, address = parse_hint(value)
        redirected = self.leader.learn(node, leader_id, address)
        if not latest:
            return
        if not self.leader.follow:
            if request.kind is _COMMAND and request.may_have_been_proposed:
                self._finish(
                    request,
                    None,
                    ReplicationTimeout(
                        f"{node} is no longer the leader and an earlier attempt may have been proposed: "
                        "the command's outcome is unknown"
                    ),
                )
            else:
                hinted = address or self.leader.book.get(leader_id or "")
                self._finish(request, None, NotLeaderError(leader_id, hinted))
            return
        request.refusal = f"{node} is not the leader" + ("" if leader_id else " and knows of none")
        self._retry(request, now if redirected else now + self.policy.election_pause, now)

    def _on_silence(self, request: Request) -> None:
        """No answer within the resend interval: resend; suspect a node that stays silent."""
        request.silent += 1
        self.stats["resends"] += 1
        if request.silent >= 2 and request.fixed is None and request.current_node is not None:
            self.leader.suspect(request.current_node)
            request.silent = 0
        self._schedule.make_ready(request)

    # ----------------------------------------------------------------- helpers

    def _retry(self, request: Request, at: float, now: float) -> None:
        """Send `request` again at `at`: now, or after a pause; or give it up
        if its deadline has passed (a request made ready at once gets no
        timer, and only timers and flushes look at deadlines)."""
        if now >= request.deadline:
            self._finish(request, None, expired(request))
        elif at <= now:
            self._schedule.make_ready(request)
        else:
            self._schedule.wake_at(request, at)

    def _finish(self, request: Request, result: Any, error: SandzmqError | None) -> None:
        """Resolve `request`: it leaves the session, and take_resolved() hands it out."""
        if request.state is _DONE:
            return
        request.state = _DONE
        request.token = 0  # voids the timer entry that covered it
        self._live.pop(request.seq, None)
        attempts = self._attempts
        if request.current_open:
            attempts.pop(request.current_rid, None)
        if request.older:
            for rid in request.older:
                attempts.pop(rid, None)
        request.result = result
        request.error = error
        self._resolved.append(request)

    def _fail(self, send: Send, reason: str) -> None:
        for request in send.requests:
            self._finish(request, None, SandzmqError(f"cannot send the request: {reason}"))

    def _first_incomplete(self) -> int:
        """The lowest seq still live (or the next one). Seqs are consecutive,
        so a pointer that only moves up replaces a heap."""
        low, live, end = self._low_seq, self._live, self._next_seq
        while low < end and low not in live:
            low += 1
        self._low_seq = low
        return low

    def _add_submits(self, sends: list[Send], address: str, commands: list[Request]) -> None:
        """Commands as few ClientSubmits as the size limits allow."""
        pack, client_id = self._pack, self.client_id
        first_incomplete = self._first_incomplete()
        payloads = [encode_command(client_id, r.seq, first_incomplete, r.body, pack) for r in commands]
        if len(payloads) <= MAX_SUBMIT_REQUESTS and sum(map(len, payloads)) <= MAX_SUBMIT_BYTES:
            first = self._new_rids(len(commands))
            sends.append(Send(address, ClientSubmit(first, payloads), commands, first))
            return
        for lo, hi in chunk_bounds(payloads):
            first = self._new_rids(hi - lo)
            sends.append(Send(address, ClientSubmit(first, payloads[lo:hi]), commands[lo:hi], first))

    def _new_rids(self, count: int) -> int:
        """The first of `count` new consecutive request ids (a refused send's are not reused)."""
        first = self._next_rid
        self._next_rid = first + count
        return first

    def _reported(self, send: Send) -> None:
        if send.reported:
            raise RuntimeError("a Send was reported twice")
        send.reported = True
        self._unreported -= 1
        if not self._unreported:
            self._sends = []  # (they hold their requests, whose callers may be waiting to be freed)

    def _check_reported(self) -> None:
        """Every Send of the last flush must be reported before anything
        else: its requests are in no other place (schedule.py)."""
        if self._unreported:
            raise RuntimeError(f"{self._unreported} Send(s) of the last flush not reported (sent, refused, ...)")


def chunk_bounds(payloads: Sequence[bytes]) -> Iterable[tuple[int, int]]:
    """[lo, hi) slices of `payloads` for ClientSubmits that stay well inside
    the message size limit."""
    lo, size = 0, 0
    for i, payload in enumerate(payloads):
        if i > lo and (i - lo >= MAX_SUBMIT_REQUESTS or size + len(payload) > MAX_SUBMIT_BYTES):
            yield lo, i
            lo, size = i, 0
        size += len(payload)
    if lo < len(payloads):
        yield lo, len(payloads)
