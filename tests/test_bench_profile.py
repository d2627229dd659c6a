"""bench/profile_cluster.py's pure parts: /proc/<pid>/stat parsing, CPU
shares, and folding py-spy's raw stacks into self and inclusive samples."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import profile_cluster as pc  # noqa: E402

RAW = [
    "Thread.run (threading.py:982);SocketActor._pump (actors/base.py:160);RaftActor.flush (actors/raft_actor.py:327) 6",
    "Thread.run (threading.py:982);SocketActor._pump (actors/base.py:153);Poller.poll (zmq/sugar/poll.py:106) 3",
    "Thread.run (threading.py:982);walk (x.py:1);walk (x.py:2);walk (x.py:3) 1",
    "",
    "garbage without a count",
]


def test_cpu_seconds_from_stat_with_spaces_in_the_name() -> None:
    tick = pc.CLK_TCK
    fields = ["S"] + ["0"] * 10 + [str(3 * tick), str(tick)] + ["0"] * 30
    text = f"1234 (python -m (x)) {' '.join(fields)}"
    assert pc.cpu_seconds_from_stat(text) == 4.0


def test_cpu_of_this_process_is_read() -> None:
    import os

    assert pc.read_cpu(os.getpid()) > 0
    assert pc.read_cpu(2**31 - 1) is None


def test_cpu_shares_per_process() -> None:
    assert pc.cpu_shares({"a": 1.0, "b": 2.0, "gone": 0.0}, {"a": 1.5, "b": 2.0}, 2.0) == {"a": 25.0, "b": 0.0}


def test_short_frames_lose_the_line_and_the_install_path() -> None:
    assert (
        pc.short_frame("Socket.send (/x/.venv/lib/python3.11/site-packages/zmq/sugar/socket.py:765)")
        == "Socket.send (zmq/sugar/socket.py)"
    )
    assert pc.short_frame(f"flush ({pc.REPO}/actors/raft_actor.py:327)") == "flush (actors/raft_actor.py)"
    assert pc.short_frame("<native>") == "<native>"


def test_fold_raw_counts_self_and_inclusive_samples() -> None:
    folded = pc.fold_raw(RAW)
    assert folded.total == 10
    assert folded.self_samples["RaftActor.flush (actors/raft_actor.py)"] == 6
    assert folded.self_samples["Poller.poll (zmq/sugar/poll.py)"] == 3
    assert folded.inclusive["SocketActor._pump (actors/base.py)"] == 9  # two lines of one function
    assert folded.inclusive["walk (x.py)"] == 1  # recursion counts once per stack
    assert folded.inclusive["Thread.run (threading.py)"] == 10


def test_top_skips_the_plumbing() -> None:
    folded = pc.fold_raw(RAW)
    top = folded.top(folded.inclusive, 2, skip=pc.PLUMBING)
    assert [(row["function"], row["pct"]) for row in top] == [
        ("SocketActor._pump (actors/base.py)", 90.0),
        ("RaftActor.flush (actors/raft_actor.py)", 60.0),
    ]
