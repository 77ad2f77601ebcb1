"""JSON endpoints of the model registry, training runs and the reserved namespaces they
live in, so that a remote lake (``Lake.open("http://...")``) trains, registers and gates
like a local one.

Reads go through one generic endpoint per reserved area (``registry``, ``runs``,
``catalog``): the client's ``Registry``, ``Runs`` and ``Snapshot`` run their ordinary
code over it. Every change that needs the registry's lock (a new version, an alias move,
a decision) runs here, in the server's process, through the same :class:`Registry`
methods a local caller uses: the lock is the server's, so clients on many machines
never hand out one version number twice or lose an alias move.

Grants: ``@models`` guards the registry (read: look and load; write: register, move
aliases, record decisions, promote on a decision; admin: forced champion overrides),
``@runs`` guards runs (read / write). A snapshot manifest is readable by whoever may
read the dataset's namespace.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from lakeloop.catalog._snapshot import Datasets
from lakeloop.gateway._api import BYTES, ApiContext, ApiError, Stream, endpoint
from lakeloop.gateway._credentials import MODELS, RUNS

__all__: list[str] = []

_OBJ: dict[str, Any] = {"type": "object"}
# URL area -> (reserved namespace, grant target or None for the catalog's own check)
_AREAS = {"registry": ("_registry", MODELS), "runs": ("_runs", RUNS), "catalog": ("_catalog", None)}
_MANIFEST = re.compile(r"snapshots/([0-9a-f]{64})\.jsonl")
_DATASET = re.compile(r"datasets/([A-Za-z0-9][A-Za-z0-9._-]{0,127})\.json")
# run ids and model names (the registry's rule for names)
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_RUN_FILE = re.compile(r"(?:model[A-Za-z0-9._-]*|tb/[A-Za-z0-9._/-]{1,512})")
_HEADER_LIMIT = 1 << 20  # the JSON line in front of an uploaded model artifact
_LIST_PAGE = 1000


def need(ctx: ApiContext, target: str, role: str) -> None:
    """403 unless the caller holds *role* on the grant target (``@models``, ``@runs``)."""
    ctx.require_grant(target, role)


def _catalog_key(ctx: ApiContext, key: str) -> None:
    """A catalog object is readable by whoever may read its dataset's namespace."""
    from lakeloop.gateway._api_catalog import _catalog, dataset_namespace

    datasets = _catalog(ctx).datasets
    assert isinstance(datasets, Datasets)  # the gateway's own lake is local
    m = _DATASET.fullmatch(key)
    if m:
        dataset_namespace(ctx, m.group(1), "read")  # missing or not granted: one answer
        return
    m = _MANIFEST.fullmatch(key)
    if not m:
        raise ApiError(403, "AccessDenied", "only manifests and dataset records are served")
    for name in datasets.names():
        record = datasets._record(name)
        if (
            record
            and any(s["id"] == m.group(1) for s in record["snapshots"])
            and ctx.principal.can(record["definition"]["namespace"], "read")
        ):
            return
    raise ApiError(404, "NotFound", "no snapshot with that id among the caller's datasets")


def _area(ctx: ApiContext, area: str, role: str, key: str | None) -> str:
    """Check the caller may *role* the *area* (and *key* in it) -> the reserved namespace."""
    if area not in _AREAS:
        raise ApiError(404, "NotFound", f"no area {area!r} (registry, runs, catalog)")
    name, target = _AREAS[area]
    if target is None:
        if role != "read" or key is None:
            raise ApiError(403, "AccessDenied", "the catalog changes only through its endpoints")
        _catalog_key(ctx, key)
    else:
        need(ctx, target, role)
    return name


def _key(ctx: ApiContext) -> str:
    key = ctx.query.get("key", "")
    if not key:
        raise ApiError(400, "InvalidInput", "key is required")
    return key


@endpoint(
    "GET",
    "/internal/{area}/object",
    summary="One object of a reserved area (registry, runs, catalog manifests) as bytes",
    response=BYTES,
    query={"key": {"type": "string"}, "version": {"type": "integer"}},
)
def internal_object(ctx: ApiContext, area: str) -> Stream:
    """Streamed, never read whole into memory: a model artifact may be gigabytes."""
    from lakeloop.gateway._s3 import _open_current

    key = _key(ctx)
    name = _area(ctx, area, "read", key)
    if not ctx.lake.has_namespace(name):
        raise ApiError(404, "NotFound", "no such object")
    file, info = _open_current(ctx.lake.internal_namespace(name), key)
    return Stream(file, info.size)


