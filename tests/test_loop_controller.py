"""The continuous-training controller: triggers, journaled turns on ``lakeloop ci``'s
pipeline, and ``kill -9`` of ``lakeloop loop run`` in the middle of a turn (a real
process): the champion stays where it was and the next turn runs cleanly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from _loopproject import BAD, GIT_ENV, GOOD, add_digits, lakeloop, make_project
from lakeloop import Lake
from lakeloop.errors import LockTimeout
from lakeloop.loop import Controller, TurnLog, check_triggers, loop_status, run_turn
from lakeloop.loop._joinstate import JoinState, state_path
from lakeloop.loop.turns import Turn
from lakeloop.project import load_project
from lakeloop.registry import Registry
from lakeloop.train import Runs


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_project(
        tmp_path / "repo",
        loop_min_new_examples=5,
        loop_accuracy_min_examples=5,
        loop_interval=100,
    )


def champion(repo: Path) -> int | None:
    with Lake.open(repo / "lake", background=False) as lake:
        return Registry(lake).aliases("digits").get("champion")


def test_first_turn_by_cli_promotes_is_recorded_and_nothing_is_due_after(repo: Path) -> None:
    first = lakeloop(repo, "loop", "run", "--once")
    assert first.returncode == 0, first.stderr
    assert "turn due: code: no lakeloop.lock yet" in first.stderr
    assert "promote" in first.stdout and "digits@1" in first.stdout
    assert champion(repo) == 1
    shown = lakeloop(repo, "loop", "status", "--json")
    assert shown.returncode == 0, shown.stderr
    doc = json.loads(shown.stdout)
    (turn,) = doc["turns"]
    assert turn["trigger"] == "code" and turn["status"] == "done" and turn["outcome"] == "promote"
    assert turn["champion_before"] is None and turn["champion_after"] == "digits@1"
    assert set(turn["steps"]) == {"snapshot", "train", "gate"} and turn["snapshot"]
    assert doc["champion"] == "digits@1" and doc["champion_gate_accuracy"] > 0.8
    assert doc["in_progress"] is None and doc["controller_pid"] is None
    # the decision carries the turn's id, so a crashed turn can be matched with it
    with Lake.open(repo / "lake", background=False) as lake:
        assert Registry(lake).decisions("digits")[-1]["loop_turn"] == turn["id"]
    # nothing new: a check runs no turn (the schedule is 100 s away)
    again = lakeloop(repo, "loop", "run", "--once")
    assert again.returncode == 0, again.stderr
    assert again.stdout == "" and "turn due" not in again.stderr
    table = lakeloop(repo, "loop", "status")
    assert "recent turns" in table.stdout and "joiner: predictions 0, joined 0" in table.stdout


def test_triggers(repo: Path) -> None:
    project = load_project(repo)
    first = run_turn(repo)
    assert first.outcome == "promote"
    code = project.code_fingerprint().content
    with Lake.open(repo / "lake", background=False) as lake:
        last = TurnLog(lake, "digits").last()
        assert last is not None and last.id == first.id
        assert check_triggers(lake, project, last, code=code) == []
        # schedule: loop_interval = 100 s after the last turn began
        later = check_triggers(lake, project, last, code=code, now=last.started + 101)
        assert [t.kind for t in later] == ["schedule"]
        # new labelled examples and the champion's live accuracy, as the joiner records them
        with JoinState(state_path(lake.root, "digits")) as state:
            state.begin()
            for i in range(4):
                state.set_label(f"p{i}", "3", time.time(), f"3/p{i}.png")
                state.set_score(f"p{i}", False, 1, False)
            state.commit()
        assert check_triggers(lake, project, last, code=code) == []  # 4 < 5 of each
        with JoinState(state_path(lake.root, "digits")) as state:
            state.begin()
            state.set_label("p4", "3", time.time(), "3/p4.png")
            state.set_score("p4", False, 1, False)
            state.set_score("shadow", True, 1, False)  # shadow answers are not the champion's
            state.commit()
        kinds = {t.kind: t.reason for t in check_triggers(lake, project, last, code=code)}
        assert set(kinds) == {"examples", "accuracy"}
        assert "5 labelled examples" in kinds["examples"]
        assert "live accuracy 0.000 on 5 labelled predictions" in kinds["accuracy"]
        live = loop_status(lake, "digits")["live_accuracy"]
        assert [(a["version"], a["shadow"], a["n"]) for a in live] == [(1, False, 5), (1, True, 1)]
    # a code change is a trigger; the turn it starts is blocked and not retried
    (repo / "pipeline.py").write_text((repo / "pipeline.py").read_text().replace(GOOD, BAD))
    code = project.code_fingerprint().content
    with Lake.open(repo / "lake", background=False) as lake:
        last = TurnLog(lake, "digits").last()
        assert "code" in [t.kind for t in check_triggers(lake, project, last, code=code)]
    blocked = run_turn(repo)
    assert blocked.outcome == "block" and blocked.champion_after == "digits@1"
    with Lake.open(repo / "lake", background=False) as lake:
        last = TurnLog(lake, "digits").last()
        assert check_triggers(lake, project, last, code=code) == []  # labels were before it


def wait_for(predicate, timeout: float = 120.0) -> None:  # type: ignore[no-untyped-def]
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError("timed out waiting")
        time.sleep(0.1)


def test_kill_9_mid_turn_leaves_the_champion_and_the_next_turn_runs(
    repo: Path, tmp_path: Path
) -> None:
    assert run_turn(repo).outcome == "promote"
    add_digits(repo / "lake", slice(500, 900))  # new data: the next turn trains again
    hold = tmp_path / f"release-{uuid.uuid4().hex}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "lakeloop", "loop", "run", "--once", "--force", "--no-join"],
        cwd=repo,
        env={**GIT_ENV, "LOOP_TEST_HOLD": str(hold)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its trial processes share its process group
    )
    try:

        def training() -> bool:
            assert proc.poll() is None, "the controller exited before it was killed"
            with Lake.open(repo / "lake", background=False) as lake:
                journal = TurnLog(lake, "digits").journal()
                running = [r for r in Runs(lake).list() if r.status == "running"]
            return journal is not None and journal.step == "train" and bool(running)

        wait_for(training)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert champion(repo) == 1
    lock_file = state_path(repo / "lake", "digits").with_name("controller.lock")
    assert lock_file.read_text() == str(proc.pid)
    with Lake.open(repo / "lake", background=False) as lake:
        left = TurnLog(lake, "digits").journal()
        assert left is not None and left.step == "train" and left.pid == proc.pid
    # the next controller: recovers the lock and the journal, then a clean turn
    lines: list[str] = []
    with Controller(repo, join=False, log=lines.append) as controller:
        assert f"recovered the lock left by pid {proc.pid}" in lines[0]
        assert "closed turn" in lines[1] and "crashed" in lines[1]
        # a second controller for the same model is refused while this one runs
        with pytest.raises(LockTimeout), Controller(repo, join=False):
            pass
        turn = controller.tick(force=True)
    assert turn is not None and turn.status == "done" and turn.outcome == "promote", turn
    with Lake.open(repo / "lake", background=False) as lake:
        turns = TurnLog(lake, "digits").turns()
        assert [t.status for t in turns] == ["done", "crashed", "done"]
        crashed = turns[1]
        assert crashed.outcome is None and crashed.champion_after == "digits@1"
        assert "died during step 'train'" in (crashed.error or "")
        assert TurnLog(lake, "digits").journal() is None
        statuses = {r.status for r in Runs(lake).list()}
        assert "running" not in statuses and "interrupted" in statuses
        reg = Registry(lake)
        assert reg.aliases("digits")["champion"] == int(turn.candidate.split("@")[1])  # type: ignore[union-attr]
        assert [d["outcome"] for d in reg.decisions("digits")] == ["promote", "promote"]


def test_recovery_finishes_what_the_gate_decided_and_keeps_a_finished_turn(repo: Path) -> None:
    from lakeloop.loop.controller import recover_turn
    from lakeloop.loop.turns import INTERNAL_NS

    assert run_turn(repo).outcome == "promote"
    add_digits(repo / "lake", slice(500, 900))
    second = run_turn(repo, force=True)
    assert second.outcome == "promote" and second.candidate == "digits@2", second
    project = load_project(repo)
    with Lake.open(repo / "lake", background=False) as lake:
        reg, log = Registry(lake), TurnLog(lake, "digits")
        # died after storing the turn, before dropping its journal: the turn stays as it was
        log.write_journal(second)
        kept = recover_turn(lake, project)
        assert kept is not None and kept.status == "done" and kept.outcome == "promote"
        assert log.journal() is None and log.get(second.id) == kept
        # died between storing the promoting decision and moving the alias
        reg.alias("digits@1", "champion", force=True, reason="test: as if never moved")
        log.write_journal(second)
        lake.internal_namespace(INTERNAL_NS).delete(f"turns/digits/{second.id}.json")
        closed = recover_turn(lake, project)
        assert closed is not None and closed.status == "done" and closed.outcome == "promote"
        assert "completed on recovery" in (closed.error or "")
        assert reg.aliases("digits")["champion"] == 2 and closed.champion_after == "digits@2"
        assert recover_turn(lake, project) is None


def test_recovery_says_the_champion_moved_only_when_it_did(tmp_path: Path) -> None:
    """A decided promotion that recovery cannot finish closes the turn with the real
    reason: "moved" only when the champion moved, else the refusal's own message (an
    old record naming no champion, or a bad one, which must not crash recovery)."""
    from _registry_models import Doubler
    from lakeloop.loop.controller import recover_turn
    from lakeloop.loop.turns import new_turn_id

    repo = make_project(tmp_path / "repo", slice(0, 20))
    project = load_project(repo)
    with Lake.open(repo / "lake", background=False) as lake:
        reg, log = Registry(lake), TurnLog(lake, "digits")
        for _ in range(3):
            reg.register("digits", Doubler())
        reg.promote("digits@1", decision={"outcome": "promote"}, champion=None)

        def recover(**fields: Any) -> Any:
            turn = Turn(id=new_turn_id(), model="digits", trigger="manual", started=time.time())
            log.write_journal(turn)
            reg.record_decision(
                "digits",
                {"outcome": "promote", "candidate": "digits@2", "promoted": True,
                 "loop_turn": turn.id, **fields},
            )  # fmt: skip
            closed = recover_turn(lake, project)
            assert closed is not None and closed.id == turn.id and log.journal() is None
            assert closed.status == "crashed" and closed.outcome is None
            return closed

        old = recover()  # a record from before decisions named their champion
        assert "moved" not in (old.error or ""), old.error
        assert "does not name the champion it was compared with" in (old.error or "")
        bad = recover(champion="other@1")
        assert "moved" not in (bad.error or "") and "bad champion 'other@1'" in (bad.error or "")
        assert reg.aliases("digits") == {"champion": 1}
        reg.alias("digits@3", "champion", force=True, reason="test: moved by hand")
        moved = recover(champion="digits@1")
        assert "the champion has moved since (digits@1 -> digits@3)" in (moved.error or "")
        assert moved.champion_after == "digits@3" and reg.aliases("digits") == {"champion": 3}
