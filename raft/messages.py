"""The vocabulary of the Raft core: log entries, peer messages, hard state.

These are plain data. The core consumes and produces them; the transport turns
them into msgpack and back (sandzmq.protocol declares how each travels,
without this module knowing it); the log-store writes
entries and hard state to disk. Nothing here does I/O.

Every peer message carries `src`, `dst` and the sender's `term`, as in the Raft
paper. Message classes are kept separate (rather than one struct with a type
field, as etcd-io/raft does) so that each handler's fields are explicit.

Room is left for later work: EntryKind.CONFIG for membership changes, the
`context` of heartbeats for ReadIndex, and further message classes
(TimeoutNow). InstallSnapshot and its response exist (SNAPSHOT_MESSAGE_TYPES)
but join MESSAGE_TYPES, the set the Raft actor accepts from peers, only once
the actors carry out the core's snapshot instructions.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, overload

#: The largest term and index a message may carry (SPEC 3: a value out of range
#: is refused, not adopted). Far below msgpack's 2**64 - 1, so that `term + 1`
#: and `index + count` always encode, and far above anything real: a cluster
#: that elects a leader every millisecond reaches 2**62 after 146 million years.
MAX_TERM = (1 << 62) - 1
MAX_INDEX = (1 << 62) - 1


class EntryKind(IntEnum):
    """What a log entry carries. Only NORMAL entries reach StateMachine.apply()."""

    NORMAL = 0  # a user command
    NOOP = 1  # written by each new leader so it can commit entries of its term
    CONFIG = 2  # reserved: a membership change (membership changes are not built yet)


@dataclass(slots=True)
class Entry:
    """One log entry. Treated as immutable once created."""

    index: int
    term: int
    data: bytes = b""
    kind: int = EntryKind.NORMAL


class EntryColumns(Sequence[Entry]):
    """Consecutive entries held as columns, as they arrive off the wire.

    The log-store and the apply actor only stream entries through (to disk,
    to the state machine): building one Entry object per entry for them
    cost more than the rest of their per-entry work. This reads like a
    sequence of Entry (an Entry is built on access), and `rows()` gives
    (index, term, kind, data) tuples made in C for the hot loops.
    Validation is the decoder's job (protocol.logdata.columns_from_wire).
    """

    __slots__ = ("datas", "first_index", "kinds", "terms")

    def __init__(self, first_index: int, terms: list[int], kinds: list[int], datas: list[bytes]) -> None:
        self.first_index = first_index
        self.terms = terms
        self.kinds = kinds
        self.datas = datas

    def __len__(self) -> int:
        return len(self.datas)

    @overload
    def __getitem__(self, i: int) -> Entry: ...
    @overload
    def __getitem__(self, i: slice) -> list[Entry]: ...
    def __getitem__(self, i: int | slice) -> Entry | list[Entry]:
        if isinstance(i, slice):
            return list(self)[i]
        n = len(self.datas)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError("entry position out of range")
        return Entry(self.first_index + i, self.terms[i], self.datas[i], EntryKind(self.kinds[i]))

    def __iter__(self) -> Iterator[Entry]:
        kinds = map(EntryKind, self.kinds)
        return map(Entry, range(self.first_index, self.first_index + len(self.datas)), self.terms, self.datas, kinds)

    def rows(self) -> Iterator[tuple[int, int, int, bytes]]:
        """(index, term, kind, data) per entry."""
        return zip(range(self.first_index, self.first_index + len(self.datas)), self.terms, self.kinds, self.datas)

    def __eq__(self, other: Any) -> bool:
        if not isinstance(other, Sequence) or len(other) != len(self):
            return False
        return all(a == b for a, b in zip(self, other))

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"EntryColumns({list(self)!r})"


def entry_rows(entries: Sequence[Entry]) -> Iterator[tuple[int, int, int, bytes]]:
    """(index, term, kind, data) per entry, for Entry lists and EntryColumns alike."""
    if isinstance(entries, EntryColumns):
        return entries.rows()
    return ((e.index, e.term, e.kind, e.data) for e in entries)


@dataclass(slots=True)
class HardState:
    """What must survive a crash: the term, the vote cast in it, and the commit index.

    term and vote must be durable before any message that depends on them
    leaves the node; commit is persisted lazily (it can be re-learned).
    """

    term: int = 0
    vote: str | None = None
    commit: int = 0


@dataclass(slots=True)
class Message:
    """Fields every peer message carries."""

    src: str
    dst: str
    term: int


@dataclass(slots=True)
class RequestVote(Message):
    """A (pre-)candidate asks for a vote. With pre_vote, `term` is the term the
    sender would campaign in; the receiver's term is not changed by it."""

    last_index: int
    last_term: int
    pre_vote: bool = False