@endpoint(
    "GET",
    "/internal/{area}/list",
    summary="Objects of a reserved area under a prefix, in key order, a page at a time",
    response={
        "type": "object",
        "required": ["objects", "truncated"],
        "properties": {
            "objects": {"type": "array", "items": _OBJ},
            "truncated": {"type": "boolean"},
        },
    },
    query={"prefix": {"type": "string"}, "start_after": {"type": "string"}},
)
def internal_list(ctx: ApiContext, area: str) -> dict[str, Any]:
    name = _area(ctx, area, "read", None)
    if not ctx.lake.has_namespace(name):
        return {"objects": [], "truncated": False}
    found = list(
        ctx.lake.internal_namespace(name).list(
            prefix=ctx.query.get("prefix", ""),
            start_after=ctx.query.get("start_after") or None,
            limit=_LIST_PAGE + 1,
        )
    )
    page = found[:_LIST_PAGE]
    return {
        "objects": [
            {"key": i.key, "size": i.size, "etag": i.etag, "version": i.version, "mtime": i.mtime}
            for i in page
        ],
        "truncated": len(found) > _LIST_PAGE,
    }


# ---------------------------------------------------------------------------------- runs
def _run_id(run: str) -> str:
    if not _NAME.fullmatch(run):
        raise ApiError(400, "InvalidInput", f"bad run id {run!r}")
    return run


def _run_file_path(ctx: ApiContext) -> str:
    path = ctx.query.get("path", "")
    if not _RUN_FILE.fullmatch(path) or ".." in path.split("/"):
        raise ApiError(400, "InvalidInput", "path is model<suffix> or tb/<file>")
    return path


def _check_run_file(ctx: ApiContext, run: str) -> None:
    _run_id(run)
    _run_file_path(ctx)


@endpoint(
    "PUT",
    "/runs/{run}",
    summary="Create or update a run's record (run.json): start, finish, fail, mark",
    response=_OBJ,
)
def put_run(ctx: ApiContext, run: str) -> dict[str, Any]:
    from lakeloop.train.runs import STATUSES, RunRecord

    need(ctx, RUNS, "write")
    _run_id(run)
    doc = ctx.body
    if not isinstance(doc, dict) or doc.get("id") != run or doc.get("status") not in STATUSES:
        raise ApiError(400, "InvalidInput", "the body is a run record with this id and a status")
    rec = RunRecord.from_dict(doc)
    ctx.lake.internal_namespace("_runs").put(
        f"runs/{run}/run.json",
        json.dumps(rec.to_dict(), indent=1, sort_keys=True).encode(),
        content_type="application/json",
    )
    return {"id": run, "status": rec.status}


@endpoint(
    "PUT",
    "/runs/{run}/files",
    summary="Upload one file of a run: its model artifact or a TensorBoard event file",
    response=_OBJ,
    query={"path": {"type": "string"}},
    upload=True,
    grant=(RUNS, "write"),
    check=_check_run_file,
)
def put_run_file(ctx: ApiContext, run: str) -> dict[str, Any]:
    need(ctx, RUNS, "write")
    _run_id(run)
    path = _run_file_path(ctx)
    info = ctx.lake.internal_namespace("_runs").put_stream(f"runs/{run}/{path}", ctx.body)
    return {"key": info.key, "size": info.size, "version": info.version}


# -------------------------------------------------------------------------------- models
def _registry(ctx: ApiContext) -> Any:
    from lakeloop.registry import Registry

    return Registry(ctx.lake)


def _check_model(ctx: ApiContext, model: str) -> None:
    """The registry's rule for model names, checked before an artifact is read."""
    if not _NAME.fullmatch(model):
        raise ApiError(400, "InvalidInput", f"bad model name {model!r}")


def _who(ctx: ApiContext, body: dict[str, Any]) -> str:
    """The principal that signed, and the client's own account of itself (user@host)."""
    actor = body.get("actor")
    name = ctx.principal.name
    return f"{name} ({actor})" if isinstance(actor, str) and actor else name


def _body(ctx: ApiContext) -> dict[str, Any]:
    if not isinstance(ctx.body, dict):
        raise ApiError(400, "InvalidInput", "the body must be a JSON object")
    return ctx.body


def _text(body: dict[str, Any], name: str, default: str = "") -> str:
    value = body.get(name, default)
    if not isinstance(value, str):
        raise ApiError(400, "InvalidInput", f"{name} must be a string")
    return value


@endpoint(
    "POST",
    "/models/{model}/versions",
    summary="Register the next version: the body is one JSON line (flavor, lineage, actor) "
    "followed by the artifact's bytes",
    response=_OBJ,
    upload=True,
    grant=(MODELS, "write"),
    check=_check_model,
)
def register_version(ctx: ApiContext, model: str) -> dict[str, Any]:
    need(ctx, MODELS, "write")
    head = ctx.body.readline(_HEADER_LIMIT + 1)
    try:
        meta = json.loads(head)
        assert isinstance(meta, dict) and head.endswith(b"\n")
    except (ValueError, AssertionError):
        raise ApiError(400, "InvalidInput", "the body starts with one JSON object line") from None
    flavor = _text(meta, "flavor")
    lineage = meta.get("lineage") or {}
    if not isinstance(lineage, dict):
        raise ApiError(400, "InvalidInput", "lineage must be an object")
    from lakeloop.registry import FLAVORS

    if flavor not in FLAVORS:
        raise ApiError(400, "InvalidInput", f"unknown flavor {flavor!r}")
    with tempfile.TemporaryDirectory(prefix="lakeloop-register-") as tmp:
        path = Path(tmp) / f"model{FLAVORS[flavor].suffix}"
        with open(path, "wb") as f:
            shutil.copyfileobj(ctx.body, f, 1 << 20)
        record = _registry(ctx).register(
            model, artifact=path, flavor=flavor, lineage=lineage, actor=_who(ctx, meta)
        )
    result: dict[str, Any] = record.to_dict()
    return result


