"""The raft actor's half of the log-store protocol, with no I/O.

The log-store (actors/log_store.py) applies writes strictly in write-id order
within the epoch of the raft actor's life, and acknowledges them with
LogDurable(write id, where its log now ends). This side keeps what it needs
to make the log-store's word safe to rely on:

- every write sent and not yet acknowledged, with where the log must end
  after it (the core's PersistWrite.last_index/last_term);
- an acknowledgement counts only if the log ends where the core expects after
  that write; otherwise the log-store lost or refused something, nothing is
  taken as durable, and every unacknowledged write is resent (at most once a
  second for this reason: a log-store that keeps disagreeing must not be
  flooded);
- a resend is a LogSync from the first unacknowledged write, then those
  writes in order (appends supersede, so a resend is harmless; why, in
  actors/log_store.py). It happens when the log-store restarted (a new
  incarnation in its LogState), reports a gap (LogGap newer than our last
  LogSync), acknowledges a mismatch, or stays silent on unacknowledged
  writes for LOG_RESEND_AFTER_S (a LogGap lost on the way, or a log-store
  that dropped them: the resend is harmless, a stuck log is not);
- the nonce of the last LogSync or LogIdentity, so that only the LogState
  answering the latest request moves start-up on.

Messages go to `out`, the Output's log-store list; the time is the caller's.
"""

from __future__ import annotations

import logging
from collections import deque
from typing import Any

from sandzmq.protocol import LogDurable, LogGap, LogIdentity, LogState, LogSync, LogWrite
from sandzmq.raft import PersistWrite

log = logging.getLogger(__name__)

#: Unacknowledged writes older than this (seconds without progress) are resent.
LOG_RESEND_AFTER_S = 5.0
#: After a mismatched acknowledgement, at most one resend this often (seconds).
MISMATCH_RESEND_S = 1.0


class LogWrites:
    """Writes in flight to the log-store, and the requests that frame them.

    `stats` is the node's counter dict: this class counts `fsyncs`,
    `fsync_entries`, `log_resyncs` and `log_mismatches` in it.
    """

    def __init__(self, epoch: int, stats: dict[str, int]) -> None:
        self.epoch = epoch  # this raft actor's life: its write ids are its own
        self.stats = stats
        self.nonce = 0  # of the last LogSync or LogIdentity
        self.incarnation: int | None = None  # of the log-store whose state we took
        # Writes sent and not acknowledged: (write, last index and term the log must have after it).
        self.unacked: deque[tuple[LogWrite, int, int]] = deque()
        self.unacked_since = 0.0  # when the oldest of them was sent, or the last progress
        self.next_write_id = 1  # the id of the core's next write
        self.last_resync = float("-inf")

    # ------------------------------------------------------------------ requests

    def request_state(self, out: list[Any]) -> None:
        """LogSync: report what is durable, and take our writes from the next one on."""
        self.nonce += 1
        out.append(LogSync(self.nonce, self.epoch, self.next_write_id))

    def record_identity(self, cluster_id: str, proposal: int, out: list[Any]) -> int:
        """LogIdentity: record it, then answer with a LogState; returns that answer's nonce."""
        self.nonce += 1
        out.append(LogIdentity(self.nonce, cluster_id, proposal))
        return self.nonce

    def answers_latest(self, state: LogState) -> bool:
        """Whether `state` answers our latest LogSync or LogIdentity (not an
        older one, nor the log-store's unprompted hello)."""
        return state.nonce == self.nonce

    # ------------------------------------------------------------------ writes

    def issue(self, w: PersistWrite, now: float, out: list[Any]) -> None:
        """Send the core's write, and remember where the log must end after it."""
        write = LogWrite(w.write_id, w.entries, w.hard_state, w.must_sync, self.epoch)
        if not self.unacked:
            self.unacked_since = now
        self.unacked.append((write, w.last_index, w.last_term))
        self.next_write_id = w.write_id + 1
        out.append(write)

    def durable(self, ack: LogDurable, now: float, out: list[Any]) -> int:
        """The write id the core may now take as durable (0: none). Writes up
        to ack.write_id count only if the log ends where the core expects
        after that write; otherwise everything unacknowledged is resent."""
        unacked = self.unacked
        if ack.epoch != self.epoch or not unacked or ack.write_id < unacked[0][0].write_id:
            return 0  # a previous raft actor's write, or one already covered
        position = ack.write_id - unacked[0][0].write_id
        if position >= len(unacked):
            log.error("the log-store acknowledged write %d, which was never sent", ack.write_id)
            self.stats["log_mismatches"] += 1
            return 0
        _, last_index, last_term = unacked[position]
        if (ack.last_index, ack.last_term) != (last_index, last_term):
            self.stats["log_mismatches"] += 1
            if now - self.last_resync > MISMATCH_RESEND_S:
                self.resend(
                    f"the log-store acknowledged write {ack.write_id} with its log ending at "
                    f"({ack.last_index}, {ack.last_term}), not ({last_index}, {last_term})",
                    now,
                    out,
                )
            return 0
        made_durable = 0
        for _ in range(position + 1):
            made_durable += len(unacked.popleft()[0].entries)
        self.unacked_since = now
        if made_durable:  # one acknowledgement per fsync (group commit); commit-only writes are not fsync'd
            stats = self.stats
            stats["fsyncs"] += 1
            stats["fsync_entries"] += made_durable
        return ack.write_id

    # ------------------------------------------------------------------ resends

    def state(self, state: LogState, now: float, out: list[Any]) -> None:
        """A LogState while the core runs: a new incarnation means the
        log-store restarted, and whatever it had not acknowledged may be lost."""
        if state.incarnation != self.incarnation:
            self.incarnation = state.incarnation
            self.resend(f"log-store restarted (pid {state.pid})", now, out)

    def gap(self, gap: LogGap, now: float, out: list[Any]) -> None:
        """The log-store misses a write: resend, unless a LogSync was sent since."""
        if gap.sync_nonce >= self.nonce:
            self.resend(f"the log-store misses write {gap.expected}", now, out)

    def check_silence(self, now: float, out: list[Any]) -> None:
        """Resend writes left unacknowledged for too long."""
        if self.unacked and now - self.unacked_since > LOG_RESEND_AFTER_S:
            self.resend("no acknowledgement from the log-store", now, out)

    def resend(self, why: str, now: float, out: list[Any]) -> None:
        """LogSync from the first unacknowledged write, then every unacknowledged write, in order."""
        first = self.unacked[0][0].write_id if self.unacked else self.next_write_id
        log.warning("%s: resending %d unacknowledged writes from write %d", why, len(self.unacked), first)
        self.nonce += 1
        out.append(LogSync(self.nonce, self.epoch, first))
        out.extend(write for write, _, _ in self.unacked)
        self.stats["log_resyncs"] += 1
        self.last_resync = self.unacked_since = now
