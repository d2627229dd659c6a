"""sandzmq.node: a node's own logic around the Raft core, with no I/O.

The node core (core.py) is everything the raft actor decides: start-up and
the identity handshake (startup.py, bootstrap.py), the log-store protocol
(log_writes.py), the apply hand-off (apply_feed.py), client requests and
their proposals (clients.py, proposals.py), and status; it answers each
loop turn with an Output (output.py). The apply actor's client sessions
(sessions.py, exactly-once) live here too. Pure code, tested without
sockets; the actors (actors/) carry it out.
"""
