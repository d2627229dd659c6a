"""Config loading (SPEC 4): valid files load with their defaults and resolved paths;
every kind of mistake is one ConfigError line naming the file and the key."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sandzmq import ConfigError
from sandzmq.config import RaftOptions, check_node_ids, load_config

REPO = Path(__file__).resolve().parent.parent

CLUSTER = """
[cluster]
name = "dev"
state_machine = "kv"
"""


def node(n: int, **extra: str) -> str:
    lines = [
        "[[nodes]]",
        f'id = "n{n}"',
        f'raft = "tcp://127.0.0.1:{7000 + n}"',
        f'client = "tcp://127.0.0.1:{7100 + n}"',
    ]
    lines += [f"{key} = {value}" for key, value in extra.items()]
    return "\n".join(lines) + "\n"


NODES = node(1) + node(2) + node(3)


def write(directory: Path, text: str, name: str = "cluster.toml") -> Path:
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def load_error(path: Path) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return info.value


def assert_reported(error: ConfigError, path: Path | str, key: str, fragment: str) -> None:
    text = str(error)
    assert "\n" not in text and "\r" not in text
    assert text.startswith(f"{path}: {key}: "), text
    assert fragment in text, text
    assert (error.path, error.key) == (str(path), key)


# --- valid files ---------------------------------------------------------------


@pytest.mark.parametrize("name, size", [("local-3.toml", 3), ("local-5.toml", 5)])
def test_shipped_configs_load(name: str, size: int) -> None:
    config = load_config(REPO / "configs" / name)
    assert len(config.nodes) == size
    assert config.state_machine == "kv"
    assert config.data_dir == REPO / "configs" / "data" / name.removesuffix(".toml")
    assert config.raft == RaftOptions()


def test_shipped_configs_can_run_together() -> None:
    addresses = [
        address
        for name in ("local-3.toml", "local-5.toml")
        for node_config in load_config(REPO / "configs" / name).nodes
        for address in (node_config.raft, node_config.client)
    ]
    assert len(addresses) == len(set(addresses)) == 16


def test_minimal_config_gets_defaults(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, CLUSTER + node(1)))
    assert config.name == "dev"
    assert config.path == tmp_path / "cluster.toml"
    assert config.data_dir == tmp_path / "data"
    assert config.data_dir_for("n1") == tmp_path / "data" / "n1"
    assert config.raft.election_timeout_ms == (150, 300)
    assert config.raft.heartbeat_ms == 50
    assert config.raft.fsync is True
    assert config.state_machine_options == {}
    assert config.security is None
    assert config.node("n1").join is False
    with pytest.raises(KeyError):
        config.node("n9")


def test_relative_paths_are_taken_from_the_config_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = (
        CLUSTER.replace('"kv"', '"kv"\ndata_dir = "state/../store"')
        + node(1)
        + node(2, data_dir='"../elsewhere/n2"')
        + node(3, data_dir=f'"{tmp_path / "abs"}"')
    )
    path = write(tmp_path / "conf", text)
    monkeypatch.chdir(REPO)  # the working directory must not matter
    config = load_config(os.path.relpath(path))
    assert config.data_dir == tmp_path / "conf" / "store"
    assert config.data_dir_for("n1") == tmp_path / "conf" / "store" / "n1"
    assert config.data_dir_for("n2") == tmp_path / "elsewhere" / "n2"
    assert config.data_dir_for("n3") == tmp_path / "abs"
    assert config.path.is_absolute()


def test_every_option_is_read(tmp_path: Path) -> None:
    text = (
        CLUSTER
        + """
[state_machine_options]
capacity = 10
label = "x"

[raft]
election_timeout_ms = [1000, 2000]
heartbeat_ms = 100
max_batch_entries = 64
max_batch_bytes = 4096
max_inflight = 2
max_inflight_bytes = 65536
fsync = false
snapshot_threshold = 50
pre_vote = false
check_quorum = false
tick_ms = 5

