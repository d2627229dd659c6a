"""Where a node keeps its files and how its three processes find each other.

    <node data dir>/wal/     the log-store's write-ahead log (only it writes here)
    <node data dir>/run/     ipc:// endpoints of the node's three actors

The ipc endpoints live in the data directory, not a global temp dir, so two
nodes on one machine never collide and a restarted actor finds its partners
where they were.

All three directories are private to the node's user (0700): the log holds
every command and the node's vote, and whoever can connect to the ipc
endpoints speaks for the node's actors. Every actor process makes them so as
it starts (make_private_dirs), which also tightens directories that older
versions created with the umask's modes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sandzmq.storage.files import make_private_dir
from sandzmq.transport import ipc_endpoint

from sandzmq.config import ClusterConfig, NodeConfig


@dataclass(frozen=True, slots=True)
class NodeLayout:
    node: NodeConfig
    data_dir: Path
    wal_dir: Path
    run_dir: Path
    raft_ipc: str  # the raft actor's ROUTER for the log-store's and apply actor's messages
    log_ipc: str  # the log-store actor's ROUTER
    apply_ipc: str  # the apply actor's ROUTER

    @classmethod
    def of(cls, config: ClusterConfig, node_id: str) -> NodeLayout:
        node = config.node(node_id)
        data_dir = config.data_dir_for(node_id)
        run_dir = data_dir / "run"
        return cls(
            node=node,
            data_dir=data_dir,
            wal_dir=data_dir / "wal",
            run_dir=run_dir,
            raft_ipc=ipc_endpoint(str(run_dir), "raft"),
            log_ipc=ipc_endpoint(str(run_dir), "log"),
            apply_ipc=ipc_endpoint(str(run_dir), "apply"),
        )

    def make_private_dirs(self) -> None:
        """Create the node's directories 0700, or tighten them (see the module
        docstring); OSError if that is impossible."""
        for directory in (self.data_dir, self.wal_dir, self.run_dir):
            make_private_dir(directory)


# The identities the actors present on their DEALER links inside a node.
RAFT_IDENTITY = "raft"
LOG_IDENTITY = "log"
APPLY_IDENTITY = "apply"
