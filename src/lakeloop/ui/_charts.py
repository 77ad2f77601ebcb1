"""Charts as inline SVG, drawn on the server: no JavaScript library, nothing fetched.

Two shapes cover the UI: a line chart (a run's metrics per epoch) and an interval chart
(a point with its interval per row: the gate's deltas, each version's metric). Every
label is escaped here, because keys, metric names and version names are user data.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from html import escape

__all__ = ["IntervalRow", "bar_chart", "interval_chart", "line_chart", "nice_ticks"]

PALETTE = ("#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#4b5563")


def _fmt(v: float) -> str:
    if v == 0:
        return "0"
    a = abs(v)
    if a >= 1000 or a < 0.001:
        return f"{v:.2g}"
    return f"{v:.4g}"


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About *n* round tick values covering [lo, hi]."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return [0.0]
    if hi <= lo:
        hi = lo + (abs(lo) or 1.0)
    raw = (hi - lo) / max(n, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.floor(lo / step) * step
    ticks: list[float] = []
    t = start
    while t <= hi + step * 1e-9 and len(ticks) < 50:
        ticks.append(round(t, 12))
        t += step
    return ticks


def line_chart(
    series: Mapping[str, Sequence[tuple[float, float]]],
    *,
    title: str = "",
    x_label: str = "epoch",
    width: int = 560,
    height: int = 260,
) -> str:
    """An SVG line chart of one or more series of (x, y) points."""
    points = [(x, y) for s in series.values() for x, y in s if math.isfinite(y)]
    left, right, top, bottom = 56, 16, 28, 40
    out = [
        f'<svg class="chart" role="img" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}</title>",
        f'<text x="{left}" y="18" class="chart-title">{escape(title)}</text>',
    ]
    if not points:
        out.append(f'<text x="{left}" y="{height // 2}">no values</text></svg>')
        return "".join(out)
    xs = [p[0] for p in points]
    ys = [p[1] for p in points]
    x0, x1 = min(xs), max(xs)
    if x1 == x0:
        x0, x1 = x0 - 1, x1 + 1
    yticks = nice_ticks(min(ys), max(ys))
    y0, y1 = min(yticks[0], min(ys)), max(yticks[-1], max(ys))
    if y1 == y0:
        y1 = y0 + 1
    pw, ph = width - left - right, height - top - bottom

    def sx(x: float) -> float:
        return left + (x - x0) / (x1 - x0) * pw

    def sy(y: float) -> float:
        return top + (1 - (y - y0) / (y1 - y0)) * ph

    for t in yticks:
        y = sy(t)
        out.append(
            f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>'
        )
        out.append(
            f'<text x="{left - 6}" y="{y + 4:.1f}" class="tick" text-anchor="end">{_fmt(t)}</text>'
        )
    for t in nice_ticks(x0, x1, 6):
        if x0 <= t <= x1:
            x = sx(t)
            out.append(
                f'<text x="{x:.1f}" y="{height - bottom + 16}" class="tick" '
                f'text-anchor="middle">{_fmt(t)}</text>'
            )
    out.append(
        f'<text x="{left + pw / 2:.1f}" y="{height - 6}" class="axis-label" '
        f'text-anchor="middle">{escape(x_label)}</text>'
    )
    out.append(f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" class="frame" fill="none"/>')
    legend_x = left + 8 * len(title) + 24  # the legend shares the title's row
    for i, (name, pts) in enumerate(series.items()):
        color = PALETTE[i % len(PALETTE)]
        good = [(x, y) for x, y in pts if math.isfinite(y)]
        if good:
            path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in good)
            out.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2"/>')
            for x, y in good:
                out.append(
                    f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="3" fill="{color}">'
                    f"<title>{escape(name)} @ {_fmt(x)}: {_fmt(y)}</title></circle>"
                )
        out.append(
            f'<rect x="{legend_x}" y="9" width="10" height="10" fill="{color}"/>'
            f'<text x="{legend_x + 14}" y="18" class="legend">{escape(name)}</text>'
        )
        legend_x += 24 + 7 * len(name)
    out.append("</svg>")
    return "".join(out)


@dataclass(frozen=True)
class IntervalRow:
    """One row of an interval chart: a point and its interval (either bound may be open)."""

    label: str
    value: float
    lower: float | None = None
    upper: float | None = None
    outcome: str = ""  # colours the row: promote / hold / block / passed / failed


_OUTCOME_COLOR = {
    "promote": "#16a34a",
    "passed": "#16a34a",
    "hold": "#ca8a04",
    "block": "#dc2626",
    "failed": "#dc2626",
}


def interval_chart(
    rows: Sequence[IntervalRow],
    *,
    title: str = "",
    references: Sequence[tuple[float, str]] = (),
    width: int = 640,
) -> str:
    """Rows of points with intervals on one horizontal axis, with reference lines (0,
    minus the margin...). An open bound is drawn as an arrow to the edge of the plot."""
    left, right, top, row_h = 170, 24, 30, 28
    bottom = 26 + 14 * max(len(references), 1)  # reference labels on rows of their own
    height = top + bottom + row_h * max(len(rows), 1)
    vals: list[float] = []
    for r in rows:
        vals += [v for v in (r.value, r.lower, r.upper) if v is not None and math.isfinite(v)]
    vals += [v for v, _ in references if math.isfinite(v)]
    out = [
        f'<svg class="chart" role="img" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}</title>",
        f'<text x="8" y="18" class="chart-title">{escape(title)}</text>',
    ]
    if not vals:
        out.append(f'<text x="{left}" y="{top + 16}">no values</text></svg>')
        return "".join(out)
    ticks = nice_ticks(min(vals), max(vals), 6)
    x0, x1 = min(ticks[0], min(vals)), max(ticks[-1], max(vals))
    if x1 == x0:
        x0, x1 = x0 - 1, x1 + 1
    pw = width - left - right
    bottom_y = top + row_h * len(rows)

    def sx(x: float) -> float:
        return left + (min(max(x, x0), x1) - x0) / (x1 - x0) * pw

    for t in ticks:
        x = sx(t)
        out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top}" y2="{bottom_y}" class="grid"/>')
        out.append(
            f'<text x="{x:.1f}" y="{bottom_y + 16}" class="tick" '
            f'text-anchor="middle">{_fmt(t)}</text>'
        )
    for i, (v, name) in enumerate(references):
        x = sx(v)
        out.append(
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top - 4}" y2="{bottom_y + 20 + 14 * i}" '
            f'class="ref"><title>{escape(name)}</title></line>'
            f'<text x="{x + 4:.1f}" y="{bottom_y + 30 + 14 * i}" class="ref-label">'
            f"{escape(name)}</text>"
        )
    for i, r in enumerate(rows):
        y = top + row_h * i + row_h / 2
        color = _OUTCOME_COLOR.get(r.outcome, "#2563eb")
        out.append(
            f'<text x="{left - 8}" y="{y + 4:.1f}" class="row-label" text-anchor="end">'
            f"{escape(r.label[:28])}<title>{escape(r.label)}</title></text>"
        )
        lo = r.lower if r.lower is not None and math.isfinite(r.lower) else None
        hi = r.upper if r.upper is not None and math.isfinite(r.upper) else None
        a = sx(lo) if lo is not None else left
        b = sx(hi) if hi is not None else left + pw
        if r.lower is not None or r.upper is not None:
            out.append(
                f'<line x1="{a:.1f}" x2="{b:.1f}" y1="{y:.1f}" y2="{y:.1f}" '
                f'stroke="{color}" stroke-width="3"/>'
            )
            for edge, bound in ((a, lo), (b, hi)):
                if bound is not None:
                    out.append(
                        f'<line x1="{edge:.1f}" x2="{edge:.1f}" y1="{y - 6:.1f}" y2="{y + 6:.1f}" '
                        f'stroke="{color}" stroke-width="2"/>'
                    )
        tip = f"{r.label}: {_fmt(r.value)}"
        if r.lower is not None or r.upper is not None:
            tip += (
                f" [{_fmt(lo) if lo is not None else '-∞'}, {_fmt(hi) if hi is not None else '∞'}]"
            )
        out.append(
            f'<circle cx="{sx(r.value):.1f}" cy="{y:.1f}" r="5" fill="{color}">'
            f"<title>{escape(tip)}</title></circle>"
        )
    out.append("</svg>")
    return "".join(out)


def bar_chart(items: Sequence[tuple[str, float]], *, title: str = "", width: int = 560) -> str:
    """Horizontal bars from zero, one per (label, value): counts per label or split."""
    left, right, top, row_h = 120, 60, 28, 20
    height = top + 10 + row_h * max(len(items), 1)
    out = [
        f'<svg class="chart" role="img" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}</title>",
        f'<text x="8" y="18" class="chart-title">{escape(title)}</text>',
    ]
    peak = max((v for _, v in items if math.isfinite(v)), default=0.0)
    pw = width - left - right
    for i, (label, value) in enumerate(items):
        y = top + row_h * i
        w = 0.0 if peak <= 0 or not math.isfinite(value) else value / peak * pw
        out.append(
            f'<text x="{left - 8}" y="{y + 14}" class="row-label" text-anchor="end">'
            f"{escape(label[:16])}<title>{escape(label)}</title></text>"
            f'<rect x="{left}" y="{y + 3}" width="{w:.1f}" height="{row_h - 6}" '
            f'fill="{PALETTE[0]}"/>'
            f'<text x="{left + w + 6:.1f}" y="{y + 14}" class="tick">{_fmt(value)}</text>'
        )
    out.append("</svg>")
    return "".join(out)
