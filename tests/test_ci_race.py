"""Two gates against one champion (``lakeloop ci`` beside the loop): the promotion is a
compare-and-set, so the one that comes second is compared again with the new champion
instead of silently replacing it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from _loopproject import GIT_ENV, NAMESPACE, digit_images, make_project
from lakeloop import Lake
from lakeloop.loop import gate_candidate
from lakeloop.project import load_project
from lakeloop.registry import Registry


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project whose champion is digits@1 (promoted by the gate's acceptance claim),
    with digits@2 and digits@3 registered beside it: three equal models, fitted here on
    the dataset's pixels as the project's pipeline decodes them."""
    from sklearn.linear_model import LogisticRegression

    from lakeloop.catalog import Catalog
    from lakeloop.registry import Lineage

    repo = make_project(tmp_path_factory.mktemp("race") / "repo", slice(0, 300))
    images, labels = digit_images()
    x = images[:300].reshape(300, -1) / 255.0
    model = LogisticRegression(max_iter=300).fit(x, labels[:300])
    with Lake.open(repo / "lake", background=False) as lake:
        snap = Catalog(lake).snapshot(f"{NAMESPACE}/", dataset="digits")
        reg = Registry(lake)
        for _ in range(3):
            reg.register("digits", model, lineage=Lineage(labels=[str(i) for i in range(10)]))
        first = gate_candidate(lake, load_project(repo), "digits@1", snap.id)
        assert first.outcome == "promote" and reg.aliases("digits") == {"champion": 1}
    return repo


def _copy(repo: Path, to: Path) -> Path:
    subprocess.run(["cp", "-a", str(repo), str(to)], check=True)
    return to


def _consistent(reg: Registry) -> list[tuple[int | None, int | None]]:
    """Every gate move of champion, checked: its decision compared with the champion it
    replaced. -> (from, to) per move."""
    moves = [m for m in reg.history("digits") if m.kind == "gate"]
    for m in moves:
        assert m.decision is not None
        assert m.decision["champion"] == (None if m.previous is None else f"digits@{m.previous}")
    return [(m.previous, m.version) for m in moves]


def test_a_champion_moved_during_the_gate_is_compared_again(
    trained: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = _copy(trained, tmp_path / "repo")
    project = load_project(repo)
    real = Registry.record_decision

    def record_then_the_other_gate_promotes(self: Registry, name: str, record: Any) -> Any:
        stored = real(self, name, record)
        if record.get("candidate") == "digits@3" and record.get("champion") == "digits@1":
            # the loop's gate of digits@2, also against digits@1, promotes right now
            other = gate_candidate(self.lake, project, "digits@2", snap)
            assert other.outcome == "promote" and other.champion == "digits@1"
        return stored

    monkeypatch.setattr(Registry, "record_decision", record_then_the_other_gate_promotes)
    with Lake.open(repo / "lake", background=False) as lake:
        reg = Registry(lake)
        snap = reg.decisions("digits")[-1]["snapshot"]["id"]
        result = gate_candidate(lake, project, "digits@3", snap)
        assert result.outcome == "promote" and result.champion == "digits@2"
        assert result.reasons[0] == (
            "champion moved (digits@1 -> digits@2) before this run's promotion: compared again"
        )
        assert result.record is not None
        assert result.record["champion_moved"] == ["digits@1 -> digits@2"]
        assert reg.aliases("digits") == {"champion": 3}
        assert _consistent(reg) == [(None, 1), (1, 2), (2, 3)]


def test_a_candidate_promoted_meanwhile_by_another_run_is_not_gated_again(
    trained: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = _copy(trained, tmp_path / "repo")
    project = load_project(repo)
    real = Registry.record_decision

    def record_then_the_other_run_promotes_it(self: Registry, name: str, record: Any) -> Any:
        stored = real(self, name, record)
        if record.get("candidate") == "digits@3" and len(self.decisions(name)) == 2:
            other = gate_candidate(self.lake, project, "digits@3", snap)  # the same version
            assert other.outcome == "promote"
        return stored

    monkeypatch.setattr(Registry, "record_decision", record_then_the_other_run_promotes_it)
    with Lake.open(repo / "lake", background=False) as lake:
        reg = Registry(lake)
        snap = reg.decisions("digits")[-1]["snapshot"]["id"]
        result = gate_candidate(lake, project, "digits@3", snap)
        assert result.outcome == "promote"
        assert result.reasons[-1] == "digits@3 was promoted meanwhile by another run"
        assert reg.aliases("digits") == {"champion": 3}
        assert _consistent(reg) == [(None, 1), (1, 3)]


def test_two_ci_processes_against_one_champion_never_skip_a_comparison(
    trained: Path, tmp_path: Path
) -> None:
    """Two real ``lakeloop ci`` processes, held at a barrier once each has recorded its
    decision against digits@1 (before either promotes): they overlap for certain, so
    one promotion is refused by the compare-and-set and that run compares again."""
    repo = _copy(trained, tmp_path / "repo")
    # two checkouts (each writes its own lakeloop.lock), one lake
    checkouts = {2: repo, 3: _copy(repo, tmp_path / "other")}
    lake_dir = str(repo / "lake")
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    child = str(Path(__file__).parent / "_ci_barrier_child.py")
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                child,
                str(barrier),
                f"scored-{v}",
                f"scored-{5 - v}",
                "--",
                "ci",
                "--lake",
                lake_dir,
                "--candidate",
                f"digits@{v}",
            ],
            cwd=checkouts[v],
            env={**GIT_ENV, "PYTHONPATH": str(Path(__file__).parent.parent / "src")},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for v in (2, 3)
    ]
    for p in procs:
        _, err = p.communicate(timeout=240)
        assert p.returncode == 0, err
    with Lake.open(repo / "lake", background=False) as lake:
        reg = Registry(lake)
        moves = _consistent(reg)
        # both promoted (equal models: a difference of exactly 0 promotes), one after the
        # other, whichever came first
        assert moves[0] == (None, 1) and len(moves) == 3
        first, second = moves[1][1], moves[2][1]
        assert {first, second} == {2, 3} and moves[2][0] == first
        # the second was refused and compared again with the first (the barrier made both
        # score against digits@1 first)
        again = [d for d in reg.decisions("digits") if d.get("champion_moved")]
        assert [(d["candidate"], d["champion_moved"]) for d in again] == [
            (f"digits@{second}", [f"digits@1 -> digits@{first}"])
        ]
