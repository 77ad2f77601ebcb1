"""Training on the lake: readers, tracked runs, pipelines and parallel trials.

Public surface::

    from lakeloop.train import data            # readers: batches / tf_dataset / arrays
    runs = Runs(lake); run = runs.start(params=...); run.log_epoch(1, {...}); run.finish(...)
    runs.list() / runs.get(id) / runs.compare([...]) / runs.export_tensorboard([...], dir)
    train_project("lakeloop.toml", engine="local", workers=2) -> StudyResult
    TrialEngine / LocalEngine / engine_for("local")            # where trials run

See docs/train.md. TensorFlow, Keras and scikit-learn are imported only by the parts
that use them.
"""

from lakeloop.train.runs import Run, RunRecord, Runs, new_run_id, system_info

__all__ = ["Run", "RunRecord", "Runs", "new_run_id", "system_info"]
