"""Reading what runs, the registry, the gate, serving and the loop recorded, for the pages.

Only pages are read: run ids come from a delimited listing of ``_runs`` (one key per run,
however many files each run holds), and model names from ``_registry`` the same way.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from lakeloop.errors import LakeloopError, NotFound
from lakeloop.ui._charts import IntervalRow

if TYPE_CHECKING:
    from lakeloop.store import Lake
    from lakeloop.train.runs import RunRecord
    from lakeloop.ui._access import Viewer

__all__ = [
    "acceptance_of",
    "decision_checks",
    "epoch_series",
    "gate_values",
    "headline_metric",
    "loop_turns",
    "model_names",
    "run_page",
    "serving_stats",
    "snapshot_numbers",
    "value_rows",
    "versions_of_run",
    "visible_models",
]

RUNS_NS = "_runs"
REGISTRY_NS = "_registry"


def _folders(
    lake: Lake, namespace: str, prefix: str, after: str | None, limit: int
) -> tuple[list[str], str | None]:
    """Up to *limit* sub-folder names under *prefix* of an internal namespace, and the
    cursor of the next page (None on the last)."""
    from lakeloop.ui._listing import list_page

    if not lake.has_namespace(namespace):
        return [], None
    ns = lake.internal_namespace(namespace)
    start = f"{prefix}{after}/\U0010ffff" if after else None
    _, folders, cursor = list_page(ns, prefix, start, limit)
    names = [f[len(prefix) : -1] for f in folders]
    return names, (names[-1] if cursor is not None and names else None)


def run_page(lake: Lake, after: str | None, limit: int) -> tuple[list[RunRecord], str | None]:
    """One page of runs in id (= start time) order, and the cursor of the next page."""
    from lakeloop.train.runs import Runs

    ids, cursor = _folders(lake, RUNS_NS, "runs/", after, limit)
    runs = Runs(lake)
    out = []
    for run_id in ids:
        try:
            out.append(runs.get(run_id))
        except (NotFound, ValueError):
            continue  # a folder without run.json (a run still being written)
    return out, cursor


def epoch_series(rec: RunRecord) -> list[tuple[str, dict[str, list[tuple[float, float]]]]]:
    """Charts of a run's per-epoch metrics: a metric and its ``val_`` twin share one."""
    names: list[str] = []
    for e in rec.epochs:
        for k, v in e.items():
            if k not in ("epoch", "time") and isinstance(v, int | float) and k not in names:
                names.append(k)
    groups: dict[str, list[str]] = {}
    for n in names:
        base = n[4:] if n.startswith("val_") else n
        groups.setdefault(base, []).append(n)
    out = []
    for base, members in groups.items():
        series = {
            m: [
                (float(e["epoch"]), float(e[m]))
                for e in rec.epochs
                if isinstance(e.get(m), int | float) and math.isfinite(float(e[m]))
            ]
            for m in members
        }
        out.append((base, series))
    return out


def model_names(lake: Lake) -> list[str]:
    names, cursor = _folders(lake, REGISTRY_NS, "models/", None, 1000)
    while cursor:
        more, cursor = _folders(lake, REGISTRY_NS, "models/", cursor, 1000)
        names += more
    return names


def versions_of_run(viewer: Viewer, rec: RunRecord) -> list[Any]:
    """Model versions registered from this run (lineage ``run_id``)."""
    from lakeloop.registry import Registry

    if not rec.model:
        return []
    try:
        versions = Registry(viewer.lake).versions(rec.model)
    except LakeloopError:
        return []
    return [v for v in versions if v.lineage.run_id == rec.id and viewer.can_see_version(v)]


def headline_metric(versions: list[Any]) -> str | None:
    """The metric most versions recorded (accuracy first when present)."""
    counts: dict[str, int] = {}
    for v in versions:
        for k, x in v.lineage.metrics.items():
            if isinstance(x, int | float):
                counts[k] = counts.get(k, 0) + 1
    if not counts:
        return None
    if "accuracy" in counts:
        return "accuracy"
    return max(counts, key=lambda k: (counts[k], k))


def snapshot_numbers(viewer: Viewer, versions: list[Any]) -> dict[str, int]:
    """Snapshot id -> its number in its dataset, for the lineage links."""
    out: dict[str, int] = {}
    for dataset in {d for v in versions for d in v.lineage.snapshots}:
        try:
            for s in viewer.catalog.datasets.list(dataset):
                out[s.id] = s.number
        except LakeloopError:
            continue
    return out


def _num(x: Any) -> float | None:
    return float(x) if isinstance(x, int | float) and math.isfinite(float(x)) else None


