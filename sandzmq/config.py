"""Load and validate a cluster's TOML config file (SPEC 4) into frozen dataclasses.

Everything a user can get wrong in the file is caught here, before any
process starts, and reported as one ConfigError naming the file, the dotted
key and the problem: a misspelt key must not quietly fall back to a default,
and a bad address must not surface later as a bind error in an actor's log.
"""

from __future__ import annotations

import dataclasses
import difflib
import ipaddress
import json
import os
import re
import tomllib
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from sandzmq.errors import ConfigError
from sandzmq.state_machine import resolve_state_machine

#: The largest max_batch_bytes: a command may be that large, and every frame
#: between a node's actors (64 MiB) must hold one next to a batch of others.
MAX_BATCH_BYTES = 16 << 20
#: The smallest client-port frame limit, whatever max_batch_bytes says: what
#: a client that knows nothing of the node's config may send.
MIN_CLIENT_FRAME_BYTES = 16 << 20


@dataclass(frozen=True, slots=True)
class RaftOptions:
    """Tuning of the Raft core and its actors (the `[raft]` table); every field has a default."""

    election_timeout_ms: tuple[int, int] = (150, 300)  # each election draws its timeout from [min, max]
    heartbeat_ms: int = 50  # below the election minimum, or followers call elections on a live leader
    max_batch_entries: int = 512  # entries per AppendEntries
    max_batch_bytes: int = 1 << 20  # bytes of entries per AppendEntries
    max_inflight: int = 4  # AppendEntries in flight per follower (pipelining)
    max_inflight_bytes: int = 8 << 20  # bytes of entries in flight per follower
    fsync: bool = True  # false trades the durability of acknowledged writes for speed
    snapshot_threshold: int = 10_000  # applied entries between two snapshots
    pre_vote: bool = True  # a node that was cut off cannot disrupt the leader on its return
    check_quorum: bool = True  # a leader that cannot hear a majority steps down
    tick_ms: int = 10  # the core's logical clock; timeouts are counted in ticks

    @property
    def peer_frame_bytes(self) -> int:
        """The largest frame a node's raft port takes: an AppendEntries holds
        at most max_batch_bytes of entry data (or one command, which is no
        larger), plus per-entry overhead. Larger frames are discarded by
        libzmq before they reach Python."""
        return 2 * self.max_batch_bytes + (1 << 20)

    @property
    def client_frame_bytes(self) -> int:
        """The largest frame a node's client port takes: a client's batch of
        commands (the client library cuts batches well below this) or one
        command of up to max_batch_bytes."""
        return max(MIN_CLIENT_FRAME_BYTES, self.max_batch_bytes + (1 << 20))


@dataclass(frozen=True, slots=True)
class NodeConfig:
    """One `[[nodes]]` entry: where a node listens, and where it keeps its data if not the default."""

    id: str
    raft: str  # tcp:// address for peer traffic
    client: str  # tcp:// address for client traffic
    data_dir: Path | None = None  # absolute; None: <cluster data_dir>/<id>
    join: bool = False  # started empty, waits to be added as a member


@dataclass(frozen=True, slots=True)
class SecurityConfig:
    """The `[security]` table: CURVE key pairs by name, and which clients get answers."""

    keys_dir: Path  # absolute
    client_key: str
    authorized_clients: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ClusterConfig:
    """A whole validated config file. Paths in it are absolute."""

    path: Path
    name: str
    state_machine: str
    state_machine_options: Mapping[str, Any]
    data_dir: Path
    raft: RaftOptions
    nodes: tuple[NodeConfig, ...]
    security: SecurityConfig | None = None

    def node(self, node_id: str) -> NodeConfig:
        """The node with this id; KeyError if the file has none."""
        for node in self.nodes:
            if node.id == node_id:
                return node
        raise KeyError(node_id)

    def data_dir_for(self, node_id: str) -> Path:
        """Where this node keeps its log, hard state and snapshots."""
        return self.node(node_id).data_dir or self.data_dir / node_id


