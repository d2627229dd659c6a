"""Replicator implementations: NoOpReplicator (one node, no consensus), RaftReplicator
(a node of a Raft cluster) and Client (talks to a cluster from another process);
`status` asks every node of a cluster for its status report, through Client.

The public names are re-exported by the top-level `sandzmq` package.
"""
