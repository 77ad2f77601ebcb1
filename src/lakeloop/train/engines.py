"""Trial engines: where independent trials run (the TensorFlow-on-Spark pattern).

One small abstract class, :class:`TrialEngine`, with one method, :meth:`~TrialEngine.map`.
Its contract, checked by the conformance suite in ``tests/test_train_engines.py``:

- ``map(fn, tasks)`` calls the module-level function ``fn`` once per task, at most
  ``workers`` at a time, and yields ``(index, TaskResult)`` for every task exactly once,
  in completion order;
- an exception in a task, a worker process that dies (``os._exit``, a segfault, the OOM
  killer) or a task past ``timeout`` seconds gives that task ``ok=False`` with the error
  text, and never disturbs the other tasks;
- Ctrl-C (``KeyboardInterrupt``) stops every running task and is re-raised, so the
  caller can mark its runs interrupted.

``local`` (the default) runs each task in a fresh process (``spawn``), so trials share
nothing, and a crash is contained. ``ray`` runs tasks as Ray remote functions
(``ray.init()`` locally, or ``address=`` / ``RAY_ADDRESS`` for a cluster). ``spark`` runs
each task as a Spark job of one task (one trial per executor task: TensorFlow on Spark),
on a local Spark or the cluster at ``LAKELOOP_SPARK_MASTER``.
"""

from __future__ import annotations

import functools
import multiprocessing
import os
import queue
import secrets
import sys
import time
import traceback
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any

from lakeloop.errors import InvalidInput

__all__ = [
    "ENGINES",
    "LocalEngine",
    "RayEngine",
    "SparkEngine",
    "TaskResult",
    "TrialEngine",
    "engine_for",
]


@dataclass(frozen=True)
class TaskResult:
    """One task's outcome: ``value`` when ``ok``, else ``error`` (a traceback or reason)."""

    ok: bool
    value: Any = None
    error: str | None = None
    seconds: float = 0.0


class TrialEngine(ABC):
    """Runs independent tasks in parallel (see the module docstring for the contract)."""

    name: str = ""

    def __init__(self, workers: int = 0, *, timeout: float = 0.0) -> None:
        if workers < 0 or timeout < 0:
            raise InvalidInput("workers and timeout must be >= 0", op="trial engine")
        self.workers = workers or max(1, _cpus())
        self.timeout = timeout

    @abstractmethod
    def map(
        self, fn: Callable[[Any], Any], tasks: Sequence[Any]
    ) -> Iterator[tuple[int, TaskResult]]: ...

    def close(self) -> None:  # noqa: B027 - most engines hold nothing between maps
        """Release what the engine holds (processes, a cluster connection)."""


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _child(fn: Callable[[Any], Any], task: Any, conn: Connection) -> None:
    try:
        value = fn(task)
    except BaseException:
        conn.send(("error", traceback.format_exc()))
    else:
        try:
            conn.send(("ok", value))
        except Exception:
            conn.send(("error", "the task's result cannot be pickled:\n" + traceback.format_exc()))
    finally:
        conn.close()


class LocalEngine(TrialEngine):
    """Each task in its own fresh process, ``workers`` at a time (default: the CPUs)."""

    name = "local"

    def map(
        self, fn: Callable[[Any], Any], tasks: Sequence[Any]
    ) -> Iterator[tuple[int, TaskResult]]:
        ctx = multiprocessing.get_context("spawn")
        pending = list(enumerate(tasks))
        pending.reverse()
        running: dict[Any, tuple[int, Any, Connection, float]] = {}
        try:
            while pending or running:
                while pending and len(running) < self.workers:
                    index, task = pending.pop()
                    receive, send = ctx.Pipe(duplex=False)
                    # not a daemon: a trial may start processes of its own (joblib, loky)
                    proc = ctx.Process(target=_child, args=(fn, task, send), daemon=False)
                    proc.start()
                    send.close()
                    running[proc.sentinel] = (index, proc, receive, time.monotonic())
                wait_for = None
                if self.timeout:
                    oldest = min(start for _, _, _, start in running.values())
                    wait_for = max(0.0, oldest + self.timeout - time.monotonic()) + 0.01
                ready = wait(
                    [r for _, _, r, _ in running.values()] + list(running), timeout=wait_for
                )
                now = time.monotonic()
                for sentinel in list(running):
                    index, proc, receive, start = running[sentinel]
                    result: TaskResult | None = None
                    if receive in ready or sentinel in ready:
                        try:
                            kind, payload = receive.recv() if receive.poll() else ("dead", None)
                        except (EOFError, OSError):
                            kind, payload = "dead", None
                        proc.join(timeout=30)
                        if kind == "ok":
                            result = TaskResult(True, payload, None, now - start)
                        elif kind == "error":
                            result = TaskResult(False, None, payload, now - start)
                        else:
                            if proc.is_alive():  # closed its pipe but lives on
                                continue
                            result = TaskResult(
                                False,
                                None,
                                f"the worker process died (exit code {proc.exitcode})",
                                now - start,
                            )
                    elif self.timeout and now - start > self.timeout:
                        proc.kill()
                        proc.join(timeout=30)
                        result = TaskResult(
                            False, None, f"timed out after {self.timeout:g} s", now - start
                        )
                    if result is not None:
                        receive.close()
                        del running[sentinel]
                        yield index, result
        finally:
            # Ctrl-C, or the caller stopped iterating: nothing may outlive the map
            for _, proc, _, _ in running.values():
                if proc.is_alive():
                    proc.terminate()
            for _, proc, receive, _ in running.values():
                proc.join(timeout=10)
                if proc.is_alive():
                    proc.kill()
                    proc.join()
                receive.close()


