"""Training on the lake: readers, tracked runs, pipelines and parallel trials.

Public surface::

    from lakeloop.train import data            # readers: batches / tf_dataset / arrays
    runs = Runs(lake); run = runs.start(params=...); run.log_epoch(1, {...}); run.finish(...)
    runs.list() / runs.get(id) / runs.compare([...]) / runs.export_tensorboard([...], dir)
    train_project("lakeloop.toml", engine="local", workers=2) -> StudyResult
    load_pipeline("pipeline.py") -> Pipeline  # the user's file, checked
    TrialEngine / LocalEngine / RayEngine / SparkEngine / engine_for("local")  # where trials run

See docs/train.md. TensorFlow, Keras, scikit-learn, Ray and PySpark are imported only by the
parts that use them.
"""

from lakeloop.train.engines import (
    LocalEngine,
    RayEngine,
    SparkEngine,
    TaskResult,
    TrialEngine,
    engine_for,
)
from lakeloop.train.pipeline import Pipeline, TrialData, load_pipeline
from lakeloop.train.runs import Run, RunRecord, Runs, new_run_id, system_info
from lakeloop.train.study import StudyResult, TrialOutcome, train_project

__all__ = [
    "LocalEngine",
    "Pipeline",
    "RayEngine",
    "Run",
    "RunRecord",
    "Runs",
    "SparkEngine",
    "StudyResult",
    "TaskResult",
    "TrialData",
    "TrialEngine",
    "TrialOutcome",
    "engine_for",
    "load_pipeline",
    "new_run_id",
    "system_info",
    "train_project",
]
