"""Runs: what one training trial did, recorded in the lake.

Each run lives in the reserved namespace ``_runs``::

    runs/<id>/run.json          params, per-epoch metrics, final metrics, timings, system
                                info, code fingerprint, snapshot ids, status, error
    runs/<id>/model<suffix>     the model artifact, written by its registry flavor
    runs/<id>/tb/<file>         TensorBoard event files (per-epoch scalars)

Over a gateway the same code runs against the remote lake's ``_runs`` (reads through the
reserved-area endpoint, writes through ``PUT /api/v1/runs/<id>[/files]``, grant
``@runs``).

A run's status is ``running``, ``finished``, ``failed`` or ``interrupted``. A run is
written when it starts and when it ends; a process killed in between leaves
``running``, which the trial engine that started it turns into ``failed``.

>>> runs = Runs(lake)                                                    # doctest: +SKIP
>>> run = runs.start(params={"units": 32}, snapshots={"digits": snap.id})  # doctest: +SKIP
>>> run.log_epoch(1, {"loss": 0.4, "accuracy": 0.88})                    # doctest: +SKIP
>>> run.finish({"accuracy": 0.9}, model=model)                           # doctest: +SKIP
>>> runs.get(run.id).metrics                                             # doctest: +SKIP
{'accuracy': 0.9}
"""

from __future__ import annotations

import json
import os
import platform
import secrets
import shutil
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lakeloop.errors import InvalidInput, NotFound
from lakeloop.train._events import EventWriter

if TYPE_CHECKING:
    from lakeloop.store import Lake, Namespace

__all__ = ["Run", "RunRecord", "Runs", "new_run_id", "system_info"]

INTERNAL_NS = "_runs"
STATUSES = ("running", "finished", "failed", "interrupted")


def new_run_id() -> str:
    """A sortable, unique run id: UTC time plus random hex, e.g. ``20261127-233501-9f2c1a``."""
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + secrets.token_hex(3)


def system_info() -> dict[str, Any]:
    """Host, OS, Python, CPU count, and versions of the frameworks this process loaded."""
    versions = {}
    for mod in ("numpy", "tensorflow", "keras", "sklearn", "ray"):
        m = sys.modules.get(mod)
        if m is not None:
            versions[mod] = getattr(m, "__version__", "?")
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return {
        "host": platform.node(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpus": cpus,
        "pid": os.getpid(),
        "versions": versions,
    }


@dataclass
class RunRecord:
    """A run as stored (``run.json``)."""

    id: str
    status: str
    params: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    epochs: list[dict[str, Any]] = field(default_factory=list)
    started: float = 0.0
    ended: float | None = None
    timings: dict[str, float] = field(default_factory=dict)
    system: dict[str, Any] = field(default_factory=dict)
    code: dict[str, Any] | None = None
    snapshots: dict[str, str] = field(default_factory=dict)
    labels: list[str] | None = None
    model: str | None = None  # model name in the registry
    study: str | None = None  # the `lakeloop train` invocation this trial belongs to
    trial: int | None = None
    fold: int | None = None
    artifact: dict[str, Any] | None = None  # {"key", "flavor", "size"}
    tensorboard: list[str] = field(default_factory=list)
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RunRecord:
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        return cls(**known)

    @property
    def seconds(self) -> float | None:
        return None if self.ended is None else self.ended - self.started


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=_default))


def _default(o: Any) -> Any:
    if hasattr(o, "item"):  # NumPy scalars
        return o.item()
    if hasattr(o, "tolist"):
        return o.tolist()
    return str(o)


