"""``lakeloop ci`` end to end: real git repositories in temporary folders, a real lake,
real training (a tiny scikit-learn model on the 8x8 digits), the CLI as a real process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lakeloop import Lake
from lakeloop.errors import Refused
from lakeloop.project import read_lock
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
import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.tree import DecisionTreeClassifier

params = {"C": [1.0]}


def decode(data):
    return np.frombuffer(data, dtype=np.uint8).astype(np.float64) / 16.0


def build(params):
    return MODEL


def fit(model, data, params):
    model.fit(*data.train.arrays())


MODEL = LogisticRegression(C=1.0, max_iter=300)
"""
GOOD = "MODEL = LogisticRegression(C=1.0, max_iter=300)"
BAD = "MODEL = DecisionTreeClassifier(max_depth=2, random_state=0)"

PROJECT = f"""\
[project]
lake = "lake"
pipeline = "pipeline.py"
dataset = "digits"
model = "digits"
code = ["pipeline.py"]
test = "{sys.executable} check.py"

[gate]
ratchet = 3

[[gate.policy]]
metric = "accuracy"
margin = 0.03

[gate.acceptance]
threshold = 0.85

[train]
workers = 1
"""


def git(repo: Path, *args: str) -> str:
    out = subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, env=GIT_ENV
    )
    return out.stdout.decode().strip()


def add_digits(lake_dir: Path, rows: slice) -> None:
    """Put digits (raw 8x8 bytes under <label>/<index>.bin) and snapshot them."""
    from sklearn.datasets import load_digits

    from lakeloop.catalog import Catalog

    digits = load_digits()
    images = digits.images.astype(np.uint8)
    with Lake.open(lake_dir, create=True, background=False) as lake:
        ns = lake.create_namespace("digits-raw", exist_ok=True)
        index = range(len(images))[rows]
        ns.put_many([(f"{digits.target[i]}/{i:05d}.bin", images[i].tobytes(), {}) for i in index])
        Catalog(lake).snapshot("digits-raw/", dataset="digits", labels="{label}/{name}")


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    (root / "pipeline.py").write_text(PIPELINE)
    (root / "lakeloop.toml").write_text(PROJECT)
    (root / "check.py").write_text("raise SystemExit(0)\n")
    (root / ".gitignore").write_text("lake/\n")
    git(root, "add", ".")
    git(root, "commit", "-q", "-m", "project")
    add_digits(root / "lake", slice(0, 1000))
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


def set_model(repo: Path, line: str) -> None:
    text = (repo / "pipeline.py").read_text()
    (repo / "pipeline.py").write_text(text.replace(GOOD, line).replace(BAD, line))


def registry_state(repo: Path) -> tuple[dict[str, int], int, list[dict[str, object]]]:
    with Lake.open(repo / "lake", background=False) as lake:
        reg = Registry(lake)
        return reg.aliases("digits"), len(reg.versions("digits")), reg.decisions("digits")


def test_first_run_promotes_by_acceptance_then_an_untouched_repo_does_nothing(
    repo: Path,
) -> None:
    first = lakeloop_ci(repo, "--report", "json")
    assert first.returncode == 0, first.stderr
    doc = json.loads(first.stdout)
    assert doc["outcome"] == "promote" and doc["candidate"] == "digits@1"
    assert doc["champion"] is None and doc["decision"]["kind"] == "acceptance"
    assert doc["decision"]["passed"] and doc["decision"]["lower_bound"] >= 0.85
    aliases, versions, decisions = registry_state(repo)
    assert aliases == {"champion": 1} and versions == 1
    assert decisions[-1]["outcome"] == "promote" and decisions[-1]["unit_tests"]["exit_code"] == 0
    lock = read_lock(repo)
    assert lock is not None and lock.champion == "1" and lock.outcome == "promote"
    assert lock.data == doc["snapshot"] and lock.commit == git(repo, "rev-parse", "HEAD")

    again = lakeloop_ci(repo)
    assert again.returncode == 0, again.stderr
    assert "nothing changed" in again.stdout and "unchanged" in again.stdout
    assert registry_state(repo)[1:] == (1, decisions)  # no training, no new decision


