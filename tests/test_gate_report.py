"""Reports of decisions: Markdown, JSON and HTML with a plot."""

from __future__ import annotations

import base64
import json
import re

import numpy as np
import pytest

from _gatedata import paired_labels
from lakeloop.errors import InvalidInput
from lakeloop.gate import (
    HistoryPoint,
    Policy,
    acceptance,
    compare,
    compare_all,
    plot_history,
    render_html,
    render_json,
    render_markdown,
)

HISTORY = [
    HistoryPoint("v1", "accuracy", 0.90, 0.89, 0.91),
    HistoryPoint("v2", "accuracy", 0.91, 0.90, 0.92),
    HistoryPoint("v3", "accuracy", 0.88),
    HistoryPoint("v3", "auc", 0.95, 0.94, 0.96),
]


def decisions() -> tuple:
    rng = np.random.default_rng(0)
    y, a, b = paired_labels(rng, 3000, 0.90, 0.87, 0.06)
    blocked = compare(y, a, b, Policy(margin=0.01))
    y2, a2, b2 = paired_labels(rng, 3000, 0.90, 0.90, 0.06)
    both = compare_all(y2, a2, b2, [Policy(margin=0.01), Policy(metric="f1", margin=0.01)])
    return blocked, both, acceptance(y2, b2, threshold=0.85)


def test_markdown() -> None:
    blocked, both, acc = decisions()
    md = render_markdown(blocked)
    assert md.startswith("### lakeloop gate: ❌ block")
    assert "| accuracy |" in md and "McNemar" in md
    md = render_markdown([both, acc], HISTORY)
    assert "| f1 |" in md and "**Acceptance**" in md and "| v2 | accuracy | 0.9100 |" in md
    assert md.count("\n|") >= 6


def test_json_is_complete_and_strict() -> None:
    blocked, both, acc = decisions()
    doc = json.loads(render_json([blocked, both, acc], HISTORY))
    assert doc["outcome"] == "block" and doc["passed"] is False
    first = doc["results"][0]
    assert first["outcome"] == "block" and first["test"].startswith("exact McNemar")
    assert first["interval"][1] < 0 and first["policy"]["margin"] == 0.01
    assert len(doc["results"][1]["decisions"]) == 2
    assert doc["results"][2]["kind"] == "acceptance" and doc["history"][0]["version"] == "v1"


def test_html_embeds_a_png_plot() -> None:
    blocked, both, _ = decisions()
    page = render_html([blocked, both], HISTORY)
    assert page.startswith("<!doctype html>") and "<table>" in page
    found = re.search(r'src="data:image/png;base64,([^"]+)"', page)
    assert found is not None
    assert base64.b64decode(found.group(1)).startswith(b"\x89PNG")
    assert "<img" not in render_html(blocked)  # no history, no plot
    png = plot_history(HISTORY)
    assert png is not None and png.startswith(b"\x89PNG")
    assert plot_history([]) is None


def test_html_escapes() -> None:
    rng = np.random.default_rng(1)
    y, a, b = paired_labels(rng, 500, 0.9, 0.9, 0.06)
    d = compare(y, a, b, Policy(margin=0.01, name="<script>"))
    page = render_html(d)
    assert "<script>" not in page and "&lt;script&gt;" in page


def test_report_refuses_other_objects() -> None:
    with pytest.raises(InvalidInput, match="cannot report"):
        render_markdown(["not a decision"])  # type: ignore[list-item]
