"""The continuous-training controller: when to start a turn, and one turn done safely.

A **turn** is ``lakeloop ci``'s pipeline (:func:`lakeloop.loop.run_ci`): a new snapshot of
the project's dataset, training, the gate on the snapshot's eval split, ``champion``
moved only on ``promote``. The controller adds *when* and *crash safety*:

Triggers (checked every ``loop_poll`` seconds by ``lakeloop loop run``; each needs
something new since the last turn, so a blocked turn is not retried in a tight loop):

- ``code`` — the project's code fingerprint differs from ``lakeloop.lock`` and from the
  last turn's (a first turn, with no lock, counts);
- ``examples`` — ``loop_min_new_examples`` labelled examples were joined since the last
  turn began;
- ``accuracy`` — the champion's live accuracy on at least ``loop_accuracy_min_examples``
  predictions labelled since the last turn is ``loop_accuracy_drop`` or more below the
  accuracy the gate measured for it;
- ``schedule`` — ``loop_interval`` seconds passed since the last turn began.

Crash safety: one controller per model (:class:`~lakeloop.loop.turns.ControllerLock`),
and a journal rewritten as each step begins (:class:`~lakeloop.loop.turns.TurnLog`). The
next controller closes a journal left by a dead one before it starts a turn.

>>> turn = run_turn("lakeloop.toml", trigger="manual")        # doctest: +SKIP
>>> turn.outcome, turn.candidate, turn.steps
('promote', 'digits@3', {'snapshot': 0.4, 'train': 21.0, 'gate': 1.2})
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lakeloop.errors import InvalidInput, LakeloopError, NotFound, Refused
from lakeloop.loop._joinstate import JoinState, LiveAccuracy, state_path
from lakeloop.loop.turns import ControllerLock, Turn, TurnLog, new_turn_id

if TYPE_CHECKING:
    from lakeloop.project import Project
    from lakeloop.store import Lake

__all__ = [
    "Controller",
    "Trigger",
    "champion_baseline",
    "check_triggers",
    "live_accuracy",
    "loop_status",
    "recover_turn",
    "run_turn",
]

TRIGGERS = ("manual", "code", "examples", "accuracy", "schedule")


@dataclass(frozen=True)
class Trigger:
    """Why a turn is due: ``kind`` (one of ``TRIGGERS``) and a sentence saying so."""

    kind: str
    reason: str


def _lake_folder(project: Project, lake: str | None) -> str:
    from lakeloop.project import resolve_lake

    where = resolve_lake(lake, project)
    if where.kind != "path":
        raise InvalidInput(
            "the loop trains, and training needs a lake folder; gateway URLs are not "
            "supported for it",
            op="loop",
            target=where.value,
            hint="run the loop on a machine that mounts the lake, and pass --lake FOLDER",
        )
    return where.value


def live_accuracy(
    lake: Lake, model: str, *, since: float | None = None
) -> dict[tuple[int | None, bool], LiveAccuracy]:
    """Live accuracy of *model* per (version, shadow), from joined feedback (persisted by
    the joiner); *since* keeps only predictions labelled after that time. Empty when no
    joiner ran for the model."""
    state = JoinState.open_existing(state_path(lake.root, model))
    if state is None:
        return {}
    with state:
        return {(a.version, a.shadow): a for a in state.live_accuracy(since=since)}


def champion_baseline(lake: Lake, model: str, version: int) -> float | None:
    """The accuracy the gate measured for *version* when it was promoted (its stored
    decision), else the accuracy in its lineage; None when neither is known."""
    from lakeloop.registry import Registry

    reg = Registry(lake)
    ref = f"{model}@{version}"
    for record in reversed(reg.decisions(model)):
        if record.get("candidate") != ref:
            continue
        for point in record.get("values") or []:
            if point.get("version") == ref and str(point.get("metric", "")).startswith("accuracy"):
                return float(point["value"])
    metrics = reg.get(ref).lineage.metrics or {}
    value = metrics.get("accuracy")
    return float(value) if isinstance(value, int | float) else None


def check_triggers(
    lake: Lake,
    project: Project,
    last: Turn | None,
    *,
    now: float | None = None,
    code: str | None = None,
) -> list[Trigger]:
    """Every reason a turn is due now (empty: none), most specific first.

    *code* is the project's code fingerprint (content hash), computed by the caller once
    per check.
    """
    from lakeloop.project import read_lock
    from lakeloop.registry import Registry

    settings = lake.settings
    now = time.time() if now is None else now
    since = last.started if last is not None else 0.0
    found: list[Trigger] = []
    if code is not None:
        lock = read_lock(project.lock_path)
        if (lock is None or lock.code != code) and (last is None or last.code != code):
            found.append(
                Trigger(
                    "code",
                    "no lakeloop.lock yet: a first turn"
                    if lock is None
                    else f"the code changed since the lock ({lock.code[:12]} -> {code[:12]})",
                )
            )
    state = JoinState.open_existing(state_path(lake.root, project.model))
    joined = 0
    champion_live: LiveAccuracy | None = None
    champion = Registry(lake).aliases(project.model).get("champion")
    if state is not None:
        with state:
            joined = state.joined_since(since)
            for acc in state.live_accuracy(since=since):
                if acc.version == champion and not acc.shadow:
                    champion_live = acc
    need = int(settings["loop_min_new_examples"])
    if need and joined >= need:
        found.append(
            Trigger("examples", f"{joined} labelled examples joined since the last turn (>={need})")
        )
    drop = float(settings["loop_accuracy_drop"])
    least = max(1, int(settings["loop_accuracy_min_examples"]))
    if drop and champion is not None and champion_live is not None and champion_live.n >= least:
        baseline = champion_baseline(lake, project.model, champion)
        live = champion_live.accuracy
        if baseline is not None and live is not None and baseline - live >= drop:
            found.append(
                Trigger(
                    "accuracy",
                    f"champion {project.model}@{champion}: live accuracy {live:.3f} on "
                    f"{champion_live.n} labelled predictions, {baseline - live:.3f} below "
                    f"its {baseline:.3f} at the gate (>= {drop})",
                )
            )
    interval = float(settings["loop_interval"])
    if interval and (last is None or now - last.started >= interval):
        found.append(
            Trigger(
                "schedule",
                "no turn yet" if last is None else f"{now - last.started:.0f}s since the last turn",
            )
        )
    return found


def recover_turn(lake: Lake, project: Project) -> Turn | None:
    """Close a turn left in the journal by a controller that died; -> that turn, closed.

    Call it holding the controller lock (so the journal cannot belong to a live one).
    When the gate stored a decision for the turn before the crash, the turn takes that
    decision's outcome (a promotion it stored is kept: the champion moved through the
    gate); otherwise it is ``crashed`` and nothing it did counts: a version it
    registered stays in the registry but never became champion.
    """
    from lakeloop.registry import Registry
    from lakeloop.train import Runs

    log = TurnLog(lake, project.model)
    turn = log.journal()
    if turn is None:
        return None
    finished = log.get(turn.id)
    if finished is not None:  # it died after storing the turn, before dropping the journal
        log.drop_journal()
        return finished
    reg = Registry(lake)
    record = next(
        (d for d in reversed(reg.decisions(project.model)) if d.get("loop_turn") == turn.id),
        None,
    )
    turn.ended = time.time()
    turn.error = f"the controller (pid {turn.pid}) died during step {turn.step!r}"
    if record is not None:
        turn.status = "done"
        turn.outcome = record.get("outcome")
        turn.decision_id = record.get("id")
        turn.candidate = record.get("candidate")
        turn.gate_reasons = list(record.get("reasons") or [])
        turn.error += " after the gate had decided"
    else:
        turn.status = "crashed"
    champion = reg.aliases(project.model).get("champion")
    current = None if champion is None else f"{project.model}@{champion}"
    if record is not None and record.get("promoted") and record.get("candidate") != current:
        # it died between storing the promoting decision and moving the alias: finish the
        # move the gate decided -- a compare-and-set, refused when the champion is no
        # longer the one the decision compared with
        try:
            reg.promote(
                str(record.get("candidate")),
                decision=record,
                reason=f"lakeloop loop: completing turn {turn.id}'s promotion after a crash",
            )
        except (Refused, InvalidInput, NotFound) as exc:
            turn.status, turn.outcome = "crashed", None
            turn.error += "; " + _unapplied(reg, project.model, record, exc)
            champion = reg.aliases(project.model).get("champion")
            current = None if champion is None else f"{project.model}@{champion}"
        else:
            current = str(record["candidate"])
            turn.error += "; its promotion was completed on recovery"
    turn.champion_after = current
    runs = Runs(lake)
    for run in runs.list():
        if run.status == "running" and run.model == project.model and run.started >= turn.started:
            runs.mark(run.id, "interrupted", turn.error)
    log.finish(turn)
    return turn


def _unapplied(reg: Any, model: str, record: Mapping[str, Any], exc: LakeloopError) -> str:
    """Why recovery could not finish a decided promotion: "the champion has moved" only
    when the aliases, read again, say so; else the refusal's own message."""
    from lakeloop.registry._registry import _compared_with

    champion = reg.aliases(model).get("champion")
    if isinstance(exc, Refused) and "champion" in record:
        try:
            compared = _compared_with(model, record, record["champion"])
        except InvalidInput:
            pass
        else:
            if compared != champion:
                return (
                    "the gate's promotion was never applied and the champion has moved since"
                    f" ({record['champion']} -> {_ref(model, champion)})"
                )
    return f"the gate's promotion could not be completed on recovery: {exc.message}"


