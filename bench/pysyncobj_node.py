"""One PySyncObj node in its own process, with a load driver: the PySyncObj
side of bench/compare_pysyncobj.py (which starts 3 or 5 of these).

Modelled on PySyncObj's own benchmark (benchmarks/testobj.py in
github.com/bakwc/PySyncObj): every node process hosts a SyncObj subclass with
one @replicated method, and its main thread issues replicated calls with a
callback and counts the callbacks that report FAIL_REASON.SUCCESS. The node
runs with PySyncObj's defaults (SyncObjConf()): no journalFile, so the
Raft log lives in memory and nothing is written to disk, let alone fsync'd.

The differences from testobj.py, and why:
- the method is a put into a bounded dict (1,024 keys per node) of a
  --size-byte bytes value, the same work as sandzmq's kv put under
  `sandzmq bench` (testobj.py only counts calls; its payload is a hex str);
- latency is measured per call, from the call to its callback
  (testobj_delay.py measures it with a second, timestamped argument);
- two load shapes: `--rate R` issues R calls/s (paced every 10 ms instead of
  one burst per second), as testobj.py does; `--rate 0` (the default) keeps
  `--window` calls outstanding, issuing the next one from each callback (a
  closed loop, like `sandzmq bench`'s clients x inflight), which finds the
  saturation throughput in one short run instead of testobj.py's binary
  search over 25-second runs. `--window` also caps outstanding calls in rate mode;
- only the callbacks that arrive inside the measured window count (a
  warm-up is excluded), as `sandzmq bench` does.

Protocol with the orchestrator (one JSON object per line):
    stdout  {"ready": true, "self", "leader", "is_leader"}   once a leader is known
    stdin   {"load": bool, "start": unix time, "warmup", "duration", "window", "rate", "grace"}
    stdout  {"result": {...}}                                 after the window and the grace period
    stdin   "stop"  (or EOF)                                  then it destroys the node and exits
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from collections import Counter
from typing import Any

try:
    from pysyncobj import FAIL_REASON, SyncObj, SyncObjConf, replicated
except ImportError:  # the orchestrator checks first; this is for a direct run
    sys.stderr.write("pysyncobj is not installed: pip install -e '.[compare]'\n")
    sys.exit(2)

KEYS = 1024


class BenchObj(SyncObj):
    """The replicated object: a bounded key-value map (testobj.py's TestObj, with data)."""

    def __init__(self, self_addr: str, partners: list[str], conf: SyncObjConf) -> None:
        super().__init__(self_addr, partners, conf)
        self._data: dict[str, bytes] = {}
        self._applied = 0

    @replicated
    def put(self, key: str, value: bytes) -> bool:
        self._applied += 1
        prev = self._data.get(key)
        self._data[key] = value
        return prev is not None


class Driver:
    """Issues replicated calls and records their callbacks."""

    def __init__(self, obj: BenchObj, node_index: int, size: int) -> None:
        self.obj = obj
        self.prefix = f"b/{node_index}/"
        self.value = os.urandom(size)
        self.lock = threading.Lock()
        self.n = 0
        self.issued = 0
        self.callbacks = 0
        self.outstanding = 0
        self.window = 0
        self.running = False
        self.closed_loop = True
        self.win_start = self.win_end = 0.0  # perf_counter bounds of the measured window
        self.latencies: list[float] = []
        self.errors: Counter[str] = Counter()
        self.errors_total: Counter[str] = Counter()

    def issue(self) -> bool:
        with self.lock:
            if not self.running or (self.window and self.outstanding >= self.window):
                return False
            self.outstanding += 1
            self.issued += 1
            self.n += 1
            key = self.prefix + str(self.n % KEYS)
        started = time.perf_counter()
        self.obj.put(key, self.value, callback=lambda res, err, t=started: self._done(err, t))
        return True

    def _done(self, err: int, started: float) -> None:
        now = time.perf_counter()
        with self.lock:
            self.outstanding -= 1
            self.callbacks += 1
        in_window = self.win_start <= now < self.win_end
        if err == FAIL_REASON.SUCCESS:
            if in_window:
                self.latencies.append(now - started)
        else:
            name = _fail_name(err)
            self.errors_total[name] += 1
            if in_window:
                self.errors[name] += 1
        if self.closed_loop and err == FAIL_REASON.SUCCESS:
            self.issue()  # the next call, from the callback (SyncObj's thread), as sandzmq bench does

    def run(self, spec: dict[str, Any]) -> dict[str, Any]:
        wall_start = float(spec["start"])
        warmup, duration, grace = float(spec["warmup"]), float(spec["duration"]), float(spec["grace"])
        self.window = int(spec["window"])
        rate = float(spec["rate"])
        self.closed_loop = rate <= 0
        # Translate the shared wall-clock start into this process's perf_counter.
        delay = wall_start - time.time()
        if delay > 0:
            time.sleep(delay)
        t0 = time.perf_counter()
        self.win_start, self.win_end = t0 + warmup, t0 + warmup + duration
        end = self.win_end
        if spec["load"]:
            self.running = True
            slice_s = 0.01
            while True:
                now = time.perf_counter()
                if now >= end:
                    break
                if self.closed_loop:
                    while self.issue():  # the first fill, and refills after errors
                        pass
                else:
                    due = int(rate * (now - t0)) - self.issued
                    for _ in range(due):
                        if not self.issue():
                            break
                time.sleep(min(slice_s, max(0.0, end - time.perf_counter())))
            with self.lock:
                self.running = False
        else:
            time.sleep(max(0.0, end - time.perf_counter()))
        deadline = time.perf_counter() + grace
        while time.perf_counter() < deadline:
            with self.lock:
                if self.outstanding == 0:
                    break
            time.sleep(0.02)
        with self.lock:
            unanswered = self.outstanding
        return {
            "load": bool(spec["load"]),
            "ops": len(self.latencies),
            "latencies_us": [round(x * 1e6) for x in self.latencies],
            "errors": sum(self.errors.values()),
            "errors_by_type": dict(self.errors),
            "errors_total": dict(self.errors_total),
            "issued": self.issued,
            "callbacks": self.callbacks,
            "unanswered": unanswered,
            "applied": self.obj._applied,
            "window_s": duration,
        }


def _fail_name(err: int) -> str:
    for name in dir(FAIL_REASON):
        if not name.startswith("_") and getattr(FAIL_REASON, name) == err:
            return name
    return str(err)


def _emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="One PySyncObj node with a load driver (see the module docstring).")
    p.add_argument("--self", dest="self_addr", required=True, help="host:port of this node")
    p.add_argument("--partners", nargs="+", required=True, help="host:port of the other nodes")
    p.add_argument("--index", type=int, default=0, help="this node's number (key prefix)")
    p.add_argument("--size", type=int, default=128, help="bytes of each command's value")
    p.add_argument("--ready-timeout", type=float, default=20.0)
    p.add_argument(
        "--tag", default="", help="ignored: marks the command line so the orchestrator can find its processes"
    )
    args = p.parse_args(argv)

    conf = SyncObjConf()  # PySyncObj's defaults: in-memory log, no fsync
    obj = BenchObj(args.self_addr, args.partners, conf)
    deadline = time.monotonic() + args.ready_timeout
    while (obj._getLeader() is None or not obj.isReady()) and time.monotonic() < deadline:
        time.sleep(0.05)
    leader = obj._getLeader()
    _emit(
        {
            "ready": leader is not None,
            "self": args.self_addr,
            "leader": None if leader is None else str(getattr(leader, "address", leader)),
            "is_leader": obj._isLeader(),
        }
    )
    if leader is None:
        obj.destroy()
        return 1
    line = sys.stdin.readline()
    if line.strip() and line.strip() != "stop":
        spec = json.loads(line)
        driver = Driver(obj, args.index, args.size)
        result = driver.run(spec)
        result["is_leader_at_end"] = obj._isLeader()
        _emit({"result": result})
        sys.stdin.readline()  # "stop", or EOF
    obj.destroy()
    time.sleep(0.1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