class RayEngine(TrialEngine):
    """Tasks as Ray remote functions, one CPU each, on a local Ray (``ray.init()``) or the
    cluster at ``address`` / ``RAY_ADDRESS``. Needs ``pip install 'lakeloop[ray]'``."""

    name = "ray"

    def __init__(
        self, workers: int = 0, *, timeout: float = 0.0, address: str | None = None
    ) -> None:
        super().__init__(workers, timeout=timeout)
        self.address = address or os.environ.get("RAY_ADDRESS")
        self._started = False

    def _init(self) -> Any:
        try:
            import ray
        except ImportError:
            raise InvalidInput(
                "the ray engine needs Ray",
                op="trial engine",
                hint="pip install 'lakeloop[ray]'",
            ) from None
        if not ray.is_initialized():
            if self.address:
                ray.init(address=self.address, log_to_driver=False)
            else:
                ray.init(num_cpus=self.workers, include_dashboard=False, log_to_driver=False)
            self._started = True
        return ray

    def map(
        self, fn: Callable[[Any], Any], tasks: Sequence[Any]
    ) -> Iterator[tuple[int, TaskResult]]:
        ray = self._init()
        remote = ray.remote(num_cpus=1, max_retries=0)(_ray_call)
        refs: dict[Any, tuple[int, float]] = {}
        queue = list(enumerate(tasks))
        queue.reverse()
        try:
            while queue or refs:
                while queue and len(refs) < self.workers:
                    index, task = queue.pop()
                    refs[remote.remote(fn, task)] = (index, time.monotonic())
                done, _ = ray.wait(list(refs), num_returns=1, timeout=1.0)
                now = time.monotonic()
                for ref in done:
                    index, start = refs.pop(ref)
                    try:
                        kind, payload = ray.get(ref)
                    except Exception as exc:  # the worker died
                        kind, payload = "error", f"the Ray worker failed: {exc}"
                    if kind == "ok":
                        yield index, TaskResult(True, payload, None, now - start)
                    else:
                        yield index, TaskResult(False, None, payload, now - start)
                if self.timeout:
                    for ref, (index, start) in list(refs.items()):
                        if now - start > self.timeout:
                            ray.cancel(ref, force=True)
                            del refs[ref]
                            yield (
                                index,
                                TaskResult(
                                    False, None, f"timed out after {self.timeout:g} s", now - start
                                ),
                            )
        finally:
            for ref in refs:
                ray.cancel(ref, force=True)

    def close(self) -> None:
        if self._started:
            import ray

            ray.shutdown()
            self._started = False


def _ray_call(fn: Callable[[Any], Any], task: Any) -> tuple[str, Any]:
    try:
        return "ok", fn(task)
    except BaseException:
        return "error", traceback.format_exc()


