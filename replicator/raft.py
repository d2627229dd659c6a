"""RaftReplicator: one node of a Raft cluster, as a Replicator (SPEC 6).

    with sandzmq.RaftReplicator("cluster.toml", "n1") as node:
        node.replicate(command)        # NotLeaderError unless n1 leads

start() runs the node the way an operator would, `sandzmq start --config
FILE --node ID`, as a child process in its own session: the node keeps the
process layout and restart policy of production (supervisor plus three
actor processes), a crash of the application's process cannot corrupt it,
and stop() can always clean up the whole process group. The node does not
outlive the application: if it dies without calling stop(), even by
SIGKILL, the supervisor notices (spawn()'s pipe) and stops the node
gracefully. Calls go through a
Client connected to this node only, so that replicate() on a follower raises
NotLeaderError as the Replicator contract says, rather than quietly
forwarding to the leader.
"""

from __future__ import annotations

import atexit
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from sandzmq.actors.supervisor import spawn, terminate
from sandzmq.replicator.base import Replicator
from sandzmq.replicator.client import Client

from sandzmq.config import ClusterConfig, check_node_ids, load_config
from sandzmq.errors import ClusterUnavailable

#: How long start() waits for the node to answer.
START_TIMEOUT_S = 30.0
#: query()'s timeout (the Replicator signature has none).
QUERY_TIMEOUT_S = 5.0


class RaftReplicator(Replicator):
    """Runs node `node_id` of the cluster described by the config file at `config`."""

    def __init__(self, config: str | Path, node_id: str, *, start_timeout: float = START_TIMEOUT_S) -> None:
        """Validates the file and the node id at once (ConfigError), so a
        mistake surfaces here rather than in a child process's log."""
        self.config = Path(config)
        self.node_id = node_id
        self.start_timeout = start_timeout
        self._cluster: ClusterConfig = load_config(self.config)
        check_node_ids(self._cluster, [node_id])
        self._lock = threading.RLock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._client: Client | None = None

    @property
    def address(self) -> str:
        """This node's client address."""
        return self._cluster.node(self.node_id).client

    @property
    def pid(self) -> int | None:
        """The node's supervisor process, while running."""
        return self._proc.pid if self._proc is not None else None

    def start(self) -> None:
        """Start the node and return once it answers status requests.

        Raises ClusterUnavailable (after stopping what it started) if the
        node does not answer within start_timeout seconds or its supervisor
        exits. Does nothing if already started.
        """
        with self._lock:
            if self._proc is not None:
                return
            self._proc = spawn(self.config, [self.node_id])
            atexit.register(self.stop)
            client = Client.connect(self.address, cluster=self._cluster.name)
            self._client = client
            try:
                self._wait_until_up(client, self._proc)
            except BaseException:
                self.stop()
                raise

    def _wait_until_up(self, client: Client, proc: subprocess.Popen[bytes]) -> None:
        deadline = time.monotonic() + self.start_timeout
        while True:
            code = proc.poll()
            if code is not None:
                raise ClusterUnavailable(
                    f"node {self.node_id} did not start: `sandzmq start` exited with status {code} (see its stderr)"
                )
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ClusterUnavailable(
                    f"node {self.node_id} did not answer at {self.address} within {self.start_timeout:g} s"
                )
            try:
                client.status(timeout=min(0.5, remaining))
                return
            except ClusterUnavailable:
                continue

    def replicate(self, command: bytes, timeout: float | None = None) -> Any:
        """Commit through this node. NotLeaderError on a follower;
        ReplicationTimeout / ClusterUnavailable as in Client.replicate()
        (timeout None: wait as long as it takes)."""
        return self._running_client().replicate(command, timeout=timeout)

    def query(self, query: bytes, consistency: str = "linearizable") -> Any:
        """Read through this node: `local` reads its own state; `linearizable`
        and `lease` need it to lead (NotLeaderError otherwise)."""
        return self._running_client().query(query, consistency=consistency, timeout=QUERY_TIMEOUT_S)

    def status(self, timeout: float = 1.0) -> dict[str, Any]:
        """This node's status report (the fields of `sandzmq status`)."""
        return self._running_client().status(timeout=timeout)

    def stop(self) -> None:
        """Stop the node (SIGTERM to its supervisor, SIGKILL of its process
        group if that does not end it) and close the client. Idempotent."""
        with self._lock:
            client, self._client = self._client, None
            proc, self._proc = self._proc, None
            if client is not None:
                client.close()
            if proc is not None:
                atexit.unregister(self.stop)
                terminate(proc)

    def _running_client(self) -> Client:
        client = self._client
        if client is None:
            raise ClusterUnavailable(f"node {self.node_id} is not running: call start() first")
        return client

    def __repr__(self) -> str:
        state = f"running, pid {self._proc.pid}" if self._proc is not None else "stopped"
        return f"<RaftReplicator {self.node_id} of {self.config} ({state})>"
