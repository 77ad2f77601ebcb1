"""``lakeloop gate``: decide on saved predictions, outside the pipeline.

Arrays are read from ``.npy`` files (or ``.csv`` / ``.txt`` with one value per line, or
one row per line for class scores). Exit 0 when the gate passes (promote or hold),
1 when it blocks (or acceptance is not shown), 2 on an error.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click


def _load(path: str) -> Any:
    import numpy as np

    from lakeloop.errors import InvalidEvaluation

    p = Path(path)
    try:
        if p.suffix == ".npy":
            return np.load(p, allow_pickle=False)
        return np.loadtxt(p, delimiter="," if p.suffix == ".csv" else None, ndmin=1)
    except ValueError as exc:
        raise InvalidEvaluation(f"cannot read an array: {exc}", op="load", target=path) from exc


def _emit(result: Any, report: str) -> None:
    from lakeloop.gate import render_html, render_json, render_markdown

    render = {"md": render_markdown, "json": render_json, "html": render_html}[report]
    click.echo(render(result), nl=False)


_REPORT = click.option(
    "--report",
    type=click.Choice(["md", "json", "html"]),
    default="md",
    show_default=True,
    help="Output format: Markdown (pull-request comments), JSON, or HTML with a plot.",
)


@click.group()
def gate() -> None:
    """Decide whether a candidate may replace the champion, from saved predictions."""


@gate.command()
@click.option("--y-true", "y_true", required=True, help="Labels or true values (file).")
@click.option("--champion", required=True, help="The champion's predictions (file).")
@click.option("--candidate", required=True, help="The candidate's predictions (file).")
@click.option("--groups", default=None, help="Query or user id of each row (file).")
@click.option("--metric", default="accuracy", show_default=True, help="e.g. auc, ndcg@10.")
@click.option("--margin", type=float, default=0.0, show_default=True)
@click.option("--confidence", type=float, default=0.95, show_default=True)
@click.option(
    "--promote",
    type=click.Choice(["non-inferior", "superior"]),
    default="non-inferior",
    show_default=True,
)
@click.option("--tolerance", type=float, default=0.0, show_default=True)
@click.option("--require-power", is_flag=True, help="Block when the set is too small.")
@_REPORT
def compare(
    y_true: str,
    champion: str,
    candidate: str,
    groups: str | None,
    metric: str,
    margin: float,
    confidence: float,
    promote: str,
    tolerance: float,
    require_power: bool,
    report: str,
) -> None:
    """Compare a candidate with the champion on the same examples (exit 1 = block)."""
    from lakeloop.gate import Policy
    from lakeloop.gate import compare as decide

    policy = Policy(
        metric=metric,
        margin=margin,
        confidence=confidence,
        promote=promote,
        tolerance=tolerance,
        require_power=require_power,
    )
    d = decide(
        _load(y_true),
        _load(champion),
        _load(candidate),
        policy,
        None if groups is None else _load(groups),
    )
    _emit(d, report)
    if not d.passed:
        sys.exit(1)


@gate.command()
@click.option("--y-true", "y_true", required=True, help="Labels (file).")
@click.option("--pred", required=True, help="The model's predictions (file).")
@click.option("--threshold", type=float, required=True, help="e.g. 0.9")
@click.option("--confidence", type=float, default=0.95, show_default=True)
@click.option(
    "--method",
    type=click.Choice(["clopper-pearson", "wilson"]),
    default="clopper-pearson",
    show_default=True,
)
@_REPORT
def accept(
    y_true: str, pred: str, threshold: float, confidence: float, method: str, report: str
) -> None:
    """Show that accuracy is at least THRESHOLD with confidence (exit 1 = not shown)."""
    from lakeloop.gate import acceptance

    a = acceptance(
        _load(y_true), _load(pred), threshold=threshold, confidence=confidence, method=method
    )
    _emit(a, report)
    if not a.passed:
        sys.exit(1)
