"""The gate: decide on evidence whether a candidate model may replace the champion.

>>> from lakeloop.gate import Policy, compare, acceptance
>>> policy = Policy(metric="accuracy", margin=0.01, confidence=0.95)
>>> d = compare([1, 0, 1, 1], [1, 0, 0, 1], [1, 0, 1, 1], policy)
>>> d.outcome, d.passed, d.delta
('promote', True, 0.25)

Both models are scored on the same examples and compared *paired*: accuracy with the
exact McNemar test and its interval, every other metric with a seeded paired bootstrap.
``block`` needs evidence that the candidate is worse; ``promote`` needs evidence that it
is not worse by more than the margin (or better, for ``promote="superior"``); anything
else is ``hold``. :func:`compare_all` decides several metrics and slices at once with
Holm's correction, :func:`ratchet` compares with the best of the last champions, and
:func:`acceptance` checks an absolute claim such as "at least 90 % accuracy". The
report functions render decisions as Markdown, JSON or HTML. docs/gate.md explains the
statistics.
"""

from __future__ import annotations

from lakeloop.gate.acceptance import Acceptance, acceptance
from lakeloop.gate.decision import (
    CombinedDecision,
    Decision,
    combine,
    compare,
    compare_all,
    ratchet,
)
from lakeloop.gate.metrics import METRICS
from lakeloop.gate.policy import Policy
from lakeloop.gate.report import (
    HistoryPoint,
    plot_history,
    render_html,
    render_json,
    render_markdown,
)

__all__ = [
    "METRICS",
    "Acceptance",
    "CombinedDecision",
    "Decision",
    "HistoryPoint",
    "Policy",
    "acceptance",
    "combine",
    "compare",
    "compare_all",
    "plot_history",
    "ratchet",
    "render_html",
    "render_json",
    "render_markdown",
]
