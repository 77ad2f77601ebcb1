"""JSON endpoints of the catalog: search, previews, statistics, datasets and snapshots.

Search covers only the namespaces the caller may read; every dataset endpoint checks the
caller's grant on the dataset's namespace (read to look, write to snapshot or drop). A
dataset the caller may not see and one that does not exist get the same answer (see
:func:`dataset_namespace`), so names of other principals' datasets never leak.
"""

from __future__ import annotations

import threading
import weakref
from typing import Any

from lakeloop.catalog import Catalog
from lakeloop.errors import NotFound
from lakeloop.gateway._api import ApiContext, ApiError, endpoint
from lakeloop.store import Lake

__all__: list[str] = []

_OBJ: dict[str, Any] = {"type": "object"}
_catalogs: weakref.WeakKeyDictionary[Lake, Catalog] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def _catalog(ctx: ApiContext) -> Catalog:
    with _lock:
        cat = _catalogs.get(ctx.lake)
        if cat is None:
            cat = _catalogs[ctx.lake] = Catalog(ctx.lake)
        return cat


def _int(ctx: ApiContext, name: str) -> int | None:
    value = ctx.query.get(name)
    if value in (None, ""):
        return None
    try:
        number = int(value)
    except ValueError:
        raise ApiError(400, "InvalidInput", f"{name} must be an integer") from None
    if not -(1 << 63) <= number < 1 << 63:  # what SQLite stores; beyond: OverflowError
        raise ApiError(400, "InvalidInput", f"{name} must be a 64-bit integer")
    return number


def _float(ctx: ApiContext, name: str) -> float | None:
    value = ctx.query.get(name)
    if value in (None, ""):
        return None
    try:
        return float(value)
    except ValueError:
        raise ApiError(400, "InvalidInput", f"{name} must be a number") from None


def _flag(ctx: ApiContext, name: str) -> bool:
    return ctx.query.get(name, "").lower() in ("1", "true", "yes")


def _readable(ctx: ApiContext) -> list[str]:
    return [n for n in ctx.lake.namespaces() if ctx.principal.can(n, "read")]


_S = {"type": "string"}
_I = {"type": "integer"}
_N = {"type": "number"}
_B = {"type": "boolean"}


@endpoint(
    "GET",
    "/search",
    summary="Search objects in every namespace the caller may read",
    response={
        "type": "object",
        "required": ["items", "total", "total_capped", "next_cursor"],
        "properties": {
            "items": {"type": "array", "items": _OBJ},
            "total": _I,
            "total_capped": _B,
            "next_cursor": {"type": "string", "nullable": True},
        },
    },
    query={
        "q": _S,
        "ns": _S,
        "key": _S,
        "glob": _S,
        "prefix": _S,
        "type": _S,
        "min_size": _I,
        "max_size": _I,
        "after": _N,
        "before": _N,
        "meta": _S,
        "tag": _S,
        "sort": {"type": "string", "enum": ["key", "size", "mtime"]},
        "desc": _B,
        "limit": _I,
        "cursor": _S,
    },
)
def search(ctx: ApiContext) -> dict[str, Any]:
    """``meta`` is ``name=value[,name=value]``; ``tag`` and ``ns`` are comma-separated."""
    for name, value in ctx.query.items():
        if "\x00" in value:
            # SQLite's full-text query syntax ends a string at a NUL ("unterminated string")
            raise ApiError(400, "InvalidInput", f"{name} must not contain a NUL character")
    names = _readable(ctx)
    if ctx.query.get("ns"):
        wanted = {n for n in ctx.query["ns"].split(",") if n}
        names = [n for n in names if n in wanted]
    metadata = {}
    for pair in filter(None, ctx.query.get("meta", "").split(",")):
        name, eq, value = pair.partition("=")
        if not eq or not name:
            raise ApiError(400, "InvalidInput", f"meta expects name=value, got {pair!r}")
        metadata[name] = value
    result = _catalog(ctx).search(
        ctx.query.get("q") or None,
        namespaces=names,
        key=ctx.query.get("key") or None,
        glob=ctx.query.get("glob") or None,
        prefix=ctx.query.get("prefix") or None,
        content_type=ctx.query.get("type") or None,
        min_size=_int(ctx, "min_size"),
        max_size=_int(ctx, "max_size"),
        after=_float(ctx, "after"),
        before=_float(ctx, "before"),
        metadata=metadata,
        tags=[t for t in ctx.query.get("tag", "").split(",") if t],
        sort=ctx.query.get("sort") or "key",
        descending=_flag(ctx, "desc"),
        limit=_int(ctx, "limit"),
        cursor=ctx.query.get("cursor") or None,
    )
    return result.to_dict()


