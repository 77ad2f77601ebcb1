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
_QUICK_TRIES = (0.0001, 0.0001, 0.0002, 0.0002, 0.0)

__all__ = ["ProcessLock"]


class ProcessLock:
    """An exclusive lock on a file: re-entrant within a thread, exclusive across processes.

    ``acquire(timeout)`` waits for other processes with a short backoff and raises
    ``LockTimeout`` naming *label* when the time is up. The OS drops the lock when its
    holder dies, even by ``kill -9``.

    The lock file also holds a counter, bumped (in shared memory) by every holder as soon
    as it gets the lock and again as it releases it: ``others_held`` tells a holder
    whether anyone else held the lock since it last released it, so it may trust what it
    cached about the locked data. Bumping before doing anything means even a holder
    killed mid-way is noticed; bumping on release tells readers that cached a lookup made
    during the hold that the data changed under them.

    Waiting is done by a helper thread blocked in ``flock`` (the kernel wakes it the
    moment the lock is free, which polling cannot match); the caller waits for it with
    its timeout. A helper whose caller gave up releases the lock as soon as it gets it,
    unless a later caller has claimed it in the meantime.
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
        self._guard = threading.Lock()  # between a caller and its helper thread
        self._waiter: threading.Thread | None = None
        self._waiter_got = threading.Event()
        self._waiter_abandoned = False
        self._fd_orphaned = False

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

    def _bump_done(self) -> None:
        """Bump again as the holder lets go, after everything it changed is committed: a
        reader that looked data up while the holder was still writing (after the first
        bump) cached what it found under a counter value that is stale now."""
        if self._map is None:
            return
        self._mine = (self._mine + 1) & 0xFFFFFFFFFFFFFFFF
        struct.pack_into("<Q", self._map, 0, self._mine)

    def _lock_file(self, deadline: float, timeout: float, op: str) -> None:
        fd = self._open()
        with self._guard:
            pending = self._waiter is not None
            if pending:
                self._waiter_abandoned = False  # claim the helper a caller gave up on
        if not pending:
            # a few quick tries first: a lock that frees within half a millisecond is
            # not worth a thread
            for pause in _QUICK_TRIES:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    return
                except BlockingIOError:
                    if pause and time.monotonic() + pause < deadline:
                        time.sleep(pause)
            self._waiter_got.clear()
            self._waiter_abandoned = False
            self._waiter = threading.Thread(
                target=self._wait_for_lock, args=(fd,), name="lakeloop-lock-wait", daemon=True
            )
            self._waiter.start()
        got = self._waiter_got.wait(max(deadline - time.monotonic(), 0.0))
        with self._guard:
            if got or self._waiter_got.is_set():
                self._waiter = None
                self._waiter_got.clear()
                return
            self._waiter_abandoned = True
        raise LockTimeout(f"writer lock not granted within {timeout:g}s", op=op, target=self.label)

    def _wait_for_lock(self, fd: int) -> None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError:
            with self._guard:
                self._waiter = None
            return
        with self._guard:
            if self._waiter_abandoned:
                fcntl.flock(fd, fcntl.LOCK_UN)  # nobody wants it any more
                self._waiter = None
                if self._fd_orphaned:
                    os.close(fd)  # close() left it to us, being still in use here
                return
            self._waiter_got.set()

    def release(self) -> None:
        self._depth -= 1
        if self._depth == 0:
            self._bump_done()
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        self._thread_lock.release()

    def close(self) -> None:
        with self._guard:
            self._waiter_abandoned = True
            # a helper still blocked in flock owns the descriptor until it returns
            self._fd_orphaned = self._waiter is not None
        if self._map is not None:
            self._map.close()
            self._map = None
        if self._fd >= 0 and not self._fd_orphaned:
            os.close(self._fd)
        self._fd = -1
