"""Hot swap: follow a registry alias, and switch to the version it points at with no
failed request.

A :class:`ModelSlot` holds the model that new batches use. :class:`AliasWatcher` polls
the alias; when it moves, the new version is loaded beside the old one (in the watcher's
own thread, while the old one keeps serving), warmed, and only then put in the slot —
one reference assignment, atomic under the GIL. A batch already running keeps the model
it started with, so in-flight requests finish on the old version. Rolling back is moving
the alias back: the previous version is kept loaded, so going back to it is immediate.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from collections.abc import Callable
from typing import Any

from lakeloop.serve._metrics import Metrics
from lakeloop.serve._model import ServedModel

__all__ = ["AliasWatcher", "ModelSlot"]

log = logging.getLogger("lakeloop.serve")


class ModelSlot:
    """The model one role (``serving`` or ``shadow``) uses now; ``None`` until loaded."""

    def __init__(self, role: str, current: ServedModel | None = None) -> None:
        self.role = role
        self.current = current
        self.previous: ServedModel | None = None

    def swap(self, new: ServedModel) -> None:
        self.previous, self.current = self.current, new


class AliasWatcher:
    """Polls ``NAME@ALIAS`` every *interval* seconds and swaps *slot* when it moves.

    A version that fails to load or warm is logged, counted, and skipped until the alias
    moves again; the slot keeps the version it had.
    """

    def __init__(
        self,
        registry: Any,
        name: str,
        alias: str,
        slot: ModelSlot,
        load: Callable[[str], ServedModel],
        metrics: Metrics,
        *,
        interval: float,
    ) -> None:
        self.registry = registry
        self.name = name
        self.alias = alias
        self.slot = slot
        self.load = load
        self.metrics = metrics
        self.interval = interval
        self._failed: set[int] = set()
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="swap")
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self.interval > 0:
            self._task = asyncio.get_running_loop().create_task(self._poll())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        self._executor.shutdown(wait=True)

    def _target(self) -> int | None:
        from lakeloop.errors import NotFound

        try:
            return int(self.registry.get(f"{self.name}@{self.alias}").version)
        except NotFound:
            return None

    async def check(self) -> bool:
        """One poll: swap if the alias moved. True if the slot changed."""
        loop = asyncio.get_running_loop()
        version = await loop.run_in_executor(self._executor, self._target)
        current = self.slot.current
        if version is None or (current is not None and current.version == version):
            return False
        if version in self._failed:
            return False
        previous = self.slot.previous
        if previous is not None and previous.version == version:
            new = previous
        else:
            try:
                new = await loop.run_in_executor(
                    self._executor, self.load, f"{self.name}@{version}"
                )
            except Exception:
                log.exception("serve: could not load %s@%s; keeping the current one",
                              self.name, version)  # fmt: skip
                self._failed.add(version)
                self.metrics.inc("lakeloop_serve_swap_failures_total", (("role", self.slot.role),))
                return False
        self._failed.clear()
        self.slot.swap(new)
        self.metrics.inc("lakeloop_serve_swaps_total", (("role", self.slot.role),))
        log.warning(
            "serve: %s now %s@%s (was %s)",
            self.slot.role,
            self.name,
            version,
            None if current is None else current.version,
        )
        return True

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.check()
            except asyncio.CancelledError:
                raise
            except Exception:  # a registry hiccup must not stop the watching
                log.exception("serve: polling %s@%s failed", self.name, self.alias)