@endpoint(
    "GET",
    "/namespaces/{namespace}/preview",
    summary="Preview one object (image thumbnail, table schema and rows, text, hex)",
    role="read",
    response={"type": "object", "required": ["kind", "data", "truncated"]},
    query={"key": _S, "version": _I},
)
def preview(ctx: ApiContext, namespace: str) -> dict[str, Any]:
    key = ctx.query.get("key", "")
    if not key:
        raise ApiError(400, "InvalidInput", "key is required")
    p = _catalog(ctx).preview(f"{namespace}/{key}", version=_int(ctx, "version"))
    return p.to_dict()


@endpoint(
    "GET",
    "/namespaces/{namespace}/stats",
    summary="Statistics of a namespace or prefix (optionally per-column for tables)",
    role="read",
    response={"type": "object", "required": ["count", "bytes"]},
    query={"prefix": _S, "columns": _B},
)
def stats(ctx: ApiContext, namespace: str) -> dict[str, Any]:
    return _catalog(ctx).stats(
        f"{namespace}/{ctx.query.get('prefix', '')}", columns=_flag(ctx, "columns")
    )


def dataset_namespace(ctx: ApiContext, name: str, role: str) -> str:
    """The namespace of dataset *name*, if the caller holds *role* on it.

    As S3 answers a key the caller may not read: ``403 AccessDenied`` whether the dataset
    exists or not, with a message that names neither its namespace nor whether it
    exists. Only a caller holding *role* on every namespace (``*``), who could see any
    dataset, learns that one does not exist (404)."""
    denied = ApiError(403, "AccessDenied", f"no {role} grant on the namespace of dataset {name}")
    try:
        ns = str(_catalog(ctx).datasets.definition(name)["namespace"])
    except NotFound:
        if ctx.principal.can("*", role):
            raise
        raise denied from None
    if ns.startswith("_") or not ctx.principal.can(ns, role):
        raise denied
    return ns


@endpoint(
    "GET",
    "/datasets",
    summary="Datasets over namespaces the caller may read",
    response={"type": "object", "required": ["datasets"]},
)
def datasets(ctx: ApiContext) -> dict[str, Any]:
    cat = _catalog(ctx)
    out = []
    for name in cat.dataset_names():
        d = cat.datasets.definition(name)
        if not ctx.principal.can(d["namespace"], "read"):
            continue
        snaps = cat.datasets.list(name)
        out.append(
            {
                "name": name,
                "definition": d,
                "snapshots": len(snaps),
                "latest": snaps[-1].to_dict() if snaps else None,
            }
        )
    return {"datasets": out}


@endpoint(
    "GET",
    "/datasets/{dataset}",
    summary="A dataset's definition and snapshots",
    response={"type": "object", "required": ["name", "definition", "snapshots"]},
)
def dataset(ctx: ApiContext, dataset: str) -> dict[str, Any]:
    dataset_namespace(ctx, dataset, "read")
    cat = _catalog(ctx)
    return {
        "name": dataset,
        "definition": cat.datasets.definition(dataset),
        "snapshots": [s.to_dict() for s in cat.datasets.list(dataset)],
    }


