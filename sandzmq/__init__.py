"""sandzmq: a Raft replicated log for Python, built as an actor system on ZeroMQ."""
