"""A node's identity on disk: whose data this is (issue 8 item 5, SPEC 7).

The file is `IDENTITY` in the write-ahead log's directory, next to the log it
vouches for: a node that loses its log loses its identity with it, and then
goes through the bootstrap handshake (node/bootstrap.py), which refuses to
let it vote again once its cluster has elected. It is small JSON, so an
operator can read it, with a CRC so a damaged one is refused rather than
trusted:

    {"format": 1, "cluster": "local-3", "node": "n1",
     "cluster_id": "3f0c9a7e12b44d01", "proposal": 4543..., "crc": 123...}

`cluster_id` is "" while the node is still bootstrapping: the file then only
records its proposal. Only the log-store writes it (each file has one owner),
atomically (storage/files.py).
"""

from __future__ import annotations

import json
import os
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path

from .files import write_file_atomically

FILE_NAME = "IDENTITY"
FORMAT = 1
#: A cluster id is made by the handshake (16 hex digits); anything this long is not one.
MAX_CLUSTER_ID = 64


class IdentityError(Exception):
    """The identity file exists but cannot be trusted; the message names it."""


@dataclass(frozen=True, slots=True)
class Identity:
    cluster: str  # the cluster's name in the config file
    node: str
    cluster_id: str  # "" until the bootstrap handshake decided it
    proposal: int  # this node's bootstrap proposal, 0 before it made one


def _crc(fields: dict[str, object]) -> int:
    return zlib.crc32(json.dumps(fields, sort_keys=True).encode())


def read_identity(directory: str | os.PathLike[str]) -> Identity | None:
    """The identity in `directory`, None if there is none; IdentityError if damaged."""
    path = Path(directory) / FILE_NAME
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        doc = json.loads(raw)
        crc = doc.pop("crc")
        if doc.pop("format") != FORMAT:
            raise ValueError("unknown format")
        if crc != _crc({**doc, "format": FORMAT}):
            raise ValueError("checksum mismatch")
        identity = Identity(**doc)
        if not all(isinstance(v, str) for v in (identity.cluster, identity.node, identity.cluster_id)) or not (
            type(identity.proposal) is int and 0 <= identity.proposal < 1 << 64
        ):
            raise ValueError("a field has the wrong type")
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise IdentityError(f"{path} is damaged ({exc}): restore it, or replace the node (SPEC 7)") from None
    return identity


def write_identity(directory: str | os.PathLike[str], identity: Identity, *, fsync: bool = True) -> None:
    """Record `identity` in `directory`, atomically."""
    fields = {**asdict(identity), "format": FORMAT}
    doc = {**fields, "crc": _crc(fields)}
    write_file_atomically(Path(directory) / FILE_NAME, json.dumps(doc, sort_keys=True).encode() + b"\n", fsync=fsync)
