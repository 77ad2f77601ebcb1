"""``lakeloop ci`` on a ranking model: the gate decides on NDCG@k and recall@k with each
evaluation row's user as its group, from the pipeline's ``groups(x)``.

Real git repository, real lake, real training (a scikit-learn regressor on small JSON
objects), the CLI as a real process. The data: 120 users with 30 items each; an item's
relevance grade (0, 1, 2) follows a linear score of its three features plus noise, so a
linear model ranks well and a constant one does not."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lakeloop import Lake
from lakeloop.registry import Registry

GIT_ENV = {
    **os.environ,
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@example.com",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@example.com",
    "GIT_CONFIG_GLOBAL": os.devnull,
}
GIT_ENV.pop("LAKELOOP_LAKE", None)

PIPELINE = """\
import json

import numpy as np
from sklearn.compose import ColumnTransformer
from sklearn.dummy import DummyRegressor
from sklearn.linear_model import LinearRegression
from sklearn.pipeline import make_pipeline

params = {"fit_intercept": [True]}
metric = "ndcg@5"  # no evaluate(): training scores trials by the gate's NDCG@5 with groups(x)


def decode(data):
    row = json.loads(data)
    return np.array([row["user"], *row["features"]], dtype=np.float64)


def groups(x):
    return x[:, 0].astype(np.int64)


def build(params):
    features = ColumnTransformer([("f", "passthrough", [1, 2, 3])])
    return make_pipeline(features, MODEL)


def fit(model, data, params):
    model.fit(*data.train.arrays())


MODEL = LinearRegression()
"""
GOOD = "MODEL = LinearRegression()"
BAD = "MODEL = DummyRegressor()"

PROJECT = """\
[project]
lake = "lake"
pipeline = "pipeline.py"
dataset = "items"
model = "ranker"
code = ["pipeline.py"]

[gate]
ratchet = 2

[[gate.policy]]
metric = "ndcg@5"
margin = 0.02

[[gate.policy]]
metric = "recall@5"
margin = 0.02

[gate.acceptance]
metric = "ndcg@5"
threshold = 0.6

[train]
workers = 1
"""


def git(repo: Path, *args: str) -> str:
    out = subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, env=GIT_ENV
    )
    return out.stdout.decode().strip()


def add_items(lake_dir: Path, users: int = 120, items: int = 30) -> None:
    """JSON objects under ``<grade>/u<user>-<item>.json`` and a snapshot (labels: grades)."""
    from lakeloop.catalog import Catalog

    rng = np.random.default_rng(7)
    weights = np.array([1.0, -0.5, 0.8])
    puts = []
    for u in range(users):
        x = rng.normal(size=(items, 3))
        score = x @ weights + 0.6 * rng.normal(size=items)
        grade = np.digitize(score, [0.3, 1.2])  # 0, 1 or 2
        for i in range(items):
            doc = {"user": u, "features": [round(float(v), 4) for v in x[i]]}
            puts.append((f"{grade[i]}/u{u:03d}-{i:02d}.json", json.dumps(doc).encode(), {}))
    with Lake.open(lake_dir, create=True, background=False) as lake:
        lake.create_namespace("items", exist_ok=True).put_many(puts)
        Catalog(lake).snapshot("items/", dataset="items", labels="{label}/{name}")


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    (root / "pipeline.py").write_text(PIPELINE)
    (root / "lakeloop.toml").write_text(PROJECT)
    (root / ".gitignore").write_text("lake/\n")
    git(root, "add", ".")
    git(root, "commit", "-q", "-m", "project")
    add_items(root / "lake")
    return root


def lakeloop_ci(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lakeloop", "ci", *args],
        cwd=repo,
        env=GIT_ENV,
        capture_output=True,
        text=True,
        timeout=240,
    )


def test_ranking_gate_promotes_by_ndcg_claim_then_blocks_a_worse_ranker(repo: Path) -> None:
    first = lakeloop_ci(repo, "--report", "json")
    assert first.returncode == 0, first.stdout + first.stderr
    assert "trained ranker@1: ndcg@5=0.8" in first.stderr or "ndcg@5=0.9" in first.stderr
    report = json.loads(first.stdout)
    assert report["outcome"] == "promote"
    claim = report["decision"]
    assert claim["metric"] == "ndcg@5" and claim["method"] == "bootstrap"
    # groups, not rows: the users with a relevant item among their evaluation items
    assert 90 <= claim["n"] <= 120
    assert claim["lower_bound"] >= 0.6 and claim["estimate"] >= claim["lower_bound"]
    claim_n = claim["n"]

    (repo / "pipeline.py").write_text(PIPELINE.replace(GOOD, BAD))  # a constant ranker
    second = lakeloop_ci(repo, "--report", "json")
    assert second.returncode == 1, second.stdout + second.stderr
    report = json.loads(second.stdout)
    assert report["outcome"] == "block"
    checks = {d["label"]: d for d in report["decision"]["decisions"]}
    ndcg = checks["ndcg@5"]
    assert ndcg["n"] == claim_n and "bootstrap" in ndcg["test"]
    assert ndcg["delta"] < 0 and ndcg["interval"][1] < 0 and ndcg["outcome"] == "block"
    assert checks["recall@5"]["candidate_value"] < checks["recall@5"]["champion_value"]
    with Lake.open(repo / "lake", background=False) as lake:
        reg = Registry(lake)
        assert reg.aliases("ranker")["champion"] == 1
        values = {(v["version"], v["metric"]) for v in reg.decisions("ranker")[-1]["values"]}
    assert ("ranker@2", "ndcg@5") in values and ("ranker@1", "recall@5") in values

    (repo / "pipeline.py").write_text(PIPELINE)  # back to the linear model: same ranking
    third = lakeloop_ci(repo)
    assert third.returncode == 0, third.stdout + third.stderr
    assert "promote" in third.stdout.splitlines()[0]


def test_a_ranking_policy_without_groups_is_a_clear_error(repo: Path) -> None:
    text = PIPELINE.replace("def groups(x):", "def _unused(x):")
    (repo / "pipeline.py").write_text(text)
    done = lakeloop_ci(repo)
    assert done.returncode == 2
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("error:") and "groups(x)" in last
    assert "training" not in done.stderr  # refused before training
    with Lake.open(repo / "lake", background=False) as lake:
        assert Registry(lake).decisions("ranker") == []
