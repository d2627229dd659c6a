"""What users plug in (SPEC 6): the StateMachine, and how a config names one.

A StateMachine is the user's application state; a Replicator
(replicator/base.py) puts commands into a replicated log and hands each
committed one to the StateMachine of every node.
"""

from __future__ import annotations

import abc
import importlib
import re
from collections.abc import Mapping
from typing import Any, BinaryIO

from sandzmq.statemachines import BUILTINS

CONSISTENCY_LEVELS = ("linearizable", "lease", "local")

# The built-ins SPEC 4 names that this release does not ship yet.
_LATER_BUILTINS = frozenset({"posix"})
_TARGET = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")


class StateMachine(abc.ABC):
    """The application state that sandzmq replicates: every node hosts one instance.

    Each node's apply actor feeds the same committed commands, in the same
    order, to its own instance; the replicas stay identical only if every
    method below keeps the rules in its docstring. Methods are never called
    concurrently on one instance.
    """

    @abc.abstractmethod
    def apply(self, command: bytes) -> Any:
        """Apply one committed command and return its result to the caller of replicate().

        Called exactly once per committed entry, in log order. It must be
        deterministic (no clocks, randomness, environment or I/O that can
        differ between nodes), or the replicas diverge. The result must be
        msgpack-able (None, bool, int, float, str, bytes, lists, dicts) because
        it travels back to the client. Only user commands arrive here, never
        the no-op or membership entries Raft writes itself. Report bad input
        in the result rather than raising: every replica would hit the same
        exception at the same entry, and a log cannot skip an entry.
        """

    @abc.abstractmethod
    def query(self, query: bytes) -> Any:
        """Answer a read without changing state; the result must be msgpack-able.

        Queries are not in the log, so anything they changed would exist on
        one node only.
        """

    @abc.abstractmethod
    def snapshot(self, sink: BinaryIO) -> None:
        """Write the whole state to `sink`, so that the log before it can be dropped.

        restore() of these bytes on a fresh instance must give a state that
        answers every later apply() and query() exactly as this one does.
        """

    @abc.abstractmethod
    def restore(self, source: BinaryIO) -> None:
        """Replace the whole state with one written by snapshot().

        Used when a node restarts from its snapshot and when a lagging node
        installs the leader's; discard whatever state was there before.
        """


def check_consistency(consistency: str) -> str:
    """Reject an unknown consistency level before any work is done for it."""
    if consistency not in CONSISTENCY_LEVELS:
        raise ValueError(f"consistency must be one of {', '.join(CONSISTENCY_LEVELS)}, not {consistency!r}")
    return consistency


def resolve_state_machine(spec: str) -> str:
    """Turn a `cluster.state_machine` value into the "module:Class" to import.

    Only the syntax is checked, so that validating a config never imports
    user code. Raises ValueError with a message fit for a config error.
    """
    if spec in BUILTINS:
        return BUILTINS[spec]
    if spec in _LATER_BUILTINS:
        raise ValueError(f"the built-in state machine {spec!r} arrives with a later release")
    if not _TARGET.fullmatch(spec):
        names = ", ".join(repr(name) for name in sorted({*BUILTINS, *_LATER_BUILTINS}))
        raise ValueError(f"expected a built-in ({names}) or 'module:Class', got {spec!r}")
    return spec


def load_state_machine(spec: str, options: Mapping[str, Any]) -> StateMachine:
    """Build the StateMachine a config names, passing `options` as keyword arguments.

    Raises ValueError for a malformed spec, ImportError when the module or
    class cannot be found, and TypeError when the class is not a
    StateMachine or rejects the options.
    """
    module_name, _, qualname = resolve_state_machine(spec).partition(":")
    target: Any = importlib.import_module(module_name)
    for attribute in qualname.split("."):
        try:
            target = getattr(target, attribute)
        except AttributeError:
            raise ImportError(f"{module_name!r} has no {qualname!r} (from {spec!r})") from None
    if not (isinstance(target, type) and issubclass(target, StateMachine)):
        raise TypeError(f"{spec!r} is not a subclass of sandzmq.StateMachine")
    return target(**options)
