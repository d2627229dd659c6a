"""sandzmq.protocol: every message a node sends or takes, and how it travels.

The wire format itself (the envelope `[version, cluster, tag, body]`, the
type registry, drop counting, sockets) is transport/'s; this package says
what each message is: peer, client and internal messages, the client's
entry payloads, and which socket takes which (the trust boundaries).
"""
from .messages import *  # noqa: F403  (messages.__all__ is the public list)
from .messages import __all__  # noqa: F401