def _ref(model: str, version: int | None) -> str:
    return "none" if version is None else f"{model}@{version}"


def run_turn(
    project: str | os.PathLike[str] | None = None,
    *,
    lake: str | None = None,
    trigger: Trigger | None = None,
    force: bool = False,
    engine: str | None = None,
    workers: int | None = None,
    log: Callable[[str], None] | None = None,
) -> Turn:
    """One turn, journaled: snapshot -> (tests) -> train -> gate -> promote or block.

    Takes the controller lock itself (use :class:`Controller` to hold it for longer),
    closes a crashed turn first, and returns the finished :class:`Turn` (also stored in
    the lake). *force* trains even when code and data match ``lakeloop.lock``.
    """
    from lakeloop.project import load_project

    proj = load_project(project)
    folder = _lake_folder(proj, lake)
    with ControllerLock(state_path(folder, proj.model).with_name("controller.lock")):
        why = trigger or Trigger("manual", "asked for")
        return _turn(proj, folder, why, force, engine, workers, log)


def _turn(
    proj: Project,
    folder: str,
    trigger: Trigger,
    force: bool,
    engine: str | None,
    workers: int | None,
    log: Callable[[str], None] | None,
    reasons: list[str] | None = None,
) -> Turn:
    from lakeloop.loop.ci import run_ci
    from lakeloop.registry import Registry
    from lakeloop.store import Lake

    say = log or (lambda line: None)
    with Lake.open(folder, background=False) as lk:
        recovered = recover_turn(lk, proj)
        if recovered is not None:
            say(f"closed turn {recovered.id} left by a dead controller: {recovered.status}")
        champion = Registry(lk).aliases(proj.model).get("champion")
        state = JoinState.open_existing(state_path(folder, proj.model))
        joined = 0
        if state is not None:
            with state:
                joined = state.counters()["joined"]
        turn = Turn(
            id=new_turn_id(),
            model=proj.model,
            trigger=trigger.kind,
            started=time.time(),
            reasons=reasons or [trigger.reason],
            champion_before=None if champion is None else f"{proj.model}@{champion}",
            joined=joined,
            code=proj.code_fingerprint().content,
        )
        turns = TurnLog(lk, proj.model)
        turns.write_journal(turn)
    current, began = "", time.monotonic()

    def on_step(step: str, fields: Mapping[str, Any]) -> None:
        nonlocal current, began
        now = time.monotonic()
        if current:
            turn.steps[current] = round(now - began, 3)
        current, began = step, now
        if step in ("snapshotted", "trained", "decided"):
            current = ""  # an end, not a step of its own
        turn.snapshot = fields.get("snapshot", turn.snapshot)
        turn.examples = fields.get("count", turn.examples)
        turn.candidate = fields.get("candidate", turn.candidate)
        if step in ("snapshot", "tests", "train", "gate"):
            turn.step = step
            with Lake.open(folder, background=False) as lk:
                TurnLog(lk, proj.model).write_journal(turn)
        say(f"turn {turn.id}: {step}")

    try:
        result = run_ci(
            proj.path,
            lake=folder,
            force=force,
            engine=engine,
            workers=workers,
            log=say,
            extra={"loop_turn": turn.id, "trigger": trigger.kind},
            on_step=on_step,
        )
    except LakeloopError as exc:
        turn.status, turn.error = "failed", str(exc)
    except Exception as exc:  # the user's pipeline code: a failed turn, not a dead loop
        turn.status, turn.error = "failed", f"{type(exc).__name__}: {exc}"
    else:
        turn.status = "done"
        turn.outcome = result.outcome
        turn.candidate = result.candidate
        turn.gate_reasons = list(result.reasons)
        turn.decision_id = None if result.record is None else result.record.get("id")
    turn.step = None
    turn.ended = time.time()
    with Lake.open(folder, background=False) as lk:
        now = Registry(lk).aliases(proj.model).get("champion")
        turn.champion_after = None if now is None else f"{proj.model}@{now}"
        TurnLog(lk, proj.model).finish(turn)
    return turn