@endpoint(
    "POST",
    "/models/{model}/aliases",
    summary="Point an alias at a version (champion: only forced, with a reason, admin)",
    response=_OBJ,
)
def move_alias(ctx: ApiContext, model: str) -> dict[str, Any]:
    from lakeloop.registry import CHAMPION

    body = _body(ctx)
    alias, force = _text(body, "alias"), body.get("force") is True
    need(ctx, MODELS, "admin" if alias == CHAMPION and force else "write")
    move = _registry(ctx).alias(
        f"{model}@{_text(body, 'version', 'latest')}",
        alias,
        reason=_text(body, "reason"),
        force=force,
        actor=_who(ctx, body),
    )
    result: dict[str, Any] = move.to_dict()
    return result


@endpoint(
    "DELETE",
    "/models/{model}/aliases/{alias}",
    summary="Take an alias off a model (champion: only forced, with a reason, admin)",
    response=_OBJ,
)
def remove_alias(ctx: ApiContext, model: str, alias: str) -> dict[str, Any]:
    from lakeloop.registry import CHAMPION

    body = ctx.body if isinstance(ctx.body, dict) else {}
    force = body.get("force") is True
    need(ctx, MODELS, "admin" if alias == CHAMPION else "write")
    move = _registry(ctx).remove_alias(
        model, alias, reason=_text(body, "reason"), force=force, actor=_who(ctx, body)
    )
    result: dict[str, Any] = move.to_dict()
    return result


@endpoint(
    "POST",
    "/models/{model}/promote",
    summary="Move champion (or another alias) on a promoting decision recorded in the lake, "
    "only while champion still points at the version that decision compared with",
    response=_OBJ,
)
def promote(ctx: ApiContext, model: str) -> dict[str, Any]:
    """The client's decision is not trusted: see :func:`_recorded_decision`. The move is
    made with the lake's own record, as a compare-and-set under this server's lock."""
    need(ctx, MODELS, "write")
    body = _body(ctx)
    reg = _registry(ctx)
    candidate = reg.get(f"{model}@{_text(body, 'version', 'latest')}")
    stored, compared = _recorded_decision(reg, model, candidate.ref, body)
    move = reg.promote(
        candidate.ref,
        decision=stored,
        champion=compared,
        reason=_text(body, "reason"),
        alias=_text(body, "alias", "champion"),
        actor=_who(ctx, body),
    )
    result: dict[str, Any] = move.to_dict()
    return result


def _recorded_decision(
    reg: Any, model: str, candidate: str, body: dict[str, Any]
) -> tuple[dict[str, Any], int | None]:
    """The lake's record of the decision the client sent -> (record, the champion version
    it was compared with). It must be a record stored by ``record_decision``, sent back
    unchanged, saying promote (checked by the registry) about *candidate*, made with
    promotion on, and naming its champion; the evidence in it is not recomputed."""
    from lakeloop.errors import Refused
    from lakeloop.registry._registry import _compared_with

    def refuse(message: str, hint: str | None = None) -> Refused:
        return Refused(message, op="promote", target=candidate, hint=hint)

    sent = body.get("decision")
    decision_id = sent.get("id") if isinstance(sent, dict) else None
    if isinstance(decision_id, bool) or not isinstance(decision_id, int):
        raise refuse(
            "over a gateway, promote needs a decision recorded in the lake (with its id)",
            "store it with Registry.record_decision first and promote with the record it returns",
        )
    stored: dict[str, Any] = reg.decision(model, decision_id)
    if json.loads(json.dumps(sent)) != stored:
        raise refuse(f"the decision differs from decision {decision_id} recorded in the lake")
    if stored.get("candidate") != candidate:
        about = stored.get("candidate")
        raise refuse(f"decision {decision_id} is about {about!r}, not {candidate}")
    if stored.get("promoted") is False:
        raise refuse(
            f"decision {decision_id} was made with promotion turned off",
            "run the gate with promotion on (`lakeloop ci` without --no-promote)",
        )
    if "champion" not in stored:
        raise refuse(f"decision {decision_id} does not name the champion it was compared with")
    compared = _compared_with(model, stored, stored["champion"])
    if "champion" in body and _compared_with(model, stored, body["champion"]) != compared:
        raise refuse(
            f"decision {decision_id} compared with {stored['champion']!r}, not {body['champion']!r}"
        )
    return stored, compared


@endpoint(
    "POST",
    "/models/{model}/decisions",
    summary="Record one gate decision about a model with its evidence",
    response=_OBJ,
)
def record_decision(ctx: ApiContext, model: str) -> dict[str, Any]:
    need(ctx, MODELS, "write")
    result: dict[str, Any] = _registry(ctx).record_decision(model, _body(ctx))
    return result
