"""One turn of the pipeline that CI runs: fingerprint, test, train, gate, promote, lock.

:func:`run_ci` is what ``lakeloop ci`` does:

1. read ``lakeloop.toml``, resolve the lake (``--lake``, ``LAKELOOP_LAKE``, the file);
2. fingerprint the code (:func:`~lakeloop.loop.code_fingerprint`) and the data (a
   snapshot of the dataset, taken now; an unchanged dataset gives its latest snapshot
   back, so its id is the data fingerprint); compare both with ``lakeloop.lock``;
3. when neither changed, stop: nothing to do (the last verdict stands);
4. otherwise run the project's unit-test command, train (:func:`lakeloop.train.train_project`),
   and gate the new version with :func:`gate_candidate`: the candidate, the champion and
   the ratchet set (earlier champions) are all scored on the eval split of the same pinned
   snapshot in this run, and decided with the project's policies; with no champion yet,
   the project's acceptance claim decides alone;
5. store the decision and its evidence in the registry, move ``champion`` only on
   ``promote`` (through :meth:`~lakeloop.registry.Registry.promote`, a compare-and-set on
   the champion the decision names: when it moved meanwhile, the candidate is compared
   again with the new one), write the lock (and commit it with ``commit=True``).

>>> result = run_ci("lakeloop.toml")                 # doctest: +SKIP
>>> result.outcome, result.exit_code, result.candidate
('promote', 0, 'digits@4')
>>> print(result.render("md"))                       # doctest: +SKIP

Exit codes (:attr:`CiResult.exit_code`): 0 passed (promote, hold, nothing changed), 1
blocked (the gate blocked, the unit tests failed, no trial trained, the acceptance claim
was not shown). Errors (a bad project file, a missing dataset, a model compared with
itself) raise :class:`~lakeloop.errors.LakeloopError`; the CLI exits 2 on them.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lakeloop.errors import InvalidEvaluation, InvalidInput, NotFound, Refused
from lakeloop.loop.fingerprint import CodeFingerprint

if TYPE_CHECKING:
    from lakeloop.catalog import Snapshot
    from lakeloop.gate import HistoryPoint
    from lakeloop.project import Lock, Project
    from lakeloop.store import Lake

__all__ = ["CiResult", "gate_candidate", "run_ci"]

# An outcome that fails CI: the gate blocked, the tests failed, nothing trained, or the
# acceptance claim of a first run was not shown.
BLOCKING = frozenset({"block", "tests-failed", "train-failed"})
REPORT_FORMATS = ("md", "json", "html")
# Metrics that need class scores or probabilities rather than labels.
_SCORE_METRICS = frozenset({"auc", "log_loss"})
_HARD = "\0labels"  # the key of a version's plain predictions (no policy can be named so)
# How much of a failure the result quotes: the last lines of the unit tests' output, the
# first failed trials (the runs keep everything: `lakeloop runs list`).
TEST_OUTPUT_LINES = 20
FAILED_TRIALS_SHOWN = 10
# How often a candidate is compared again when champion moved under it (another gate
# promoted meanwhile) before the run gives up with "champion moved".
GATE_ATTEMPTS = 3


@dataclass
class CiResult:
    """What one turn of the pipeline did and decided.

    ``outcome``: ``unchanged`` (nothing to do), ``promote``, ``hold``, ``block``,
    ``tests-failed`` or ``train-failed``. ``decision`` is the gate's
    (:class:`~lakeloop.gate.CombinedDecision`, or an :class:`~lakeloop.gate.Acceptance`
    on a first run); ``record`` the stored decision record (with its ``id``); ``history``
    each scored version's metric with its interval, for the report's plot.
    """

    outcome: str
    code: CodeFingerprint
    data: str
    dataset: str
    model: str
    candidate: str | None = None
    champion: str | None = None
    ratchet: list[str] = field(default_factory=list)
    decision: Any = None
    record: dict[str, Any] | None = None
    history: list[HistoryPoint] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    lock: Lock | None = None
    commit: str | None = None

    @property
    def passed(self) -> bool:
        """What CI looks at: anything but a block."""
        return self.outcome not in BLOCKING

    @property
    def exit_code(self) -> int:
        return 0 if self.passed else 1

    def to_dict(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome,
            "passed": self.passed,
            "model": self.model,
            "dataset": self.dataset,
            "snapshot": self.data,
            "code": self.code.to_dict(),
            "candidate": self.candidate,
            "champion": self.champion,
            "ratchet": list(self.ratchet),
            "reasons": list(self.reasons),
            "decision_id": None if self.record is None else self.record.get("id"),
            "decision": None if self.decision is None else self.decision.to_dict(),
            "history": [h.to_dict() for h in self.history],
            "lock_commit": self.commit,
        }

    def render(self, fmt: str = "md") -> str:
        """The report: ``md`` (pull-request comments), ``json`` or ``html`` (with a plot of
        the metric per model version and its interval)."""
        import json

        from lakeloop.gate import render_html, render_json, render_markdown

        if fmt not in REPORT_FORMATS:
            raise InvalidInput(
                f"unknown report format {fmt!r}", op="report", hint="md, json or html"
            )
        if fmt == "json":
            doc = self.to_dict()
            if self.decision is not None:
                doc["gate"] = json.loads(render_json(self.decision, self.history))
            return json.dumps(doc, indent=2, allow_nan=False) + "\n"
        head = self._summary()
        if fmt == "md":
            body = render_markdown(self.decision, self.history) if self.decision else ""
            lines = [f"**lakeloop ci: {self.outcome}** — {head}", ""]
            lines += [f"- {r}" for r in self.reasons]
            return "\n".join(lines) + ("\n\n" + body if body else "\n")
        import html

        page = (
            render_html(self.decision, self.history)
            if self.decision is not None
            else "<!doctype html>\n<html><head><meta charset='utf-8'><title>lakeloop ci"
            "</title></head><body>\n</body></html>\n"
        )
        intro = f"<p><b>lakeloop ci: {html.escape(self.outcome)}</b> — {html.escape(head)}</p>"
        intro += "<ul>" + "".join(f"<li>{html.escape(r)}</li>" for r in self.reasons) + "</ul>"
        return page.replace("<body>\n", "<body>\n" + intro + "\n", 1)

    def _summary(self) -> str:
        parts = [f"data {self.dataset}@{self.data[:12]}", f"code {self.code}"]
        if self.candidate:
            parts.append(f"candidate {self.candidate}")
        if self.champion:
            parts.append(f"champion {self.champion}")
        if self.ratchet:
            parts.append("ratchet " + ", ".join(self.ratchet))
        return "; ".join(parts)


# ------------------------------------------------------------------------------- helpers
def _data_fingerprint(lake: Lake, dataset: str) -> Snapshot:
    """Take (or get back, when nothing changed) the dataset's snapshot of its prefix."""
    from lakeloop.catalog import Catalog

    cat = Catalog(lake)
    try:
        definition = cat.dataset(dataset).definition
    except NotFound:
        raise NotFound(
            f"no dataset {dataset!r} in the lake",
            op="ci",
            target=dataset,
            hint="make its first snapshot: `lakeloop snapshot create NS/PREFIX "
            f"--dataset {dataset} --labels ...`",
        ) from None
    return cat.snapshot(f"{definition['namespace']}/{definition['prefix']}", dataset=dataset)