def decision_checks(record: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every paired comparison in a stored decision, flattened for a table and a chart."""
    doc = record.get("decision")
    if not isinstance(doc, Mapping):
        return []
    items = doc.get("decisions") if doc.get("kind") == "combined" else [doc]
    out = []
    for d in items or []:
        if not isinstance(d, Mapping) or d.get("kind") != "decision":
            continue
        interval = d.get("interval") or [None, None]
        policy = d.get("policy") or {}
        out.append(
            {
                "label": str(d.get("label") or d.get("metric")),
                "metric": d.get("metric"),
                "baseline": d.get("baseline"),
                "slice": d.get("slice"),
                "outcome": d.get("outcome"),
                "delta": _num(d.get("delta")),
                "lower": _num(interval[0]),
                "upper": _num(interval[1]),
                "confidence": d.get("confidence"),
                "p_value": d.get("p_value"),
                "p_value_adjusted": d.get("p_value_adjusted"),
                "test": d.get("test"),
                "n": d.get("n"),
                "champion_value": d.get("champion_value"),
                "candidate_value": d.get("candidate_value"),
                "margin": _num(policy.get("margin")) or 0.0,
                "n_required": d.get("n_required"),
                "underpowered": d.get("underpowered"),
                "reasons": list(d.get("reasons") or []),
            }
        )
    return out


def acceptance_of(record: Mapping[str, Any]) -> dict[str, Any] | None:
    doc = record.get("decision")
    if isinstance(doc, Mapping) and doc.get("kind") == "acceptance":
        return dict(doc)
    return None


def value_rows(record: Mapping[str, Any]) -> dict[str, list[IntervalRow]]:
    """Each version's metric with its interval, per metric (the decision's ``values``)."""
    out: dict[str, list[IntervalRow]] = {}
    for v in record.get("values") or []:
        if not isinstance(v, Mapping) or _num(v.get("value")) is None:
            continue
        version = str(v.get("version"))
        outcome = ""
        if version == record.get("candidate"):
            outcome = str(record.get("outcome") or "")
        out.setdefault(str(v.get("metric")), []).append(
            IntervalRow(
                version, float(v["value"]), _num(v.get("lower")), _num(v.get("upper")), outcome
            )
        )
    return out


def _version_number(ref: str) -> int:
    tail = ref.rpartition("@")[2]
    return int(tail) if tail.isdigit() else 0


def gate_values(decisions: list[Mapping[str, Any]], refs: set[str]) -> dict[str, list[IntervalRow]]:
    """Per metric, each version's value and interval from the latest decision that
    scored it (decisions oldest first); versions in *refs* only, in version order."""
    latest: dict[str, dict[str, IntervalRow]] = {}
    for rec in decisions:
        for metric, rows in value_rows(rec).items():
            for row in rows:
                if row.label in refs:
                    latest.setdefault(metric, {})[row.label] = row
    out = {}
    for metric, by_ref in latest.items():
        ordered = sorted(by_ref.values(), key=lambda r: _version_number(r.label))
        out[metric] = [IntervalRow(r.label, r.value, r.lower, r.upper) for r in ordered]
    return out


# ---------------------------------------------------------------------- serving and the loop
def visible_models(viewer: Viewer) -> list[str]:
    """Models with at least one version this viewer may see."""
    from lakeloop.registry import Registry

    reg = Registry(viewer.lake)
    out = []
    for name in model_names(viewer.lake):
        try:
            if any(viewer.can_see_version(v) for v in reg.versions(name)):
                out.append(name)
        except LakeloopError:
            continue
    return out


def serving_stats(viewer: Viewer) -> list[dict[str, Any]]:
    """Per visible model, what serving and the feedback joiner recorded: live accuracy
    per served version (with its interval), the joiner's counters, the champion's accuracy
    at the gate. Models nothing was served for are left out."""
    from lakeloop.loop import loop_status

    out = []
    for name in visible_models(viewer):
        try:
            status = loop_status(viewer.lake, name, limit=1)
        except LakeloopError:
            continue
        if not status["live_accuracy"] and not any(status["joiner"].values()):
            continue
        rows = [
            IntervalRow(
                f"v{a['version']}" + (" (shadow)" if a.get("shadow") else ""),
                float(a["accuracy"]),
                _num(a.get("lower")),
                _num(a.get("upper")),
            )
            for a in status["live_accuracy"]
            if _num(a.get("accuracy")) is not None
        ]
        status["rows"] = rows
        out.append(status)
    return out


def loop_turns(
    viewer: Viewer, offset: int, limit: int
) -> list[tuple[str, dict[str, Any] | None, list[dict[str, Any]], int]]:
    """Per visible model: the turn in progress, a page of finished turns (newest first)
    and how many there are. Only turn keys are listed; only the page is read."""
    from lakeloop.loop import TurnLog

    if not viewer.lake.has_namespace("_loop"):
        return []
    ns = viewer.lake.internal_namespace("_loop")
    out = []
    for name in visible_models(viewer):
        keys = [i.key for i in ns.list(prefix=f"turns/{name}/")]
        journal = TurnLog(viewer.lake, name).journal()
        if not keys and journal is None:
            continue
        page = list(reversed(keys))[offset : offset + limit]
        turns = []
        for key in page:
            try:
                turns.append(json.loads(ns.get(key)))
            except (ValueError, LakeloopError):
                continue
        out.append((name, None if journal is None else journal.to_dict(), turns, len(keys)))
    return out
