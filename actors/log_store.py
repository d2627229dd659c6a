"""The log-store actor: the only writer of the node's write-ahead log.

It takes LogWrites from the raft actor, appends each to the WAL as it
arrives, and after each drained batch makes them all durable with ONE
fsync (group commit, DESIGN 2.5) and acknowledges them with ONE LogDurable
carrying the batch's last write_id: "every write up to this one is on
disk".

A batch that only moves the commit index is written but not fsync'd (as
etcd's MustSync): commit need not be durable, a node that loses it learns
it again from the leader, and a lower recovered commit is always safe. It
saved one fsync per commit advance, half of all fsyncs under light load,
and those fsyncs delayed the next batch's.

Messages from the raft actor arrive on its ROUTER (layout.log_ipc);
answers go out on its DEALER link to the raft actor's ROUTER (layout.raft_ipc,
identity LOG_IDENTITY), which queues (immediate=False) while the raft actor
restarts.

Write ids, epochs, gaps, and why re-applying is safe
----------------------------------------------------
Writes are numbered by the raft actor, 1, 2, 3... within an epoch (a random
number per raft-actor start), and applied only in that order: a write is
taken only if it is the next one of the epoch last announced by LogSync.
One DEALER->ROUTER connection keeps order, so anything else means a write
was lost on the way (a full queue, a restart of either side): the write is
not applied, nothing after it is either, and the log-store says so once
(LogGap). The raft actor answers with LogSync(epoch, first unacknowledged
write) and resends every write it has no LogDurable for, in order. So an
acknowledgement never covers a write that was not applied: after write 1 =
entries 1..3, a lost write 2 and write 3 = entries 7..9, nothing is
acknowledged beyond write 1. A restarted raft actor has a new epoch, so its
write ids cannot be mistaken for its predecessor's.

LogDurable names the write and where the log now ends (last index and
term); the raft actor checks that against what its core expects after that
write, and resends on a mismatch rather than counting anything durable.

Re-applying is safe. After a LogSync the resent writes are applied again,
whatever this log-store already holds: the raft actor resends exactly the
suffix of writes after the last acknowledged one, in order, with the same
content; the log on disk holds the effect of some prefix of all writes
(recovery cuts a torn tail, so a prefix of records). Re-applying that suffix
gives the log the writes would have given without the restart, because an
append supersedes from its first index: writing entries [f..l] leaves
log[:f-1] + [f..l], whatever was after f-1 before. The only state that can
regress meanwhile (the new entries or hard state of a durable but
unacknowledged write, undone for a moment by an earlier write of the resent
suffix) is state nobody has relied on: the raft core sends nothing that
depends on a write before its LogDurable, and the rest of the suffix is
re-applied right after.

A resent write can be impossible on the current log (a later write of the
suffix, already durable, superseded from an index before it, so the resent
one now leaves a gap or goes back in term). The WAL refuses it
(ValueError); its hard state is still recorded (in order, so the final hard
state is the sequence's), it is counted in `rejected`, and it is not
acknowledged by itself: the acknowledgement of the later write that
superseded it, which follows in the same resend, covers it, and the raft
actor checks that one's log end. A raft actor that sends an impossible write
outside a resend has a bug; the warning names it, and no acknowledgement
ever covers it.

Failures
--------
- A corrupt WAL at start-up (WalCorruptError): one error line, no LogState,
  and the process exits with status 3 (process.py): a restart cannot repair
  it, so the supervisor must not loop.
- A failed write or fsync (StorageError): the WAL refuses further use (a
  retried fsync can falsely succeed); the actor logs it and the process exits
  with status 1, without acknowledging anything more. The supervisor
  restarts it; recovery cuts the segment back to what its last successful
  sync covered and appends to a new segment (wal.py); the raft actor
  resends. The cut may take back a commit-only write that was acknowledged
  without an fsync (above): a lower recovered commit is safe.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from sandzmq.protocol import TO_LOG_STORE, LogDurable, LogGap, LogIdentity, LogState, LogSync, LogWrite
from sandzmq.storage import StorageError, WalCorruptError, WriteAheadLog
from sandzmq.storage.identity import Identity, IdentityError, read_identity, write_identity
from sandzmq.transport import Acceptance, Envelope, Inbox, PeerLink

from sandzmq.config import ClusterConfig

from .base import SocketActor
from .layout import LOG_IDENTITY, RAFT_IDENTITY, NodeLayout
from .process import EXIT_FAILURE, EXIT_REFUSED, bind_inbox, request_exit

log = logging.getLogger(__name__)


class LogStoreActor(SocketActor):
    """See the module docstring. Counters (`writes`, `syncs`, `gaps`,
    `rejected`, `unexpected`) are read from the actor's own thread (status)."""

    def __init__(self, config: ClusterConfig, node_id: str) -> None:
        super().__init__()
        self.config = config
        self.node_id = node_id
        self.layout = NodeLayout.of(config, node_id)
        self.envelope = Envelope(config.name)
        self.incarnation = int.from_bytes(os.urandom(7), "big")  # tells the raft actor this is a new start
        self.wal: WriteAheadLog | None = None
        self.identity: Identity | None = None  # whose data this is (storage/identity.py)
        self.inbox: Inbox | None = None
        self.link: PeerLink | None = None
        self._pending: int | None = None  # write_id of the last write appended but not yet synced
        self._must_sync = False  # an appended write carries entries, or a new term or vote
        self._durable = 0  # write_id of the last write made durable (LogState.write_id)
        self._epoch = 0  # of the raft actor whose writes are taken (LogSync)
        self._sync_nonce = 0  # of the last LogSync
        self._expected = 1  # the write id taken next
        self._gap_reported = False  # one LogGap per gap: the rest of the stream would repeat it
        self._failed = False
        self.writes = 0  # LogWrites appended
        self.syncs = 0  # fsyncs (group commits): writes / syncs is writes per fsync
        self.gaps = 0  # writes refused because they were not the next of their epoch
        self.rejected = 0  # writes the WAL refused (see the module docstring)
        self.unexpected = 0  # well-formed messages that are not for the log-store

    @property
    def dropped(self) -> int:
        """Messages refused: malformed or foreign frames, and unexpected types."""
        return self.envelope.drops.total + self.unexpected

    # ------------------------------------------------------------------ life cycle

    def open(self) -> None:
        layout = self.layout
        try:
            self.wal = WriteAheadLog.open(layout.wal_dir, fsync=self.config.raft.fsync)
        except WalCorruptError as exc:
            log.error("%s", exc)
            request_exit(self, EXIT_REFUSED)
            return
        except (StorageError, OSError) as exc:
            # Most likely the previous log-store still holds the lock while it exits: a restart helps.
            log.error("cannot open the write-ahead log in %s: %s", layout.wal_dir, exc)
            request_exit(self, EXIT_FAILURE)
            return
        problem = self._check_identity()
        if problem:
            log.error("%s", problem)
            request_exit(self, EXIT_REFUSED)
            return
        try:
            accept: Acceptance = {RAFT_IDENTITY.encode(): self.envelope.registry.tags_of(*TO_LOG_STORE)}
            self.inbox = bind_inbox(layout.log_ipc, self.envelope, accept=accept)
            self.link = PeerLink(layout.raft_ipc, self.envelope, LOG_IDENTITY, immediate=False, accept=frozenset())
        except OSError as exc:
            log.error("cannot open the log-store's sockets: %s", exc)
            request_exit(self, EXIT_FAILURE)
            return
        self.watch_inbox(self.inbox)
        self.watch_link(self.link)
        wal = self.wal
        log.info(
            "log-store up on %s: log [%d, %d] (last term %d), term %d, vote %s, commit %d, fsync %s",
            layout.log_ipc,
            wal.first_index,
            wal.last_index,
            wal.last_term,
            wal.hard_state.term,
            wal.hard_state.vote,
            wal.hard_state.commit,
            "on" if wal.fsync else "OFF",
        )
        self._send_state(0)

    def _check_identity(self) -> str | None:
        """Why this data directory is not this node's data, or None (SPEC 7:
        another cluster's data, or a log lost while its identity survived)."""
        assert self.wal is not None
        node = self.node_id
        try:
            self.identity = read_identity(self.layout.wal_dir)
        except IdentityError as exc:
            return f"{node}: {exc}"
        identity = self.identity
        if identity is None:
            return None
        if identity.cluster != self.config.name:
            return (
                f"{node}: {self.layout.wal_dir} holds data of cluster {identity.cluster!r}, not {self.config.name!r}: "
                "point data_dir elsewhere, or replace the node (SPEC 7)"
            )
        if identity.node != node:
            return f"{node}: {self.layout.wal_dir} holds the data of node {identity.node!r}: point data_dir elsewhere"
        if identity.cluster_id and self.wal.recovery_report.created:
            return (
                f"{node}: its write-ahead log in {self.layout.wal_dir} is gone, but its identity is not: it must not "
                f"vote again. Replace it (SPEC 7): `sandzmq members remove {node}`, start it empty with join = true, "
                f"then `sandzmq members add {node}`"
            )
        return None

    def _record_identity(self, request: LogIdentity) -> None:
        """Write the identity the bootstrap handshake decided (never a second cluster id)."""
        current = self.identity
        if current is not None and current.cluster_id and request.cluster_id != current.cluster_id:
            log.error("refused to change the node's cluster id from %s to %s", current.cluster_id, request.cluster_id)
        else:
            identity = Identity(self.config.name, self.node_id, request.cluster_id, request.proposal)
            try:
                write_identity(self.layout.wal_dir, identity, fsync=self.config.raft.fsync)
            except OSError as exc:
                self._fail(StorageError(f"cannot write the node's identity: {exc}"))
                return
            self.identity = identity
            log.info("identity recorded: %s", identity)
        self._send_state(request.nonce)

    def close(self) -> None:
        for sock in (self.inbox, self.link):
            if sock is not None:
                sock.close()
        if self.wal is not None:
            try:
                self.wal.close()  # syncs what was appended, unless the WAL failed
            except StorageError as exc:
                log.error("closing the write-ahead log: %s", exc)
            self.wal = None

    # ------------------------------------------------------------------ messages

    def handle(self, message: Any, reply_to: bytes | None) -> None:
        if self._failed:
            return
        kind = type(message)
        if kind is LogWrite:
            if message.epoch == self._epoch and message.write_id == self._expected:
                self._expected += 1
                self._append(message)
            else:
                self._on_gap(message)
        elif kind is LogIdentity:
            self._record_identity(message)
        elif kind is LogSync:
            self._commit(force=True)
            self._epoch, self._expected, self._sync_nonce = message.epoch, message.next_write_id, message.nonce
            self._gap_reported = False
            if not self._failed:
                self._send_state(message.nonce)
        else:
            self.unexpected += 1

    def handle_failed(self, message: Any) -> None:
        self.unexpected += 1

    def flush(self) -> None:
        if self._pending is not None and not self._failed:
            self._commit()

    # ------------------------------------------------------------------ internals

    def _on_gap(self, write: LogWrite) -> None:
        """`write` is not the next one: take nothing until the raft actor
        resends from the missing one (see the module docstring)."""
        self.gaps += 1
        if not self._gap_reported:
            self._gap_reported = True
            log.warning(
                "write %d of epoch %x is not the next (write %d of epoch %x): asking for a resend",
                write.write_id,
                write.epoch,
                self._expected,
                self._epoch,
            )
            assert self.link is not None
            self.link.send(LogGap(self._sync_nonce, self._expected))

    def _append(self, write: LogWrite) -> None:
        wal = self.wal
        assert wal is not None
        if write.must_sync:
            self._must_sync = True
        try:
            try:
                wal.append(write.entries, write.hard_state)
            except ValueError as exc:
                self.rejected += 1
                log.warning("write %d refused by the log (%s); keeping its hard state", write.write_id, exc)
                if write.hard_state is not None:
                    wal.append([], write.hard_state)
                return  # not acknowledged by itself (see the module docstring)
        except StorageError as exc:
            self._fail(exc)
            return
        self.writes += 1
        self._pending = write.write_id

    def _commit(self, force: bool = False) -> None:
        """One fsync for everything appended since the last one (unless it
        only moved the commit index), then one LogDurable."""
        wal = self.wal
        assert wal is not None
        if self._must_sync or force:
            try:
                wal.sync()
            except StorageError as exc:
                self._fail(exc)
                return
            self._must_sync = False
            self.syncs += 1
        if self._pending is None:
            return
        self._durable, self._pending = self._pending, None
        assert self.link is not None
        self.link.send(LogDurable(self._durable, wal.last_index, wal.last_term, self._epoch))

    def _send_state(self, nonce: int) -> None:
        wal = self.wal
        assert wal is not None and self.link is not None
        identity = self.identity
        self.link.send(
            LogState(
                nonce,
                os.getpid(),
                self.incarnation,
                wal.hard_state,
                wal.first_index,
                wal.last_index,
                wal.last_term,
                self._durable,
                identity.cluster_id if identity else "",
                identity.proposal if identity else 0,
            )
        )

    def _fail(self, exc: StorageError) -> None:
        """The disk failed us: acknowledge nothing more, and let the process die."""
        self._failed = True
        self._pending = None
        log.error("write-ahead log failed, the log-store exits: %s", exc)
        request_exit(self, EXIT_FAILURE)