@dataclass(slots=True)
class RequestVoteResponse(Message):
    """A vote, or a refusal. For a granted pre-vote `term` echoes the asked term."""

    granted: bool
    pre_vote: bool = False


@dataclass(slots=True)
class AppendEntries(Message):
    """Entries following (prev_index, prev_term), and the leader's commit index."""

    prev_index: int
    prev_term: int
    entries: list[Entry] = field(default_factory=list)
    commit: int = 0
    #: The entries' data lengths, when the decoder has them (it counts them in
    #: C from the column it reads): saves the log a pass. Not on the wire.
    sizes: list[int] | None = field(default=None, compare=False, repr=False)


@dataclass(slots=True)
class AppendEntriesResponse(Message):
    """The answer to one AppendEntries.

    On success `index` is the last index now known to match the leader's log
    (and durable on the follower). On rejection `index` is the prev_index that
    was rejected, and (hint_index, hint_term) is the follower's best guess at
    where the logs agree: the last index <= prev_index whose term is <= the
    leader's prev_term, with that term (etcd-io/raft's reject hint), so the
    leader can skip a whole term of divergent entries per round trip.
    """

    success: bool
    index: int
    hint_index: int = 0
    hint_term: int = 0


@dataclass(slots=True)
class Heartbeat(Message):
    """Leader liveness. `commit` is min(follower's match, leader commit), so a
    follower may commit up to it without a log check (as etcd-io/raft does).
    `context` is reserved for ReadIndex (0: none)."""

    commit: int
    context: int = 0


@dataclass(slots=True)
class HeartbeatResponse(Message):
    """Proof the follower still accepts this leader; echoes `context`."""

    context: int = 0


@dataclass(slots=True)
class InstallSnapshot(Message):
    """One chunk of the leader's snapshot (snapshot_index, snapshot_term):
    `data` goes at byte `offset` of the snapshot file; `done` marks the last
    chunk. Chunks are read from the file by the leader's owner and stamped by
    the core (RaftCore.send_snapshot_chunk), so the term is always current."""

    snapshot_index: int
    snapshot_term: int
    offset: int
    data: bytes = b""
    done: bool = False


@dataclass(slots=True)
class InstallSnapshotResponse(Message):
    """The follower's answer about snapshot (snapshot_index, snapshot_term).

    `next_offset`: every byte before it is durable in the follower's partial
    file (the leader never needs to resend them). `rejected`: a chunk did not
    start at next_offset (a gap: chunks were lost), so the leader goes back
    to next_offset. `installed`: the follower holds the whole snapshot (or
    already had every entry it covers): the leader resumes from the log
    after snapshot_index.
    """

    snapshot_index: int
    snapshot_term: int
    next_offset: int
    installed: bool = False
    rejected: bool = False


# Every class a peer can send, in a fixed order: the transport's type tags.
MESSAGE_TYPES: tuple[type[Message], ...] = (
    RequestVote,
    RequestVoteResponse,
    AppendEntries,
    AppendEntriesResponse,
    Heartbeat,
    HeartbeatResponse,
)

#: The snapshot messages: declared on the wire (sandzmq.protocol.peer) and
#: handled by the core, not yet accepted by the Raft actor (see above).
SNAPSHOT_MESSAGE_TYPES: tuple[type[Message], ...] = (InstallSnapshot, InstallSnapshotResponse)
