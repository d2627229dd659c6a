"""What the log-store and apply actor tests share: a one-node config, and a
stand-in for the raft actor that talks to the actor under test exactly as the
real one does (its ROUTER at raft.ipc, a DEALER to the actor's endpoint)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from sandzmq.actors.layout import RAFT_IDENTITY, NodeLayout
from sandzmq.transport import Envelope, Inbox, PeerLink, Poller

DEADLINE_S = 10.0


def write_one_node_config(tmp_path: Path, *, name: str, state_machine: str = "kv", fsync: bool = True) -> Path:
    from cluster import (
        free_ports,  # here, not at the top: child processes import this module without tests/ on their path
    )

    raft_port, client_port = free_ports(2)
    path = tmp_path / "cluster.toml"
    path.write_text(
        f"""
[cluster]
name = "{name}"
state_machine = "{state_machine}"
data_dir = "data"

[raft]
fsync = {"true" if fsync else "false"}

[[nodes]]
id = "n1"
raft = "tcp://127.0.0.1:{raft_port}"
client = "tcp://127.0.0.1:{client_port}"
"""
    )
    return path


class StandIn:
    """One side of an actor's ipc protocol, driven by the test thread: a
    ROUTER where the actor under test sends, and a DEALER (with `identity`)
    to the actor's own socket. `peer` is the identity every answer must come from."""

    def __init__(self, envelope: Envelope, *, bind: str, connect: str, identity: str, peer: str) -> None:
        self.peer = peer
        self.inbox = Inbox(bind, envelope)
        self.link = PeerLink(connect, envelope, identity)  # queues until the actor is up
        self.poller = Poller([self.inbox])
        self._buffer: list[tuple[bytes, Any]] = []

    def send(self, msg: object) -> None:
        assert self.link.send(msg)

    def receive(self, deadline_s: float = DEADLINE_S) -> Any:
        """The next message from the actor under test (asserting who sent it)."""
        end = time.monotonic() + deadline_s
        while not self._buffer:
            left = end - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no message from the {self.peer} actor before the deadline")
            if self.poller.wait(left * 1000):
                self._buffer.extend(self.inbox.drain())
        identity, msg = self._buffer.pop(0)
        assert identity == self.peer.encode()
        return msg

    def expect(self, cls: type) -> Any:
        msg = self.receive()
        assert isinstance(msg, cls), f"expected {cls.__name__}, got {msg!r}"
        return msg

    def nothing_within(self, seconds: float) -> None:
        """Assert that no message arrives for a while (a check, not a synchronisation)."""
        if not self._buffer and self.poller.wait(seconds * 1000):
            self._buffer.extend(self.inbox.drain())
        assert not self._buffer, f"unexpected messages: {self._buffer}"

    def close(self) -> None:
        self.link.close()
        self.inbox.close()


class FakeRaft(StandIn):
    """The raft actor's side of one partner's protocol. `partner` is "log" or
    "apply": where it sends, and the identity every answer must come from."""

    def __init__(self, layout: NodeLayout, envelope: Envelope, partner: str) -> None:
        address = layout.log_ipc if partner == "log" else layout.apply_ipc
        super().__init__(envelope, bind=layout.raft_ipc, connect=address, identity=RAFT_IDENTITY, peer=partner)
        self.partner = partner


class FakePartner(StandIn):
    """A stand-in for the raft actor's log-store (`me` = "log") or apply actor
    ("apply"), for tests of the raft actor itself."""

    def __init__(self, layout: NodeLayout, envelope: Envelope, me: str) -> None:
        address = layout.log_ipc if me == "log" else layout.apply_ipc
        super().__init__(envelope, bind=address, connect=layout.raft_ipc, identity=me, peer=RAFT_IDENTITY)
