"""The UI's pages: each gathers one page's data for one viewer and renders a template.

Paging everywhere: object listings, search results, snapshot entries, diffs and runs show
at most ``ui.page_size`` rows and continue with a cursor or an offset.
"""

from __future__ import annotations

import base64
import json
from collections import Counter
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response

from lakeloop.errors import InvalidInput, NotFound
from lakeloop.ui import _charts as charts
from lakeloop.ui import _records as records
from lakeloop.ui._access import Hidden, Viewer
from lakeloop.ui._templates import safe

if TYPE_CHECKING:
    from lakeloop.ui._app import UI

__all__: list[str] = []

#: Content-type facets of the search page: label -> the search's content_type filter.
TYPE_FACETS = {
    "images": "image/*",
    "text": "text/*",
    "CSV": "text/csv",
    "JSON": "application/json",
    "JSON Lines": "application/x-ndjson",
    "Parquet": "application/vnd.apache.parquet",
}
#: Size buckets of the search page: name -> (min_size, max_size), inclusive.
SIZE_BUCKETS: dict[str, tuple[int | None, int | None]] = {
    "< 1 KiB": (None, 1023),
    "1–64 KiB": (1024, 64 * 1024 - 1),
    "64 KiB–1 MiB": (64 * 1024, 1024**2 - 1),
    "1–64 MiB": (1024**2, 64 * 1024**2 - 1),
    "≥ 64 MiB": (64 * 1024**2, None),
}


def _size_bucket(size: int) -> str:
    for name, (lo, hi) in SIZE_BUCKETS.items():
        if (lo is None or size >= lo) and (hi is None or size <= hi):
            return name
    return "?"


def _int_arg(request: Request, name: str, default: int = 0) -> int:
    raw = request.query_params.get(name, "")
    if raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InvalidInput(f"{name} must be an integer", op="ui", target=raw) from None
    if value < 0:
        raise InvalidInput(f"{name} must not be negative", op="ui", target=raw)
    return value


def _key_arg(request: Request) -> str:
    key = request.query_params.get("key", "")
    if not key:
        raise InvalidInput("key is required", op="ui", hint="?key=path/of/the/object")
    return key


# ---------------------------------------------------------------------- the lake
def overview(ui: UI, viewer: Viewer, request: Request) -> Response:
    rows: list[dict[str, Any]] = []
    for name in viewer.namespaces():
        ns = viewer.lake.namespace(name)
        usage = ns.usage()
        vols = ns.volumes()
        worst = max((v.garbage_ratio for v in vols), default=0.0)
        sealed = sum(1 for v in vols if v.state == "sealed")
        compressed = sum(1 for v in vols if v.compressed)
        rows.append(
            {
                "name": name,
                "role": viewer.principal.role(name),
                "usage": usage,
                "garbage_ratio": (
                    usage["garbage_bytes"] / usage["volume_bytes"] if usage["volume_bytes"] else 0.0
                ),
                "worst_volume": worst,
                "sealed": sealed,
                "compressed": compressed,
                "threshold": float(ns.setting("compaction_garbage_ratio")),
            }
        )
    totals = {
        "objects": sum(r["usage"]["objects"] for r in rows),
        "bytes": sum(r["usage"]["bytes"] for r in rows),
        "volume_bytes": sum(r["usage"]["volume_bytes"] for r in rows),
        "garbage_bytes": sum(r["usage"]["garbage_bytes"] for r in rows),
    }
    return ui.render(
        request,
        "overview.html",
        title="Lake",
        rows=rows,
        totals=totals,
        lake_root=str(viewer.lake.root) if ui.credentials is None else None,
    )