def test_a_degrading_code_change_blocks_and_the_champion_stays(repo: Path) -> None:
    assert lakeloop_ci(repo, "--commit").returncode == 0
    assert git(repo, "log", "-1", "--format=%s").startswith("lakeloop ci: promote digits@1")
    assert lakeloop_ci(repo).returncode == 0  # committing the lock changed no code
    set_model(repo, BAD)
    blocked = lakeloop_ci(repo, "--report", "md")
    assert blocked.returncode == 1, blocked.stderr
    assert "lakeloop ci: block" in blocked.stdout and "champion stays digits@1" in blocked.stdout
    aliases, versions, decisions = registry_state(repo)
    assert aliases == {"champion": 1} and versions == 2
    record = decisions[-1]
    assert record["outcome"] == "block" and not record["passed"]
    assert record["candidate"] == "digits@2" and record["champion"] == "digits@1"
    check = record["decision"]["decisions"][0]
    assert check["outcome"] == "block" and check["test"] and check["p_value"] < 0.05
    assert check["interval"][1] < 0 and check["candidate_value"] < check["champion_value"]
    assert record["snapshot"]["id"] == read_lock(repo).data  # type: ignore[union-attr]
    assert record["code"]["content"] == record["code_now"]["content"]
    # the verdict stands while nothing changes, without training again
    still = lakeloop_ci(repo)
    assert still.returncode == 1 and "stands" in still.stdout
    assert registry_state(repo)[1] == 2
    # readable from the registry's command line
    shown = subprocess.run(
        [sys.executable, "-m", "lakeloop", "--lake", "lake", "models", "show", "digits", "--json"],
        cwd=repo, env=GIT_ENV, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert [d["outcome"] for d in json.loads(shown.stdout)["decisions"]] == ["promote", "block"]
    # fixing the code passes again
    set_model(repo, GOOD)
    fixed = lakeloop_ci(repo)
    assert fixed.returncode == 0, fixed.stderr


def test_new_data_with_an_equal_model_does_not_block(repo: Path) -> None:
    assert lakeloop_ci(repo).returncode == 0
    before = read_lock(repo)
    add_digits(repo / "lake", slice(1000, None))
    second = lakeloop_ci(repo, "--report", "json")
    assert second.returncode == 0, second.stderr
    doc = json.loads(second.stdout)
    assert doc["outcome"] in ("promote", "hold") and doc["champion"] == "digits@1"
    after = read_lock(repo)
    assert before is not None and after is not None
    assert after.data != before.data and after.code == before.code
    assert doc["decision_id"] == 2 and doc["snapshot"] == after.data


def test_the_ratchet_and_identical_predictions_from_two_versions(repo: Path) -> None:
    from lakeloop.loop import run_ci

    assert run_ci(repo).outcome == "promote"
    # the same code and data retrain an identical model: identical predictions from two
    # different versions are fine (and promote: the difference is exactly 0)
    second = run_ci(repo, force=True)
    assert second.outcome == "promote" and second.candidate == "digits@2", second.reasons
    third = run_ci(repo, force=True)
    assert third.candidate == "digits@3" and third.champion == "digits@2"
    assert third.ratchet == ["digits@1"]
    baselines = [d.baseline for d in third.decision.decisions]
    assert baselines == ["champion", "best of last 1 champions (digits@1)"]
    versions = [h.version for h in third.history]
    assert versions == ["digits@1", "digits@2", "digits@3"]
    assert all(h.lower is not None and h.lower <= h.value <= h.upper for h in third.history)


def test_a_version_compared_with_itself_is_refused(repo: Path) -> None:
    from lakeloop.loop import gate_candidate
    from lakeloop.project import load_project

    assert lakeloop_ci(repo).returncode == 0
    out = lakeloop_ci(repo, "--candidate", "digits@1")
    assert out.returncode == 2
    assert "compared with itself" in out.stderr and "Traceback" not in out.stderr
    with Lake.open(repo / "lake", background=False) as lake:
        snap = read_lock(repo).data  # type: ignore[union-attr]
        with pytest.raises(Refused, match="itself"):
            gate_candidate(lake, load_project(repo), "digits@champion", snap)
    assert registry_state(repo)[0] == {"champion": 1}


def test_failing_unit_tests_block_before_training(repo: Path) -> None:
    (repo / "check.py").write_text("raise SystemExit('a unit test failed')\n")
    out = lakeloop_ci(repo)
    assert out.returncode == 1
    assert "tests-failed" in out.stdout and "a unit test failed" in out.stdout
    with Lake.open(repo / "lake", background=False) as lake:
        assert Registry(lake).models() == []  # nothing trained
    assert read_lock(repo) is None


def test_a_change_that_does_not_train_blocks(repo: Path) -> None:
    from lakeloop.loop import run_ci

    set_model(repo, "MODEL = None")
    result = run_ci(repo)
    assert result.outcome == "train-failed" and result.exit_code == 1
    assert any("pipeline.py" in r and "fit" in r for r in result.reasons), result.reasons
    assert read_lock(repo) is None


def test_reports(repo: Path, tmp_path: Path) -> None:
    html = tmp_path / "report.html"
    out = lakeloop_ci(repo, "--report", "html", "--out", str(html))
    assert out.returncode == 0 and out.stdout == ""
    page = html.read_text()
    assert page.startswith("<!doctype html>") and "lakeloop ci: promote" in page
    set_model(repo, BAD)
    page = lakeloop_ci(repo, "--report", "html").stdout
    assert '<img alt="metric per model version"' in page and "block" in page
    md = lakeloop_ci(repo, "--force-run", "--report", "md").stdout
    assert "| accuracy |" in md and "digits@1" in md and "digits@3" in md


def test_no_promote_decides_but_moves_nothing(repo: Path) -> None:
    from lakeloop.loop import run_ci

    result = run_ci(repo, promote=False)
    assert result.outcome == "promote" and result.passed and result.lock is None
    assert any("not moved" in r for r in result.reasons)
    aliases, versions, decisions = registry_state(repo)
    assert aliases == {} and versions == 1 and decisions[-1]["promoted"] is False
    assert read_lock(repo) is None


def test_errors_are_one_line(repo: Path, tmp_path: Path) -> None:
    out = lakeloop_ci(repo, "--project", str(tmp_path / "nowhere"))
    assert out.returncode == 2 and out.stderr.startswith("error:")
    (repo / "lakeloop.toml").write_text(PROJECT.replace('dataset = "digits"', 'dataset = "x"'))
    out = lakeloop_ci(repo)
    assert out.returncode == 2 and "no dataset 'x'" in out.stderr


DOCS = Path(__file__).parent.parent / "docs"


def test_every_option_is_documented() -> None:
    from lakeloop.cli.ci import ci

    doc = (DOCS / "ci.md").read_text()
    for param in ci.params:
        for opt in param.opts:
            assert f"`{opt}`" in doc, f"{opt} is missing from docs/ci.md"


def test_the_shell_example_runs(repo: Path) -> None:
    script = DOCS / "examples" / "ci.sh"
    env = {**GIT_ENV, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    out = subprocess.run(
        ["sh", str(script), "json"], cwd=repo, env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert "gate passed" in out.stdout
    assert json.loads((repo / "gate-report.json").read_text())["outcome"] == "promote"
    workflow = (DOCS / "examples" / "ci-github.yml").read_text()
    assert "lakeloop ci --no-promote" in workflow and "--commit" in workflow
    yaml = pytest.importorskip("yaml")
    assert "gate" in yaml.safe_load(workflow)["jobs"]


def test_the_lake_from_the_environment_and_the_option(repo: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "shared-lake"
    (repo / "lake").rename(elsewhere)
    env = {**GIT_ENV, "LAKELOOP_LAKE": str(elsewhere)}
    out = subprocess.run(
        [sys.executable, "-m", "lakeloop", "ci"], cwd=repo, env=env, capture_output=True,
        text=True,
    )  # fmt: skip
    assert out.returncode == 0 and "promote" in out.stdout, out.stderr
    again = lakeloop_ci(repo, "--lake", str(elsewhere))
    assert again.returncode == 0 and "nothing changed" in again.stdout, again.stderr
    missing = lakeloop_ci(repo)  # the project file's lake is gone
    assert missing.returncode == 2 and missing.stderr.startswith("error:")


def test_probability_metrics_are_scored_on_probabilities(repo: Path) -> None:
    from lakeloop.loop import run_ci

    text = (repo / "lakeloop.toml").read_text()
    (repo / "lakeloop.toml").write_text(
        text.replace("[gate.acceptance]", '[[gate.policy]]\nmetric = "log_loss"\nmargin = 0.05\n\n'
                     "[gate.acceptance]")
    )  # fmt: skip
    assert run_ci(repo).outcome == "promote"
    second = run_ci(repo, force=True)  # the same model again: log loss differs by exactly 0
    assert second.outcome == "promote", second.reasons
    checks = {d.metric: d for d in second.decision.decisions}
    assert checks["log_loss"].delta == 0 and 0 < checks["log_loss"].champion_value < 1
    assert {h.metric for h in second.history} == {"accuracy", "log_loss"}
