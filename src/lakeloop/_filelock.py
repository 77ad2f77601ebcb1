"""An exclusive lock on a file, held across processes (``flock``) for a ``with`` block.

The catalog serializes dataset series updates with it, the registry alias moves. (The
store's writer lock is richer: re-entrant within a process, with timeouts and a holder
counter; see ``lakeloop.store._lock``.)
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

__all__ = ["FileLock"]


class FileLock:
    """``with FileLock(path): ...`` — blocks until no other holder has *path* locked."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd = -1

    def __enter__(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(self.fd, fcntl.LOCK_EX)

    def __exit__(self, *exc: object) -> None:
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)