def browse(ui: UI, viewer: Viewer, request: Request) -> Response:
    from lakeloop.ui._listing import list_page

    name = str(request.path_params["namespace"])
    viewer.require(name)
    ns = viewer.lake.namespace(name)
    prefix = request.query_params.get("prefix", "")
    after = request.query_params.get("after") or None
    objects, folders, cursor = list_page(ns, prefix, after, ui.page_size)
    images = [o for o in objects if (o.content_type or "").startswith("image/")]
    others = [o for o in objects if not (o.content_type or "").startswith("image/")]
    crumbs = []
    acc = ""
    for part in prefix.split("/")[:-1] if prefix else []:
        acc += part + "/"
        crumbs.append((part, acc))
    vols = ns.volumes()
    return ui.render(
        request,
        "browse.html",
        title=f"{name}/{prefix}",
        namespace=name,
        prefix=prefix,
        crumbs=crumbs,
        folders=[(f, f[len(prefix) :]) for f in folders],
        images=images,
        others=others,
        next_after=cursor,
        first_page=after is None,
        usage=ns.usage() if not prefix and after is None else None,
        volumes=vols[: ui.page_size],
        volumes_more=max(0, len(vols) - ui.page_size),
    )


def object_page(ui: UI, viewer: Viewer, request: Request) -> Response:
    name = str(request.path_params["namespace"])
    viewer.require(name)
    key = _key_arg(request)
    ns = viewer.lake.namespace(name)
    info = ns.stat(key)
    preview = viewer.catalog.preview(f"{name}/{key}")
    parent = key.rsplit("/", 1)[0] + "/" if "/" in key else ""
    # tiny images (8x8 digits) are drawn larger, pixel for pixel (the CSS keeps them sharp)
    width = int((preview.data.get("thumbnail_size") or [0])[0])
    display_width = max(width, min(width * 16, 256))
    return ui.render(
        request,
        "object.html",
        title=key,
        namespace=name,
        key=key,
        info=info,
        parent=parent,
        p=preview,
        data=preview.data,
        display_width=display_width,
    )


def thumbnail(ui: UI, viewer: Viewer, request: Request) -> Response:
    name = str(request.path_params["namespace"])
    viewer.require(name)
    preview = viewer.catalog.preview(f"{name}/{_key_arg(request)}")
    png = preview.data.get("thumbnail_png")
    if preview.kind != "image" or not png:
        # a grid of a hundred images should show which one is broken, not a hole
        from importlib import resources

        mark = (resources.files("lakeloop.ui") / "static" / "broken.svg").read_bytes()
        reason = (preview.error or "not an image").encode("ascii", "replace").decode()[:200]
        return Response(
            mark, media_type="image/svg+xml", headers={"x-lakeloop-preview-error": reason}
        )
    return Response(
        base64.b64decode(png),
        media_type="image/png",
        headers={"cache-control": "private, max-age=300"},
    )


def raw(ui: UI, viewer: Viewer, request: Request) -> Response:
    from lakeloop.ui._app import download

    name = str(request.path_params["namespace"])
    viewer.require(name)
    return download(viewer.lake.namespace(name), _key_arg(request))


