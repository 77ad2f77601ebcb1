"""Writer locks that work across threads and processes (flock plus a thread lock)."""

from __future__ import annotations

import fcntl
import mmap
import os
import struct
import threading
import time

from lakeloop.errors import LockTimeout

_COUNTER = struct.Struct("<Q")

__all__ = ["ProcessLock"]


class ProcessLock:
    """An exclusive lock on a file: re-entrant within a thread, exclusive across processes.

    ``acquire(timeout)`` waits for other processes with a short backoff and raises
    ``LockTimeout`` naming *label* when the time is up. The OS drops the lock when its
    holder dies, even by ``kill -9``.

    The lock file also holds a counter, bumped (in shared memory) by every holder as soon
    as it gets the lock: ``others_held`` tells a holder whether anyone else held the lock
    since it last released it, so it may trust what it cached about the locked data.
    Bumping before doing anything means even a holder killed mid-way is noticed.
    """

    def __init__(self, path: str, label: str) -> None:
        self.path = path
        self.label = label
        self._thread_lock = threading.RLock()
        self._depth = 0
        self._fd = -1
        self._map: mmap.mmap | None = None
        self._mine = -1  # counter value of our own latest hold
        self.others_held = True

    def acquire(self, timeout: float, *, op: str = "lock") -> None:
        deadline = time.monotonic() + timeout
        if not self._thread_lock.acquire(timeout=max(timeout, 0.001)):
            raise LockTimeout(
                f"writer lock not granted within {timeout:g}s", op=op, target=self.label
            )
        try:
            if self._depth == 0:
                self._lock_file(deadline, timeout, op)
                self._bump()
            self._depth += 1
        except BaseException:
            self._thread_lock.release()
            raise

    def try_acquire(self) -> bool:
        if not self._thread_lock.acquire(blocking=False):
            return False
        if self._depth == 0:
            fd = self._open()
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                self._thread_lock.release()
                return False
            self._bump()
        self._depth += 1
        return True

    def _open(self) -> int:
        if self._fd < 0:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        return self._fd

    def _mapped(self) -> mmap.mmap:
        if self._map is None:
            fd = self._open()
            if os.fstat(fd).st_size < 8:
                os.ftruncate(fd, 8)
            self._map = mmap.mmap(fd, 8)
        return self._map

    def counter(self) -> int:
        """The shared counter, without taking the lock: it changes whenever any process
        (this one included) takes the lock."""
        return int(_COUNTER.unpack_from(self._map or self._mapped())[0])

    def _bump(self) -> None:
        self._mapped()
        assert self._map is not None
        current = struct.unpack_from("<Q", self._map)[0]
        self.others_held = current != self._mine
        self._mine = (current + 1) & 0xFFFFFFFFFFFFFFFF
        struct.pack_into("<Q", self._map, 0, self._mine)

    def _lock_file(self, deadline: float, timeout: float, op: str) -> None:
        fd = self._open()
        pause = 0.0005
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise LockTimeout(
                        f"writer lock not granted within {timeout:g}s", op=op, target=self.label
                    ) from None
                time.sleep(pause)
                pause = min(pause * 2, 0.02)

    def release(self) -> None:
        self._depth -= 1
        if self._depth == 0:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        self._thread_lock.release()

    def close(self) -> None:
        if self._map is not None:
            self._map.close()
            self._map = None
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