class Controller:
    """``lakeloop loop run``: join feedback, check the triggers, run turns; one per model.

    >>> with Controller("lakeloop.toml") as c:          # doctest: +SKIP
    ...     c.run(once=True)
    """

    def __init__(
        self,
        project: str | os.PathLike[str] | None = None,
        *,
        lake: str | None = None,
        engine: str | None = None,
        workers: int | None = None,
        join: bool = True,
        log: Callable[[str], None] | None = None,
    ) -> None:
        from lakeloop.project import load_project

        self.project = load_project(project)
        self.folder = _lake_folder(self.project, lake)
        self.engine, self.workers = engine, workers
        self.join = join
        self.say = log or (lambda line: None)
        self._lock = ControllerLock(
            state_path(self.folder, self.project.model).with_name("controller.lock")
        )
        self.turns: list[Turn] = []

    def __enter__(self) -> Controller:
        from lakeloop.store import Lake

        self._lock.__enter__()
        if self._lock.stale_pid is not None:
            self.say(f"recovered the lock left by pid {self._lock.stale_pid} (no longer running)")
        with Lake.open(self.folder, background=False) as lk:
            closed = recover_turn(lk, self.project)
        if closed is not None:
            self.say(f"closed turn {closed.id} left by a dead controller: {closed.status}")
        return self

    def __exit__(self, *exc: object) -> None:
        self._lock.__exit__(*exc)

    def join_feedback(self) -> dict[str, int]:
        """Run the joiner until the streams are drained; -> what it did (empty when the
        stream package is not installed or joining is off)."""
        if not self.join:
            return {}
        try:
            from lakeloop.loop.joiner import Joiner
        except ImportError:
            return {}
        with Joiner(self.project, lake=self.folder) as joiner:
            return joiner.drain()

    def due(self) -> list[Trigger]:
        from lakeloop.store import Lake

        code = self.project.code_fingerprint().content
        with Lake.open(self.folder, background=False) as lk:
            last = TurnLog(lk, self.project.model).last()
            return check_triggers(lk, self.project, last, code=code)

    def tick(self, *, force: bool = False) -> Turn | None:
        """Join, check, and run one turn when one is due (or *force*)."""
        joined = self.join_feedback()
        if joined.get("joined") or joined.get("unmatched"):
            self.say(
                f"joined {joined.get('joined', 0)} labels, {joined.get('unmatched', 0)} unmatched"
            )
        triggers = self.due()
        if force and not triggers:
            triggers = [Trigger("manual", "asked for")]
        if not triggers:
            return None
        self.say("turn due: " + "; ".join(f"{t.kind}: {t.reason}" for t in triggers))
        turn = _turn(
            self.project,
            self.folder,
            triggers[0],
            force,
            self.engine,
            self.workers,
            self.say,
            [f"{t.kind}: {t.reason}" for t in triggers],
        )
        self.turns.append(turn)
        return turn

    def run(
        self,
        *,
        once: bool = False,
        force: bool = False,
        max_turns: int | None = None,
        stop: Callable[[], bool] | None = None,
    ) -> list[Turn]:
        """Tick every ``loop_poll`` seconds until *stop()* (or after one tick with *once*,
        or after *max_turns* turns). -> the turns it ran."""
        from lakeloop.store import Lake

        with Lake.open(self.folder, background=False) as lk:
            poll = float(lk.settings["loop_poll"])
        done: list[Turn] = []
        while True:
            turn = self.tick(force=force and not done)
            if turn is not None:
                done.append(turn)
            if once or (max_turns is not None and len(done) >= max_turns):
                return done
            if stop is not None and stop():
                return done
            time.sleep(poll)


