"""The gate: decide on evidence whether a candidate model may replace the champion.

>>> from lakeloop.gate import Policy, compare, acceptance
>>> policy = Policy(metric="accuracy", margin=0.01, confidence=0.95)
>>> y = [1] * 100                                  # true labels
>>> champion = [1] * 90 + [0] * 10                 # 90 % right
>>> candidate = [1] * 95 + [0] * 5                 # 95 % right, on the same examples
>>> d = compare(y, champion, candidate, policy)
>>> d.outcome, d.passed, round(d.delta, 2)
('promote', True, 0.05)

Both models are scored on the same examples and compared *paired*: accuracy with the
exact McNemar test and its interval, every other metric with a seeded paired bootstrap.
``block`` needs evidence that the candidate is worse; ``promote`` needs evidence that it
is not worse by more than the margin (or better, for ``promote="superior"``); anything
else is ``hold``. :func:`compare_all` decides several metrics and slices at once with
Holm's correction, :func:`ratchet` compares with the best of the last champions, and
:func:`acceptance` checks an absolute claim such as "at least 90 % accuracy" (or
"NDCG@10 at least 0.6"), and :func:`metric_value` computes one model's metric the way
the gate does (for a pipeline's ``evaluate``). The
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
from lakeloop.gate.metrics import METRICS, metric_value
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
    "metric_value",
    "plot_history",
    "ratchet",
    "render_html",
    "render_json",
    "render_markdown",
]
