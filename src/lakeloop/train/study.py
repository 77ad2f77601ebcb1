"""A study: the trials of one ``lakeloop train``, run in parallel, the best one registered.

:func:`train_project` reads ``lakeloop.toml``, checks the pipeline file, pins the
dataset's latest snapshot (every trial reads the same one), expands the parameter sets
and folds into trials, runs them on a trial engine (each in its own process with the
``local`` engine), records each as a run, and registers the best trial's model with its
lineage: snapshot id, code fingerprint, params, metrics (the mean over folds) and run id.

A trial that raises or dies is reported with the pipeline file's line and never stops the
others. Ctrl-C stops the running trials and marks their runs ``interrupted``.
"""

from __future__ import annotations

import math
import os
import re
import secrets
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lakeloop.errors import InvalidProject

if TYPE_CHECKING:
    from lakeloop.registry import ModelVersion
    from lakeloop.train.engines import TrialEngine

__all__ = ["TRAIN_KEYS", "StudyResult", "TrialOutcome", "TrialSpec", "run_trial", "train_project"]

# Keys of the [train] table of lakeloop.toml (docs/train.md lists them).
TRAIN_KEYS: dict[str, str] = {
    "engine": "where trials run: 'local' (default), 'ray' or 'spark'",
    "workers": "trials at once (default: the lake's train_workers setting)",
    "threads": "threads per trial (default: the lake's train_threads_per_trial setting)",
    "timeout": "seconds one trial may run (default: the lake's train_trial_timeout)",
}


@dataclass(frozen=True)
class TrialSpec:
    """Everything a trial process needs (picklable)."""

    lake: str
    pipeline: str
    dataset: str
    snapshot: str
    params: dict[str, Any]
    trial: int
    fold: int | None
    folds: int
    run_id: str
    study: str
    model: str
    code: dict[str, Any] | None
    threads: int
    seed: int


@dataclass
class TrialOutcome:
    """One trial as the study saw it."""

    trial: int
    fold: int | None
    run_id: str
    params: dict[str, Any]
    ok: bool
    metrics: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    where: str | None = None  # file:line in the pipeline file, for errors
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class StudyResult:
    """The trials of one study, the best one, and the version registered from it."""

    study: str
    snapshot: str
    metric: str
    trials: list[TrialOutcome]
    best_run: str | None = None
    best_params: dict[str, Any] | None = None
    best_score: float | None = None
    version: ModelVersion | None = None

    @property
    def failed(self) -> list[TrialOutcome]:
        return [t for t in self.trials if not t.ok]

    def to_dict(self) -> dict[str, Any]:
        return {
            "study": self.study,
            "snapshot": self.snapshot,
            "metric": self.metric,
            "best_run": self.best_run,
            "best_params": self.best_params,
            "best_score": self.best_score,
            "version": None if self.version is None else self.version.to_dict(),
            "trials": [t.to_dict() for t in self.trials],
        }


def _limit_threads(n: int) -> None:
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS"):  # fmt: skip
        os.environ[var] = str(n)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _default_evaluate(model: Any, data: Any, params: Mapping[str, Any]) -> dict[str, float]:
    import numpy as np

    from lakeloop.registry import flavor_for

    x, y = data.eval.arrays()
    if len(y) == 0:
        return {"accuracy": float("nan")}
    out = np.asarray(flavor_for(model).predict(model, x))
    pred = out.argmax(axis=-1) if out.ndim == 2 else out.astype(np.int64)
    return {"accuracy": float((pred == y).mean())}


def _ranking_evaluate(pipeline: Any) -> Callable[..., dict[str, float]] | None:
    """Without ``evaluate``, a pipeline whose ``metric`` is a ranking metric of the gate
    (``ndcg@10`` ...) and that defines ``groups(x)`` is scored by the gate's own
    definition on the eval split: one score per row from the model, groups from
    ``groups(x)``, the label ids as relevance."""
    from lakeloop.gate.metrics import METRICS
    from lakeloop.gate.policy import Policy

    groups = pipeline.fn("groups")
    try:
        policy = Policy(metric=pipeline.metric)
    except ValueError:
        return None
    if groups is None or not METRICS[policy.metric].ranking:
        return None

    def evaluate(model: Any, data: Any, params: Mapping[str, Any]) -> dict[str, float]:
        import numpy as np

        from lakeloop.gate import metric_value
        from lakeloop.loop.ci import _grades, _ranking_scores
        from lakeloop.registry import flavor_for

        x, y = data.eval.arrays()
        if len(y) == 0:
            return {pipeline.metric: float("nan")}
        raw = flavor_for(model).predict(model, x)
        scores = _ranking_scores(raw, data.labels, data.labels)
        relevance = _grades(data.labels)[y] if data.labels else np.asarray(y)
        value = metric_value(pipeline.metric, relevance, scores, groups=groups(x))
        return {pipeline.metric: value}

    return evaluate