def _numbers(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The entries that are numbers (Python or NumPy scalars), as floats."""
    out = {}
    for k, v in metrics.items():
        if isinstance(v, str | bytes):
            continue
        try:
            out[str(k)] = float(v)
        except (TypeError, ValueError):
            continue
    return out


class Run:
    """A run in progress. Get one from :meth:`Runs.start`; end it with :meth:`finish`,
    :meth:`fail` or :meth:`interrupt`. Per-epoch metrics also go to TensorBoard events."""

    def __init__(self, runs: Runs, record: RunRecord) -> None:
        self._runs = runs
        self.record = record
        self.id = record.id
        self._tmp = Path(tempfile.mkdtemp(prefix=f"lakeloop-run-{record.id}-"))
        self._events: EventWriter | None = None
        self._t0 = time.monotonic()

    @property
    def logdir(self) -> Path:
        """A local folder for extra TensorBoard files (uploaded by :meth:`finish`)."""
        return self._tmp / "tb"

    def log_epoch(self, epoch: int, metrics: Mapping[str, Any]) -> None:
        """Record the metrics of one epoch (numbers only), in the run and as TB scalars."""
        values = _numbers(metrics)
        self.record.epochs.append(
            {"epoch": int(epoch), "time": time.monotonic() - self._t0, **values}
        )
        if self._events is None:
            self._events = EventWriter(self.logdir)
        for tag, value in values.items():
            self._events.scalar(tag, value, int(epoch))
        self._events.flush()

    def time(self, name: str, seconds: float) -> None:
        """Record a timing (``load``, ``fit``, ``evaluate`` ...), in seconds."""
        self.record.timings[name] = self.record.timings.get(name, 0.0) + float(seconds)

    def keras_callback(self) -> Any:
        """A Keras callback that records every epoch's logs in this run."""
        import keras

        run = self

        class _RecordEpochs(keras.callbacks.Callback):
            def on_epoch_end(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
                run.log_epoch(epoch + 1, dict(logs or {}))

        return _RecordEpochs()

    def _close(self, status: str, error: str | None) -> RunRecord:
        rec = self.record
        if self._events is not None:
            self._events.close()
        ns = self._runs._ns
        if self.logdir.exists():
            for path in sorted(self.logdir.rglob("*")):
                if path.is_file():
                    rel = path.relative_to(self.logdir).as_posix()
                    with open(path, "rb") as f:
                        ns.put_stream(f"runs/{rec.id}/tb/{rel}", f, size=path.stat().st_size)
                    rec.tensorboard.append(rel)
        rec.status = status
        rec.error = error
        rec.ended = time.time()
        rec.timings["total"] = time.monotonic() - self._t0
        self._runs._save(rec)
        shutil.rmtree(self._tmp, ignore_errors=True)
        return rec

    def finish(
        self,
        metrics: Mapping[str, Any] | None = None,
        *,
        model: Any = None,
        flavor: str | None = None,
    ) -> RunRecord:
        """End the run: final *metrics*, and *model* saved through its registry flavor."""
        if metrics:
            self.record.metrics.update(_numbers(metrics))
        if model is not None:
            from lakeloop.registry import flavor_for

            chosen = flavor_for(model, flavor)
            path = self._tmp / f"model{chosen.suffix}"
            t0 = time.monotonic()
            chosen.save(model, path)
            key = f"runs/{self.id}/model{chosen.suffix}"
            with open(path, "rb") as f:
                self._runs._ns.put_stream(key, f, size=path.stat().st_size)
            self.record.artifact = {
                "key": key,
                "flavor": chosen.name,
                "size": path.stat().st_size,
            }
            self.time("save", time.monotonic() - t0)
        return self._close("finished", None)

    def fail(self, error: str) -> RunRecord:
        """End the run as failed, with the error text (a traceback)."""
        return self._close("failed", error)

    def interrupt(self) -> RunRecord:
        """End the run as interrupted (Ctrl-C)."""
        return self._close("interrupted", "interrupted")


class Runs:
    """The runs of one lake: start, list, show, compare, export TensorBoard files."""

    def __init__(self, lake: Lake) -> None:
        self.lake = lake

    @property
    def _ns(self) -> Namespace:
        return self.lake.internal_namespace(INTERNAL_NS)

    def _save(self, rec: RunRecord) -> None:
        self._ns.put(
            f"runs/{rec.id}/run.json",
            json.dumps(_jsonable(rec.to_dict()), indent=1, sort_keys=True).encode(),
            content_type="application/json",
        )

    def start(
        self,
        *,
        params: Mapping[str, Any] | None = None,
        snapshots: Mapping[str, str] | None = None,
        code: Mapping[str, Any] | None = None,
        labels: Iterable[str] | None = None,
        model: str | None = None,
        study: str | None = None,
        trial: int | None = None,
        fold: int | None = None,
        run_id: str | None = None,
    ) -> Run:
        """Record a new run as ``running`` and return it."""
        rec = RunRecord(
            id=run_id or new_run_id(),
            status="running",
            params=_jsonable(dict(params or {})),
            started=time.time(),
            system=system_info(),
            code=None if code is None else _jsonable(dict(code)),
            snapshots=dict(snapshots or {}),
            labels=None if labels is None else list(labels),
            model=model,
            study=study,
            trial=trial,
            fold=fold,
        )
        self._save(rec)
        return Run(self, rec)

    def get(self, run_id: str) -> RunRecord:
        """The run *run_id* (a unique prefix is enough)."""
        if not isinstance(run_id, str) or not run_id or "/" in run_id:
            raise InvalidInput(f"bad run id {run_id!r}", op="runs show")
        try:
            return RunRecord.from_dict(json.loads(self._ns.get(f"runs/{run_id}/run.json")))
        except NotFound:
            pass
        found = [r for r in self._ids() if r.startswith(run_id)]
        if len(found) != 1:
            raise NotFound(
                "no such run" if not found else f"{len(found)} runs start with this",
                op="runs show",
                target=run_id,
                hint="list runs with `lakeloop runs list`",
            )
        return self.get(found[0])

    def _ids(self) -> list[str]:
        if not self.lake.has_namespace(INTERNAL_NS):
            return []
        return [
            i.key.split("/")[1]
            for i in self._ns.list(prefix="runs/")
            if i.key.endswith("/run.json")
        ]

    def list(self, *, study: str | None = None) -> list[RunRecord]:
        """Every run (or those of one study), oldest first."""
        out = [self.get(i) for i in self._ids()]
        if study is not None:
            out = [r for r in out if r.study == study]
        return sorted(out, key=lambda r: (r.started, r.id))

    def mark(self, run_id: str, status: str, error: str) -> RunRecord:
        """Set the status of a run left ``running`` by a process that died."""
        if status not in STATUSES:
            raise InvalidInput(f"unknown status {status!r}", op="mark run")
        rec = self.get(run_id)
        if rec.status == "running":
            rec.status, rec.error, rec.ended = status, error, time.time()
            self._save(rec)
        return rec

    def compare(self, run_ids: Iterable[str]) -> dict[str, Any]:
        """Side by side: ``{"runs": [...], "params": [...], "metrics": [...], "rows": [...]}``
        where each row holds one run's id, status, params and final metrics; ``params``
        lists only the parameters that differ between the runs."""
        recs = [self.get(r) for r in run_ids]
        all_params = sorted({k for r in recs for k in r.params})
        differ = [
            k
            for k in all_params
            if len({json.dumps(r.params.get(k), sort_keys=True) for r in recs}) > 1
        ]
        metrics = sorted({k for r in recs for k in r.metrics})
        rows = [
            {
                "id": r.id,
                "status": r.status,
                "params": {k: r.params.get(k) for k in differ},
                "metrics": {k: r.metrics.get(k) for k in metrics},
                "seconds": r.seconds,
            }
            for r in recs
        ]
        return {"runs": [r.id for r in recs], "params": differ, "metrics": metrics, "rows": rows}

    def export_tensorboard(self, run_ids: Iterable[str], target: str | os.PathLike[str]) -> Path:
        """Copy the event files of the runs into ``target/<run id>/`` -> *target*."""
        out = Path(target)
        for rid in run_ids:
            rec = self.get(rid)
            for rel in rec.tensorboard:
                dest = out / rec.id / rel
                dest.parent.mkdir(parents=True, exist_ok=True)
                with self._ns.open(f"runs/{rec.id}/tb/{rel}") as src, open(dest, "wb") as f:
                    shutil.copyfileobj(src, f, 1 << 20)
        out.mkdir(parents=True, exist_ok=True)
        return out

    def load_model(self, run_id: str) -> Any:
        """The model a run saved, loaded through its flavor."""
        from lakeloop.registry import FLAVORS

        rec = self.get(run_id)
        if rec.artifact is None:
            raise NotFound("this run saved no model", op="load run model", target=run_id)
        flavor = FLAVORS[rec.artifact["flavor"]]
        with tempfile.TemporaryDirectory(prefix="lakeloop-run-") as tmp:
            path = Path(tmp) / f"model{flavor.suffix}"
            with self._ns.open(rec.artifact["key"]) as src, open(path, "wb") as f:
                shutil.copyfileobj(src, f, 1 << 20)
            return flavor.load(path)

    def artifact_path(self, run_id: str, folder: str | os.PathLike[str]) -> tuple[Path, str]:
        """Copy a run's model file into *folder* -> (path, flavor name)."""
        rec = self.get(run_id)
        if rec.artifact is None:
            raise NotFound("this run saved no model", op="run artifact", target=run_id)
        path = Path(folder) / Path(rec.artifact["key"]).name
        with self._ns.open(rec.artifact["key"]) as src, open(path, "wb") as f:
            shutil.copyfileobj(src, f, 1 << 20)
        return path, str(rec.artifact["flavor"])
