"""JSON endpoints of the store: who am I, namespace stats, compaction status, fsck."""

from __future__ import annotations

import collections
import io
import struct
from typing import Any

from lakeloop.gateway._api import BYTES, ApiContext, ApiError, Stream, endpoint

__all__: list[str] = []

_OBJ = {"type": "object"}
_USAGE = {
    "type": "object",
    "required": ["name", "role", "usage"],
    "properties": {
        "name": {"type": "string"},
        "role": {"type": "string"},
        "usage": {"type": "object", "additionalProperties": {"type": "integer"}},
    },
}


@endpoint("GET", "/health", summary="Liveness check", response=_OBJ, public=True)
def health(ctx: ApiContext) -> dict[str, Any]:
    return {"ok": True}


@endpoint(
    "GET",
    "/whoami",
    summary="The calling principal and its grants",
    response={
        "type": "object",
        "required": ["name", "grants"],
        "properties": {"name": {"type": "string"}, "grants": {"type": "object"}},
    },
)
def whoami(ctx: ApiContext) -> dict[str, Any]:
    return {"name": ctx.principal.name, "grants": dict(ctx.principal.grants)}


@endpoint(
    "GET",
    "/namespaces",
    summary="Namespaces the caller holds a grant on",
    response={
        "type": "object",
        "required": ["namespaces"],
        "properties": {
            "namespaces": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"name": {"type": "string"}, "role": {"type": "string"}},
                },
            }
        },
    },
)
def namespaces(ctx: ApiContext) -> dict[str, Any]:
    out = []
    for name in ctx.lake.namespaces():
        role = ctx.principal.role(name)
        if role:
            out.append({"name": name, "role": role})
    return {"namespaces": out}


@endpoint(
    "GET",
    "/namespaces/{namespace}",
    summary="Objects, bytes, volumes and garbage of one namespace",
    role="read",
    response=_USAGE,
)
def namespace_stats(ctx: ApiContext, namespace: str) -> dict[str, Any]:
    ns = ctx.lake.namespace(namespace)
    return {"name": namespace, "role": ctx.principal.role(namespace), "usage": ns.usage()}


@endpoint(
    "GET",
    "/namespaces/{namespace}/compaction",
    summary="Volumes of a namespace with their garbage ratio and compression",
    role="read",
    response={
        "type": "object",
        "required": ["volumes"],
        "properties": {"volumes": {"type": "array", "items": _OBJ}},
    },
)
def compaction_status(ctx: ApiContext, namespace: str) -> dict[str, Any]:
    ns = ctx.lake.namespace(namespace)
    return {
        "volumes": [
            {
                "id": v.id,
                "state": v.state,
                "size": v.size,
                "live_bytes": v.live_bytes,
                "live_count": v.live_count,
                "compressed": v.compressed,
                "garbage_ratio": round(v.garbage_ratio, 4),
            }
            for v in ns.volumes()
        ]
    }


@endpoint(
    "POST",
    "/namespaces/{namespace}/compaction",
    summary="Compact a namespace now (admin)",
    role="admin",
    response=_OBJ,
)
def compact(ctx: ApiContext, namespace: str) -> dict[str, Any]:
    report = ctx.lake.namespace(namespace).compact()
    result: dict[str, Any] = report.as_dict()
    return result


@endpoint(
    "POST",
    "/namespaces/{namespace}/fsck",
    summary="Check every record, index row and blob of a namespace (admin; no repair)",
    role="admin",
    query={"deep": {"type": "boolean"}},
    response={"type": "object", "required": ["ok"], "properties": {"ok": {"type": "boolean"}}},
)
def fsck(ctx: ApiContext, namespace: str) -> dict[str, Any]:
    ctx.lake.namespace(namespace)  # NotFound before any work
    deep = ctx.query.get("deep", "true").lower() != "false"
    report = ctx.lake.fsck(namespaces=[namespace], deep=deep)
    result: dict[str, Any] = report.as_dict()
    result["ok"] = report.ok
    return result


