"""The hand-off of committed entries to the apply actor, with no I/O.

The Raft core hands out committed entries in a bounded window
(RaftCore.confirm_applied); this side says where the apply actor is and when
to start over:

- Generations. Every ApplyBatch carries the current generation. The apply
  actor refuses a batch that does not follow on from its applied index and
  answers ApplyState(generation of that batch). A rewind (the core hands out
  again from the apply actor's applied index) happens for a new apply
  incarnation (it restarted) or a refusal of the current generation, and
  bumps the generation; refusals of batches sent before it are ignored. So
  the batches queued for a restarting apply actor cause one rewind in all,
  not one each (one each would resend the committed log once per refusal).
- Silence. The apply actor reports at least every 0.5 s; one silent for
  APPLY_SILENCE_S is taken for dead, and the node must not lead meanwhile
  (it could commit but never answer a client, nor apply what it commits).
"""

from __future__ import annotations

from sandzmq.protocol import ApplyBatch, ApplyResults, ApplyState
from sandzmq.raft import Entry

#: An apply actor silent this long (seconds) is taken for dead.
APPLY_SILENCE_S = 5.0


class ApplyFeed:
    """Where the apply actor is, and which generation of batches it is fed."""

    def __init__(self) -> None:
        self.incarnation = 0  # of the apply actor last heard from; 0 before it spoke
        self.generation = 1  # of the batches handed out since the last rewind
        self.applied_index = 0  # as last reported by the apply actor
        self.heard_at = float("inf")  # set when the node starts (never silent before)

    @property
    def has_spoken(self) -> bool:
        """Whether the apply actor has reported its state since this node started."""
        return self.incarnation != 0

    def heard(self, now: float) -> None:
        self.heard_at = now

    def silent(self, now: float) -> bool:
        """Whether the apply actor has been silent long enough to be taken for dead."""
        return now - self.heard_at > APPLY_SILENCE_S

    def state(self, state: ApplyState, now: float) -> bool:
        """Take an ApplyState; whether the core must hand out again from its
        applied index (a new incarnation, or a refusal of the current
        generation). The caller calls rewind() if it does."""
        self.heard_at = now
        restarted = state.incarnation != self.incarnation
        self.incarnation = state.incarnation
        self.applied_index = state.applied_index
        return restarted or state.generation == self.generation

    def rewind(self) -> None:
        """Batches handed out from now on belong to a new generation."""
        self.generation += 1

    def results(self, results: ApplyResults, now: float) -> None:
        self.heard_at = now
        self.applied_index = results.applied_index

    def batch(self, committed: list[Entry], want_results: bool) -> ApplyBatch:
        """The ApplyBatch for committed entries of the current generation."""
        return ApplyBatch(committed, want_results, self.generation)