def run_trial(spec: TrialSpec) -> dict[str, Any]:
    """Run one trial in this process (the engines call it): build, fit, evaluate, record."""
    _limit_threads(spec.threads)
    from lakeloop.catalog import Catalog
    from lakeloop.store import Lake
    from lakeloop.train.data import decode_image
    from lakeloop.train.pipeline import Split, TrialData, fold_of, load_pipeline
    from lakeloop.train.runs import Runs

    pipeline = load_pipeline(spec.pipeline)
    tf = sys.modules.get("tensorflow")
    if tf is not None:
        try:
            tf.config.threading.set_intra_op_parallelism_threads(spec.threads)
            tf.config.threading.set_inter_op_parallelism_threads(spec.threads)
        except RuntimeError:  # already initialized by the pipeline's import
            pass
    with Lake.open(spec.lake, background=False) as lake:
        snap = Catalog(lake).resolve(spec.snapshot)
        labels = sorted(snap.labels)
        run = Runs(lake).start(
            run_id=spec.run_id, params=spec.params, snapshots={spec.dataset: snap.id},
            code=spec.code, labels=labels, model=spec.model, study=spec.study,
            trial=spec.trial, fold=spec.fold,
        )  # fmt: skip
        try:
            decode = pipeline.fn("decode") or decode_image
            if spec.fold is None:
                train = Split(lake, snap, "train", decode, None, spec.seed, spec.threads)
                evaluation = Split(lake, snap, "eval", decode, None, spec.seed, spec.threads)
            else:
                k, f = spec.folds, spec.fold
                train = Split(
                    lake, snap, "train", decode, lambda e: fold_of(e.key, k) != f,
                    spec.seed, spec.threads,
                )  # fmt: skip
                evaluation = Split(
                    lake, snap, "train", decode, lambda e: fold_of(e.key, k) == f,
                    spec.seed, spec.threads,
                )  # fmt: skip
            data = TrialData(train, evaluation, labels, run, spec.fold)
            build, fit = pipeline.fn("build"), pipeline.fn("fit")
            assert build is not None and fit is not None
            t0 = time.monotonic()
            model = build(dict(spec.params))
            run.time("build", time.monotonic() - t0)
            t0 = time.monotonic()
            returned = fit(model, data, dict(spec.params))
            run.time("fit", time.monotonic() - t0)
            if returned is not None:
                model = returned
            t0 = time.monotonic()
            evaluate = pipeline.fn("evaluate") or _ranking_evaluate(pipeline) or _default_evaluate
            metrics = evaluate(model, data, dict(spec.params))
            run.time("evaluate", time.monotonic() - t0)
            if not isinstance(metrics, Mapping):
                raise TypeError(f"evaluate() must return a dict of metrics, not {metrics!r}")
            rec = run.finish(metrics, model=model)
        except KeyboardInterrupt:
            run.interrupt()
            raise
        except BaseException:
            run.fail(traceback.format_exc())
            raise
        return {"run_id": rec.id, "metrics": rec.metrics}


def _where(error: str, pipeline: Path) -> str | None:
    """``file:line`` of the last traceback frame in the pipeline file."""
    found = None
    for m in re.finditer(r'File "([^"]+)", line (\d+)', error):
        if Path(m.group(1)).resolve() == pipeline.resolve():
            found = f"{pipeline}:{m.group(2)}"
    return found


def _train_table(table: Mapping[str, Any], file: Path) -> dict[str, Any]:
    for key, value in table.items():
        if key not in TRAIN_KEYS:
            raise InvalidProject(
                f"unknown key {key!r}",
                op=f"read {file.name}",
                target=f"train.{key}",
                hint=f"[train] keys: {', '.join(sorted(TRAIN_KEYS))}",
            )
        if key == "engine" and not isinstance(value, str):
            raise InvalidProject("must be a string", op=f"read {file.name}", target="train.engine")
        if key != "engine" and (
            isinstance(value, bool) or not isinstance(value, int | float) or value < 0
        ):
            raise InvalidProject(
                f"must be a number >= 0, not {value!r}",
                op=f"read {file.name}",
                target=f"train.{key}",
            )
    return dict(table)


