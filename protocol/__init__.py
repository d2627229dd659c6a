"""sandzmq.protocol: every message a node sends or takes, declared once.

Each message is a dataclass whose declaration is its wire format: its body
encoder and decoder are derived from its fields (derive.py), with a spec
where the type does not say enough, and registered under a short str tag
(registry.py). No zmq and no sockets here: the envelope `[version, cluster,
tag, body]`, drop counting and the sockets are transport/'s.

- checks:   DecodeError, MAX_UINT, the validators
- derive:   body codecs generated from a dataclass and per-field specs
- logdata:  entries as columns and the hard state: one shape each, for the
            wire and the write-ahead log
- registry: tags <-> classes (REGISTRY), declare()/@message, describe()
- peer:     the Raft core's messages (raft/messages.py) on the wire
- messages: the node's messages (client, log-store, apply, PeerHello), the
            client's entry payloads, and which socket takes which
"""

from . import peer  # noqa: F401  (declares the Raft core's messages)
from .checks import MAX_UINT, DecodeError
from .messages import *  # noqa: F403  (messages.__all__ is the public list)
from .messages import __all__ as _messages_all
from .registry import REGISTRY, Registry, declare, describe, message, register

__all__ = [
    *_messages_all,
    "DecodeError",
    "MAX_UINT",
    "REGISTRY",
    "Registry",
    "declare",
    "describe",
    "message",
    "register",
]
