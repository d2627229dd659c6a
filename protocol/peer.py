"""The Raft core's peer messages on the wire.

The classes are the core's own (raft/messages.py): plain dataclasses, and the
core imports nothing from here. This module declares how each travels; the
body is the class's fields in order, `[src, dst, term, ...]`, so that an
AppendEntries is

    [src, dst, term, prev_index, prev_term, terms, kinds, datas, commit]

with its entries as columns following prev_index (logdata.py), and its
`sizes` not sent: the decoder fills it from the data column.
"""

from __future__ import annotations

from sandzmq.raft.messages import (
    MESSAGE_TYPES,
    AppendEntries,
    AppendEntriesResponse,
    Heartbeat,
    HeartbeatResponse,
    InstallSnapshot,
    InstallSnapshotResponse,
    RequestVote,
    RequestVoteResponse,
)

from .derive import NotSent
from .logdata import Entries, describe_entries
from .registry import declare


def _vote(m: RequestVote) -> str:
    pre = " pre-vote" if m.pre_vote else ""
    return f"{m.src}->{m.dst} RequestVote t{m.term}{pre} last=({m.last_index},t{m.last_term})"


def _vote_reply(m: RequestVoteResponse) -> str:
    pre = " pre-vote" if m.pre_vote else ""
    return f"{m.src}->{m.dst} RequestVoteResponse t{m.term}{pre} {'granted' if m.granted else 'refused'}"


def _append(m: AppendEntries) -> str:
    return (
        f"{m.src}->{m.dst} AppendEntries t{m.term} prev=({m.prev_index},t{m.prev_term}) "
        f"entries={describe_entries(m.entries)} commit={m.commit}"
    )


def _append_reply(m: AppendEntriesResponse) -> str:
    if m.success:
        return f"{m.src}->{m.dst} AppendEntriesResponse t{m.term} ok index={m.index}"
    return (
        f"{m.src}->{m.dst} AppendEntriesResponse t{m.term} reject index={m.index} hint=({m.hint_index},t{m.hint_term})"
    )


def _beat(m: Heartbeat) -> str:
    context = f" context={m.context}" if m.context else ""
    return f"{m.src}->{m.dst} Heartbeat t{m.term} commit={m.commit}{context}"


def _beat_reply(m: HeartbeatResponse) -> str:
    context = f" context={m.context}" if m.context else ""
    return f"{m.src}->{m.dst} HeartbeatResponse t{m.term}{context}"


def _snap(m: InstallSnapshot) -> str:
    done = " done" if m.done else ""
    return (
        f"{m.src}->{m.dst} InstallSnapshot t{m.term} snapshot=({m.snapshot_index},t{m.snapshot_term}) "
        f"offset={m.offset} data={len(m.data)}B{done}"
    )


def _snap_reply(m: InstallSnapshotResponse) -> str:
    what = "installed" if m.installed else "rejected" if m.rejected else "ok"
    return (
        f"{m.src}->{m.dst} InstallSnapshotResponse t{m.term} snapshot=({m.snapshot_index},t{m.snapshot_term}) "
        f"{what} next_offset={m.next_offset}"
    )


declare("p.vote", RequestVote, show=_vote)
declare("p.vote_reply", RequestVoteResponse, show=_vote_reply)
declare("p.append", AppendEntries, show=_append, entries=Entries(after="prev_index", sizes="sizes"), sizes=NotSent())
declare("p.append_reply", AppendEntriesResponse, show=_append_reply)
declare("p.beat", Heartbeat, show=_beat)
declare("p.beat_reply", HeartbeatResponse, show=_beat_reply)
declare("p.snap", InstallSnapshot, show=_snap)
declare("p.snap_reply", InstallSnapshotResponse, show=_snap_reply)

#: Every class a peer's Raft core sends (raft.messages.MESSAGE_TYPES), declared above.
PEER_MESSAGES: tuple[type, ...] = MESSAGE_TYPES
