"""Decisions: promote, hold or block, from paired evidence on the same examples."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from lakeloop.errors import InvalidEvaluation, InvalidPolicy
from lakeloop.gate.policy import Policy

__all__ = ["CombinedDecision", "Decision", "combine", "compare", "compare_all", "ratchet"]

_Z_CACHE: dict[float, float] = {}


def _z(p: float) -> float:
    if p not in _Z_CACHE:
        from scipy.stats import norm

        _Z_CACHE[p] = float(norm.ppf(p))
    return _Z_CACHE[p]


@dataclass(frozen=True)
class Decision:
    """The gate's verdict on one metric (one slice) for a candidate against a baseline.

    ``delta`` is oriented so that positive means the candidate is better (for RMSE or log
    loss it is champion - candidate). ``interval`` holds two one-sided bounds on delta,
    each at ``confidence``. ``p_value`` is the one-sided p-value of "the candidate is
    worse than the baseline by more than the policy's tolerance". ``n_required`` (on
    hold): about how many evaluation units would decide it if the observed difference
    held. ``underpowered``: the evaluation set is too small to detect ``margin``.
    """

    outcome: str
    delta: float
    interval: tuple[float, float]
    p_value: float
    n: int
    metric: str
    champion_value: float
    candidate_value: float
    reasons: list[str]
    policy: Policy
    test: str
    n_required: int | None = None
    underpowered: bool = False
    baseline: str = "champion"
    slice: str | None = None
    p_value_adjusted: float | None = None

    @property
    def passed(self) -> bool:
        """What CI looks at: everything but ``block`` passes."""
        return self.outcome != "block"

    @property
    def confidence(self) -> float:
        return self.policy.confidence

    @property
    def label(self) -> str:
        return self.policy.label + (f" [{self.slice}]" if self.slice else "")

    def to_dict(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome,
            "passed": self.passed,
            "metric": self.metric,
            "label": self.label,
            "slice": self.slice,
            "baseline": self.baseline,
            "delta": _num(self.delta),
            "interval": [_num(self.interval[0]), _num(self.interval[1])],
            "confidence": self.confidence,
            "p_value": self.p_value,
            "p_value_adjusted": self.p_value_adjusted,
            "n": self.n,
            "champion_value": _num(self.champion_value),
            "candidate_value": _num(self.candidate_value),
            "test": self.test,
            "n_required": self.n_required,
            "underpowered": self.underpowered,
            "reasons": list(self.reasons),
            "policy": self.policy.to_dict(),
        }


@dataclass(frozen=True)
class CombinedDecision:
    """Several decisions (metrics, slices, the ratchet) and one overall outcome.

    Any block blocks; all promote promotes; anything else holds. Blocks are corrected
    for multiple comparisons with Holm's step-down method, so the chance that any of
    the ``m`` comparisons blocks equal models stays at most 1 - confidence. Promotion
    needs every comparison to promote, which needs no correction.
    """

    outcome: str
    decisions: list[Decision]
    reasons: list[str] = field(default_factory=list)
    correction: str = "holm"

    @property
    def passed(self) -> bool:
        return self.outcome != "block"

    def to_dict(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome,
            "passed": self.passed,
            "correction": self.correction,
            "reasons": list(self.reasons),
            "decisions": [d.to_dict() for d in self.decisions],
        }


def _num(x: float) -> float | None:
    return x if math.isfinite(x) else None


def _fmt(x: float) -> str:
    return f"{x:+.4g}"


def compare(
    y_true: Any,
    champion: Any,
    candidate: Any,
    policy: Policy,
    groups: Any = None,
    *,
    baseline: str = "champion",
    slice: str | None = None,
) -> Decision:
    """Decide whether ``candidate`` may replace ``champion``, both scored on ``y_true``.

    Accuracy without groups uses the exact McNemar test and its paired interval; every
    other metric (and accuracy with ``groups``, whose rows are then resampled together)
    uses a seeded paired bootstrap. The same inputs always give the same decision.

    >>> d = compare([1, 0, 1, 1], [1, 0, 0, 1], [1, 0, 1, 1], Policy(margin=0.05))
    >>> d.delta, d.outcome
    (0.25, 'promote')
    """
    import numpy as np

    from lakeloop.gate.metrics import metric_spec, prepare, validate
    from lakeloop.gate.stats import exact_mcnemar, paired_bootstrap

    if not isinstance(policy, Policy):
        raise InvalidPolicy(
            "policy must be a lakeloop.gate.Policy", op="compare", target=type(policy).__name__
        )
    spec = metric_spec(policy.metric)
    if spec.exact_test and groups is None:
        y, a, b = validate(policy.metric, y_true, champion, candidate)
        right_a = (a.argmax(axis=1) if a.ndim == 2 else a) == y
        right_b = (b.argmax(axis=1) if b.ndim == 2 else b) == y
        n = len(y)
        ev = exact_mcnemar(
            int(np.count_nonzero(right_a & ~right_b)),
            int(np.count_nonzero(right_b & ~right_a)),
            n,
            confidence=policy.confidence,
            tolerance=policy.tolerance,
        )
        champion_value, candidate_value = float(right_a.mean()), float(right_b.mean())
    else:
        evaluation = prepare(policy.metric, y_true, champion, candidate, k=policy.k, groups=groups)
        ev, champion_value, candidate_value = paired_bootstrap(
            evaluation,
            higher_is_better=spec.higher_is_better,
            confidence=policy.confidence,
            tolerance=policy.tolerance,
            resamples=policy.resamples,
            seed=policy.seed,
        )
        n = evaluation.units
    return _decide(policy, ev, n, champion_value, candidate_value, baseline, slice)


def _decide(
    policy: Policy,
    ev: Any,
    n: int,
    champion_value: float,
    candidate_value: float,
    baseline: str,
    slice_name: str | None,
) -> Decision:
    reasons: list[str] = []
    conf = f"{policy.confidence:.0%}"
    lower, upper = ev.lower, ev.upper
    promote_above = 0.0 if policy.promote == "superior" else 0.0 - policy.margin
    block_below = 0.0 - policy.tolerance  # 0.0 - x: never prints as -0
    unit = "groups" if policy.k else "examples"
    reasons.append(
        f"{policy.label}: candidate {candidate_value:.4g} vs {baseline} {champion_value:.4g}, "
        f"difference {_fmt(ev.delta)} (positive = candidate better), one-sided {conf} "
        f"bounds [{_fmt(lower)}, {_fmt(upper)}] on n={n} {unit}; {ev.test}"
    )
    if upper < -policy.tolerance:
        outcome = "block"
        reasons.append(
            f"blocked: the candidate is worse than the {baseline} with {conf} confidence "
            f"(upper bound {_fmt(upper)} < {_fmt(block_below)}, p = {ev.p_value:.3g})"
        )
    elif lower > promote_above:
        outcome = "promote"
        shown = (
            "better" if policy.promote == "superior" else f"not worse by {policy.margin} or more"
        )
        reasons.append(
            f"promote: the candidate is {shown} (lower bound {_fmt(lower)} > {_fmt(promote_above)})"
        )
    else:
        outcome = "hold"
        reasons.append(
            f"hold: not shown worse (upper bound {_fmt(upper)} >= {_fmt(block_below)}) "
            f"and not shown {'better' if policy.promote == 'superior' else 'non-inferior'} "
            f"(lower bound {_fmt(lower)} <= {_fmt(promote_above)}); the {baseline} stays"
        )
    se = ev.standard_error
    z = _z(policy.confidence)
    n_required = None
    if outcome == "hold" and math.isfinite(se) and se > 0:
        needs = []
        if ev.delta > promote_above:
            needs.append(n * (z * se / (ev.delta - promote_above)) ** 2)
        if ev.delta < -policy.tolerance:
            needs.append(n * (z * se / (-policy.tolerance - ev.delta)) ** 2)
        if needs:
            n_required = max(n + 1, math.ceil(min(needs)))
            reasons.append(
                f"about {n_required} evaluation {unit} ({n_required - n} more) would decide "
                f"it if the observed difference held"
            )
        else:
            reasons.append("the observed difference sits on a boundary; no size would decide it")
    underpowered = False
    if policy.margin > 0 and math.isfinite(se):
        detectable = (z + _z(policy.power)) * se
        if detectable > policy.margin:
            underpowered = True
            needed = math.ceil(n * (detectable / policy.margin) ** 2)
            reasons.append(
                f"warning: n={n} is too small to detect a difference of {policy.margin} with "
                f"{policy.power:.0%} power (smallest detectable about {detectable:.3g}); "
                f"about {needed} {unit} would be enough"
            )
            if policy.require_power and outcome != "block":
                outcome = "block"
                reasons.append("blocked: the policy requires enough power (require_power)")
    elif not math.isfinite(se):
        reasons.append("warning: the bootstrap failed on most resamples; the bounds are open")
    return Decision(
        outcome=outcome,
        delta=float(ev.delta),
        interval=(float(lower), float(upper)),
        p_value=float(ev.p_value),
        n=int(n),
        metric=policy.metric,
        champion_value=float(champion_value),
        candidate_value=float(candidate_value),
        reasons=reasons,
        policy=policy,
        test=ev.test,
        n_required=n_required,
        underpowered=underpowered,
        baseline=baseline,
        slice=slice_name,
    )


def combine(decisions: Sequence[Decision], *, correction: str = "holm") -> CombinedDecision:
    """One overall outcome from several decisions, blocks corrected with Holm's method.

    ``correction="none"`` keeps each decision as it is (use it only when the decisions
    were planned as one family elsewhere).
    """
    decisions = list(decisions)
    if not decisions:
        raise InvalidPolicy("no decisions to combine", op="combine", target="decisions")
    if correction not in ("holm", "none"):
        raise InvalidPolicy(
            f"unknown correction {correction!r}",
            op="combine",
            target=correction,
            hint="use 'holm' or 'none'",
        )
    confidences = {d.confidence for d in decisions}
    if len(confidences) > 1:
        raise InvalidPolicy(
            "decisions to combine must share one confidence",
            op="combine",
            target=", ".join(f"{c:g}" for c in sorted(confidences)),
            hint="give every policy of the family the same confidence",
        )
    alpha = 1 - confidences.pop()
    m = len(decisions)
    reasons: list[str] = []
    if correction == "holm" and m > 1:
        order = sorted(range(m), key=lambda i: decisions[i].p_value)
        adjusted = [0.0] * m
        running = 0.0
        for rank, i in enumerate(order):
            running = max(running, min(1.0, (m - rank) * decisions[i].p_value))
            adjusted[i] = running
        out = []
        for d, p_adj in zip(decisions, adjusted, strict=True):
            on_evidence = d.interval[1] < -d.policy.tolerance  # not a block for power alone
            if d.outcome == "block" and on_evidence and p_adj >= alpha:
                d = replace(
                    d,
                    outcome="hold",
                    reasons=[
                        *d.reasons,
                        f"hold instead of block: p = {d.p_value:.3g} is not significant after "
                        f"Holm's correction over {m} comparisons (adjusted p = {p_adj:.3g})",
                    ],
                )
            out.append(replace(d, p_value_adjusted=p_adj))
        decisions = out
        reasons.append(f"Holm's correction over {m} comparisons at {1 - alpha:.0%} confidence")
    outcomes = [d.outcome for d in decisions]
    if "block" in outcomes:
        outcome = "block"
        blocked = [d.label for d in decisions if d.outcome == "block"]
        reasons.append("blocked by: " + ", ".join(blocked))
    elif all(o == "promote" for o in outcomes):
        outcome = "promote"
        reasons.append("every comparison promotes")
    else:
        outcome = "hold"
        held = [d.label for d in decisions if d.outcome == "hold"]
        reasons.append("held by: " + ", ".join(held))
    return CombinedDecision(outcome, decisions, reasons, correction)


def _pick(predictions: Any, policy: Policy, who: str) -> Any:
    if isinstance(predictions, Mapping):
        for key in (policy.name, policy.label, policy.metric):
            if key is not None and key in predictions:
                return predictions[key]
        raise InvalidEvaluation(
            f"{who}'s predictions have no entry for {policy.metric!r}",
            op="compare_all",
            target=policy.label,
            hint="key the mapping by metric name (or policy name): "
            + ", ".join(map(str, predictions)),
        )
    return predictions


def compare_all(
    y_true: Any,
    champion: Any,
    candidate: Any,
    policies: Sequence[Policy],
    groups: Any = None,
    *,
    slices: Mapping[str, Any] | None = None,
    correction: str = "holm",
) -> CombinedDecision:
    """Compare on every policy, on all examples and on each slice, then :func:`combine`.

    ``champion`` and ``candidate`` are arrays shared by every policy, or mappings from a
    metric name (or policy name) to the array that metric needs, e.g. ``{"accuracy":
    labels, "auc": scores}``. ``slices`` maps a slice name to a boolean mask (or row
    indices); each slice is decided on its own rows, as one more comparison of the family.

    >>> import numpy as np
    >>> y = np.array([0, 1] * 50)
    >>> c = compare_all(y, y, y, [Policy(metric="accuracy"), Policy(metric="f1")])
    >>> c.outcome, len(c.decisions)
    ('hold', 2)
    """
    import numpy as np

    policies = list(policies)
    if not policies or not all(isinstance(p, Policy) for p in policies):
        raise InvalidPolicy(
            "policies must be a non-empty list of Policy", op="compare_all", target="policies"
        )
    n = len(np.asarray(y_true))
    selections: list[tuple[str | None, Any]] = [(None, None)]
    for name, rows in (slices or {}).items():
        sel = np.asarray(rows)
        if sel.dtype == bool and sel.shape != (n,):
            raise InvalidEvaluation(
                f"slice mask has shape {sel.shape}, expected ({n},)",
                op="compare_all",
                target=str(name),
            )
        if sel.dtype != bool and sel.dtype.kind not in "iu":
            raise InvalidEvaluation(
                "a slice is a boolean mask or integer row indices",
                op="compare_all",
                target=str(name),
            )
        if (sel.dtype == bool and not sel.any()) or sel.size == 0:
            raise InvalidEvaluation("slice selects no rows", op="compare_all", target=str(name))
        selections.append((str(name), sel))
    decisions: list[Decision] = []
    for slice_name, sel in selections:
        for policy in policies:
            a = _pick(champion, policy, "champion")
            b = _pick(candidate, policy, "candidate")
            if sel is None:
                decisions.append(compare(y_true, a, b, policy, groups))
            else:

                def take(x: Any, s: Any = sel) -> Any:
                    return None if x is None else np.asarray(x)[s]

                decisions.append(
                    compare(take(y_true), take(a), take(b), policy, take(groups), slice=slice_name)
                )
    return combine(decisions, correction=correction)


def ratchet(
    y_true: Any,
    candidate: Any,
    previous: Mapping[str, Any] | Sequence[Any],
    policy: Policy,
    groups: Any = None,
) -> Decision:
    """Compare ``candidate`` with the best of the last K champions on the same data.

    ``previous`` maps each earlier champion's name (a model version) to its predictions
    on this evaluation set (a plain list is named ``#1``, ``#2`` ...). The best by the
    policy's metric becomes the baseline, so a chain of small allowed drops cannot add
    up to a large one: the candidate must stay within the margin of the best of them.
    """
    from lakeloop.gate.metrics import metric_spec, prepare

    named = (
        {str(k): v for k, v in previous.items()}
        if isinstance(previous, Mapping)
        else {f"#{i + 1}": p for i, p in enumerate(previous)}
    )
    if not named:
        raise InvalidEvaluation(
            "the ratchet needs at least one earlier champion", op="ratchet", target=policy.label
        )
    better = metric_spec(policy.metric).higher_is_better
    scored = []
    for name, pred in named.items():
        value, _ = prepare(
            policy.metric, y_true, pred, candidate, k=policy.k, groups=groups
        ).observed()
        scored.append((value if better else -value, name))
    _, best = max(scored)
    return compare(
        y_true,
        named[best],
        candidate,
        policy,
        groups,
        baseline=f"best of last {len(named)} champions ({best})",
    )
