"""The raft actor in-process, with stand-ins for its log-store and apply actor
(the real sockets: its ipc ROUTER, its TCP raft and client ports), under
messages a hostile network can send (SPEC 3 trust boundaries).

What is tested here is what only the actor can get wrong: which socket takes
which message (a forgery on a public port never reaches the node core), and
that the node core's output leaves through the right sockets in order. The
rules themselves (acknowledgements, gaps, rewinds, the handshake) are the
node core's, tested without sockets in tests/test_node_core.py.

The node is a one-node cluster: it elects itself once its vote is durable,
which the stand-in log-store decides by acknowledging (or not) its writes.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pykka
import pytest
from actor_partner import DEADLINE_S, FakePartner, write_one_node_config
from sandzmq.actors.layout import NodeLayout
from sandzmq.actors.raft_actor import RaftActor
from sandzmq.protocol import (
    ApplyBatch,
    ApplyResults,
    ApplyState,
    LogDurable,
    LogIdentity,
    LogState,
    LogSync,
    LogWrite,
    PeerHello,
    ReplyStatus,
)
from sandzmq.raft.messages import HardState
from sandzmq.transport import Envelope, PeerLink, terminate_context

from sandzmq.config import ClusterConfig, load_config


class Node:
    """A one-node config, the raft actor under test and its two stand-ins."""

    def __init__(self, tmp_path: Path) -> None:
        self.config: ClusterConfig = load_config(write_one_node_config(tmp_path, name="rafttest"))
        self.layout = NodeLayout.of(self.config, "n1")
        self.envelope = Envelope(self.config.name)
        self.log = FakePartner(self.layout, self.envelope, "log")
        self.apply = FakePartner(self.layout, self.envelope, "apply")
        self.ref: pykka.ActorRef[Any] = RaftActor.start(self.config, "n1")
        self.attackers: list[PeerLink] = []
        self.last_index = self.last_term = 0  # where the stand-in log-store's log ends
        self.identity = ("", 0)  # (cluster id, proposal) the stand-in log-store recorded

    def status(self) -> dict[str, Any]:
        return self.ref.proxy().status().get(timeout=DEADLINE_S)

    def wait_status(self, predicate: Any, what: str) -> dict[str, Any]:
        deadline = time.monotonic() + DEADLINE_S
        while True:
            status = self.status()
            if predicate(status):
                return status
            assert time.monotonic() < deadline, f"timed out waiting for {what}: {status}"
            time.sleep(0.01)  # a poll interval, not a synchronisation

    def start_empty(self) -> None:
        """Report the apply actor at index 0; the log-store answers as an empty one."""
        self.apply.send(ApplyState(os.getpid(), 0, incarnation=1))

    def log_expect(self, cls: type) -> Any:
        """The next `cls` from the raft actor to its log-store, answering every
        LogSync on the way as an empty log-store would (the raft actor asks
        again each tick until it has an answer to its latest)."""
        while True:
            msg = self.log.receive()
            if isinstance(msg, LogIdentity) and cls is not LogIdentity:  # the one-node bootstrap handshake
                self.identity = (msg.cluster_id, msg.proposal)
                msg = LogSync(msg.nonce)
            if isinstance(msg, LogSync) and cls is not LogSync:
                self.log.send(LogState(msg.nonce, os.getpid(), 1, HardState(), 1, 0, 0, 0, *self.identity))
                continue
            assert isinstance(msg, cls), f"expected {cls.__name__}, got {msg!r}"
            return msg

    def ack(self, write: LogWrite) -> None:
        """Acknowledge `write` as the real log-store would: on the ipc socket, from "log"."""
        self.log.send(self.durable(write))

    def durable(self, write: LogWrite) -> LogDurable:
        """The LogDurable the log-store sends once `write` is on disk."""
        if write.entries:
            self.last_index, self.last_term = write.entries[-1].index, write.entries[-1].term
        return LogDurable(write.write_id, self.last_index, self.last_term, write.epoch)

    def ack_until(self, predicate: Any, what: str) -> None:
        """Acknowledge every write at once, as a fast disk would, until the
        raft actor's status satisfies `predicate`."""
        deadline = time.monotonic() + DEADLINE_S
        while not predicate(self.status()):
            assert time.monotonic() < deadline, f"timed out waiting for {what}: {self.status()}"
            if self.log.poller.wait(10):
                self.ack(self.log_expect(LogWrite))

    def entries_write(self) -> LogWrite:
        """The next write that carries entries (writes that only move the
        commit index on the way are acknowledged)."""
        while not (write := self.log_expect(LogWrite)).entries:
            self.ack(write)
        return write

    def attack(self, port: str, msg: object) -> None:
        """Send `msg` as an outsider would: a plain DEALER to a public TCP port."""
        address = self.config.node("n1").raft if port == "raft" else self.config.node("n1").client
        link = PeerLink(address, Envelope(self.config.name), f"attacker-{len(self.attackers)}")
        self.attackers.append(link)
        assert link.send(msg)

    def close(self) -> None:
        for link in self.attackers:
            link.close()
        if self.ref.is_alive():
            self.ref.stop(block=True, timeout=DEADLINE_S)
        self.log.close()
        self.apply.close()


