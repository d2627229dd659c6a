"""The load: closed-loop drivers that keep a fixed number of commands in
flight on a Client, and the commands they send.

Each driver issues a command when one completes, from the completing
future's callback, so the next command is batched with whatever else that
client's I/O thread sends next. Each operation's latency runs from the
replicate_async() call to its future's resolution: what an application
calling replicate() would see.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from sandzmq.benchmark.recorder import Recorder
from sandzmq.replicator.client import Client
from sandzmq.statemachines.kv import encode_put

from sandzmq.config import ClusterConfig

KEYS_PER_CLIENT = 1024  # the kv state stays bounded however long the run
ENCODED_BUDGET = 32 << 20  # bytes of pre-encoded commands per client; big values get fewer keys


def command_factory(config: ClusterConfig, client_index: int, size: int) -> Callable[[int], bytes]:
    """Commands the config's state machine understands: kv puts of `size`-byte
    values over a bounded key set; for any other state machine, `size` raw
    bytes (its apply() decides what they mean).

    The kv commands are encoded once per client and then indexed: encode_put
    validates and packs, which on a small machine would measure the bench's
    own command building rather than the cluster. The key set shrinks for
    large values so the pre-encoded commands stay within ENCODED_BUDGET bytes."""
    value = os.urandom(size)
    if config.state_machine != "kv":
        return lambda n: value
    keys = max(1, min(KEYS_PER_CLIENT, ENCODED_BUDGET // max(1, size)))
    encoded = [encode_put(f"bench/{client_index}/{k}", value) for k in range(keys)]
    return lambda n: encoded[n % keys]


class Driver:
    """Keeps `inflight` commands in flight on one Client until stopped."""

    def __init__(
        self, client: Client, make: Callable[[int], bytes], inflight: int, timeout: float, recorder: Recorder
    ) -> None:
        self.client, self.make, self.inflight, self.timeout = client, make, inflight, timeout
        self.recorder = recorder
        self.stopping = False
        self.pending = 0
        self._lock = threading.Lock()
        self._n = 0
        self.idle = threading.Event()  # set once stopped and nothing is in flight

    def start(self) -> None:
        for _ in range(self.inflight):
            self._issue()

    def stop(self) -> None:
        """Issue no more commands; `idle` is set when the last one completes."""
        with self._lock:
            self.stopping = True
            if self.pending == 0:
                self.idle.set()

    def _issue(self) -> None:
        with self._lock:
            if self.stopping or self.client.closed:
                if self.pending == 0:
                    self.idle.set()
                return
            self.pending += 1
            self._n += 1
            n = self._n
        self._send(n, time.perf_counter())

    def _send(self, n: int, started: float) -> None:
        future = self.client.replicate_async(self.make(n), timeout=self.timeout)
        future.add_done_callback(lambda f: self._done(f, started))

    def _done(self, future: Future[Any], started: float) -> None:
        """Record the completion and issue the next command, under one lock
        and one clock read: this runs once per operation on the client's I/O
        thread, so its cost is the bench's, not the cluster's."""
        now = time.perf_counter()
        error = future.exception()
        if error is None:
            self.recorder.ok(now, now - started)
        else:
            self.recorder.error(now, type(error).__name__)
        with self._lock:
            if self.stopping or self.client.closed:
                self.pending -= 1
                if self.pending == 0:
                    self.idle.set()
                return
            self._n += 1
            n = self._n
        self._send(n, now)