@endpoint(
    "POST",
    "/namespaces/{namespace}/locate",
    summary="Where exact versions lie: [version, volume, offset] in physical order "
    "(readers plan and shard a snapshot by volume with it)",
    role="read",
    response={
        "type": "object",
        "required": ["located"],
        "properties": {"located": {"type": "array", "items": {"type": "array"}}},
    },
)
def locate(ctx: ApiContext, namespace: str) -> dict[str, Any]:
    body = ctx.body if isinstance(ctx.body, dict) else {}
    versions = body.get("versions")
    if not isinstance(versions, list) or not all(_is_version(v) for v in versions):
        raise ApiError(400, "InvalidInput", 'the body is {"versions": [int, ...]} (64-bit)')
    found = ctx.lake.namespace(namespace).locate(versions)
    return {"located": [list(t) for t in found]}


def _is_version(v: object) -> bool:
    """An int the index can hold (64-bit signed): a larger one would fail in SQLite."""
    return isinstance(v, int) and not isinstance(v, bool) and -(1 << 63) <= v < 1 << 63


# what one batch read may ask for: the client groups a snapshot's entries to fit (the
# bytes are capped by the setting gateway_read_batch_max_bytes)
READ_MAX_ITEMS = 4096


@endpoint(
    "POST",
    "/namespaces/{namespace}/read",
    summary="The bytes of exact versions in one answer: a big-endian u32 count, one u64 "
    "length per item, then the items' bytes in the order asked",
    role="read",
    response=BYTES,
)
def read_versions(ctx: ApiContext, namespace: str) -> Stream:
    """A snapshot reader's batch: ``{"items": [[key, version], ...]}`` (at most 4096
    items and ``gateway_read_batch_max_bytes``), read in the order given (the client
    orders them physically, so the disk sees a forward sweep); one round trip instead of
    one per example.

    What memory is bounded by: each item is opened and its size counted before it is
    kept, and the batch is refused (413) at the item that would take it over the limit.
    Opening a blob reads none of it; opening an object stored in a volume (at most
    ``blob_threshold``) reads it whole, as the store's read does. So one batch holds at
    most the limit plus one such object (the one refused). The answer is sent from the
    items as read, in 1 MiB pieces, never copied into one buffer. Sizing from the index
    first would keep even that one object out, but costs a second index lookup per item
    (about 8 ms per 1,024 items)."""
    body = ctx.body if isinstance(ctx.body, dict) else {}
    items = body.get("items")
    if (
        not isinstance(items, list)
        or len(items) > READ_MAX_ITEMS
        or not all(
            isinstance(i, list) and len(i) == 2 and isinstance(i[0], str) and _is_version(i[1])
            for i in items
        )
    ):
        raise ApiError(
            400,
            "InvalidInput",
            f'the body is {{"items": [[key, version], ...]}} (<= {READ_MAX_ITEMS} items, '
            "64-bit versions)",
        )
    ns = ctx.lake.namespace(namespace)
    limit = int(ctx.lake.settings["gateway_read_batch_max_bytes"])
    parts: list[bytes] = []
    total = 0
    for key, version in items:
        with ns.open(key, version=version) as f:
            total += f.seek(0, io.SEEK_END)
            if total > limit:
                raise ApiError(
                    413,
                    "TooLarge",
                    f"the items hold over {limit:,} bytes, the most one batch read returns",
                )
            f.seek(0)
            # an object from a volume is already in memory: take it, do not copy it
            parts.append(f.getvalue() if isinstance(f, io.BytesIO) else f.read())
    head = struct.pack(f">I{len(parts)}Q", len(parts), *(len(p) for p in parts))
    size = len(head) + sum(len(p) for p in parts)
    return Stream(io.BufferedReader(_Concat([head, *parts]), 1 << 20), size)


class _Concat(io.RawIOBase):
    """Byte strings read as one file, each let go once read: a batch answer goes out
    without first being joined into a second copy of itself."""

    def __init__(self, parts: list[bytes]) -> None:
        super().__init__()
        self._parts = collections.deque(parts)
        self._at = 0  # how far into the first part

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        n = 0
        while n < len(view) and self._parts:
            part = self._parts[0]
            take = min(len(view) - n, len(part) - self._at)
            view[n : n + take] = memoryview(part)[self._at : self._at + take]
            n += take
            self._at += take
            if self._at == len(part):
                self._parts.popleft()
                self._at = 0
        return n
