"""When the client core tries a request again: the pauses after each kind
of refusal, and the silence after which an attempt counts as unanswered,
derived from the measured round trip as TCP's retransmission timer is
(RFC 6298, with Karn's rule: the session samples only answers to requests
sent once, whose round trip is unambiguous).
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """The pauses of a ClientSession, in seconds."""

    #: A send refused for want of a connection: try again (elsewhere, when following) after this.
    unsent_retry: float = 0.02
    #: NOT_LEADER without a hint, or LOST: an election is probably running.
    election_pause: float = 0.05
    #: BUSY: first backoff, doubled per BUSY answer, capped; each drawn within +-25 %.
    busy_backoff: tuple[float, float] = (0.01, 0.25)
    #: A fixed silence before a resend; None: from each call's timeout and the round trip.
    resend_interval: float | None = None

    def busy_pause(self, busy_answers: int, rng: random.Random) -> float:
        """The pause after the `busy_answers`-th BUSY answer to one request."""
        low, high = self.busy_backoff
        return min(high, low * 2 ** (busy_answers - 1)) * rng.uniform(0.75, 1.25)


def resend_interval(timeout: float, srtt: float = 0.0, rttvar: float = 0.0) -> float:
    """Silence before a resend: long enough that a merely slow commit is not
    duplicated (duplicates are harmless, but cost the leader work), short
    enough to leave room for a few attempts within the timeout.

    Under a deep load the answers themselves take long, and resending
    requests that are merely queued doubles the leader's work exactly when
    it has none to spare. So, as TCP's retransmission timer (RFC 6298), it
    is never below the smoothed round trip plus four times its variation;
    capped at half the timeout, so a silent node is still given up on in
    time."""
    floor = max(0.25, min(1.0, timeout / 4))
    return max(floor, min(srtt + 4 * rttvar, timeout / 2))


class RoundTrip:
    """The smoothed round trip of answered requests and its variation (RFC 6298, section 2)."""

    __slots__ = ("srtt", "rttvar")

    def __init__(self) -> None:
        self.srtt = 0.0  # 0: no sample yet
        self.rttvar = 0.0

    def observe(self, rtt: float) -> None:
        """One sample: the first sets both; later ones move them by 1/8 and 1/4."""
        if self.srtt == 0.0:
            self.srtt, self.rttvar = rtt, rtt / 2
        else:
            self.rttvar += (abs(self.srtt - rtt) - self.rttvar) / 4
            self.srtt += (rtt - self.srtt) / 8

    def resend_after(self, timeout: float) -> float:
        """The silence after which an attempt of a call with `timeout` is resent."""
        return resend_interval(timeout, self.srtt, self.rttvar)