# ---------------------------------------------------------------------- search
def search(ui: UI, viewer: Viewer, request: Request) -> Response:
    qp = request.query_params
    allowed = viewer.namespaces()
    form = {k: qp.get(k, "") for k in ("q", "ns", "type", "size", "tag", "meta", "prefix", "sort")}
    form["desc"] = qp.get("desc", "")
    filters: dict[str, Any] = {}
    searched = any(form[k] for k in ("q", "ns", "type", "size", "tag", "meta", "prefix"))
    result = None
    problem = None
    facets: dict[str, Counter[str]] = {}
    if form["ns"] and form["ns"] not in allowed:
        raise Hidden("no such namespace, or no read grant on it", op="search", target=form["ns"])
    if searched:
        if form["type"]:
            filters["content_type"] = TYPE_FACETS.get(form["type"], form["type"])
        if form["size"]:
            if form["size"] not in SIZE_BUCKETS:
                raise InvalidInput("unknown size bucket", op="search", target=form["size"])
            lo, hi = SIZE_BUCKETS[form["size"]]
            filters["min_size"], filters["max_size"] = lo, hi
        if form["tag"]:
            filters["tags"] = [t.strip() for t in form["tag"].split(",") if t.strip()]
        if form["meta"]:
            name, eq, value = form["meta"].partition("=")
            if not eq or not name.strip():
                raise InvalidInput(
                    "metadata filter is name=value", op="search", target=form["meta"]
                )
            filters["metadata"] = {name.strip(): value.strip()}
        if form["prefix"]:
            filters["prefix"] = form["prefix"]
        try:
            result = viewer.catalog.search(
                form["q"] or None,
                namespaces=[form["ns"]] if form["ns"] else allowed,
                sort=form["sort"] or "key",
                descending=bool(form["desc"]),
                limit=ui.page_size,
                cursor=qp.get("cursor") or None,
                **filters,
            )
        except InvalidInput as exc:
            problem = str(exc)
        if result is not None:
            facets = {
                "namespace": Counter(i["namespace"] for i in result.items),
                "type": Counter((i["content_type"] or "?") for i in result.items),
                "size": Counter(_size_bucket(i["size"]) for i in result.items),
                "tag": Counter(
                    t.strip()
                    for i in result.items
                    for t in (i["metadata"] or {}).get("tags", "").split(",")
                    if t.strip()
                ),
            }
    return ui.render(
        request,
        "search.html",
        title="Search",
        form=form,
        namespaces=allowed,
        type_facets=TYPE_FACETS,
        size_buckets=list(SIZE_BUCKETS),
        result=result,
        facets=facets,
        problem=problem,
        size_bucket=_size_bucket,
    )


# ---------------------------------------------------------------------- datasets
def datasets(ui: UI, viewer: Viewer, request: Request) -> Response:
    rows = []
    for name in viewer.catalog.dataset_names():
        if not viewer.can_see_dataset(name):
            continue
        snaps = viewer.catalog.datasets.list(name)
        rows.append(
            {
                "name": name,
                "definition": viewer.catalog.datasets.definition(name),
                "snapshots": len(snaps),
                "latest": snaps[-1] if snaps else None,
            }
        )
    return ui.render(request, "datasets.html", title="Datasets", rows=rows)


def dataset(ui: UI, viewer: Viewer, request: Request) -> Response:
    name = str(request.path_params["dataset"])
    viewer.require_dataset(name)
    snaps = viewer.catalog.datasets.list(name)
    definition = viewer.catalog.datasets.definition(name)
    chosen = None
    entries: list[Any] = []
    total = 0
    offset = _int_arg(request, "offset")
    split = request.query_params.get("split") or None
    if snaps:
        chosen = viewer.catalog.datasets.resolve(
            f"{name}@{request.query_params.get('snap') or 'latest'}"
        )
        if split not in (None, "train", "eval"):
            raise InvalidInput("split is train or eval", op="ui", target=split)
        snap = chosen
        every = ui.memo(("entries", snap.id), snap.entries)
        all_entries = every if split is None else [e for e in every if e.split == split]
        total = len(all_entries)
        entries = all_entries[offset : offset + ui.page_size]
    labels_chart = None
    if chosen is not None and chosen.labels:
        counts = sorted(chosen.labels.items(), key=lambda kv: (-kv[1], kv[0]))[:40]
        labels_chart = safe(
            charts.bar_chart([(k, float(v)) for k, v in counts], title="examples per label")
        )
    return ui.render(
        request,
        "dataset.html",
        title=f"dataset {name}",
        name=name,
        definition=definition,
        snaps=snaps,
        chosen=chosen,
        entries=entries,
        total=total,
        offset=offset,
        split=split or "",
        page_size=ui.page_size,
        labels_chart=labels_chart,
    )


