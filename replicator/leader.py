"""Where a leader-bound request goes: the node believed to lead, else the
next node of a rotation. Pure bookkeeping of the client core.

A client made by from_config (or connect(follow_leader=True)) follows: it
believes a node leads once it names it in a NOT_LEADER hint or answers a
leader-bound request with OK, and moves on to the next node of its rotation
when its belief is refuted (NOT_LEADER without a usable hint, LOST, BUSY
from a node not known to lead, silence, a send refused for want of a
connection). A connect-mode client never moves: every request goes to its
one node.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def parse_hint(value: Any) -> tuple[str | None, str | None]:
    """NOT_LEADER's value, [leader_id | None, leader_address | None], read defensively."""
    if isinstance(value, list | tuple) and len(value) == 2:
        leader_id, address = value
        return (
            leader_id if isinstance(leader_id, str) and leader_id else None,
            address if isinstance(address, str) and address else None,
        )
    return None, None


class LeaderTracker:
    """The believed leader, the rotation of nodes to try, and the address book."""

    def __init__(
        self, addresses: Sequence[str], *, follow: bool, book: Mapping[str, str] | None = None, start: int = 0
    ) -> None:
        """`addresses`: client addresses to try, in order; `book`: node id
        -> client address (hints may name only an id); `start`: the index
        of the rotation to begin at (spreads clients over the nodes)."""
        if not addresses:
            raise ValueError("a client needs at least one node address")
        self.follow = follow
        self.book: dict[str, str] = dict(book or {})
        self.rotation: list[str] = list(dict.fromkeys(addresses))
        self.turn = start  # rotation[turn % len(rotation)] is tried when no leader is known
        self.current: str | None = None  # the client address of the node believed to lead
        self._hinted_by: dict[str, str] = {}  # address learnt from a hint -> the node that gave it

    def target(self) -> str:
        """Where a leader-bound request goes now."""
        if not self.follow:
            return self.rotation[0]
        return self.current or self.rotation[self.turn % len(self.rotation)]

    def acted_as_leader(self, node: str) -> None:
        """`node` answered a leader-bound request with OK."""
        if self.follow:
            self.current = node

    def suspect(self, address: str) -> None:
        """`address` is not (or no longer) a usable leader: move on to the next node."""
        if not self.follow:
            return
        if self.current == address:
            self.current = None
        if self.rotation[self.turn % len(self.rotation)] == address:
            self.turn += 1

    def learn(self, refused_by: str, leader_id: str | None, address: str | None) -> bool:
        """Take a NOT_LEADER hint from `refused_by`; True if it names a
        leader other than that node, which becomes the believed leader."""
        if leader_id is not None and address is not None:
            self.book.setdefault(leader_id, address)
        if address is None and leader_id is not None:
            address = self.book.get(leader_id)
        if not self.follow:
            return False
        if address is None or address == refused_by:
            self.suspect(refused_by)
            return False
        if address not in self.rotation:
            self.rotation.append(address)
            self._hinted_by[address] = refused_by
        self.current = address
        return True

    def forget(self, address: str) -> None:
        """No link can be made to `address` (a hint we cannot connect to is
        no hint): drop it, and move on from the node that named it."""
        hinter = self._hinted_by.pop(address, None)
        if hinter is None:
            self.suspect(address)
            return
        self.rotation.remove(address)
        if self.current == address:
            self.current = None
        self.suspect(hinter)
