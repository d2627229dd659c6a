"""What a benchmark run is asked to do: how much load, for how long it is
measured, and whether it starts the cluster itself."""

from __future__ import annotations

from dataclasses import dataclass

from sandzmq.errors import SandzmqError


@dataclass(frozen=True, slots=True)
class BenchOptions:
    """The settings of one run. Those that change the numbers (concurrency,
    sizes, the window) are written into its report next to the results.

    spawn: start the config's cluster for the run and stop it afterwards;
        otherwise the cluster must be running already.
    clients: Client sessions driving load; inflight: commands each keeps in
        flight (closed loop).
    size: bytes of each command's value.
    duration: seconds measured, after `warmup` seconds of load that do not count.
    timeout: each command's replicate timeout, seconds.
    leader_timeout: seconds a spawned cluster gets to elect its first leader
        (a running one is expected to have one already; see cluster.py).
    """

    spawn: bool = False
    clients: int = 4
    inflight: int = 64
    size: int = 128
    duration: float = 10.0
    warmup: float = 1.0
    timeout: float = 5.0
    leader_timeout: float = 30.0

    def __post_init__(self) -> None:
        """Refuse settings that would measure nothing, or divide by zero in the report."""
        for name in ("clients", "inflight"):
            if getattr(self, name) < 1:
                raise SandzmqError(f"{name} must be at least 1")
        if self.size < 0:
            raise SandzmqError("size must not be negative")
        if self.duration <= 0 or self.timeout <= 0 or self.leader_timeout <= 0:
            raise SandzmqError("duration, timeout and leader_timeout must be positive")
        if self.warmup < 0:
            raise SandzmqError("warmup must not be negative")