@endpoint(
    "GET",
    "/datasets/{dataset}/snapshots/{selector}",
    summary="One snapshot (latest, a number, or a hash prefix) with a page of its entries",
    response={"type": "object", "required": ["id", "entries"]},
    query={"offset": _I, "limit": _I, "split": _S},
)
def snapshot(ctx: ApiContext, dataset: str, selector: str) -> dict[str, Any]:
    dataset_namespace(ctx, dataset, "read")
    snap = _catalog(ctx).resolve(f"{dataset}@{selector}")
    offset = _int(ctx, "offset") or 0
    limit = _int(ctx, "limit") or 100
    if offset < 0 or not 1 <= limit <= 10_000:
        raise ApiError(400, "InvalidInput", "offset >= 0 and 1 <= limit <= 10000")
    entries = snap.entries(ctx.query.get("split") or None)
    doc = snap.to_dict()
    doc["entries"] = [e.__dict__ for e in entries[offset : offset + limit]]
    doc["entries_total"] = len(entries)
    return doc


@endpoint(
    "GET",
    "/datasets/{dataset}/diff",
    summary="Keys added, removed and changed between two snapshots",
    response={"type": "object", "required": ["added", "removed", "changed"]},
    query={"old": _S, "new": _S},
)
def diff(ctx: ApiContext, dataset: str) -> dict[str, Any]:
    dataset_namespace(ctx, dataset, "read")
    old = ctx.query.get("old") or "1"
    new = ctx.query.get("new") or "latest"
    return _catalog(ctx).datasets.diff(f"{dataset}@{old}", f"{dataset}@{new}").to_dict()


@endpoint(
    "GET",
    "/datasets/{dataset}/stats",
    summary="Statistics of one snapshot: counts, sizes, content types, labels, splits",
    response={"type": "object", "required": ["count", "bytes"]},
    query={"ref": _S, "columns": _B},
)
def dataset_stats(ctx: ApiContext, dataset: str) -> dict[str, Any]:
    dataset_namespace(ctx, dataset, "read")
    ref = ctx.query.get("ref") or "latest"
    return _catalog(ctx).stats(f"{dataset}@{ref}", columns=_flag(ctx, "columns"))


@endpoint(
    "POST",
    "/namespaces/{namespace}/snapshots",
    summary="Snapshot a prefix of the namespace into a dataset (pins its versions)",
    role="write",
    response={"type": "object", "required": ["id", "ref", "created_now"]},
)
def create_snapshot(ctx: ApiContext, namespace: str) -> dict[str, Any]:
    body = ctx.body if isinstance(ctx.body, dict) else None
    if body is None or not isinstance(body.get("dataset"), str):
        raise ApiError(400, "InvalidInput", 'body must be JSON with "dataset" (and "prefix")')
    table = body.get("labels_table")
    if isinstance(table, str) and "/" in table:
        ctx.require(table.partition("/")[0], "read")
    eval_fraction = body.get("eval_fraction")
    if eval_fraction is not None and not isinstance(eval_fraction, int | float):
        raise ApiError(400, "InvalidInput", "eval_fraction must be a number")
    for name in ("prefix", "labels", "labels_table", "split_seed"):
        if body.get(name) is not None and not isinstance(body[name], str):
            raise ApiError(400, "InvalidInput", f"{name} must be a string")
    snap, created = _catalog(ctx).datasets.create(
        namespace,
        body.get("prefix") or "",
        body["dataset"],
        labels=body.get("labels"),
        labels_table=table,
        eval_fraction=eval_fraction,
        split_seed=body.get("split_seed"),
    )
    return {**snap.to_dict(), "created_now": created}


@endpoint(
    "DELETE",
    "/datasets/{dataset}/snapshots/{selector}",
    summary="Drop one snapshot and release its pins",
    response={"type": "object", "required": ["dropped"]},
)
def drop_snapshot(ctx: ApiContext, dataset: str, selector: str) -> dict[str, Any]:
    dataset_namespace(ctx, dataset, "write")
    snap = _catalog(ctx).datasets.drop(f"{dataset}@{selector}")
    return {"dropped": snap.to_dict()}
