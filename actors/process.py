"""One actor, one OS process: `python -m sandzmq.actors {raft,log,apply} --config FILE --node ID`.

The node's supervisor (`sandzmq start`) runs each of the node's three actors
this way and decides from the exit status what to do next.

Exit status, the contract with the supervisor:

    0  stopped on request (SIGTERM or SIGINT): a graceful stop.
    1  the actor failed (an I/O error on the log, a bug, a lost socket, an
       actor that stopped by itself without saying why): restart it. The
       protocol between the actors makes a restart safe (the raft actor
       resends unacknowledged writes and committed entries).
    2  usage or config error (the file is invalid, the node is unknown): one
       line on stderr. Restarting cannot help; report it and stop.
    3  the actor refuses to start: its data or its code is unusable in a way
       a restart cannot repair (a corrupt write-ahead log, a state machine
       that cannot be imported or built, an actor module that does not
       import). The log says why in one line. The supervisor must not
       restart it in a loop; an operator has to act (restore the data
       directory, or remove the node and re-add it empty; fix the install).

Also 1, not 3: the WAL lock or an ipc endpoint still held by a previous
incarnation that is exiting (a restart shortly after succeeds), and a data
directory that cannot be created or made private (layout.py) -- a full or
read-only disk may come back; if not, the supervisor's crash-loop rule stops.

An actor asks for a status with request_exit(actor, code): the code is kept
by actor URN (not on the actor object, which pykka holds only weakly once
its thread ends) and the actor is told to stop; requested_exit(ref) reads it
back after the actor stopped, in this module's runner and in tests.

Start-up tuning: after the actor started, gc.freeze() moves every object
made so far (modules, config, the actor) out of the collector's sight, and
the generation-0 threshold is raised to 50,000 allocations: decoding a large
batch allocates many small objects, and with the default threshold of 700
the cyclic GC dominated that decoding (transport/sockets.py, DEFAULT_DRAIN;
bench/micro_transport.py --gc-gen0 measures it). The actors create few reference cycles, so collecting
them rarely costs little memory.
"""

from __future__ import annotations

import argparse
import errno
import gc
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

import pykka
from sandzmq.transport import Envelope, Inbox
from sandzmq.transport.envelope import Acceptance

from sandzmq.config import ClusterConfig, check_node_ids, load_config
from sandzmq.errors import ConfigError

from .layout import NodeLayout

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_REFUSED = 3

KINDS = ("raft", "log", "apply")

#: How long a stop may take before the process exits regardless (SPEC: prompt exits).
STOP_TIMEOUT_S = 1.5
#: How often the runner checks for a signal or a stopped actor.
_WAIT_STEP_S = 0.05

_exit_requests: dict[str, int] = {}
_exit_lock = threading.Lock()


def request_exit(actor: pykka.Actor, code: int) -> None:
    """Stop `actor` and make its process exit with `code` (see the table above).

    Callable from the actor's own thread, also from open(): the stop is a
    message, handled after the current one. The first request wins."""
    with _exit_lock:
        _exit_requests.setdefault(actor.actor_urn, code)
    try:
        actor.stop()
    except pykka.ActorDeadError:  # already stopping: the code above still counts
        pass


def requested_exit(ref: pykka.ActorRef[Any]) -> int | None:
    """The exit status the actor behind `ref` asked for, None if it did not."""
    with _exit_lock:
        return _exit_requests.get(ref.actor_urn)


#: How long an actor waits for its ipc endpoint to be released at start-up.
BIND_WAIT_S = 2.0


def bind_inbox(
    address: str, envelope: Envelope, wait_s: float = BIND_WAIT_S, *, accept: Acceptance | None = None
) -> Inbox:
    """Bind the actor's Inbox, waiting up to `wait_s` while the address is in use.

    The previous incarnation of this actor may still hold it: libzmq closes a
    socket's listener asynchronously, so an actor restarted in the same
    process (tests, an in-process node) can find its predecessor's ipc
    endpoint still answering for a few milliseconds. A second live node on
    the same data directory keeps it for good: then this raises OSError."""
    deadline = time.monotonic() + wait_s
    delay = 0.005
    while True:
        try:
            return Inbox(address, envelope, accept=accept, handover=True)
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE or time.monotonic() + delay > deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


def actor_class(kind: str) -> type[pykka.Actor]:
    """The actor class of `kind`, imported only when needed: a log-store
    process never imports the raft core or the user's state machine."""
    if kind == "raft":
        from sandzmq.actors.raft_actor import RaftActor

        return RaftActor
    if kind == "log":
        from sandzmq.actors.log_store import LogStoreActor

        return LogStoreActor
    if kind == "apply":
        from sandzmq.actors.apply import ApplyActor

        return ApplyActor
    raise ValueError(f"unknown actor kind {kind!r}; expected one of {', '.join(KINDS)}")


