"""sandzmq.node: the node's own logic around the Raft core, with no I/O.

What a node keeps besides consensus: client sessions (exactly-once), the
proposals awaiting their results, and the identity handshake. Pure code,
tested without sockets; the actors (actors/) carry it out.
"""