def loop_status(lake: Lake, model: str, *, limit: int = 10) -> dict[str, Any]:
    """What ``lakeloop loop status`` shows, as a dict: the controller's pid (when one
    runs), the turn in progress, the last *limit* turns (newest last), the joiner's
    counters and live accuracy per version (with the champion's accuracy at the gate)."""
    from lakeloop.registry import Registry

    log = TurnLog(lake, model)
    state = JoinState.open_existing(state_path(lake.root, model))
    counters: dict[str, int] = {}
    accuracy: list[dict[str, Any]] = []
    unmatched: list[dict[str, Any]] = []
    if state is not None:
        with state:
            counters = state.counters()
            accuracy = [a.to_dict() for a in state.live_accuracy()]
            unmatched = state.unmatched(limit=5)
    try:
        champion = Registry(lake).aliases(model).get("champion")
    except LakeloopError:
        champion = None
    in_progress = log.journal()
    holder = ControllerLock.holder(state_path(lake.root, model).with_name("controller.lock"))
    return {
        "model": model,
        "champion": None if champion is None else f"{model}@{champion}",
        "champion_gate_accuracy": (
            None if champion is None else champion_baseline(lake, model, champion)
        ),
        "controller_pid": holder,
        "in_progress": None if in_progress is None else in_progress.to_dict(),
        "turns": [t.to_dict() for t in log.turns(limit=limit)],
        "joiner": counters,
        "live_accuracy": accuracy,
        "unmatched_recent": unmatched,
    }
