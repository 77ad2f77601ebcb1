"""Micro-batching: concurrent requests share one call of the model.

Requests wait in a queue; one task hands the queue to one worker thread as a batch. While
the worker runs a batch, new requests gather, so the next batch holds everything that
arrived meanwhile: under load batches grow by themselves, and a lone request never waits
for company. When the worker is idle, it waits up to ``max_wait`` seconds only while
other requests have started arriving (their bodies are being read) and the batch is not
full, so that they join it.

The queue is bounded (``max_queue`` instances): a request that would take it past the
bound is refused at once with :class:`QueueFull` (the server answers 503), so that under
overload the requests it does take keep a bounded wait instead of every request waiting
longer and longer.

The same class does group commit for feedback: one durable publish for every feedback
request that arrived while the previous publish ran.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from lakeloop.serve._background import cancel_and_wait

__all__ = ["MicroBatcher", "QueueFull"]


class QueueFull(Exception):
    """The batcher's queue holds ``max_queue`` instances already: come back later."""


@dataclass
class _Pending:
    payload: Any
    size: int
    future: asyncio.Future[Any]


# work(payloads) -> (one result per payload, an optional Future that must complete
# before the results are handed out: the inference log's durable write, for example)
Work = Callable[[list[Any]], tuple[Sequence[Any], "concurrent.futures.Future[Any] | None"]]


class MicroBatcher:
    """``await batcher.submit(payload, size)`` -> that payload's result from ``work``.

    ``work`` runs in the batcher's own worker thread with a list of payloads whose sizes
    add up to at most ``max_batch`` (a single payload larger than that runs alone).
    ``submit`` raises :class:`QueueFull` when *max_queue* instances wait already (0: no
    bound); a payload is always taken when nothing waits, whatever its size.
    """

    def __init__(
        self,
        work: Work,
        *,
        max_batch: int,
        max_wait: float,
        max_queue: int = 0,
        name: str = "batch",
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        self._work = work
        self.max_batch = max(1, max_batch)
        self.max_queue = max(0, max_queue)
        self.max_wait = max(0.0, max_wait)
        self._on_batch = on_batch
        self._queue: deque[_Pending] = deque()
        self.queued = 0  # instances waiting (the queue-depth gauge)
        self.arriving = 0  # requests being read that will submit soon
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix=name)
        self._finishing: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        self._wake = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        for task in list(self._finishing):
            await task
        for pending in self._queue:
            if not pending.future.done():
                pending.future.set_exception(RuntimeError("the server is shutting down"))
        self._executor.shutdown(wait=True)

    def check_room(self, size: int = 1) -> None:
        """Raise :class:`QueueFull` unless a payload of *size* would be taken now."""
        if self.max_queue and self.queued and self.queued + size > self.max_queue:
            raise QueueFull(f"{self.queued} instances wait already (at most {self.max_queue})")

    async def submit(self, payload: Any, size: int = 1) -> Any:
        assert self._wake is not None, "start() the batcher first"
        self.check_room(size)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(payload, size, future))
        self.queued += size
        self._wake.set()
        return await future

    def _take(self) -> list[_Pending]:
        taken = [self._queue.popleft()]
        total = taken[0].size
        while self._queue and total + self._queue[0].size <= self.max_batch:
            item = self._queue.popleft()
            taken.append(item)
            total += item.size
        self.queued -= total
        return taken

    async def _gather(self) -> None:
        """Wait (bounded) for requests being read right now to join the batch."""
        assert self._wake is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_wait
        while self.arriving > 0 and self.queued < self.max_batch:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), remaining)
            except TimeoutError:
                return

    async def _run(self) -> None:
        assert self._wake is not None
        loop = asyncio.get_running_loop()
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                if self.max_wait > 0 and self.arriving > 0 and self.queued < self.max_batch:
                    await self._gather()
                batch = self._take()
                if self._on_batch is not None:
                    self._on_batch(sum(p.size for p in batch))
                try:
                    results, done = await loop.run_in_executor(
                        self._executor, self._work, [p.payload for p in batch]
                    )
                except Exception as exc:
                    for p in batch:
                        if not p.future.done():
                            p.future.set_exception(exc)
                    continue
                if done is None:
                    _deliver(batch, results)
                else:
                    task = loop.create_task(_deliver_after(done, batch, results))
                    self._finishing.add(task)
                    task.add_done_callback(self._finishing.discard)


def _deliver(batch: list[_Pending], results: Sequence[Any]) -> None:
    for p, result in zip(batch, results, strict=True):
        if not p.future.done():
            p.future.set_result(result)


async def _deliver_after(
    done: concurrent.futures.Future[Any], batch: list[_Pending], results: Sequence[Any]
) -> None:
    try:
        await asyncio.wrap_future(done)
    except Exception as exc:
        for p in batch:
            if not p.future.done():
                p.future.set_exception(exc)
        return
    _deliver(batch, results)