[security]
keys_dir = "keys"
client_key = "client"
authorized_clients = ["client", "ops"]
"""
        + node(1)
        + node(2, join="true")
    )
    config = load_config(write(tmp_path, text))
    assert config.state_machine_options == {"capacity": 10, "label": "x"}
    assert config.raft == RaftOptions(
        election_timeout_ms=(1000, 2000),
        heartbeat_ms=100,
        max_batch_entries=64,
        max_batch_bytes=4096,
        max_inflight=2,
        max_inflight_bytes=65536,
        fsync=False,
        snapshot_threshold=50,
        pre_vote=False,
        check_quorum=False,
        tick_ms=5,
    )
    assert config.security is not None
    assert config.security.keys_dir == tmp_path / "keys"
    assert config.security.client_key == "client"
    assert config.security.authorized_clients == ("client", "ops")
    assert [n.join for n in config.nodes] == [False, True]


@pytest.mark.parametrize(
    "address",
    ["tcp://[::1]:7001", "tcp://node-1.example.com:7001", "tcp://localhost:65535", "tcp://10.0.0.1:1"],
)
def test_accepted_addresses(tmp_path: Path, address: str) -> None:
    text = CLUSTER + node(1).replace('"tcp://127.0.0.1:7001"', f'"{address}"')
    assert load_config(write(tmp_path, text)).nodes[0].raft == address


def test_module_class_state_machine_is_only_checked_for_syntax(tmp_path: Path) -> None:
    text = CLUSTER.replace('"kv"', '"not_installed.anywhere:Thing"') + node(1)
    assert load_config(write(tmp_path, text)).state_machine == "not_installed.anywhere:Thing"


# --- invalid files: one line, the file, the key, the problem ----------------------

INVALID = {
    "missing name": ('[cluster]\nstate_machine = "kv"\n' + NODES, "cluster.name", "missing"),
    "missing state machine": ('[cluster]\nname = "dev"\n' + NODES, "cluster.state_machine", "missing"),
    "missing cluster": (NODES, "cluster", "missing"),
    "no nodes": (CLUSTER, "nodes", "at least one [[nodes]]"),
    "empty nodes": ("nodes = []\n" + CLUSTER, "nodes", "at least one [[nodes]]"),
    "nodes as a table": (CLUSTER + '[nodes]\nid = "n1"\n', "nodes", "expected [[nodes]] tables, got a table"),
    "node that is not a table": ("nodes = [1]\n" + CLUSTER, "nodes[0]", "expected a table, got an integer 1"),
    "unknown top-level table": (
        CLUSTER + "[clutser]\nx = 1\n" + NODES,
        "clutser",
        "unknown key (did you mean cluster?)",
    ),
    "unknown cluster key": (CLUSTER + 'nmae = "x"\n' + NODES, "cluster.nmae", "unknown key (did you mean name?)"),
    "unknown raft key": (
        CLUSTER + "[raft]\nheartbet_ms = 40\n" + NODES,
        "raft.heartbet_ms",
        "unknown key (did you mean heartbeat_ms?)",
    ),
    "unknown node key": (CLUSTER + node(1) + node(2) + node(3, adress='"x"'), "nodes[2].adress", "unknown key"),
    "unknown security key": (
        CLUSTER + '[security]\nkeys_dir = "k"\nclient_key = "c"\nauthorized_clients = []\nextra = 1\n' + NODES,
        "security.extra",
        "unknown key",
    ),
    "quoted unknown key": (CLUSTER + '"odd\\nkey" = 1\n' + NODES, 'cluster."odd\\nkey"', "unknown key"),
    "name of wrong type": (
        CLUSTER.replace('"dev"', "5") + NODES,
        "cluster.name",
        "expected a string, got an integer 5",
    ),
    "bad cluster name": (CLUSTER.replace('"dev"', '"my cluster"') + NODES, "cluster.name", "not a valid name"),
    "posix not yet": (CLUSTER.replace('"kv"', '"posix"') + NODES, "cluster.state_machine", "later release"),
    "bad state machine": (CLUSTER.replace('"kv"', '"kv2"') + NODES, "cluster.state_machine", "'module:Class'"),
    "state machine missing class": (
        CLUSTER.replace('"kv"', '"mymodule:"') + NODES,
        "cluster.state_machine",
        "'module:Class'",
    ),
    "empty data_dir": (CLUSTER.replace('"kv"', '"kv"\ndata_dir = ""') + NODES, "cluster.data_dir", "empty"),
    "options not a table": (
        CLUSTER.replace("[cluster]", "state_machine_options = 5\n[cluster]") + NODES,
        "state_machine_options",
        "expected a table",
    ),
    "integer given as string": (
        CLUSTER + '[raft]\nheartbeat_ms = "fifty"\n' + NODES,
        "raft.heartbeat_ms",
        'expected an integer, got a string "fifty"',
    ),
    "integer given as boolean": (
        CLUSTER + "[raft]\nmax_inflight = true\n" + NODES,
        "raft.max_inflight",
        "expected an integer, got a boolean",
    ),
    "boolean given as integer": (CLUSTER + "[raft]\nfsync = 1\n" + NODES, "raft.fsync", "expected a boolean"),
    "zero is not positive": (CLUSTER + "[raft]\nmax_inflight = 0\n" + NODES, "raft.max_inflight", "positive"),
    "float for integer": (
        CLUSTER + "[raft]\nsnapshot_threshold = 1.5\n" + NODES,
        "raft.snapshot_threshold",
        "expected an integer, got a float 1.5",
    ),
    "reversed election range": (
        CLUSTER + "[raft]\nelection_timeout_ms = [300, 150]\n" + NODES,
        "raft.election_timeout_ms",
        "0 < min < max",
    ),
    "election range as number": (
        CLUSTER + "[raft]\nelection_timeout_ms = 150\n" + NODES,
        "raft.election_timeout_ms",
        "[min, max]",
    ),
    "election range of three": (
        CLUSTER + "[raft]\nelection_timeout_ms = [1, 2, 3]\n" + NODES,
        "raft.election_timeout_ms",
        "[min, max]",
    ),
    "heartbeat too slow": (
        CLUSTER + "[raft]\nheartbeat_ms = 150\n" + NODES,
        "raft.heartbeat_ms",
        "below the election timeout minimum",
    ),
    "tick coarser than heartbeat": (CLUSTER + "[raft]\ntick_ms = 60\n" + NODES, "raft.tick_ms", "heartbeat_ms"),
    "election faster than default heartbeat": (
        CLUSTER + "[raft]\nelection_timeout_ms = [40, 80]\n" + NODES,
        "raft.election_timeout_ms",
        "heartbeat_ms (50) must be below the election timeout minimum (40)",
    ),
    "heartbeat finer than default tick": (
        CLUSTER + "[raft]\nheartbeat_ms = 5\n" + NODES,
        "raft.heartbeat_ms",
        "tick_ms (10) must not exceed heartbeat_ms (5)",
    ),
    "node missing raft": (
        CLUSTER + '[[nodes]]\nid = "n1"\nclient = "tcp://127.0.0.1:7101"\n',
        "nodes[0].raft",
        "missing",
    ),
    "node missing id": (
        CLUSTER + node(1) + '[[nodes]]\nraft = "tcp://h:1"\nclient = "tcp://h:2"\n',
        "nodes[1].id",
        "missing",
    ),
    "empty id": (CLUSTER + node(1).replace('"n1"', '""'), "nodes[0].id", "not a valid name"),
    "id with a slash": (CLUSTER + node(1).replace('"n1"', '"a/b"'), "nodes[0].id", "not a valid name"),
    "id that climbs": (CLUSTER + node(1).replace('"n1"', '".."'), "nodes[0].id", "not a valid name"),
    "id of wrong type": (CLUSTER + node(1).replace('"n1"', "1"), "nodes[0].id", "expected a string"),
    "duplicate id": (CLUSTER + node(1) + node(2).replace('"n2"', '"n1"'), "nodes[1].id", "duplicate node id 'n1'"),
    "address without scheme": (
        CLUSTER + node(1).replace('"tcp://127.0.0.1:7001"', '"127.0.0.1:7001"'),
        "nodes[0].raft",
        "tcp://HOST:PORT",
    ),
    "ipc address": (
        CLUSTER + node(1).replace('"tcp://127.0.0.1:7101"', '"ipc:///tmp/n1"'),
        "nodes[0].client",
        "ipc://",
    ),
    "udp address": (
        CLUSTER + node(1).replace('"tcp://127.0.0.1:7001"', '"udp://127.0.0.1:7001"'),
        "nodes[0].raft",
        "not supported",
    ),
    "address without port": (CLUSTER + node(1).replace(":7001", ""), "nodes[0].raft", "tcp://HOST:PORT"),
    "wildcard host": (CLUSTER + node(1).replace("127.0.0.1:7001", "*:7001"), "nodes[0].raft", "'*' is not"),
    "port zero": (CLUSTER + node(1).replace(":7001", ":0"), "nodes[0].raft", "out of range"),
    "port too big": (CLUSTER + node(1).replace(":7001", ":70000"), "nodes[0].raft", "out of range"),
    "bad IPv4": (CLUSTER + node(1).replace("127.0.0.1:7001", "999.1.1.1:7001"), "nodes[0].raft", "'999.1.1.1' is not"),
    "bad IPv6": (CLUSTER + node(1).replace("127.0.0.1:7001", "[::g]:7001"), "nodes[0].raft", "is not an IPv4"),
    "bad host name": (CLUSTER + node(1).replace("127.0.0.1:7001", "-bad-.com:7001"), "nodes[0].raft", "is not an IPv4"),
    "address reused across nodes": (
        CLUSTER + node(1) + node(2).replace(":7002", ":7001"),
        "nodes[1].raft",
        "already used by nodes[0].raft",
    ),
    "address reused within a node": (
        CLUSTER + node(1).replace(":7101", ":7001"),
        "nodes[0].client",
        "already used by nodes[0].raft",
    ),
    "same endpoint spelt differently": (
        CLUSTER
        + node(1).replace("127.0.0.1:7001", "LocalHost:7001")
        + node(2).replace("127.0.0.1:7002", "localhost:7001"),
        "nodes[1].raft",
        "already used",
    ),
    "join of wrong type": (CLUSTER + node(1, join='"yes"'), "nodes[0].join", "expected a boolean"),
    "every node joins": (
        CLUSTER + node(1, join="true") + node(2, join="true"),
        "nodes",
        "at least one must start as a member",
    ),
    "shared data dir": (
        CLUSTER + node(1) + node(2, data_dir='"data/n1"'),
        "nodes[1].data_dir",
        "data directory of both n1 and n2",
    ),
    "shared data dir, override first": (
        CLUSTER + node(1, data_dir='"data/n2"') + node(2),
        "nodes[0].data_dir",
        "both n1 and n2",
    ),
    "security missing key": (
        CLUSTER + '[security]\nkeys_dir = "k"\nauthorized_clients = []\n' + NODES,
        "security.client_key",
        "missing",
    ),
    "security bad client name": (
        CLUSTER + '[security]\nkeys_dir = "k"\nclient_key = "c"\nauthorized_clients = ["ok", "../etc"]\n' + NODES,
        "security.authorized_clients[1]",
        "not a valid name",
    ),
}


@pytest.mark.parametrize("text, key, fragment", INVALID.values(), ids=INVALID.keys())
def test_invalid_config_is_one_line_naming_file_and_key(tmp_path: Path, text: str, key: str, fragment: str) -> None:
    path = write(tmp_path, text)
    assert_reported(load_error(path), path, key, fragment)


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.toml"
    assert_reported(load_error(path), path, "-", "no such file")


def test_directory_instead_of_file(tmp_path: Path) -> None:
    assert_reported(load_error(tmp_path), tmp_path, "-", "is a directory")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_unreadable_file(tmp_path: Path) -> None:
    path = write(tmp_path, CLUSTER + NODES)
    path.chmod(0)
    assert_reported(load_error(path), path, "-", "cannot read it")


def test_toml_syntax_error_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, CLUSTER + "name =\n" + NODES)
    assert_reported(load_error(path), path, "-", "not valid TOML")
    assert "line 5" in str(load_error(path))


def test_non_utf8_file(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes(b'[cluster]\nname = "caf\xe9"\n')
    assert_reported(load_error(path), path, "-", "not UTF-8")


def test_the_path_is_shown_as_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, CLUSTER + "[raft]\nfsync = 2\n" + NODES)
    monkeypatch.chdir(tmp_path)
    error = load_error(Path("cluster.toml"))
    assert str(error).startswith("cluster.toml: raft.fsync: ")


def test_check_node_ids(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, CLUSTER + NODES))
    assert [n.id for n in check_node_ids(config, [])] == ["n1", "n2", "n3"]
    assert [n.id for n in check_node_ids(config, ["n3", "n1", "n3"])] == ["n3", "n1"]
    with pytest.raises(ConfigError) as info:
        check_node_ids(config, ["n1", "n9"])
    assert_reported(info.value, config.path, "--node", "unknown node 'n9'")
    assert "n1, n2, n3" in str(info.value)


def test_max_batch_bytes_above_16_mib_is_refused(tmp_path):
    """A command may be max_batch_bytes long, and every frame between a node's
    processes must hold one: a larger value would make messages that can never
    be sent."""
    path = tmp_path / "c.toml"
    path.write_text(
        '[cluster]\nname = "c"\nstate_machine = "kv"\n[raft]\nmax_batch_bytes = 16777217\n'
        '[[nodes]]\nid = "n1"\nraft = "tcp://127.0.0.1:7001"\nclient = "tcp://127.0.0.1:7101"\n'
    )
    with pytest.raises(ConfigError, match="raft.max_batch_bytes"):
        load_config(path)
