"""Replicator implementations: NoOpReplicator (one node, no consensus), RaftReplicator
(a node of a Raft cluster) and Client (talks to a cluster from another process).

The public names are re-exported by the top-level `sandzmq` package.
"""