def _align(pred: Any, model_labels: Sequence[str] | None, labels: Sequence[str]) -> Any:
    """Express a model's outputs in the evaluation snapshot's label ids (a model trained
    on an older snapshot may know other labels, numbered differently)."""
    import numpy as np

    out = np.asarray(pred)
    if model_labels is None or list(model_labels) == list(labels):
        return out
    index = {name: i for i, name in enumerate(labels)}
    if out.ndim == 2:
        if out.shape[1] != len(model_labels):
            raise InvalidEvaluation(
                f"the model gives {out.shape[1]} scores per row for {len(model_labels)} labels",
                op="ci",
            )
        aligned = np.zeros((out.shape[0], len(labels)), dtype=out.dtype)
        for j, name in enumerate(model_labels):
            if name in index:
                aligned[:, index[name]] = out[:, j]
        return aligned
    mapping = np.array([index.get(name, -1) for name in model_labels], dtype=np.int64)
    ids = out.astype(np.int64)
    return np.where((ids >= 0) & (ids < len(mapping)), mapping[ids.clip(0, len(mapping) - 1)], -1)


def _ranking_scores(raw: Any, model_labels: Sequence[str] | None, labels: Sequence[str]) -> Any:
    """One score per row for ranking metrics: the model's output as it is when it gives
    one value per row; for class scores over relevance labels, the expected relevance."""
    import numpy as np

    out = np.asarray(raw, dtype=np.float64)
    if out.ndim == 2 and out.shape[1] == 1:
        return out[:, 0]
    if out.ndim == 2:
        probs = _align(out, model_labels, labels)
        return probs @ _grades(labels)
    return out