def load_config(path: str | os.PathLike[str]) -> ClusterConfig:
    """Read and validate a config file; any problem raises ConfigError, never anything else."""
    source = os.fspath(path)
    try:
        with open(source, "rb") as file:
            document = tomllib.load(file)
    except FileNotFoundError:
        raise ConfigError(source, "-", "no such file") from None
    except IsADirectoryError:
        raise ConfigError(source, "-", "is a directory, not a config file") from None
    except OSError as exc:
        raise ConfigError(source, "-", f"cannot read it: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(source, "-", "not valid TOML: the file is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(source, "-", f"not valid TOML: {exc}") from None
    return _Reader(source).cluster(document)


def check_node_ids(config: ClusterConfig, ids: Iterable[str]) -> tuple[NodeConfig, ...]:
    """Return the nodes named by `--node` options, in the order given; all nodes when none is."""
    wanted = list(dict.fromkeys(ids))
    if not wanted:
        return config.nodes
    known = {node.id: node for node in config.nodes}
    for node_id in wanted:
        if node_id not in known:
            raise ConfigError(config.path, "--node", f"unknown node {node_id!r}; the file has {', '.join(known)}")
    return tuple(known[node_id] for node_id in wanted)


_REQUIRED: Any = object()
_TOP_KEYS = ("cluster", "state_machine_options", "raft", "nodes", "security")
_CLUSTER_KEYS = ("name", "state_machine", "data_dir")
_NODE_KEYS = ("id", "raft", "client", "data_dir", "join")
_SECURITY_KEYS = ("keys_dir", "client_key", "authorized_clients")
_RAFT_DEFAULTS = {field.name: field.default for field in dataclasses.fields(RaftOptions)}

# Names become file names (<data_dir>/<id>, <keys_dir>/<name>.key), hence no
# separators and no leading dot.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_NAME_RULE = "letters, digits, '_', '.' and '-', starting with a letter or digit"
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_ADDRESS = re.compile(r"tcp://(?P<host>\[[^\]]*\]|[^:/\[\]]*):(?P<port>[0-9]+)")
_ADDRESS_RULE = "tcp://HOST:PORT (HOST an IPv4 address, [IPv6 address] or host name)"
_LABEL = r"[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
_HOSTNAME = re.compile(rf"(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*\.?")
_TOML_TYPES = {str: "a string", int: "an integer", bool: "a boolean", list: "an array", dict: "a table"}


class _Reader:
    """Walks a parsed document, turning each problem into a ConfigError about `source`."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.base_dir = Path(source).absolute().parent

    def cluster(self, document: dict[str, Any]) -> ClusterConfig:
        self.table("", document, _TOP_KEYS)
        cluster = self.table("cluster", self.get(document, "", "cluster", dict), _CLUSTER_KEYS)
        name = self.name("cluster.name", self.get(cluster, "cluster", "name", str))
        state_machine = self.get(cluster, "cluster", "state_machine", str)
        try:
            resolve_state_machine(state_machine)
        except ValueError as exc:
            raise self.error("cluster.state_machine", str(exc)) from None
        data_dir = self.path("cluster.data_dir", self.get(cluster, "cluster", "data_dir", str, "data"))
        options = self.get(document, "", "state_machine_options", dict, {})
        raft = self.raft(self.get(document, "", "raft", dict, {}))
        nodes = self.nodes(document.get("nodes", []))
        self.check_data_dirs(data_dir, nodes)
        security = document.get("security")
        return ClusterConfig(
            path=Path(self.source).absolute(),
            name=name,
            state_machine=state_machine,
            state_machine_options=MappingProxyType(options),
            data_dir=data_dir,
            raft=raft,
            nodes=nodes,
            security=None if security is None else self.security(security),
        )

    def raft(self, table: dict[str, Any]) -> RaftOptions:
        self.table("raft", table, _RAFT_DEFAULTS)
        values: dict[str, Any] = {}
        for name, value in table.items():
            key = f"raft.{name}"
            if name == "election_timeout_ms":
                values[name] = self.timeout_range(key, value)
            elif isinstance(_RAFT_DEFAULTS[name], bool):
                values[name] = self.expect(key, value, bool)
            else:
                values[name] = self.positive(key, value)
        options = RaftOptions(**values)

        def culprit(*names: str) -> str:
            """The first of `names` the file sets: a default is not where the mistake is."""
            return "raft." + next((name for name in names if name in table), names[0])

        heartbeat, low = options.heartbeat_ms, options.election_timeout_ms[0]
        if heartbeat >= low:
            raise self.error(
                culprit("heartbeat_ms", "election_timeout_ms"),
                f"heartbeat_ms ({heartbeat}) must be below the election timeout minimum ({low}), "
                "or followers start elections against a live leader",
            )
        if options.max_batch_bytes > MAX_BATCH_BYTES:
            raise self.error(
                "raft.max_batch_bytes",
                f"{options.max_batch_bytes} is above the limit of {MAX_BATCH_BYTES} bytes "
                "(one command can be that large, and every message between a node's processes must hold one)",
            )
        if options.tick_ms > heartbeat:
            raise self.error(
                culprit("tick_ms", "heartbeat_ms"),
                f"tick_ms ({options.tick_ms}) must not exceed heartbeat_ms ({heartbeat})",
            )
        return options

    def nodes(self, items: Any) -> tuple[NodeConfig, ...]:
        if not isinstance(items, list):
            raise self.error("nodes", f"expected [[nodes]] tables, got {_describe(items)}")
        if not items:
            raise self.error("nodes", "missing: add at least one [[nodes]] table")
        nodes: list[NodeConfig] = []
        ids: dict[str, str] = {}
        endpoints: dict[tuple[str, int], str] = {}
        for index, item in enumerate(items):
            prefix = f"nodes[{index}]"
            table = self.table(prefix, item, _NODE_KEYS)
            node_id = self.name(f"{prefix}.id", self.get(table, prefix, "id", str))
            if node_id in ids:
                raise self.error(f"{prefix}.id", f"duplicate node id {node_id!r} (also {ids[node_id]}.id)")
            ids[node_id] = prefix
            for role in ("raft", "client"):
                key = f"{prefix}.{role}"
                endpoint = self.address(key, self.get(table, prefix, role, str))
                if endpoint in endpoints:
                    raise self.error(key, f"{table[role]!r} is already used by {endpoints[endpoint]}")
                endpoints[endpoint] = key
            data_dir = self.get(table, prefix, "data_dir", str, None)
            nodes.append(
                NodeConfig(
                    id=node_id,
                    raft=table["raft"],
                    client=table["client"],
                    data_dir=None if data_dir is None else self.path(f"{prefix}.data_dir", data_dir),
                    join=self.get(table, prefix, "join", bool, False),
                )
            )
        if all(node.join for node in nodes):
            raise self.error("nodes", "every node has join = true; at least one must start as a member")
        return tuple(nodes)

    def check_data_dirs(self, data_dir: Path, nodes: tuple[NodeConfig, ...]) -> None:
        """Two nodes sharing a data directory would overwrite each other's log."""
        owners: dict[Path, int] = {}
        for index, node in enumerate(nodes):
            directory = node.data_dir or data_dir / node.id
            if directory in owners:
                other = owners[directory]
                culprit = index if node.data_dir else other
                raise self.error(
                    f"nodes[{culprit}].data_dir",
                    f"{str(directory)!r} is the data directory of both {nodes[other].id} and {node.id}",
                )
            owners[directory] = index

    def security(self, value: Any) -> SecurityConfig:
        table = self.table("security", value, _SECURITY_KEYS)
        keys_dir = self.path("security.keys_dir", self.get(table, "security", "keys_dir", str))
        client_key = self.name("security.client_key", self.get(table, "security", "client_key", str))
        clients = []
        for index, item in enumerate(self.get(table, "security", "authorized_clients", list)):
            key = f"security.authorized_clients[{index}]"
            clients.append(self.name(key, self.expect(key, item, str)))
        return SecurityConfig(keys_dir, client_key, tuple(clients))

    # Checks of single values. Each returns the value it accepted.

    def table(self, key: str, value: Any, allowed: Collection[str]) -> dict[str, Any]:
        """A table holding no key outside `allowed`: a misspelt key is an error, not a default."""
        self.expect(key, value, dict)
        for name in value:
            if name not in allowed:
                close = difflib.get_close_matches(name, allowed, n=1)
                hint = f" (did you mean {close[0]}?)" if close else ""
                raise self.error(_join(key, name), f"unknown key{hint}")
        return value

    def get(self, table: dict[str, Any], prefix: str, name: str, kind: type, default: Any = _REQUIRED) -> Any:
        if name in table:
            return self.expect(_join(prefix, name), table[name], kind)
        if default is _REQUIRED:
            raise self.error(_join(prefix, name), "missing (required)")
        return default

    def expect(self, key: str, value: Any, kind: type) -> Any:
        # bool is a subclass of int in Python, not in TOML.
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise self.error(key, f"expected {_TOML_TYPES[kind]}, got {_describe(value)}")
        return value

    def positive(self, key: str, value: Any) -> int:
        if self.expect(key, value, int) <= 0:
            raise self.error(key, f"must be a positive integer, got {value}")
        return value

    def timeout_range(self, key: str, value: Any) -> tuple[int, int]:
        if (
            not isinstance(value, list)
            or len(value) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)
            or not 0 < value[0] < value[1]
        ):
            raise self.error(key, f"expected [min, max] in milliseconds with 0 < min < max, got {_describe(value)}")
        return (value[0], value[1])

    def name(self, key: str, value: str) -> str:
        if not _NAME.fullmatch(value):
            raise self.error(key, f"{value!r} is not a valid name: use {_NAME_RULE}")
        return value

    def path(self, key: str, value: str) -> Path:
        """An absolute path; a relative one is taken from the config file's folder."""
        if not value:
            raise self.error(key, "must not be empty")
        return (self.base_dir / Path(value).expanduser()).resolve()

    def address(self, key: str, value: str) -> tuple[str, int]:
        """Check a node address; return (host, port) in a form that compares equal for equal endpoints."""
        scheme, separator, _ = value.partition("://")
        if separator and scheme != "tcp":
            reason = "is for the actors inside a node" if scheme == "ipc" else "is not supported"
            raise self.error(key, f"{scheme}:// {reason}; node addresses are {_ADDRESS_RULE}")
        match = _ADDRESS.fullmatch(value)
        if not match:
            raise self.error(key, f"expected {_ADDRESS_RULE}, got {value!r}")
        host, port = match["host"], int(match["port"])
        if not 1 <= port <= 65535:
            raise self.error(key, f"port {port} is out of range 1-65535")
        try:
            if host.startswith("["):
                host = str(ipaddress.IPv6Address(host[1:-1]))
            elif re.fullmatch(r"[0-9.]+", host):
                host = str(ipaddress.IPv4Address(host))
            elif _HOSTNAME.fullmatch(host):
                host = host.lower().rstrip(".")
            else:
                raise ValueError(host)
        except ValueError:
            raise self.error(key, f"{host!r} is not an IPv4 address, [IPv6 address] or host name") from None
        return host, port

    def error(self, key: str, problem: str) -> ConfigError:
        return ConfigError(self.source, key, problem)


def _join(prefix: str, name: str) -> str:
    """The dotted key of `name` inside `prefix`, quoted as TOML would when it is not bare."""
    part = name if _BARE_KEY.fullmatch(name) else json.dumps(name)
    return f"{prefix}.{part}" if prefix else part


def _describe(value: Any) -> str:
    """A short, one-line account of a value the user wrote."""
    if isinstance(value, dict):
        return "a table"
    kind = next((name for t, name in _TOML_TYPES.items() if type(value) is t), f"a {type(value).__name__}")
    shown = json.dumps(value, default=str)
    if len(shown) > 40:
        shown = shown[:37] + "..."
    return f"{kind} {shown}"
