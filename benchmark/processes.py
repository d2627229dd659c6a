"""The cluster's actor processes seen from this host: which of them are
ours to read, and how much memory each holds.

A node's status report names its actors' pids, but a pid means something
only on the node's own host, and only while that process lives: a remote
node's pid may be some other process here, and a dead actor's pid may have
been reused. So only nodes on this host, and only pids that still run
sandzmq, are sampled.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

from sandzmq.replicator.status import PID_KEYS

from sandzmq.config import ClusterConfig


def parse_vmrss_mib(status_text: str) -> float | None:
    """VmRSS from the text of /proc/<pid>/status, in MiB (None if absent:
    kernel threads and zombies have none)."""
    for line in status_text.splitlines():
        if line.startswith("VmRSS:"):
            fields = line.split()
            if len(fields) >= 3 and fields[2].lower() == "kb":
                return int(fields[1]) / 1024
    return None


def read_rss_mib(pid: int) -> float | None:
    """The resident memory of a live process, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            return parse_vmrss_mib(fh.read())
    except OSError:
        return None


def address_host(address: str) -> str:
    """The host of a node address `tcp://HOST:PORT` (IPv6 without brackets)."""
    hostport = address.partition("://")[2] or address
    return hostport.rpartition(":")[0].strip("[]")


def is_local_host(host: str) -> bool:
    """Whether `host` names this machine: only then are a node's pids ours
    to read in /proc. Binding to an address succeeds only for addresses of
    this host, which no list of interfaces has to be consulted for."""
    try:
        if ipaddress.ip_address(host).is_loopback:
            return True
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except OSError:
        return False
    for family, _, _, _, sockaddr in infos:
        try:
            with socket.socket(family, socket.SOCK_STREAM) as probe:
                probe.bind((sockaddr[0], 0))
            return True
        except OSError:
            continue
    return False


def is_sandzmq_process(pid: int) -> bool:
    """Whether `pid` runs sandzmq: a reported pid may belong to another
    process by now (an actor that exited and a pid reused, or a stand-in)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return b"sandzmq" in fh.read()
    except OSError:
        return False


def local_actor_pids(
    config: ClusterConfig, reports: list[tuple[str, dict[str, Any] | None]]
) -> dict[str, dict[str, int]]:
    """{node id: {actor kind: pid}} for the actors whose memory can be read
    here: nodes on this host, pids that are sandzmq processes."""
    found: dict[str, dict[str, int]] = {}
    for node_id, report in reports:
        pids = report.get("pids") if report else None
        if not isinstance(pids, dict) or not is_local_host(address_host(config.node(node_id).client)):
            continue
        mine = {kind: pid for kind in PID_KEYS if isinstance(pid := pids.get(kind), int) and is_sandzmq_process(pid)}
        if mine:
            found[node_id] = mine
    return found