def _grades(labels: Sequence[str]) -> Any:
    """The relevance of each label id: the label names' values when they are all numbers
    (``0``, ``1``, ``2``), else the ids themselves (names sorted in relevance order)."""
    import numpy as np

    try:
        return np.array([float(name) for name in labels])
    except ValueError:
        return np.arange(len(labels), dtype=np.float64)


def _relevance(y: Any, policy: Any, grades: Any = None) -> Any:
    """What the gate compares with: label ids, or relevance grades for ranking metrics."""
    from lakeloop.gate.metrics import metric_spec

    if grades is None or not metric_spec(policy.metric).ranking:
        return y
    return grades[y]


def _hard_labels(pred: Any) -> Any:
    import numpy as np

    out = np.asarray(pred)
    return out.argmax(axis=1) if out.ndim == 2 else out


def _history(
    y: Any,
    scored: Mapping[str, Any],
    policies: Sequence[Any],
    groups: Any = None,
    grades: Any = None,
) -> list[HistoryPoint]:
    """Each scored version's value of each policy's metric; accuracy with its two-sided
    exact interval at the policy's confidence."""
    import numpy as np

    from lakeloop.gate import HistoryPoint
    from lakeloop.gate.acceptance import lower_bound
    from lakeloop.gate.metrics import metric_spec, prepare

    points = []
    for policy in policies:
        target = _relevance(y, policy, grades)
        for ref, pred in scored.items():
            one = pred[policy.label]
            by_group = groups if metric_spec(policy.metric).ranking else None
            value, _ = prepare(
                policy.metric, target, one, one, k=policy.k, groups=by_group
            ).observed()
            lower = upper = None
            if policy.metric == "accuracy":
                n = len(y)
                right = float(np.sum(_hard_labels(one) == y))
                level = 1 - (1 - policy.confidence) / 2
                lower = lower_bound(right, n, level, "clopper-pearson")
                upper = 1 - lower_bound(n - right, n, level, "clopper-pearson")
            points.append(HistoryPoint(ref, policy.label, float(value), lower, upper))
    return points


def _groups_fn(pipeline: Any, ranking: Sequence[str]) -> Callable[[Any], Any] | None:
    """The pipeline's ``groups(x)``; a clear error when a ranking metric (named in
    *ranking*) needs it and the pipeline defines none."""
    fn = pipeline.fn("groups")
    if fn is None and ranking:
        raise InvalidEvaluation(
            f"{ranking[0]} needs each evaluation row's query or user id",
            op="ci",
            target=str(pipeline.path),
            hint="define groups(x) in the pipeline: it gets the decoded evaluation "
            "examples and returns one id per row",
        )
    return fn


def _ranking_labels(project: Project) -> list[str]:
    """The labels of the project's ranking policies and acceptance claim."""
    from lakeloop.gate import Policy
    from lakeloop.gate.metrics import metric_spec

    acc = project.gate.acceptance
    claim = [] if acc is None else [Policy(metric=acc.metric, k=acc.k)]
    return [p.label for p in [*project.gate.policies, *claim] if metric_spec(p.metric).ranking]