@pytest.fixture(autouse=True)
def fresh_context() -> Iterator[None]:
    terminate_context()
    yield
    terminate_context()


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    n = Node(tmp_path)
    try:
        yield n
    finally:
        n.close()


def test_a_forged_log_durable_on_a_public_port_does_not_make_a_vote_durable(node: Node) -> None:
    """Regression: the raft actor took LogDurable from any socket, so one
    LogDurable(10**9) sent to the client port switched the durability rule
    off (votes and acknowledgements left before their writes were on disk)."""
    node.start_empty()
    vote = node.log_expect(LogWrite)  # its campaign: term 1, vote for itself, not yet durable
    assert vote.hard_state is not None and vote.hard_state.vote == "n1"
    ack = node.durable(vote)  # exactly the right acknowledgement...
    node.attack("client", ack)  # ... from the wrong sockets
    node.attack("raft", ack)
    node.attack("client", LogDurable(10**9, 10**9, 1, vote.epoch))
    status = node.wait_status(lambda s: s["drops"]["wrong_socket"] >= 3, "the forgeries counted")
    assert status["role"] != "leader", "a forged acknowledgement made the vote count"
    assert status["dropped"] >= 3
    node.log.send(ack)  # the real log-store, on the ipc socket, from "log"
    node.wait_status(lambda s: s["role"] == "leader", "leadership once the vote is really durable")


def test_forged_apply_results_on_a_public_port_give_no_client_a_false_ok(node: Node) -> None:
    import sandzmq

    node.start_empty()
    node.ack_until(lambda s: s["role"] == "leader" and s["commit_index"] >= 1, "leadership and its first commit")
    client = sandzmq.Client.connect(node.config.node("n1").client, cluster=node.config.name)
    try:
        future = client.replicate_async(b"not applied yet", timeout=DEADLINE_S)
        write = node.entries_write()  # proposed; the stand-in log-store holds it
        index, term = write.entries[-1].index, write.entries[-1].term
        forged = ApplyResults.of([(index, term, ReplyStatus.OK, "forged")], index)
        node.attack("client", forged)
        node.attack("raft", forged)
        node.wait_status(lambda s: s["drops"]["wrong_socket"] >= 2, "both forgeries counted")
        assert not future.done(), f"a client got an answer for an entry not even durable: {future}"
        node.ack(write)
        while node.apply.expect(ApplyBatch).entries[-1].index < index:
            pass  # the leader's no-op, applied earlier
        node.apply.send(ApplyResults.of([(index, term, ReplyStatus.OK, "real")], index))
        assert future.result(timeout=DEADLINE_S) == "real"
    finally:
        client.close()


def test_an_acknowledgement_with_the_log_ending_elsewhere_counts_nothing_and_the_writes_are_resent(node: Node) -> None:
    """End to end over the ipc sockets: the resync and the resent write reach
    the log-store in order (the rule: tests/test_node_core.py)."""
    node.start_empty()
    vote = node.log_expect(LogWrite)
    node.log.send(LogDurable(vote.write_id, 5, 1, vote.epoch))  # "durable, and my log ends at 5": it cannot
    sync = node.log_expect(LogSync)
    assert (sync.epoch, sync.next_write_id) == (vote.epoch, vote.write_id)
    assert node.log_expect(LogWrite) == vote  # resent as it was
    status = node.status()
    assert status["role"] != "leader" and status["stats"]["log_mismatches"] == 1
    node.ack(vote)
    node.wait_status(lambda s: s["role"] == "leader", "leadership once the vote is durable")


