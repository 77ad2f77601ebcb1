"""The project file lakeloop.toml and the lock file lakeloop.lock."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from lakeloop.errors import InvalidProject, NotFound
from lakeloop.gate import Policy
from lakeloop.project import (
    ACCEPTANCE_KEYS,
    GATE_KEYS,
    PROJECT_KEYS,
    Lock,
    find_project,
    load_project,
    read_lock,
    resolve_lake,
    write_lock,
)

FULL = """
[project]
lake = "lake"
pipeline = "ml/pipeline.py"
dataset = "digits"
model = "digits-cnn"
code = ["ml", "lib"]
test = "pytest -q"

[gate]
ratchet = 2
correction = "holm"

[[gate.policy]]
metric = "accuracy"
margin = 0.01

[[gate.policy]]
metric = "ndcg@10"
margin = 0.02
name = "ranking"

[gate.acceptance]
threshold = 0.9
method = "wilson"

[train]
folds = 5
"""


def make(tmp_path: Path, text: str = FULL) -> Path:
    (tmp_path / "ml").mkdir(exist_ok=True)
    (tmp_path / "lib").mkdir(exist_ok=True)
    (tmp_path / "ml" / "pipeline.py").write_text("x = 1\n")
    (tmp_path / "lakeloop.toml").write_text(text)
    return tmp_path / "lakeloop.toml"


def test_full_project(tmp_path: Path) -> None:
    p = load_project(make(tmp_path))
    assert p.root == tmp_path.resolve() and p.pipeline == Path("ml/pipeline.py")
    assert (p.dataset, p.model, p.test) == ("digits", "digits-cnn", "pytest -q")
    assert p.code == (Path("ml"), Path("lib"))
    assert p.gate.policies == (
        Policy(metric="accuracy", margin=0.01),
        Policy(metric="ndcg_at_k", k=10, margin=0.02, name="ranking"),
    )
    assert p.gate.ratchet == 2 and p.gate.correction == "holm"
    assert p.gate.acceptance is not None and p.gate.acceptance.method == "wilson"
    assert p.train == {"folds": 5}
    assert p.lock_path == tmp_path.resolve() / "lakeloop.lock"
    assert load_project(tmp_path) == p  # the folder works too
    assert p.code_fingerprint().files == ("ml/pipeline.py",)


def test_defaults(tmp_path: Path) -> None:
    p = load_project(
        make(tmp_path, '[project]\npipeline = "ml/pipeline.py"\ndataset = "d"\nmodel = "m"\n')
    )
    assert p.code == (Path("ml"),) and p.lake is None and p.test is None
    assert p.gate.policies == () and p.gate.ratchet == 3 and p.gate.acceptance is None


def test_found_at_the_git_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make(tmp_path)
    subprocess.run(["git", "-C", str(tmp_path), "init", "-q"], check=True)
    (tmp_path / "ml" / "deep").mkdir()
    assert find_project(tmp_path / "ml" / "deep") == tmp_path.resolve() / "lakeloop.toml"
    monkeypatch.chdir(tmp_path / "ml")
    assert load_project().model == "digits-cnn"
    empty = tmp_path / "elsewhere"
    empty.mkdir()
    subprocess.run(["git", "-C", str(empty), "init", "-q"], check=True)
    with pytest.raises(NotFound, match=r"no lakeloop\.toml"):
        find_project(empty)
    with pytest.raises(NotFound):
        load_project(empty / "lakeloop.toml")


BASE = '[project]\npipeline = "ml/pipeline.py"\ndataset = "d"\nmodel = "m"\n'


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[project\n", ""),
        ("[projekt]\n", "projekt"),
        ("project = 1\n", "project"),
        ("[gate]\nratchet = 1\n", "project"),
        ('[project]\ndataset = "d"\nmodel = "m"\n', "project.pipeline"),
        ('[project]\npipeline = "nope.py"\ndataset = "d"\nmodel = "m"\n', "project.pipeline"),
        ('[project]\npipeline = "ml/pipeline.py"\nmodel = "m"\n', "project.dataset"),
        ('[project]\npipeline = "ml/pipeline.py"\ndataset = "d"\n', "project.model"),
        (BASE + "dataset2 = 1\n", "project.dataset2"),
        (BASE.replace('"d"', "3"), "project.dataset"),
        (BASE + 'code = ["missing"]\n', "project.code"),
        (BASE + "code = []\n", "project.code"),
        (BASE + 'code = ["../"]\n', "project.code"),
        (BASE + 'lake = ""\n', "project.lake"),
        (BASE + "[gate]\nratchet = -1\n", "gate.ratchet"),
        (BASE + "[gate]\nratchet = true\n", "gate.ratchet"),
        (BASE + '[gate]\ncorrection = "bonferroni"\n', "gate.correction"),
        (BASE + "[gate]\npolicies = 1\n", "gate.policies"),
        (BASE + "[gate]\npolicy = 1\n", "gate.policy"),
        (BASE + '[[gate.policy]]\nmetric = "acc"\n', "gate.policy[0]"),
        (BASE + '[[gate.policy]]\nmetric = "auc"\nmarign = 0.1\n', "gate.policy[0]"),
        (BASE + '[[gate.policy]]\nmetric = "auc"\nmargin = "x"\n', "gate.policy[0]"),
        (
            BASE + '[[gate.policy]]\nmetric = "auc"\n[[gate.policy]]\nconfidence = 0.99\n',
            "gate.policy",
        ),
        (BASE + "[gate.acceptance]\nthreshold = 90\n", "gate.acceptance.threshold"),
        (BASE + "[gate.acceptance]\n", "gate.acceptance.threshold"),
        (BASE + "[gate.acceptance]\nthreshold = 0.9\nlevel = 1\n", "gate.acceptance.level"),
        (BASE + '[gate.acceptance]\nthreshold = 0.9\nmethod = "x"\n', "gate.acceptance.method"),
        (BASE + '[gate.acceptance]\nthreshold = 0.9\nmetric = "acc"\n', "gate.acceptance.metric"),
        (BASE + "[gate]\nacceptance = 1\n", "gate.acceptance"),
    ],
)
def test_every_key_is_checked(tmp_path: Path, text: str, key: str) -> None:
    with pytest.raises(InvalidProject) as info:
        load_project(make(tmp_path, text))
    assert info.value.target == key
    assert "lakeloop.toml" in str(info.value)


def test_resolve_lake(tmp_path: Path) -> None:
    p = load_project(make(tmp_path))
    env: dict[str, str] = {}
    assert resolve_lake("cli-lake", p, env).source == "--lake"
    from_env = resolve_lake(None, p, {"LAKELOOP_LAKE": "/data/lake"})
    assert (from_env.kind, from_env.value, from_env.source) == (
        "path",
        "/data/lake",
        "LAKELOOP_LAKE",
    )
    local = resolve_lake(None, p, env)
    assert local.value == str(tmp_path.resolve() / "lake") and local.source == "lakeloop.toml"
    url = resolve_lake("https://lake.example.com:8080/", p, env)
    assert (url.kind, url.value) == ("url", "https://lake.example.com:8080")
    with pytest.raises(InvalidProject, match="unsupported"):
        resolve_lake("s3://bucket", p, env)
    with pytest.raises(InvalidProject, match="no lake"):
        resolve_lake(None, None, env)


def test_lock_round_trip(tmp_path: Path) -> None:
    assert read_lock(tmp_path) is None
    lock = Lock(code="ab" * 32, data="snap1", commit="c" * 40, champion="v3", outcome="promote")
    path = write_lock(tmp_path, lock)
    assert path.name == "lakeloop.lock" and path.read_text().startswith("# Written by lakeloop")
    assert read_lock(path) == lock and read_lock(tmp_path) == lock
    write_lock(path, Lock(code="x"))
    assert read_lock(path) == Lock(code="x")
    assert not list(tmp_path.glob("*.tmp"))


def test_two_writers_of_one_lock_never_trip_over_each_other(tmp_path: Path) -> None:
    """ci and the loop may write the lock of one checkout at the same moment."""
    import threading

    errors: list[BaseException] = []

    def write(tag: str) -> None:
        try:
            for i in range(150):
                write_lock(tmp_path, Lock(code=f"{tag}{i}"))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(t,)) for t in "ab"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    got = read_lock(tmp_path)
    assert got is not None and got.code in {"a149", "b149"}
    assert not list(tmp_path.glob("*.tmp"))


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("version = 1\n", "missing"),
        ('version = 2\ncode = "x"\n', "version"),
        ('code = "x"\n', "version"),
        ('version = 1\ncode = "x"\nextra = "y"\n', "unknown key"),
        ("version = 1\ncode = 5\n", "string"),
        ("version = \n", "TOML"),
    ],
)
def test_bad_lock(tmp_path: Path, text: str, match: str) -> None:
    (tmp_path / "lakeloop.lock").write_text(text)
    with pytest.raises(InvalidProject, match=match):
        read_lock(tmp_path)


def test_every_key_is_documented() -> None:
    doc = (Path(__file__).parent.parent / "docs" / "project.md").read_text()
    for prefix, keys in (
        ("project.", PROJECT_KEYS),
        ("gate.", GATE_KEYS),
        ("gate.acceptance.", ACCEPTANCE_KEYS),
    ):
        for key in keys:
            assert re.search(rf"`{re.escape(prefix + key)}`", doc), f"{prefix}{key} undocumented"
    from dataclasses import fields

    for f in fields(Policy):
        assert f"`{f.name}`" in doc, f"policy key {f.name} undocumented"
