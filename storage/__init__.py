"""Durable storage of the Raft log: the segmented write-ahead log the log-store actor drives.

WriteAheadLog is the writer (one process, one per directory); WalReader lets
another process (the Raft actor) read entries the writer made durable.
"""

from .errors import LogCompactedError, StorageError, WalCorruptError
from .wal import RecoveryReport, WalReader, WriteAheadLog

__all__ = ["LogCompactedError", "RecoveryReport", "StorageError", "WalCorruptError", "WalReader", "WriteAheadLog"]
