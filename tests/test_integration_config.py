"""Config errors through the real command line (SPEC 4): one line naming the
file and the key, exit status 2, no traceback -- for `sandzmq start` and
`sandzmq status`."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest
from cluster import SANDZMQ, free_ports

pytestmark = pytest.mark.integration


def valid_config() -> str:
    p = free_ports(6)
    nodes = "".join(
        f'[[nodes]]\nid = "n{i + 1}"\nraft = "tcp://127.0.0.1:{p[2 * i]}"\nclient = "tcp://127.0.0.1:{p[2 * i + 1]}"\n\n'
        for i in range(3)
    )
    return f'[cluster]\nname = "cfg"\nstate_machine = "kv"\ndata_dir = "data"\n\n{nodes}'


def run_cli(args: list[str], cwd: Path, timeout: float = 20.0) -> tuple[int, str, str]:
    """Run `sandzmq ARGS` in its own process group; kill the group if it outlives `timeout`
    (a config the command wrongly accepted would start a node and never return)."""
    proc = subprocess.Popen(
        [str(SANDZMQ), *args], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(
            f"`sandzmq {' '.join(args)}` still running after {timeout}s (accepted a bad config?); "
            f"stderr: {err.decode(errors='replace')[-1000:]}"
        )
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # anything it left behind
        except ProcessLookupError:
            pass
    return proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")


def _mutate(text: str, old: str, new: str) -> str:
    assert old in text
    return text.replace(old, new, 1)


# (name, how to break the valid config, key the message must name)
CASES = [
    ("missing-name", lambda t: _mutate(t, 'name = "cfg"\n', ""), "cluster.name"),
    ("unknown-key", lambda t: _mutate(t, 'name = "cfg"', 'name = "cfg"\nnmae = "x"'), "cluster.nmae"),
    ("bad-address", lambda t: _mutate(t, 'raft = "tcp://127.0.0.1:', 'raft = "tcp://127.0.0.1:99999'), "nodes[0].raft"),
    ("ipc-address", lambda t: _mutate(t, 'client = "tcp://127.0.0.1:', 'client = "ipc:///tmp/x'), "nodes[0].client"),
    ("duplicate-id", lambda t: _mutate(t, 'id = "n2"', 'id = "n1"'), "nodes[1].id"),
    ("bad-raft-option", lambda t: t + "[raft]\nheartbeat_ms = -5\n", "raft.heartbeat_ms"),
    ("unknown-raft-option", lambda t: t + "[raft]\nheartbeat = 50\n", "raft.heartbeat"),
    ("not-toml", lambda t: t + "this is = = not toml\n", None),
    (
        "bad-state-machine",
        lambda t: _mutate(t, 'state_machine = "kv"', 'state_machine = "no such thing"'),
        "cluster.state_machine",
    ),
]


def check_one_line(code: int, out: str, err: str, path: Path, key: str | None) -> None:
    assert code == 2, f"exit status {code}, expected 2; stderr: {err!r}"
    assert "Traceback" not in err and "Traceback" not in out, f"a traceback instead of a one-line error:\n{err}"
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}:\n{err}"
    assert str(path) in lines[0] or path.name in lines[0], f"the error does not name the file {path}: {lines[0]!r}"
    if key is not None:
        assert key in lines[0], f"the error does not name the key {key!r}: {lines[0]!r}"


@pytest.mark.parametrize("command", ["start", "status"])
@pytest.mark.parametrize("case, mutate, key", CASES, ids=[c[0] for c in CASES])
def test_config_error_is_one_line_and_exit_2(tmp_path, command, case, mutate, key):
    path = tmp_path / "bad.toml"
    path.write_text(mutate(valid_config()))
    args = [command, "--config", str(path)] + (["--json"] if command == "status" else [])
    code, out, err = run_cli(args, tmp_path)
    check_one_line(code, out, err, path, key)


@pytest.mark.parametrize("command", ["start", "status"])
def test_missing_config_file(tmp_path, command):
    path = tmp_path / "nope.toml"
    code, out, err = run_cli([command, "--config", str(path)], tmp_path)
    check_one_line(code, out, err, path, None)


def test_start_unknown_node(tmp_path):
    path = tmp_path / "ok.toml"
    path.write_text(valid_config())
    code, out, err = run_cli(["start", "--config", str(path), "--node", "n9"], tmp_path)
    check_one_line(code, out, err, path, "--node")
    assert "n9" in err
    assert not (tmp_path / "data").exists() or not any((tmp_path / "data").iterdir()), (
        "start created data for a refused config"
    )
