"""The server's background work, written once: a thread consuming a bounded queue, and
stopping an asyncio task.

The inference log and the shadow scorer each drain a queue from a thread of their own;
the batcher and the alias watcher each run an asyncio task that shutdown cancels. The
waiting, the bound, the closing and the cancelling live here, so that a fix to one of
them is a fix to all.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from collections.abc import Callable
from typing import Any, Generic, TypeVar

__all__ = ["Consumer", "cancel_and_wait"]

log = logging.getLogger("lakeloop.serve")

T = TypeVar("T")


async def cancel_and_wait(task: asyncio.Task[Any] | None) -> None:
    """Cancel *task* and return once it has stopped (its cancellation swallowed, so that
    the caller's shutdown goes on)."""
    if task is None:
        return
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass


class Consumer(Generic[T]):
    """One daemon thread hands everything queued to ``handle(items)``, in order.

    ``put(item, size)`` queues an item; ``queued`` is the sum of the sizes waiting or
    being handled. Beyond *limit*, ``put(..., wait=True)`` blocks until there is room
    (back pressure on the caller) and ``put(..., wait=False)`` drops the item and returns
    False. An item larger than *limit* is taken when nothing else is queued, so that it
    can never wait forever. ``close()`` lets the thread handle what is queued, then
    stops it. ``one_at_a_time=True`` hands one item per call, so that the room an item
    took frees as soon as it is handled (for a slow handler that gains nothing from
    batching, like the shadow model).

    >>> c = Consumer("printer", print, limit=10)
    >>> c.put("a", 1, wait=True); c.close()                         # doctest: +SKIP
    ['a']
    """

    def __init__(
        self,
        name: str,
        handle: Callable[[list[T]], None],
        *,
        limit: int,
        one_at_a_time: bool = False,
    ) -> None:
        self.name = name
        self._one = one_at_a_time
        self.limit = max(1, limit)
        self.queued = 0
        self._handle = handle
        self._queue: deque[tuple[T, int]] = deque()
        self._cond = threading.Condition()
        self._closing = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _full(self, size: int) -> bool:
        return self.queued > 0 and self.queued + size > self.limit

    def put(self, item: T, size: int, *, wait: bool) -> bool:
        """Queue *item*; False if it was dropped because the queue was full (``wait=False``)."""
        with self._cond:
            if wait:
                while self._full(size) and not self._closing:
                    self._cond.wait()
            elif self._full(size):
                return False
            self._queue.append((item, size))
            self.queued += size
            self._cond.notify_all()
        return True

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closing:
                    self._cond.wait()
                if not self._queue:
                    return
                if self._one:
                    taken = [self._queue.popleft()]
                else:
                    taken = list(self._queue)
                    self._queue.clear()
            try:
                self._handle([item for item, _ in taken])
            except Exception:  # the thread must outlive one bad batch
                log.exception("serve: the %s thread failed on %d items", self.name, len(taken))
            finally:
                with self._cond:
                    self.queued -= sum(size for _, size in taken)
                    self._cond.notify_all()

    def close(self, timeout: float = 30.0) -> None:
        """Handle what is queued, then stop the thread (waiting at most *timeout* s)."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join(timeout=timeout)