class SparkEngine(TrialEngine):
    """Each task a Spark job of one task, ``workers`` jobs at a time, on the Spark already
    running in this process, or a new session on ``master`` (default:
    ``LAKELOOP_SPARK_MASTER``, else ``local[workers]``). Failed tasks are not retried.
    Needs ``pip install 'lakeloop[spark]'`` and Java 17+."""

    name = "spark"

    def __init__(
        self, workers: int = 0, *, timeout: float = 0.0, master: str | None = None
    ) -> None:
        super().__init__(workers, timeout=timeout)
        self.master = master or os.environ.get("LAKELOOP_SPARK_MASTER") or f"local[{self.workers}]"
        self._session: Any = None

    def _context(self) -> Any:
        try:
            from pyspark import SparkContext
            from pyspark.sql import SparkSession
        except ImportError:
            raise InvalidInput(
                "the spark engine needs PySpark",
                op="trial engine",
                hint="pip install 'lakeloop[spark]' (and Java 17 or later)",
            ) from None
        active = SparkContext._active_spark_context
        if active is not None:
            return active
        # the Python workers run this interpreter (it has lakeloop and the pipeline's deps)
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        builder = (
            SparkSession.builder.master(self.master)
            .appName("lakeloop-trials")
            .config("spark.ui.enabled", "false")
            .config("spark.python.worker.reuse", "false")  # a fresh Python per trial
            .config("spark.pyspark.python", sys.executable)
        )
        if self.master.startswith("local"):
            builder = builder.config("spark.driver.host", "127.0.0.1").config(
                "spark.driver.bindAddress", "127.0.0.1"
            )
        self._session = builder.getOrCreate()
        return self._session.sparkContext

    def map(
        self, fn: Callable[[Any], Any], tasks: Sequence[Any]
    ) -> Iterator[tuple[int, TaskResult]]:
        from pyspark import InheritableThread

        sc = self._context()
        group = f"lakeloop-{secrets.token_hex(4)}"
        done: queue.Queue[tuple[int, str, Any, float]] = queue.Queue()

        def run_one(index: int, task: Any) -> None:
            sc.setJobGroup(f"{group}-{index}", f"trial {index}", interruptOnCancel=True)
            start = time.monotonic()
            try:
                ((kind, payload),) = (
                    sc.parallelize([task], 1).map(functools.partial(_remote_call, fn)).collect()
                )
            except Exception as exc:
                lines = [line for line in str(exc).splitlines() if line.strip()]
                kind, payload = "error", "the Spark task failed: " + " | ".join(lines[:3])
            done.put((index, kind, payload, time.monotonic() - start))

        pending = list(enumerate(tasks))
        pending.reverse()
        running: dict[int, tuple[Any, float]] = {}
        timed_out: set[int] = set()
        try:
            while pending or running:
                while pending and len(running) < self.workers:
                    index, task = pending.pop()
                    thread = InheritableThread(target=run_one, args=(index, task), daemon=True)
                    thread.start()
                    running[index] = (thread, time.monotonic())
                try:
                    index, kind, payload, seconds = done.get(timeout=0.5)
                except queue.Empty:
                    if self.timeout:
                        now = time.monotonic()
                        for i, (_, start) in running.items():
                            if i not in timed_out and now - start > self.timeout:
                                timed_out.add(i)
                                sc.cancelJobGroup(f"{group}-{i}")
                    continue
                thread, _ = running.pop(index)
                thread.join()
                if index in timed_out:
                    yield (
                        index,
                        TaskResult(False, None, f"timed out after {self.timeout:g} s", seconds),
                    )
                elif kind == "ok":
                    yield index, TaskResult(True, payload, None, seconds)
                else:
                    yield index, TaskResult(False, None, payload, seconds)
        finally:
            for i in running:
                sc.cancelJobGroup(f"{group}-{i}")
            for thread, _ in running.values():
                thread.join(timeout=30)

    def close(self) -> None:
        if self._session is not None:
            self._session.stop()
            self._session = None


def _remote_call(fn: Callable[[Any], Any], task: Any) -> tuple[str, Any]:
    return _ray_call(fn, task)


ENGINES: dict[str, type[TrialEngine]] = {
    "local": LocalEngine,
    "ray": RayEngine,
    "spark": SparkEngine,
}


def engine_for(name: str, workers: int = 0, *, timeout: float = 0.0) -> TrialEngine:
    """The engine called *name* (``local`` or ``ray``)."""
    try:
        cls = ENGINES[name]
    except KeyError:
        raise InvalidInput(
            f"unknown trial engine {name!r}",
            op="train",
            hint=f"engines: {', '.join(sorted(ENGINES))}",
        ) from None
    return cls(workers, timeout=timeout)
