"""Hot swap: follow a registry alias, and switch to the version it points at with no
failed request.

A :class:`ModelSlot` holds the model that new batches use. :class:`AliasWatcher` polls
the alias; when it moves, the new version is loaded beside the old one (in the watcher's
own thread, while the old one keeps serving), warmed, and only then put in the slot —
one reference assignment, atomic under the GIL. A batch already running keeps the model
it started with, so in-flight requests finish on the old version. Rolling back is moving
the alias back: the previous version is kept loaded, so going back to it is immediate.

A version that fails to load or warm (an unreadable artifact, a store hiccup) is tried
again with a doubling delay, capped, for as long as the alias points at it; meanwhile the
old version keeps serving and the failure is visible (:attr:`AliasWatcher.failure`: the
server's status and metrics, and a log line per try).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lakeloop.serve._background import cancel_and_wait
from lakeloop.serve._metrics import Metrics
from lakeloop.serve._model import ServedModel

__all__ = ["AliasWatcher", "LoadFailure", "ModelSlot"]

log = logging.getLogger("lakeloop.serve")


class ModelSlot:
    """The model one role (``serving`` or ``shadow``) uses now; ``None`` until loaded."""

    def __init__(self, role: str, current: ServedModel | None = None) -> None:
        self.role = role
        self.current = current
        self.previous: ServedModel | None = None

    def swap(self, new: ServedModel) -> None:
        self.previous, self.current = self.current, new


@dataclass(frozen=True)
class LoadFailure:
    """The version an alias points at that could not be loaded yet, and when to retry."""

    version: int
    attempts: int  # failed tries in a row
    error: str  # the last one's, one line
    since: float  # wall-clock time of the first failure
    retry_at: float  # time.monotonic() of the next try

    def describe(self) -> str:
        wait = max(0.0, self.retry_at - time.monotonic())
        return (
            f"version {self.version} failed to load {self.attempts} time(s), next try in"
            f" {wait:.1f} s: {self.error}"
        )


class AliasWatcher:
    """Polls ``NAME@ALIAS`` every *interval* seconds and swaps *slot* when it moves.

    A version that fails to load or warm is logged and counted, and tried again after
    *retry* seconds, then twice as long each time, at most *retry_max* apart, while the
    alias points at it; the slot keeps the version it had meanwhile, and ``failure`` says
    what went wrong (None when nothing is pending).
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
        retry: float = 1.0,
        retry_max: float = 60.0,
    ) -> None:
        self.registry = registry
        self.name = name
        self.alias = alias
        self.slot = slot
        self.load = load
        self.metrics = metrics
        self.interval = interval
        self.retry = retry
        self.retry_max = max(retry, retry_max)
        self.failure: LoadFailure | None = None
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="swap")
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self.interval > 0:
            self._task = asyncio.get_running_loop().create_task(self._poll())

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
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
        if version is None:
            self.failure = None  # the alias is gone: nothing is pending any more
            return False
        if current is not None and current.version == version:
            self.failure = None  # the alias went back to the version serving
            return False
        failure = self.failure
        if failure is not None and failure.version != version:
            failure = None  # the alias moved on: a fresh start for the new version
        if failure is not None and time.monotonic() < failure.retry_at:
            return False
        previous = self.slot.previous
        if previous is not None and previous.version == version:
            new = previous
        else:
            try:
                new = await loop.run_in_executor(
                    self._executor, self.load, f"{self.name}@{version}"
                )
            except Exception as exc:
                self._failed(version, failure, exc, current)
                return False
        self.failure = None
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

    def _failed(
        self,
        version: int,
        failure: LoadFailure | None,
        exc: Exception,
        current: ServedModel | None,
    ) -> None:
        attempts = 1 if failure is None else failure.attempts + 1
        delay = min(self.retry_max, self.retry * 2 ** min(attempts - 1, 30))
        error = " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
        self.failure = LoadFailure(
            version,
            attempts,
            error,
            time.time() if failure is None else failure.since,
            time.monotonic() + delay,
        )
        self.metrics.inc("lakeloop_serve_swap_failures_total", (("role", self.slot.role),))
        log.error(
            "serve: could not load %s@%s for %s (try %d): %s; keeping %s, next try in %.1f s",
            self.name,
            version,
            self.slot.role,
            attempts,
            error,
            "nothing" if current is None else f"version {current.version}",
            delay,
            exc_info=attempts == 1,  # the traceback once, not on every retry
        )

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.check()
            except asyncio.CancelledError:
                raise
            except Exception:  # a registry hiccup must not stop the watching
                log.exception("serve: polling %s@%s failed", self.name, self.alias)