# ---------------------------------------------------------------- the identity handshake, with a peer played by the test


class TwoNodes(Node):
    """n1 is the raft actor under test; n2 is the test: a ROUTER at n2's raft
    address receives n1's PeerHellos, a DEALER to n1's raft port answers."""

    def __init__(self, tmp_path: Path) -> None:
        from cluster import free_ports

        ports = free_ports(4)
        path = tmp_path / "cluster.toml"
        path.write_text(
            '[cluster]\nname = "rafttest"\nstate_machine = "kv"\ndata_dir = "data"\n'
            + "".join(
                f'[[nodes]]\nid = "n{i}"\nraft = "tcp://127.0.0.1:{ports[2 * i - 2]}"\n'
                f'client = "tcp://127.0.0.1:{ports[2 * i - 1]}"\n'
                for i in (1, 2)
            )
        )
        self.config = load_config(path)
        self.layout = NodeLayout.of(self.config, "n1")
        self.envelope = Envelope(self.config.name)
        self.log = FakePartner(self.layout, self.envelope, "log")
        self.apply = FakePartner(self.layout, self.envelope, "apply")
        from sandzmq.transport import Inbox, Poller

        self.n2_inbox = Inbox(self.config.node("n2").raft, self.envelope)
        self.n2_poller = Poller([self.n2_inbox])
        self.n2_link = PeerLink(self.config.node("n1").raft, self.envelope)
        self.ref = RaftActor.start(self.config, "n1")
        self.attackers = []
        self.last_index = self.last_term = 0
        self.identity = ("", 0)

    def serve_log(self) -> None:
        """Answer what n1 asked its stand-in log-store so far (LogSync, LogIdentity)."""
        while self.log.poller.wait(0) or self.log._buffer:
            msg = self.log.receive()
            if isinstance(msg, LogIdentity):
                self.identity = (msg.cluster_id, msg.proposal)
                msg = LogSync(msg.nonce)
            if isinstance(msg, LogSync):
                self.log.send(LogState(msg.nonce, os.getpid(), 1, HardState(), 1, 0, 0, 0, *self.identity))

    def ask_from_n1(self) -> PeerHello:
        """The next PeerHello ask n1 sends n2 (serving n1's log-store meanwhile)."""
        deadline = time.monotonic() + DEADLINE_S
        while time.monotonic() < deadline:
            self.serve_log()
            if self.n2_poller.wait(10):
                for _, hello in self.n2_inbox.drain():
                    if isinstance(hello, PeerHello) and hello.ask:
                        return hello
        raise AssertionError("n1 sent no PeerHello")

    def close(self) -> None:
        self.n2_link.close()
        self.n2_inbox.close()
        super().close()


@pytest.fixture
def two(tmp_path: Path) -> Iterator[TwoNodes]:
    n = TwoNodes(tmp_path)
    try:
        yield n
    finally:
        n.close()


def test_forged_hello_answers_cannot_refuse_or_misdirect_a_bootstrapping_node(two: TwoNodes) -> None:
    """A PeerHello answer counts only if it echoes the nonce of n1's ask: a
    blind forger claiming n2 is a member at term 7 (which would make n1
    refuse to start for good) or of another cluster is not believed."""
    from sandzmq.node.bootstrap import DataState

    ask = two.ask_from_n1()
    forged = [
        PeerHello("n2", "n1", False, int(DataState.MEMBER), "c0ffee", 0, 7, ask.nonce + 1),
        PeerHello("n2", "n1", True, int(DataState.MEMBER), "c0ffee", 0, 7, 12345),  # an ask's claims count for nothing
    ]
    for hello in forged:
        assert two.n2_link.send(hello)
    two.wait_status(lambda s: s["drops"]["unbelievable"] >= 1, "the forged answer refused")
    assert two.ref.is_alive() and two.status()["state"].startswith("bootstrapping")
    # The real n2 answers, echoing the nonce: n1 proposes, then takes the smaller proposal as the cluster id.
    deadline = time.monotonic() + DEADLINE_S
    while not two.identity[0]:
        assert time.monotonic() < deadline, "n1 never took a cluster id"
        ask = two.ask_from_n1()
        assert two.n2_link.send(PeerHello("n2", "n1", False, int(DataState.PROPOSED), "", 5, 0, ask.nonce))
        two.serve_log()
    assert two.identity[0] == f"{min(5, two.identity[1]):016x}"