def train_project(
    project: str | os.PathLike[str] | None = None,
    *,
    lake: str | None = None,
    engine: str | TrialEngine | None = None,
    workers: int | None = None,
    register: bool = True,
    on_trial: Callable[[TrialOutcome], None] | None = None,
) -> StudyResult:
    """Run the project's trials in parallel and register the best model.

    *project* is ``lakeloop.toml`` or its folder (default: found from the current
    folder); *lake* overrides the project's lake (``--lake``); *engine* and *workers*
    override ``[train]`` and the lake's settings. *on_trial* is called as each trial ends.
    """
    from lakeloop.catalog import Catalog
    from lakeloop.project import load_project, resolve_lake
    from lakeloop.registry import Lineage, Registry
    from lakeloop.store import Lake
    from lakeloop.train.engines import TrialEngine, engine_for
    from lakeloop.train.pipeline import load_pipeline
    from lakeloop.train.runs import Runs, new_run_id

    proj = load_project(project)
    table = _train_table(proj.train, proj.path)
    where = resolve_lake(lake, proj)
    # a folder, or a gateway URL: trials reach it with the keys of their environment
    # (LAKELOOP_ACCESS_KEY / LAKELOOP_SECRET_KEY), which worker processes inherit
    lake_ref = str(Path(where.value).resolve()) if where.kind == "path" else where.value
    pipeline_path = proj.root / proj.pipeline
    pipeline = load_pipeline(pipeline_path)
    with Lake.open(where.value, background=False) as lk:
        if getattr(lk, "remote", False):
            # refuse before training, not after: trials record runs, the best is registered
            lk.require("@runs", "write", op="train")  # type: ignore[attr-defined]
            if register:
                lk.require("@models", "write", op="train")  # type: ignore[attr-defined]
        settings = lk.settings
        snap = Catalog(lk).resolve(f"{proj.dataset}@latest")
        code = proj.code_fingerprint().to_dict()
        sets = pipeline.param_sets(int(settings["train_max_trials"]))
        threads = int(table.get("threads") or settings["train_threads_per_trial"])
        timeout = float(table.get("timeout") or settings["train_trial_timeout"])
        n_workers = workers or int(table.get("workers") or settings["train_workers"])
        if isinstance(engine, TrialEngine):
            eng = engine
        else:
            eng = engine_for(engine or table.get("engine", "local"), n_workers, timeout=timeout)
        study = time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + secrets.token_hex(2)
        specs = []
        for i, params in enumerate(sets):
            for fold in range(pipeline.folds) if pipeline.folds > 1 else [None]:
                specs.append(
                    TrialSpec(
                        lake=lake_ref, pipeline=str(pipeline_path),
                        dataset=proj.dataset, snapshot=f"{proj.dataset}@{snap.id}",
                        params=params, trial=i, fold=fold, folds=pipeline.folds,
                        run_id=new_run_id(), study=study, model=proj.model, code=code,
                        threads=threads, seed=pipeline.seed,
                    )
                )  # fmt: skip
        runs = Runs(lk)
        outcomes: list[TrialOutcome] = []
        try:
            for index, res in eng.map(run_trial, specs):
                spec = specs[index]
                if res.ok:
                    out = TrialOutcome(
                        spec.trial, spec.fold, spec.run_id, spec.params, True,
                        dict(res.value["metrics"]), seconds=res.seconds,
                    )  # fmt: skip
                else:
                    error = res.error or "failed"
                    last = [line for line in error.strip().splitlines() if line.strip()]
                    out = TrialOutcome(
                        spec.trial, spec.fold, spec.run_id, spec.params, False,
                        error=last[-1] if last else error, where=_where(error, pipeline_path),
                        seconds=res.seconds,
                    )  # fmt: skip
                    try:  # a process that died left its run "running" (or never started it)
                        runs.mark(spec.run_id, "failed", error)
                    except LookupError:
                        pass
                outcomes.append(out)
                if on_trial is not None:
                    on_trial(out)
        except KeyboardInterrupt:
            for spec in specs:
                try:
                    runs.mark(spec.run_id, "interrupted", "interrupted (Ctrl-C)")
                except LookupError:
                    pass
            raise
        finally:
            eng.close()
        outcomes.sort(key=lambda o: (o.trial, -1 if o.fold is None else o.fold))
        result = StudyResult(study, snap.id, pipeline.metric, outcomes)
        # the best parameter set: every fold succeeded, best mean of the metric
        best: tuple[float, int] | None = None
        for i in range(len(sets)):
            group = [o for o in outcomes if o.trial == i]
            if not group or not all(o.ok for o in group):
                continue
            values = [o.metrics.get(pipeline.metric, math.nan) for o in group]
            score = math.fsum(values) / len(values)
            if best is None or pipeline.better(score, best[0]):
                best = (score, i)
        if best is None or math.isnan(best[0]):
            return result
        score, i = best
        group = [o for o in outcomes if o.trial == i]
        pick = group[0]
        for o in group[1:]:
            if pipeline.better(o.metrics.get(pipeline.metric, math.nan),
                               pick.metrics.get(pipeline.metric, math.nan)):  # fmt: skip
                pick = o
        result.best_run, result.best_params, result.best_score = pick.run_id, sets[i], score
        if register:
            metrics = dict(pick.metrics)
            metrics[pipeline.metric] = score
            lineage = Lineage(
                snapshots={proj.dataset: snap.id},
                code=code,
                params=sets[i],
                metrics=metrics,
                run_id=pick.run_id,
                labels=sorted(snap.labels),
                extra={
                    "study": study,
                    "engine": eng.name,
                    "folds": pipeline.folds,
                    "fold_metrics": [o.metrics for o in group] if pipeline.folds > 1 else [],
                    "trials": len(outcomes),
                    "failed_trials": len(result.failed),
                    "metric": pipeline.metric,
                    "goal": pipeline.goal,
                },
            )
            with tempfile.TemporaryDirectory(prefix="lakeloop-register-") as tmp:
                path, flavor = runs.artifact_path(pick.run_id, tmp)
                result.version = Registry(lk).register(
                    proj.model, artifact=path, flavor=flavor, lineage=lineage
                )
        return result