def diff(ui: UI, viewer: Viewer, request: Request) -> Response:
    name = str(request.path_params["dataset"])
    viewer.require_dataset(name)
    old = request.query_params.get("old") or "1"
    new = request.query_params.get("new") or "latest"
    datasets = viewer.catalog.datasets
    old_id = datasets.resolve(f"{name}@{old}").id
    new_id = datasets.resolve(f"{name}@{new}").id
    d = ui.memo(
        ("diff", old_id, new_id), lambda: datasets.diff(f"{name}@{old_id}", f"{name}@{new_id}")
    )
    show = request.query_params.get("show", "")
    offset = _int_arg(request, "offset")
    parts = {}
    for part in ("added", "removed", "changed"):
        keys = getattr(d, part)
        start = offset if show == part else 0
        parts[part] = {
            "total": len(keys),
            "shown": keys[start : start + ui.page_size],
            "offset": start,
        }
    return ui.render(
        request,
        "diff.html",
        title=f"diff {name}",
        name=name,
        d=d,
        old=old,
        new=new,
        parts=parts,
        page_size=ui.page_size,
        namespace=viewer.dataset_namespace(name),
        snaps=viewer.catalog.datasets.list(name),
    )


# ---------------------------------------------------------------------- runs
def runs(ui: UI, viewer: Viewer, request: Request) -> Response:
    after = request.query_params.get("after") or None
    page, cursor = records.run_page(viewer.lake, after, ui.page_size)
    shown = [r for r in page if viewer.can_see_run(r)]
    return ui.render(request, "runs.html", title="Runs", runs=shown, next_after=cursor)


def run(ui: UI, viewer: Viewer, request: Request) -> Response:
    from lakeloop.train.runs import Runs

    run_id = str(request.path_params["run_id"])
    try:
        rec = Runs(viewer.lake).get(run_id)
    except (NotFound, InvalidInput):
        raise Hidden("no such run", op="ui", target=run_id) from None
    if not viewer.can_see_run(rec):
        raise Hidden("no such run", op="ui", target=run_id)
    metric_charts = [
        safe(charts.line_chart(series, title=title)) for title, series in records.epoch_series(rec)
    ]
    versions = records.versions_of_run(viewer, rec)
    return ui.render(
        request, "run.html", title=f"run {rec.id}", r=rec, charts=metric_charts, versions=versions
    )


# ---------------------------------------------------------------------- models and the gate
def models(ui: UI, viewer: Viewer, request: Request) -> Response:
    from lakeloop.registry import Registry

    reg = Registry(viewer.lake)
    rows = []
    for name in records.model_names(viewer.lake):
        versions = [v for v in reg.versions(name) if viewer.can_see_version(v)]
        if not versions:
            continue
        decisions = [d for d in reg.decisions(name) if viewer.can_see_decision(d)]
        rows.append(
            {
                "name": name,
                "versions": len(versions),
                "latest": versions[-1],
                "aliases": _visible_aliases(reg, name, versions),
                "last_decision": decisions[-1] if decisions else None,
            }
        )
    return ui.render(request, "models.html", title="Models", rows=rows)


def _visible_aliases(reg: Any, name: str, versions: list[Any]) -> dict[str, Any]:
    """The model's aliases that point at a version the viewer may see."""
    visible = {v.version for v in versions}
    return {a: v for a, v in reg.aliases(name).items() if v in visible}


def _visible_model(viewer: Viewer, name: str) -> tuple[Any, list[Any]]:
    from lakeloop.registry import Registry

    reg = Registry(viewer.lake)
    try:
        versions = [v for v in reg.versions(name) if viewer.can_see_version(v)]
    except (InvalidInput, NotFound):
        versions = []
    if not versions:
        raise Hidden("no such model", op="ui", target=name)
    return reg, versions