def setup_logging(node_id: str, kind: str, level: int | str = logging.INFO) -> None:
    """Log to stderr, each line naming the node and the actor:
    `2026-11-26 07:00:00.123 n1/log INFO message`. The supervisor collects
    the three actors' stderr into one stream, so the prefix is what tells
    their lines apart."""
    # '%' would be read as a format directive in the node id.
    who = f"{node_id}/{kind}".replace("%", "%%")
    logging.basicConfig(
        stream=sys.stderr,
        level=level,
        format=f"%(asctime)s.%(msecs)03d {who} %(levelname)s %(message)s",
        datefmt="%Y-%m-%d %H:%M:%S",
        force=True,
    )


def run(kind: str, config: ClusterConfig, node_id: str) -> int:
    """Run one actor until a signal or its own end; return the exit status."""
    signalled: list[int] = []

    def on_signal(signum: int, frame: object) -> None:
        signalled.append(signum)

    # SIGINT stays ignored when the supervisor made it so: a Ctrl-C in the
    # terminal reaches the whole process group, and the supervisor alone
    # decides the order in which its actors stop.
    stop_signals = [signal.SIGTERM]
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
        stop_signals.append(signal.SIGINT)
    previous = {sig: signal.signal(sig, on_signal) for sig in stop_signals}
    try:
        try:
            NodeLayout.of(config, node_id).make_private_dirs()
        except OSError as exc:
            log.error("cannot prepare the node's data directory: %s", exc)
            return EXIT_FAILURE
        try:
            cls = actor_class(kind)
        except ImportError as exc:  # a broken installation: restarting cannot help
            log.error("cannot import the %s actor: %s", kind, exc)
            return EXIT_REFUSED
        try:
            ref = cls.start(config, node_id)
        except Exception:
            log.exception("cannot create the %s actor", kind)
            return EXIT_FAILURE
        gc.collect()
        gc.freeze()
        gc.set_threshold(50_000, 20, 20)
        while ref.is_alive() and not signalled:
            ref.actor_stopped.wait(_WAIT_STEP_S)
        if signalled:
            log.info("%s: stopping", signal.Signals(signalled[0]).name)
        _stop_everything()
        # An actor's own request wins over the signal: it says more (a
        # failure that raced with the stop must not be reported as clean).
        requested = requested_exit(ref)
        if requested is not None:
            code = requested
        else:
            code = EXIT_OK if signalled else EXIT_FAILURE
        if code != EXIT_OK:
            log.error("the %s actor stopped (exit status %d)", kind, code)
        return code
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _stop_everything() -> None:
    """Stop every actor of this process and wait for their threads, within
    STOP_TIMEOUT_S; a thread still alive then is abandoned by os._exit()
    in main() (an exit must be prompt, and nothing is left to flush)."""
    deadline = time.monotonic() + STOP_TIMEOUT_S
    for ref in reversed(pykka.ActorRegistry.get_all()):
        try:
            ref.stop(block=True, timeout=max(0.01, deadline - time.monotonic()))
        except pykka.Timeout:
            log.warning("%s did not stop within %.1f s", ref, STOP_TIMEOUT_S)
    for thread in threading.enumerate():
        if thread is not threading.current_thread() and not thread.daemon:
            thread.join(max(0.0, deadline - time.monotonic()))
    try:
        from sandzmq.transport import terminate_context

        terminate_context()
    except Exception:  # best effort: the process is exiting anyway
        log.exception("closing the ZeroMQ context")


def _lingering_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon and t.is_alive()]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m sandzmq.actors",
        description="Run one of a sandzmq node's three actors (normally started by `sandzmq start`).",
    )
    parser.add_argument("kind", choices=KINDS, help="which actor to run")
    parser.add_argument("--config", required=True, help="the cluster's config file")
    parser.add_argument("--node", required=True, help="the node this actor belongs to")
    parser.add_argument(
        "--log-level",
        default=os.environ.get("SANDZMQ_LOG_LEVEL", "INFO"),
        type=str.upper,
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        help="stderr log level (default: $SANDZMQ_LOG_LEVEL or INFO)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """The process entry point; returns the exit status (see the module docstring)."""
    args = parse_args(argv)
    try:
        config = load_config(args.config)
        check_node_ids(config, [args.node])
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return EXIT_USAGE
    setup_logging(args.node, args.kind, args.log_level)
    code = run(args.kind, config, args.node)
    if _lingering_threads():
        # Interpreter shutdown would wait for them forever: leave now.
        log.error("threads still running after the stop: %s", _lingering_threads())
        logging.shutdown()
        sys.stderr.flush()
        os._exit(code)
    return code