def _eval_groups(pipeline: Any, x: Any, n: int, ranking: Sequence[str]) -> Any:
    """Each evaluation row's query or user id from the pipeline's ``groups(x)``, or None
    when it defines none (ranking metrics then cannot be computed: a clear error)."""
    import numpy as np

    fn = _groups_fn(pipeline, ranking)
    if fn is None:
        return None
    try:
        groups = np.asarray(fn(x))
    except Exception as exc:
        raise InvalidEvaluation(
            f"groups(x) raised {type(exc).__name__}: {exc}", op="ci", target=str(pipeline.path)
        ) from exc
    if groups.ndim != 1 or len(groups) != n:
        raise InvalidEvaluation(
            f"groups(x) returned shape {groups.shape} for {n} evaluation examples",
            op="ci",
            target=str(pipeline.path),
            hint="return one id per row of x",
        )
    return groups


def _previous_champions(reg: Any, model: str, exclude: set[int], k: int) -> list[int]:
    """The last *k* distinct versions that held ``champion``, newest first, except *exclude*."""
    from lakeloop.registry import CHAMPION

    found: list[int] = []
    for move in reversed(reg.history(model)):
        if move.alias != CHAMPION or move.version is None:
            continue
        if move.version in exclude or move.version in found:
            continue
        found.append(move.version)
        if len(found) == k:
            break
    return found


def gate_candidate(
    lake: Lake,
    project: Project,
    candidate: str,
    snapshot: str,
    *,
    promote: bool = True,
    extra: Mapping[str, Any] | None = None,
) -> CiResult:
    """Score *candidate* (``NAME@VERSION``), the champion and the ratchet set on the eval
    split of *snapshot* (an id), decide, store the decision, and promote on ``promote``.

    The returned :class:`CiResult` has no lock yet (:func:`run_ci` writes it). Comparing
    a version with itself raises :class:`~lakeloop.errors.Refused`. With
    ``promote=False`` (pull requests) the decision is stored and champion never moves.

    The promotion is a compare-and-set on the champion the decision names: when another
    gate (``lakeloop ci`` elsewhere, the loop) moved champion while this one scored, the
    registry refuses it, and the candidate is compared again with the new champion (a
    new decision, which names the move in ``champion_moved``), up to
    ``GATE_ATTEMPTS`` times; then :class:`~lakeloop.errors.Refused` ("champion moved").
    """
    moves: list[str] = []
    for _ in range(GATE_ATTEMPTS):
        result = _gate_once(lake, project, candidate, snapshot, promote, extra, moves)
        if result is not None:
            return result
    raise Refused(
        f"champion moved {len(moves)} times while {candidate} was gated ({', '.join(moves)})",
        op="gate",
        target=candidate,
        hint="run the gate again when the other promotions are done",
    )


