"""The scenarios in examples/ run end to end with one command each, on their real data,
and the gate decides: the first model is promoted by its acceptance claim, a broken code
change is blocked. Each runs as a real process (real lake, Keras trials, lakeloop ci)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from lakeloop import Lake
from lakeloop.registry import Registry

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run_example(name: str, lake: Path, *args: str) -> str:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "TF_ENABLE_ONEDNN_OPTS": "0"}
    env.pop("LAKELOOP_LAKE", None)
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / name / "run.py"), "--lake", str(lake), *args],
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    return done.stdout


@pytest.mark.slow
def test_recommend_gates_on_ndcg_and_recall_per_user(tmp_path: Path) -> None:
    out = run_example("recommend", tmp_path / "lake", "--users", "100")
    assert "first run: promote (exit 0); broken change: block (exit 1)" in out
    assert "bootstrap lower bound" in out and "groups" in out
    with Lake.open(tmp_path / "lake", background=False) as lake:
        reg = Registry(lake)
        assert reg.aliases("movielens-mf")["champion"] == 1
        last = reg.decisions("movielens-mf")[-1]
    assert last["outcome"] == "block"
    checks = {d["label"]: d for d in last["decision"]["decisions"]}
    assert checks["ndcg@10"]["outcome"] == "block" and checks["ndcg@10"]["interval"][1] < 0
    assert checks["recall@10"]["candidate_value"] < checks["recall@10"]["champion_value"]


@pytest.mark.slow
def test_reviews_gates_a_text_model_on_accuracy_and_auc(tmp_path: Path) -> None:
    out = run_example("reviews", tmp_path / "lake")
    assert "first run: promote (exit 0); broken change: block (exit 1)" in out
    with Lake.open(tmp_path / "lake", background=False) as lake:
        reg = Registry(lake)
        assert reg.aliases("review-grader")["champion"] == 1
        last = reg.decisions("review-grader")[-1]
        model = reg.load("review-grader@1")
    assert last["outcome"] == "block"
    checks = {d["label"]: d for d in last["decision"]["decisions"]}
    assert checks["accuracy"]["test"].startswith("exact McNemar")
    assert checks["accuracy"]["champion_value"] > 0.7
    import numpy as np

    scores = model.predict(np.array([b"best cookies ever, will buy again", b"stale, awful"]))
    assert scores.shape == (2, 2)
