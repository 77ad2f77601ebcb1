"""Reports of gate decisions: Markdown for pull-request comments, JSON, HTML with a plot.

Each function takes what the gate returned (a :class:`Decision`, a
:class:`CombinedDecision`, an :class:`Acceptance`, or a list of them) and an optional
``history``: a few :class:`HistoryPoint` entries, one metric value per model version
(with its interval when known), which the HTML report plots.
"""

from __future__ import annotations

import base64
import html
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from lakeloop.gate.acceptance import Acceptance
from lakeloop.gate.decision import CombinedDecision, Decision

__all__ = ["HistoryPoint", "plot_history", "render_html", "render_json", "render_markdown"]

Result = Decision | CombinedDecision | Acceptance
_ICON = {"promote": "✅ promote", "hold": "⏸️ hold", "block": "❌ block"}


@dataclass(frozen=True)
class HistoryPoint:
    """One model version's value of one metric, with its interval when known."""

    version: str
    metric: str
    value: float
    lower: float | None = None
    upper: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "metric": self.metric,
            "value": self.value,
            "lower": self.lower,
            "upper": self.upper,
        }


def _items(result: Result | Sequence[Result]) -> list[Result]:
    raw: list[Any] = list(result) if isinstance(result, list | tuple) else [result]
    items: list[Result] = []
    for item in raw:
        if not isinstance(item, Decision | CombinedDecision | Acceptance):
            from lakeloop.errors import InvalidInput

            raise InvalidInput(
                f"cannot report a {type(item).__name__}", op="report", target="result"
            )
        items.append(item)
    return items


def _decisions(items: list[Result]) -> list[Decision]:
    out: list[Decision] = []
    for item in items:
        if isinstance(item, CombinedDecision):
            out.extend(item.decisions)
        elif isinstance(item, Decision):
            out.append(item)
    return out


def _overall(items: list[Result]) -> str:
    outcomes = []
    for item in items:
        if isinstance(item, Acceptance):
            outcomes.append("promote" if item.passed else "block")
        else:
            outcomes.append(item.outcome)
    if "block" in outcomes:
        return "block"
    return "promote" if all(o == "promote" for o in outcomes) else "hold"


def _f(x: float | None, digits: int = 4) -> str:
    if x is None or not math.isfinite(x):
        return "–"
    return f"{x:.{digits}f}"


def _signed(x: float) -> str:
    return "–" if not math.isfinite(x) else f"{x:+.4f}"


def render_markdown(result: Result | Sequence[Result], history: Sequence[HistoryPoint] = ()) -> str:
    """A Markdown summary for a pull-request comment: the outcome, then one row per check."""
    items = _items(result)
    overall = _overall(items)
    lines = [f"### lakeloop gate: {_ICON[overall]}", ""]
    decisions = _decisions(items)
    if decisions:
        lines += [
            "| check | baseline | candidate | difference (+ = better) | one-sided bounds | p "
            "| outcome |",
            "|---|---|---|---|---|---|---|",
        ]
        for d in decisions:
            p = d.p_value if d.p_value_adjusted is None else d.p_value_adjusted
            check = d.label if d.baseline == "champion" else f"{d.label} vs {d.baseline}"
            lines.append(
                f"| {check} | {_f(d.champion_value)} | {_f(d.candidate_value)} | "
                f"{_signed(d.delta)} | [{_signed(d.interval[0])}, {_signed(d.interval[1])}] "
                f"at {d.confidence:.0%} | {p:.3g} | {_ICON[d.outcome]} |"
            )
        lines.append("")
    for item in items:
        if isinstance(item, Acceptance):
            lines.append(
                f"**Acceptance** ({item.metric} ≥ {item.threshold}): estimate {_f(item.estimate)}, "
                f"{item.confidence:.0%} {item.method} lower bound {_f(item.lower_bound)} on "
                f"n={item.n} → {'passed' if item.passed else 'not shown'}"
                + (
                    f"; about {item.n_required} examples needed"
                    if not item.passed and item.n_required
                    else ""
                )
            )
            lines.append("")
    reasons = [
        r for item in items for r in (item.reasons if not isinstance(item, Decision) else [])
    ]
    details = [r for d in decisions for r in d.reasons]
    if reasons or details:
        lines += ["<details><summary>Why</summary>", ""]
        lines += [f"- {r}" for r in [*reasons, *details]]
        lines += ["", "</details>"]
    if history:
        lines += ["", "| version | metric | value | interval |", "|---|---|---|---|"]
        for h in history:
            lines.append(
                f"| {h.version} | {h.metric} | {_f(h.value)} | [{_f(h.lower)}, {_f(h.upper)}] |"
            )
    return "\n".join(lines) + "\n"