def _gate_once(
    lake: Lake,
    project: Project,
    candidate: str,
    snapshot: str,
    promote: bool,
    extra: Mapping[str, Any] | None,
    moves: list[str],
) -> CiResult | None:
    """One comparison, decision and promotion; None when champion moved between the
    comparison and the promotion (the move is appended to *moves*: compare again)."""
    from lakeloop.catalog import Catalog
    from lakeloop.gate import Policy, acceptance, combine, compare, ratchet
    from lakeloop.gate.metrics import metric_spec
    from lakeloop.registry import Registry
    from lakeloop.train.data import arrays, decode_image
    from lakeloop.train.pipeline import load_pipeline

    reg = Registry(lake)
    cand = reg.get(candidate)
    if cand.name != project.model:
        raise InvalidInput(
            f"{cand.ref} is not a version of the project's model {project.model!r}",
            op="ci",
            target=candidate,
        )
    aliases = reg.aliases(project.model)
    champion_version = aliases.get("champion")
    if champion_version == cand.version:
        raise Refused(
            f"{cand.ref} is the champion: a model version cannot be compared with itself",
            op="gate",
            target=cand.ref,
            hint="gate a newly trained version (identical predictions from two different "
            "versions are fine)",
        )
    snap = Catalog(lake).resolve(f"{project.dataset}@{snapshot}")
    labels = sorted(snap.labels)
    pipeline = load_pipeline(project.root / project.pipeline)
    x, y = arrays(lake, snap, "eval", decode=pipeline.fn("decode") or decode_image)
    if len(y) == 0:
        raise InvalidEvaluation(
            f"snapshot {snap.ref} has no eval split to score on",
            op="ci",
            target=snap.ref,
            hint="give the dataset an eval_fraction above 0",
        )
    policies = list(project.gate.policies) or [Policy(metric="accuracy")]
    acc = project.gate.acceptance
    claim = None if acc is None else Policy(metric=acc.metric, k=acc.k, name="\0acceptance")
    ranking = _ranking_labels(project)
    groups = _eval_groups(pipeline, x, len(y), ranking)
    grades = _grades(labels)

    def score(version: int) -> dict[str, Any]:
        """The version's predictions for each policy: labels (or scores) from ``predict``;
        probabilities from ``predict_proba`` for AUC and log loss when the model has it;
        one score per row for ranking metrics."""
        model = reg.load(f"{project.model}@{version}")
        raw = model.predict(x)
        wanted = [*policies, *([claim] if claim is not None else [])]
        out: dict[str, Any] = {}
        hard = None
        if any(not metric_spec(p.metric).ranking for p in wanted):
            hard = _align(raw, model.lineage.labels, labels)
            out[_HARD] = hard
        proba = None
        proba_fn = getattr(model.model, "predict_proba", None)
        wants = any(p.metric in _SCORE_METRICS for p in wanted)
        if wants and hard is not None and hard.ndim == 1 and callable(proba_fn):
            proba = _align(proba_fn(x), model.lineage.labels, labels)
        for p in wanted:
            if metric_spec(p.metric).ranking:
                out[p.label] = _ranking_scores(raw, model.lineage.labels, labels)
            elif proba is not None and p.metric in _SCORE_METRICS:
                out[p.label] = proba
            else:
                out[p.label] = hard
        return out

    reasons: list[str] = []
    decision: Any = None
    cand_pred = score(cand.version)
    scored: dict[str, Any] = {}
    ratchet_refs: list[str] = []
    champion_ref = None
    if champion_version is None:
        acc = project.gate.acceptance
        if acc is None:
            outcome = "hold"
            reasons.append(
                "no champion yet and no [gate.acceptance] claim to decide a first run: "
                "champion stays unset (add [gate.acceptance], or set it by hand with "
                "`lakeloop models alias NAME@N champion --force --reason ...`)"
            )
        else:
            assert claim is not None
            exact = claim.metric == "accuracy" and groups is None
            decision = acceptance(
                _relevance(y, claim, grades),
                _hard_labels(cand_pred[_HARD]) if exact else cand_pred[claim.label],
                metric=claim.metric,
                threshold=acc.threshold,
                confidence=acc.confidence,
                method=acc.method if exact else "bootstrap",
                k=claim.k,
                groups=groups,
            )
            outcome = "promote" if decision.passed else "block"
            reasons.append("first run (no champion): decided by the acceptance claim alone")
        scored[cand.ref] = cand_pred
    else:
        champion_ref = f"{project.model}@{champion_version}"
        champ_pred = score(champion_version)
        previous = _previous_champions(
            reg, project.model, {champion_version, cand.version}, project.gate.ratchet
        )
        prev_preds = {f"{project.model}@{v}": score(v) for v in reversed(previous)}
        ratchet_refs = list(prev_preds)
        scored.update(prev_preds)
        scored[champion_ref] = champ_pred
        scored[cand.ref] = cand_pred
        decisions = []
        for policy in policies:
            target = _relevance(y, policy, grades)
            decisions.append(
                compare(target, champ_pred[policy.label], cand_pred[policy.label], policy, groups)
            )
            if prev_preds:
                earlier = {ref: pred[policy.label] for ref, pred in prev_preds.items()}
                decisions.append(ratchet(target, cand_pred[policy.label], earlier, policy, groups))
        decision = combine(decisions, correction=project.gate.correction)
        outcome = decision.outcome
        if not project.gate.policies:
            reasons.append("no [[gate.policy]] in the project: accuracy with margin 0")
    history = _history(y, scored, policies, groups, grades)
    record: dict[str, Any] = {
        "kind": "ci",
        "outcome": outcome,
        "passed": outcome not in BLOCKING,
        "model": project.model,
        "candidate": cand.ref,
        "champion": champion_ref,
        "ratchet": ratchet_refs,
        "snapshot": {"dataset": project.dataset, "id": snap.id, "split": "eval", "n": len(y)},
        "code": (cand.lineage.code or None),
        "decision": None if decision is None else decision.to_dict(),
        "values": [h.to_dict() for h in history],
        "reasons": reasons,
        "promoted": promote and outcome == "promote",
        **dict(extra or {}),
    }
    if moves:
        record["champion_moved"] = list(moves)
        reasons[:0] = [
            f"champion moved ({m}) before this run's promotion: compared again" for m in moves
        ]
    record = reg.record_decision(project.model, record)
    if outcome == "promote" and not promote:
        reasons.append(f"would promote {cand.ref}; champion not moved (promotion turned off)")
    elif outcome == "promote":
        try:
            reg.promote(cand.ref, decision=record, reason=f"lakeloop ci decision {record['id']}")
        except Refused:
            now = reg.aliases(project.model).get("champion")
            if now == champion_version:
                raise  # refused for another reason than a moved champion
            if now != cand.version:
                moves.append(f"{champion_ref or 'none'} -> {project.model}@{now}")
                return None
            reasons.append(f"{cand.ref} was promoted meanwhile by another run")
        else:
            reasons.append(f"champion moved to {cand.ref}")
    elif champion_ref:
        reasons.append(f"champion stays {champion_ref}")
    return CiResult(
        outcome=outcome,
        code=CodeFingerprint(**_code_fields(cand.lineage.code)),
        data=snap.id,
        dataset=project.dataset,
        model=project.model,
        candidate=cand.ref,
        champion=champion_ref,
        ratchet=ratchet_refs,
        decision=decision,
        record=record,
        history=history,
        reasons=reasons,
    )


