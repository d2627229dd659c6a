"""Client: talks to a sandzmq cluster from another process.

A placeholder until the node lands: it fixes the public names and signatures
(SPEC 6) so that code can be written against them, and every method raises
NotImplementedError.
"""
from __future__ import annotations

from concurrent.futures import Future
from pathlib import Path
from types import TracebackType
from typing import Any, Self

_LATER = "Client arrives with the node"


class Client:
    """Will find and follow the leader, retrying commands exactly once across leader changes."""

    @classmethod
    def from_config(cls, path: str | Path) -> Self:
        raise NotImplementedError(_LATER)

    @classmethod
    def connect(cls, address: str, follow_leader: bool = False) -> Self:
        raise NotImplementedError(_LATER)

    def replicate(self, command: bytes, timeout: float = 5.0) -> Any:
        raise NotImplementedError(_LATER)

    def replicate_async(self, command: bytes, timeout: float = 5.0) -> Future[Any]:
        raise NotImplementedError(_LATER)

    def query(
        self,
        query: bytes,
        consistency: str = "linearizable",
        node: str | None = None,
        timeout: float = 5.0,
    ) -> Any:
        raise NotImplementedError(_LATER)

    def close(self) -> None:
        raise NotImplementedError(_LATER)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