def render_json(result: Result | Sequence[Result], history: Sequence[HistoryPoint] = ()) -> str:
    """The whole evidence as JSON (non-finite numbers become null)."""
    items = _items(result)
    doc = {
        "outcome": _overall(items),
        "passed": _overall(items) != "block",
        "results": [item.to_dict() for item in items],
        "history": [h.to_dict() for h in history],
    }
    return json.dumps(doc, indent=2, sort_keys=False, allow_nan=False)


def plot_history(history: Sequence[HistoryPoint]) -> bytes | None:
    """A PNG of each metric per model version with its interval; None without matplotlib.

    Matplotlib is an optional extra (``lakeloop[plot]``), imported here only.
    """
    if not history:
        return None
    try:
        # A bare Figure renders with Agg and touches no global pyplot state, so a caller's
        # own backend and figures are left alone.
        from matplotlib.figure import Figure
    except ImportError:
        return None
    import io

    metrics = list(dict.fromkeys(h.metric for h in history))
    fig = Figure(figsize=(4.5 * len(metrics), 3.2))
    axes = fig.subplots(1, len(metrics), squeeze=False)
    for ax, metric in zip(axes[0], metrics, strict=True):
        points = [h for h in history if h.metric == metric]
        xs = list(range(len(points)))
        values = [h.value for h in points]
        below = [h.value - h.lower if h.lower is not None else 0.0 for h in points]
        above = [h.upper - h.value if h.upper is not None else 0.0 for h in points]
        ax.errorbar(xs, values, yerr=[below, above], fmt="o-", capsize=4)
        ax.set_xticks(xs, [h.version for h in points], rotation=30, ha="right")
        ax.set_title(metric)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


def render_html(result: Result | Sequence[Result], history: Sequence[HistoryPoint] = ()) -> str:
    """A self-contained HTML page: the table, the reasons and the plot as an inline PNG."""
    items = _items(result)
    overall = _overall(items)
    rows = []
    for d in _decisions(items):
        rows.append(
            "<tr>"
            + "".join(
                f"<td>{html.escape(str(cell))}</td>"
                for cell in (
                    d.label,
                    d.baseline,
                    _f(d.champion_value),
                    _f(d.candidate_value),
                    _signed(d.delta),
                    f"[{_signed(d.interval[0])}, {_signed(d.interval[1])}]",
                    f"{d.p_value:.3g}",
                    d.test,
                    d.outcome,
                )
            )
            + "</tr>"
        )
    reasons = [r for item in items for r in item.reasons]
    png = plot_history(history)
    if png is not None:
        src = "data:image/png;base64," + base64.b64encode(png).decode()
        plot = f'<img alt="metric per model version" src="{src}">'
    elif history:
        plot = "<p>(install lakeloop[plot] for the plot of metric per version)</p>"
    else:
        plot = ""
    head = (
        "<tr><th>check</th><th>baseline</th><th>baseline value</th><th>candidate value</th>"
        "<th>difference (+ = better)</th><th>one-sided bounds</th><th>p</th><th>test</th>"
        "<th>outcome</th></tr>"
    )
    return (
        "<!doctype html>\n<html><head><meta charset='utf-8'><title>lakeloop gate</title>"
        "<style>body{font-family:sans-serif}td,th{border:1px solid #ccc;padding:4px}"
        "table{border-collapse:collapse}</style></head><body>\n"
        f"<h1>lakeloop gate: {html.escape(overall)}</h1>\n"
        + (f"<table>{head}{''.join(rows)}</table>\n" if rows else "")
        + "<ul>"
        + "".join(f"<li>{html.escape(r)}</li>" for r in reasons)
        + "</ul>\n"
        + plot
        + "\n</body></html>\n"
    )