def _code_fields(code: Mapping[str, Any] | None) -> dict[str, Any]:
    code = code or {}
    return {
        "commit": code.get("commit"),
        "dirty": code.get("dirty"),
        "content": str(code.get("content") or ""),
        "files": tuple(code.get("files") or ()),
    }


def _git_commit_lock(root: Path, message: str) -> str:
    from lakeloop.project import LOCK_FILE

    def git(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["git", "-C", str(root), *args], capture_output=True, text=True, check=False
        )

    for args in (("add", "--", LOCK_FILE), ("commit", "-q", "-m", message, "--", LOCK_FILE)):
        done = git(*args)
        if done.returncode != 0:
            raise Refused(
                f"git {args[0]} failed: {(done.stderr or done.stdout).strip()}",
                op="commit lock",
                target=str(root / LOCK_FILE),
                hint="run inside a git work tree with user.name and user.email set",
            )
    return git("rev-parse", "HEAD").stdout.strip()


# ------------------------------------------------------------------------------- run_ci
def run_ci(
    project: str | os.PathLike[str] | None = None,
    *,
    lake: str | None = None,
    force: bool = False,
    commit: bool = False,
    candidate: str | None = None,
    promote: bool = True,
    engine: str | None = None,
    workers: int | None = None,
    log: Callable[[str], None] | None = None,
    extra: Mapping[str, Any] | None = None,
    on_step: Callable[[str, Mapping[str, Any]], None] | None = None,
) -> CiResult:
    """Run one turn of the pipeline for *project* (``lakeloop.toml`` or its folder;
    default: found from the current folder) and return what it decided.

    *lake* is ``--lake`` (then ``LAKELOOP_LAKE``, then the project file). *force* runs
    even when the lock says nothing changed. *commit* git-commits the new lock.
    *candidate* (``NAME@VERSION``) gates a version already registered instead of
    training one. ``promote=False`` decides and stores the decision but moves no alias
    and writes no lock (for pull requests, whose code is not merged yet). *log* receives
    progress lines. *extra* is merged into the stored decision record (the loop puts its
    turn id there). *on_step(step, fields)* is told as each step begins or ends —
    ``snapshot`` (``snapshot``), ``tests``, ``train``, ``trained`` (``candidate``),
    ``gate``, ``decided`` (``outcome``) — so a caller can journal and time them.
    """
    from lakeloop.project import Lock, load_project, read_lock, resolve_lake, write_lock
    from lakeloop.store import Lake
    from lakeloop.train.study import train_project

    say = log or (lambda line: None)
    step = on_step or (lambda name, fields: None)
    proj = load_project(project)
    where = resolve_lake(lake, proj)  # a folder or a gateway URL (keys from the environment)
    code = proj.code_fingerprint()
    step("snapshot", {})
    with Lake.open(where.value, background=False) as lk:
        snap = _data_fingerprint(lk, proj.dataset)
    step("snapshotted", {"snapshot": snap.id, "count": snap.count})
    lock = read_lock(proj.lock_path)
    say(f"code {code}, data {proj.dataset}@{snap.id[:12]}")
    base = {"code": code, "data": snap.id, "dataset": proj.dataset, "model": proj.model}
    if (
        not force
        and candidate is None
        and lock is not None
        and code.same_code(lock.code)
        and lock.data == snap.id
    ):
        verdict = "block" if lock.outcome in BLOCKING else "unchanged"
        reasons = ["nothing changed since the lock: no training"]
        if verdict == "block":
            reasons.append(
                f"the last run on this code and data was {lock.outcome!r}; it stands "
                "(change the code or the data, or pass --force-run)"
            )
        return CiResult(
            verdict,
            **base,
            champion=f"{proj.model}@{lock.champion}" if lock.champion else None,
            reasons=reasons,
            lock=lock,
        )
    test_doc = None
    if proj.test:
        step("tests", {"command": proj.test})
        say(f"unit tests: {proj.test}")
        t0 = time.monotonic()
        done = subprocess.run(
            proj.test, shell=True, cwd=proj.root, capture_output=True, text=True, check=False
        )
        output = (done.stdout + done.stderr).strip().splitlines()
        tail = output[-TEST_OUTPUT_LINES:]
        if len(output) > TEST_OUTPUT_LINES:
            tail.insert(0, f"(the last {TEST_OUTPUT_LINES} of {len(output)} lines of output)")
        test_doc = {
            "command": proj.test,
            "exit_code": done.returncode,
            "seconds": round(time.monotonic() - t0, 3),
        }
        if done.returncode != 0:
            return CiResult(
                "tests-failed",
                **base,
                reasons=[f"unit tests failed (exit {done.returncode}): {proj.test}", *tail],
            )
    ranking = _ranking_labels(proj)
    if ranking:  # before training: a ranking gate needs the pipeline's groups(x)
        from lakeloop.train.pipeline import load_pipeline

        _groups_fn(load_pipeline(proj.root / proj.pipeline), ranking)
    if candidate is None:
        step("train", {})
        say("training")
        study = train_project(proj.path, lake=where.value, engine=engine, workers=workers)
        if study.version is None:
            errors = [f"trial {t.trial}: {t.where or ''} {t.error}" for t in study.failed]
            return CiResult(
                "train-failed",
                **base,
                reasons=[
                    "no trial trained a model",
                    *errors[:FAILED_TRIALS_SHOWN],
                    *(
                        [f"(the first {FAILED_TRIALS_SHOWN} of {len(errors)} failed trials)"]
                        if len(errors) > FAILED_TRIALS_SHOWN
                        else []
                    ),
                ],
            )
        candidate, evaluated = study.version.ref, study.snapshot
        step("trained", {"candidate": candidate, "score": study.best_score})
        say(f"trained {candidate}: {study.metric}={study.best_score}")
    else:
        evaluated = snap.id
    fields = {**dict(extra or {}), "unit_tests": test_doc, "code_now": code.to_dict()}
    step("gate", {"candidate": candidate})
    with Lake.open(where.value, background=False) as lk:
        result = gate_candidate(lk, proj, candidate, evaluated, promote=promote, extra=fields)
    step("decided", {"outcome": result.outcome, "candidate": result.candidate})
    result.code = code
    if not promote:
        return result
    champion_now = (
        result.candidate if result.record and result.record["promoted"] else result.champion
    )
    new_lock = Lock(
        code=code.content,
        data=result.data,
        commit=code.commit,
        dirty=code.dirty,
        champion=champion_now.partition("@")[2] if champion_now else None,
        outcome=result.outcome,
        updated=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    )
    write_lock(proj.lock_path, new_lock)
    result.lock = new_lock
    if commit:
        message = (
            f"lakeloop ci: {result.outcome} {result.candidate} "
            f"(data {proj.dataset}@{result.data[:12]})"
        )
        result.commit = _git_commit_lock(proj.root, message)
    return result