def model(ui: UI, viewer: Viewer, request: Request) -> Response:
    name = str(request.path_params["model"])
    reg, versions = _visible_model(viewer, name)
    visible = {v.version for v in versions}
    history = reg.history(name)
    moves = [m for m in history if m.version in visible or m.previous in visible]
    decisions = [d for d in reg.decisions(name) if viewer.can_see_decision(d)]
    chart = None
    gated = records.gate_values(decisions, {v.ref for v in versions})
    metric = records.headline_metric(versions)
    if gated:
        metric, rows = next(iter(gated.items()))
        chart = safe(
            charts.interval_chart(rows, title=f"{metric} at the gate (latest decision per version)")
        )
    elif metric:
        rows = [
            charts.IntervalRow(f"v{v.version}", float(v.lineage.metrics[metric]))
            for v in versions
            if isinstance(v.lineage.metrics.get(metric), int | float)
        ]
        chart = safe(charts.interval_chart(rows, title=f"{metric} per version (training run)"))
    return ui.render(
        request,
        "model.html",
        title=f"model {name}",
        name=name,
        versions=list(reversed(versions)),
        aliases=_visible_aliases(reg, name, versions),
        moves=list(reversed(moves)),
        decisions=list(reversed(decisions)),
        moved_by=_moved_champion(history),
        chart=chart,
        snapshot_numbers=records.snapshot_numbers(viewer, versions),
    )


def _moved_champion(history: list[Any]) -> set[Any]:
    """Ids of the decisions that did move champion, from the alias history: a decision
    that asked to promote was refused when champion had moved since its comparison."""
    return {m.decision.get("id") for m in history if m.kind == "gate" and m.decision}


def decision(ui: UI, viewer: Viewer, request: Request) -> Response:
    name = str(request.path_params["model"])
    reg, _ = _visible_model(viewer, name)
    try:
        number = int(str(request.path_params["decision"]))
    except ValueError:
        raise Hidden("no such decision", op="ui", target=name) from None
    found = [d for d in reg.decisions(name) if d.get("id") == number]
    if not found or not viewer.can_see_decision(found[0]):
        raise Hidden("no such decision", op="ui", target=f"{name} #{number}")
    rec = found[0]
    checks = records.decision_checks(rec)
    delta_chart = None
    if checks:
        margins = sorted({c["margin"] for c in checks if c["margin"]})
        refs = [(0.0, "0 (no change)")] + [(-m, f"−margin {m:g}") for m in margins]
        delta_chart = safe(
            charts.interval_chart(
                [
                    charts.IntervalRow(c["label"], c["delta"], c["lower"], c["upper"], c["outcome"])
                    for c in checks
                    if c["delta"] is not None
                ],
                title="candidate − baseline, with its one-sided bounds",
                references=refs,
            )
        )
    value_charts = []
    for metric, rows in records.value_rows(rec).items():
        refs = []
        acc = rec.get("decision") if isinstance(rec.get("decision"), dict) else None
        if acc and acc.get("kind") == "acceptance" and acc.get("metric") == metric:
            refs = [(float(acc["threshold"]), f"threshold {acc['threshold']:g}")]
        value_charts.append(
            safe(charts.interval_chart(rows, title=f"{metric} per version", references=refs))
        )
    return ui.render(
        request,
        "decision.html",
        title=f"{name} decision {number}",
        name=name,
        rec=rec,
        moved=rec.get("id") in _moved_champion(reg.history(name)),
        checks=checks,
        acceptance=records.acceptance_of(rec),
        delta_chart=delta_chart,
        value_charts=value_charts,
        raw=json.dumps(rec, indent=1, sort_keys=True, default=str, ensure_ascii=False),
    )


# ---------------------------------------------------------------------- serving and the loop
def serving(ui: UI, viewer: Viewer, request: Request) -> Response:
    models = records.serving_stats(viewer)
    for m in models:
        refs = []
        if isinstance(m.get("champion_gate_accuracy"), int | float):
            refs = [(float(m["champion_gate_accuracy"]), "champion at the gate")]
        m["chart"] = (
            safe(
                charts.interval_chart(
                    m["rows"], title="accuracy on live traffic (95 % interval)", references=refs
                )
            )
            if m["rows"]
            else None
        )
    return ui.render(request, "serving.html", title="Serving", models=models)


def loop(ui: UI, viewer: Viewer, request: Request) -> Response:
    offset = _int_arg(request, "offset")
    models = records.loop_turns(viewer, offset, ui.page_size)
    return ui.render(
        request,
        "loop.html",
        title="Loop",
        models=models,
        offset=offset,
        page_size=ui.page_size,
    )
