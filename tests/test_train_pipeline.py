"""Pipelines: the contract's errors point at the user's line; a study of parallel
scikit-learn trials with a crashing one, k-fold CV, lineage of the registered model."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from _traindata import make_digits
from lakeloop import Lake
from lakeloop.errors import InvalidPipeline, InvalidProject
from lakeloop.loop import code_fingerprint
from lakeloop.registry import Registry
from lakeloop.train import Runs
from lakeloop.train.data import arrays, decode_image
from lakeloop.train.pipeline import fold_of, load_pipeline
from lakeloop.train.study import train_project

SKLEARN_PIPELINE = textwrap.dedent(
    """\
    from sklearn.linear_model import LogisticRegression

    from lakeloop.train.data import decode_image

    params = {"C": [0.01, 1.0, -1.0]}
    folds = FOLDS
    metric = "accuracy"


    def decode(data):
        return decode_image(data).reshape(-1) / 255.0


    def build(params):
        if params["C"] < 0:
            raise ValueError("C must be positive")
        return LogisticRegression(C=params["C"], max_iter=200)


    def fit(model, data, params):
        x, y = data.train.arrays()
        model.fit(x, y)
        data.log(1, train_accuracy=model.score(x, y))
    """
)
CRASH_LINE = 16  # the `raise` above


def _project(tmp_path: Path, folds: int = 1) -> Path:
    root = tmp_path / "proj"
    root.mkdir()
    (root / "pipeline.py").write_text(SKLEARN_PIPELINE.replace("FOLDS", str(folds)))
    (root / "lakeloop.toml").write_text(
        '[project]\nlake = "../lake"\npipeline = "pipeline.py"\ndataset = "digits"\n'
        'model = "digits-lr"\ncode = ["pipeline.py"]\n\n[train]\nworkers = 2\n'
    )
    with Lake.open(tmp_path / "lake", create=True, background=False) as lake:
        make_digits(lake, n=90)
    return root


def test_study_registers_the_best_trial_with_lineage(tmp_path: Path) -> None:
    root = _project(tmp_path)
    seen = []
    result = train_project(root, on_trial=seen.append)
    assert len(seen) == 3 and len(result.trials) == 3
    ok = [t for t in result.trials if t.ok]
    (bad,) = result.failed
    assert len(ok) == 2 and bad.params == {"C": -1.0}
    assert bad.where == f"{root / 'pipeline.py'}:{CRASH_LINE}"
    assert "ValueError: C must be positive" in (bad.error or "")
    best = max(ok, key=lambda t: t.metrics["accuracy"])
    assert result.best_run == best.run_id and result.best_params == best.params
    v = result.version
    assert v is not None and v.name == "digits-lr" and v.version == 1 and v.flavor == "sklearn"
    with Lake.open(tmp_path / "lake", background=False) as lake:
        from lakeloop.catalog import Catalog

        snap = Catalog(lake).resolve("digits@latest")
        loaded = Registry(lake).load("digits-lr@latest")
        lin = loaded.lineage
        assert lin.snapshots == {"digits": snap.id} and lin.run_id == best.run_id
        assert lin.params == best.params and lin.labels == ["cat", "dog", "emu"]
        assert lin.code is not None
        assert lin.code["content"] == code_fingerprint(["pipeline.py"], root).content
        assert lin.metrics["accuracy"] == best.metrics["accuracy"]
        assert lin.extra["failed_trials"] == 1 and lin.extra["engine"] == "local"
        x, y = arrays(lake, snap, "eval", decode=decode_image)
        pixels = x.reshape(len(x), -1) / 255.0
        acc = float((loaded.predict(pixels) == y).mean())
        assert acc == pytest.approx(best.metrics["accuracy"])
        runs = {r.id: r for r in Runs(lake).list(study=result.study)}
        assert len(runs) == 3
        assert runs[bad.run_id].status == "failed" and "C must be positive" in (
            runs[bad.run_id].error or ""
        )
        good = runs[best.run_id]
        assert good.status == "finished" and good.epochs[0]["train_accuracy"] > 0
        assert good.snapshots == {"digits": snap.id} and good.timings["fit"] > 0
        assert good.artifact is not None and good.tensorboard


def test_cross_validation_folds(tmp_path: Path) -> None:
    root = _project(tmp_path, folds=3)
    result = train_project(root, register=True)
    assert len(result.trials) == 9
    assert sorted((t.trial, t.fold) for t in result.trials) == [
        (i, f) for i in range(3) for f in range(3)
    ]
    assert result.version is not None
    extra = result.version.lineage.extra
    assert extra["folds"] == 3 and len(extra["fold_metrics"]) == 3
    mean = sum(m["accuracy"] for m in extra["fold_metrics"]) / 3
    assert result.version.lineage.metrics["accuracy"] == pytest.approx(mean)
    assert result.best_score == pytest.approx(mean)
    assert {fold_of(f"k{i}", 3) for i in range(50)} == {0, 1, 2}


def test_train_cli(tmp_path: Path) -> None:
    root = _project(tmp_path)
    out = subprocess.run(
        [sys.executable, "-m", "lakeloop", "train", "--project", str(root), "--json",
         "--workers", "2"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["version"]["ref"] == "digits-lr@1" and len(doc["trials"]) == 3
    assert "FAILED at" in out.stderr and f"pipeline.py:{CRASH_LINE}" in out.stderr


BROKEN = {
    "syntax": ("x = 1\ndef build(params)\n    pass\n", 2, "syntax error"),
    "raises": ("import os\n\nraise RuntimeError('no GPU')\n", 3, "RuntimeError: no GPU"),
    "no build": ("def fit(model, data, params):\n    pass\n", 1, "no function build"),
    "params": (
        "def build(p):\n    pass\n\n\ndef fit(m, d, p):\n    pass\n\n\nparams = {'lr': 0.1}\n",
        9,
        "non-empty list",
    ),
    "arity": ("def build():\n    pass\n\n\ndef fit(m, d, p):\n    pass\n", 1, "1 positional"),
    "goal": (
        "def build(p):\n    pass\n\n\ndef fit(m, d, p):\n    pass\n\n\ngoal = 'up'\n",
        9,
        "goal must be",
    ),
    "random": (
        "def build(p):\n    pass\n\n\ndef fit(m, d, p):\n    pass\n\nsearch = 'random'\n",
        8,
        "needs trials",
    ),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_pipeline_errors_point_at_the_users_line(tmp_path: Path, case: str) -> None:
    text, line, message = BROKEN[case]
    path = tmp_path / "pipeline.py"
    path.write_text(text)
    with pytest.raises(InvalidPipeline, match=message) as info:
        load_pipeline(path)
    assert info.value.target == f"{path.resolve()}:{line}"
    assert f"pipeline.py:{line}" in str(info.value)


def test_random_search_and_trial_limit(tmp_path: Path) -> None:
    path = tmp_path / "pipeline.py"
    path.write_text(
        "def build(p):\n    pass\n\n\ndef fit(m, d, p):\n    pass\n\n\n"
        "search = 'random'\ntrials = 5\nseed = 7\n"
        "params = {'lr': ('loguniform', 1e-4, 1e-1), 'units': [8, 16], 'depth': ('int', 1, 4)}\n"
    )
    p = load_pipeline(path)
    sets = p.param_sets(100)
    assert len(sets) == 5 and sets == load_pipeline(path).param_sets(100)
    assert all(1e-4 <= s["lr"] <= 1e-1 and s["units"] in (8, 16) for s in sets)
    assert all(isinstance(s["depth"], int) and 1 <= s["depth"] <= 4 for s in sets)
    with pytest.raises(InvalidPipeline, match="train_max_trials"):
        p.param_sets(4)


def test_unknown_train_key_is_refused(tmp_path: Path) -> None:
    root = _project(tmp_path)
    toml = root / "lakeloop.toml"
    toml.write_text(toml.read_text() + "gpus = 2\n")
    with pytest.raises(InvalidProject, match="unknown key"):
        train_project(root)


def test_ctrl_c_stops_the_trials_and_marks_runs_interrupted(tmp_path: Path) -> None:
    import signal
    import time

    root = _project(tmp_path)
    pipeline = root / "pipeline.py"
    pipeline.write_text(
        pipeline.read_text().replace(
            "    x, y = data.train.arrays()",
            "    __import__('time').sleep(120)\n    x, y = data.train.arrays()",
        )
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "lakeloop", "train", "--project", str(root)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        running: list[str] = []
        while time.monotonic() < deadline and len(running) < 2:
            time.sleep(0.3)
            with Lake.open(tmp_path / "lake", background=False) as lake:
                running = [r.id for r in Runs(lake).list() if r.status == "running"]
        assert len(running) == 2  # two workers, both inside fit
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 2 and "aborted" in err
    with Lake.open(tmp_path / "lake", background=False) as lake:
        statuses = {r.id: r.status for r in Runs(lake).list()}
        assert Registry(lake).models() == []
    assert {statuses[r] for r in running} == {"interrupted"}
    assert "running" not in statuses.values()


def test_every_train_key_is_documented() -> None:
    from lakeloop.train.study import TRAIN_KEYS

    docs = Path(__file__).parent.parent / "docs"
    for name in ("project.md", "train.md"):
        text = (docs / name).read_text()
        for key in TRAIN_KEYS:
            assert f"`train.{key}`" in text, f"train.{key} is missing from {name}"
