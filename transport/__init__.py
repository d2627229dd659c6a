"""sandzmq.transport: everything that touches ZeroMQ and the wire.

The only package that imports zmq. What travels is sandzmq.protocol's (every
message, its tag and its body codec); this package frames and moves it.
Layers, each usable on its own:

- envelope:  [version, cluster, tag, body] frames, drop counting (no zmq)
- counters:  DropCounters (inbound refusals) and SendDrops (outbound losses)
- endpoints: ipc:// naming that fits a Unix socket path
- sockets:   Inbox (ROUTER), PeerLink (DEALER), Peers, drain, Poller, context
"""

from sandzmq.protocol.checks import DecodeError

from .counters import DropCounters, SendDrops
from .endpoints import ipc_endpoint
from .envelope import (
    ANY_SENDER,
    DEFAULT_MAX_MESSAGE_BYTES,
    PROTOCOL_VERSION,
    REGISTRY,
    Acceptance,
    Envelope,
    MessageTooLarge,
    Registry,
    register,
)
from .sockets import (
    Inbox,
    PeerLink,
    Peers,
    Poller,
    context,
    drain,
    receive_hwm,
    terminate_context,
)

__all__ = [
    "ANY_SENDER",
    "Acceptance",
    "DEFAULT_MAX_MESSAGE_BYTES",
    "DecodeError",
    "DropCounters",
    "Envelope",
    "Inbox",
    "MessageTooLarge",
    "PROTOCOL_VERSION",
    "PeerLink",
    "Peers",
    "Poller",
    "REGISTRY",
    "Registry",
    "SendDrops",
    "context",
    "drain",
    "receive_hwm",
    "ipc_endpoint",
    "register",
    "terminate_context",
]
