"""``Catalog(lake)``: search, previews, statistics, snapshots and datasets of one lake."""

from __future__ import annotations

import base64
import heapq
import json
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lakeloop.catalog._preview import Limits, Preview, build_preview
from lakeloop.catalog._remote import RemoteDatasets
from lakeloop.catalog._search import NamespaceIndex, Query, Row
from lakeloop.catalog._snapshot import Datasets, Diff, Snapshot, parse_ref
from lakeloop.catalog._stats import TABLE_TYPES, merge_table_stats, table_format, table_stats
from lakeloop.errors import InvalidInput, NotFound

if TYPE_CHECKING:
    from lakeloop.store import Lake

_CATALOG_DIR = "catalog"


@dataclass
class SearchResult:
    """One page of search results.

    ``total`` counts matches up to ``search_count_cap`` (and for at most
    ``search_count_time`` seconds); ``total_capped`` says the real number may be larger.
    ``next_cursor`` continues the search (None on the last page). ``lag`` is the number
    of store changes not yet indexed when the search ran (0 when current; see the
    ``search_refresh_max`` setting).
    """

    items: list[dict[str, Any]]
    total: int
    total_capped: bool
    next_cursor: str | None
    lag: int = 0
    took_ms: float = 0.0
    namespaces: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "items": self.items,
            "total": self.total,
            "total_capped": self.total_capped,
            "next_cursor": self.next_cursor,
            "lag": self.lag,
            "took_ms": round(self.took_ms, 3),
            "namespaces": self.namespaces,
        }


def _row_doc(row: Row) -> dict[str, Any]:
    return {
        "namespace": row.namespace,
        "key": row.key,
        "size": row.size,
        "mtime": row.mtime,
        "content_type": row.content_type,
        "etag": row.etag,
        "version": row.version,
        "metadata": row.metadata,
    }


def _encode_cursor(sort: str, descending: bool, sortval: Any, ns: str, key: str) -> str:
    raw = json.dumps([sort, descending, sortval, ns, key], ensure_ascii=False).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str, sort: str, descending: bool) -> tuple[Any, str, str]:
    try:
        pad = "=" * (-len(cursor) % 4)
        s, d, val, ns, key = json.loads(base64.urlsafe_b64decode(cursor + pad))
        if not isinstance(ns, str) or not isinstance(key, str):
            raise ValueError
    except (ValueError, TypeError):
        raise InvalidInput(
            "not a cursor from a previous search", op="search", hint="start without --cursor"
        ) from None
    if s != sort or d != descending:
        raise InvalidInput(
            "the cursor belongs to a search with another sort order",
            op="search",
            hint="keep the same --sort when paging",
        )
    return val, ns, key


class Dataset:
    """A named series of snapshots: ``catalog.dataset("digits")``."""

    def __init__(self, datasets: Datasets | RemoteDatasets, name: str) -> None:
        self._datasets = datasets
        self.name = name

    @property
    def definition(self) -> dict[str, Any]:
        return self._datasets.definition(self.name)

    def snapshots(self) -> list[Snapshot]:
        return self._datasets.list(self.name)

    def resolve(self, selector: str = "latest") -> Snapshot:
        return self._datasets.resolve(f"{self.name}@{selector}")

    @property
    def latest(self) -> Snapshot:
        return self.resolve("latest")

    def diff(self, old: str, new: str = "latest") -> Diff:
        return self._datasets.diff(f"{self.name}@{old}", f"{self.name}@{new}")

    def drop(self, selector: str) -> Snapshot:
        return self._datasets.drop(f"{self.name}@{selector}")

    def __repr__(self) -> str:
        return f"Dataset({self.name!r})"


class Catalog:
    """Search, previews, statistics and snapshots over one lake.

    Example::

        from lakeloop import Lake
        from lakeloop.catalog import Catalog

        with Lake.open("lake") as lake:
            cat = Catalog(lake)
            page = cat.search("cat", content_type="image/*", limit=10)
            for item in page.items:
                print(item["namespace"], item["key"], item["size"])
            print(cat.preview("photos/cats/1.png").data["width"])
            snap = cat.snapshot("photos/cats/", dataset="cats", labels="{label}/{name}")
            print(snap.ref, snap.count, snap.labels)
            print(cat.stats("cats@latest")["labels"])

    Access control: ``namespaces=`` on ``search`` (and the gateway, which passes the
    namespaces the caller may read) limits what is searched; reserved namespaces
    (``_...``) are never searched.
    """

    def __init__(self, lake: Lake) -> None:
        self.lake = lake
        self._remote = getattr(lake, "remote", False)
        self._dir = Path(lake.root) / _CATALOG_DIR  # local only (indexes, the series lock)
        self._indexes: dict[str, NamespaceIndex] = {}
        self._lock = threading.Lock()
        self.datasets: Datasets | RemoteDatasets
        if self._remote:
            # datasets and snapshots over a gateway: the gateway takes and pins them
            self.datasets = RemoteDatasets(lake)
        else:
            self.datasets = Datasets(lake, self._dir / "datasets.lock")

    def _setting(self, name: str) -> Any:
        return self.lake.settings[name]

    # ------------------------------------------------------------------ indexes
    def _index(self, name: str) -> NamespaceIndex:
        if self._remote:
            raise InvalidInput(
                "search indexes live beside the lake",
                op="search",
                target=name,
                hint="over a gateway, use its /api/v1/search and /api/v1/namespaces/NS/stats",
            )
        with self._lock:
            idx = self._indexes.get(name)
            if idx is None:
                idx = NamespaceIndex(self._dir / f"{name}.sqlite", name)
                self._indexes[name] = idx
            return idx

    def _identity(self, name: str) -> str:
        """This incarnation of the namespace: its record, written once at creation."""
        try:
            return (Path(self.lake.namespace(name).root) / "namespace.toml").read_text()
        except FileNotFoundError:
            raise NotFound("no such namespace", op="search", target=name) from None

    def refresh(self, namespaces: Iterable[str] | None = None, *, limit: int | None = None) -> int:
        """Index what changed in the store since the last refresh; -> changes applied."""
        names = list(namespaces) if namespaces is not None else self.lake.namespaces()
        done = 0
        for name in names:
            ns = self.lake.namespace(name)
            done += self._index(name).refresh(ns, self._identity(name), limit)
        return done

    def _readable(self, namespaces: Iterable[str] | None) -> list[str]:
        existing = self.lake.namespaces()
        if namespaces is None:
            return existing
        wanted = sorted(set(namespaces))
        for name in wanted:
            if name.startswith("_"):
                raise InvalidInput("reserved namespaces are not searchable", target=name)
        return [n for n in wanted if n in set(existing)]

    # ------------------------------------------------------------------ search
    def search(
        self,
        text: str | None = None,
        *,
        namespaces: Iterable[str] | None = None,
        sort: str = "key",
        descending: bool = False,
        limit: int | None = None,
        cursor: str | None = None,
        **filters: Any,
    ) -> SearchResult:
        """Search every namespace (or *namespaces*) for objects matching all filters.

        *text* is full text over keys and text metadata. *filters* are the fields of
        :class:`lakeloop.catalog.Query`: ``key``, ``glob``, ``prefix``, ``content_type``,
        ``min_size``, ``max_size``, ``after``, ``before``, ``metadata``, ``tags``.
        *sort* is ``key``, ``size`` or ``mtime``; pages continue with ``cursor``.
        """
        t0 = time.perf_counter()
        unknown = set(filters) - set(Query.__dataclass_fields__)
        if unknown:
            raise InvalidInput(
                f"unknown search filter {sorted(unknown)[0]!r}",
                op="search",
                hint="filters: " + ", ".join(Query.__dataclass_fields__),
            )
        q = Query(text=text, **filters)
        q.check()
        if sort not in ("key", "size", "mtime"):
            raise InvalidInput("sort is key, size or mtime", op="search", target=str(sort))
        if limit is None:
            limit = int(self._setting("search_limit"))
        max_limit = int(self._setting("search_max_limit"))
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= max_limit:
            raise InvalidInput(
                f"limit must be 1..{max_limit}", op="search", hint="see search_max_limit"
            )
        after = _decode_cursor(cursor, sort, descending) if cursor else None
        names = self._readable(namespaces)
        cap = int(self._setting("search_count_cap"))
        refresh_max = int(self._setting("search_refresh_max"))
        budget = float(self._setting("search_count_time"))
        complete = True
        pages = []
        total = 0
        lag = 0
        for name in names:
            ns = self.lake.namespace(name)
            idx = self._index(name)
            idx.refresh(ns, self._identity(name), refresh_max)
            lag += max(0, ns.last_seq - idx.synced_seq)
            idx.new_query()
            found = idx.search(q, sort=sort, descending=descending, limit=limit + 1, cursor=after)
            pages.append(found)
            if total > cap:
                pass
            elif after is None and len(found) <= limit:
                total += len(found)  # the whole answer fits in this page: no count needed
            elif complete:
                n, complete = idx.count(q, cap, budget)
                total += n

        def order(item: tuple[Any, Row]) -> tuple[Any, str, str]:
            return (item[0], item[1].namespace, item[1].key)

        merged = list(heapq.merge(*pages, key=order, reverse=descending))
        page = merged[:limit]
        next_cursor = None
        if len(merged) > limit:
            sv, last = page[-1]
            next_cursor = _encode_cursor(sort, descending, sv, last.namespace, last.key)
        return SearchResult(
            items=[_row_doc(r) for _, r in page],
            total=min(total, cap),
            total_capped=total > cap or not complete,
            next_cursor=next_cursor,
            lag=lag,
            took_ms=(time.perf_counter() - t0) * 1000,
            namespaces=names,
        )

    # ------------------------------------------------------------------ preview
    def _limits(self) -> Limits:
        return Limits.from_settings(self._setting)

    @staticmethod
    def _split_target(target: str, op: str) -> tuple[str, str]:
        if not isinstance(target, str) or "/" not in target:
            raise InvalidInput(
                "expected NAMESPACE/KEY", op=op, target=str(target), hint="e.g. photos/cats/1.png"
            )
        name, _, key = target.partition("/")
        return name, key

    def preview(self, target: str, *, version: int | None = None) -> Preview:
        """A preview of ``namespace/key`` (see :mod:`lakeloop.catalog._preview`)."""
        name, key = self._split_target(target, "preview")
        if not key:
            raise InvalidInput("expected NAMESPACE/KEY", op="preview", target=target)
        ns = self.lake.namespace(name)
        info = ns.stat(key, version=version)
        limits = self._limits()
        timeout = float(self._setting("preview_timeout"))
        box: dict[str, Any] = {}

        def work() -> None:
            try:
                box["preview"] = build_preview(
                    name,
                    key,
                    info.size,
                    info.content_type,
                    lambda: ns.open(key, version=info.version),
                    limits,
                )
            except BaseException as exc:
                box["error"] = exc

        worker = threading.Thread(target=work, name="lakeloop-preview", daemon=True)
        worker.start()
        worker.join(timeout)
        if worker.is_alive():
            p = Preview(name, key, "binary", info.content_type or "", info.size)
            p.truncated.append("timeout")
            p.error = f"preview took longer than preview_timeout ({timeout:g} s)"
            return p
        if "error" in box:
            raise box["error"]
        result: Preview = box["preview"]
        return result

    # ------------------------------------------------------------------ stats
    def stats(self, target: str, *, columns: bool = False) -> dict[str, Any]:
        """Statistics of ``namespace[/prefix]`` or of a snapshot ``DATASET@ref``.

        Always: object count, bytes, a log2 size histogram, content types; for snapshots
        also labels and splits. ``columns=True`` adds per-column statistics of the table
        objects (CSV/TSV/JSON Lines/Parquet), each table read once per content and cached.
        """
        if "@" in target and "/" not in target.partition("@")[0]:
            snap = self.datasets.resolve(target)
            entries = snap.entries()
            hist: dict[int, int] = {}
            types: dict[str, int] = {}
            for e in entries:
                b = max(e.size, 1).bit_length() - 1
                hist[b] = hist.get(b, 0) + 1
                ct = e.content_type or "application/octet-stream"
                types[ct] = types.get(ct, 0) + 1
            out: dict[str, Any] = {
                "target": snap.ref,
                "count": snap.count,
                "bytes": snap.size,
                "size_log2": hist,
                "content_types": dict(sorted(types.items(), key=lambda kv: -kv[1])),
                "labels": snap.labels,
                "splits": snap.splits,
            }
            if columns:
                out["table"] = self._table_stats(
                    snap.namespace,
                    [(e.key, e.etag, e.content_type, e.size, e.version) for e in entries],
                )
            return out
        name, _, prefix = target.partition("/")
        ns = self.lake.namespace(name)
        idx = self._index(name)
        idx.refresh(ns, self._identity(name))
        out = {"target": target, **idx.aggregate(prefix)}
        if not out["labels"]:
            del out["labels"]
        if columns:
            out["table"] = self._table_stats(
                name,
                [
                    (r.key, r.etag or "", r.content_type, r.size, r.version)
                    for r in idx.tables(prefix, list(TABLE_TYPES))
                ],
            )
        return out

    def _table_stats(
        self, name: str, objects: list[tuple[str, str, str | None, int, int]]
    ) -> dict[str, Any]:
        ns = self.lake.namespace(name)
        idx = self._index(name)
        max_tables = int(self._setting("stats_max_tables"))
        max_bytes = int(self._setting("stats_max_table_bytes"))
        max_columns = int(self._setting("stats_max_columns"))
        parts = []
        skipped: list[dict[str, str]] = []
        computed = 0
        truncated = []
        for key, etag, ctype, size, version in objects:
            fmt = table_format(ctype, key)
            if fmt is None:
                continue
            cached = idx.cached_table_stats(etag) if etag else None
            if cached is None:
                if size > max_bytes:
                    skipped.append({"key": key, "reason": "larger than stats_max_table_bytes"})
                    continue
                if computed >= max_tables:
                    if "stats_max_tables" not in truncated:
                        truncated.append("stats_max_tables")
                    continue
                computed += 1
                try:
                    cached = table_stats(fmt, ns.get(key, version=version), max_columns)
                except Exception as exc:  # pyarrow raises many types for broken tables
                    skipped.append({"key": key, "reason": f"unreadable {fmt}: {exc}"[:300]})
                    continue
                if etag:
                    idx.cache_table_stats(etag, cached)
            parts.append(cached)
        merged = merge_table_stats(parts)
        merged["skipped"] = skipped[:100]
        merged["truncated"] = truncated
        merged["computed_now"] = computed
        return merged

    # ------------------------------------------------------------------ snapshots
    def snapshot(
        self,
        target: str,
        *,
        dataset: str,
        labels: str | None = None,
        labels_table: str | None = None,
        eval_fraction: float | None = None,
        split_seed: str | None = None,
    ) -> Snapshot:
        """Snapshot ``namespace/prefix`` as the next snapshot of *dataset*.

        ``labels="{label}/{name}"`` takes labels from the key (relative to the prefix);
        ``labels_table="ns/labels.csv"`` from a key,label table in the lake.
        ``eval_fraction`` (default 0.2) of the keys, chosen by a stable hash, form the
        ``eval`` split. Returns the latest snapshot unchanged if nothing changed.
        """
        if not isinstance(target, str) or not target:
            raise InvalidInput("expected NAMESPACE/PREFIX", op="snapshot create")
        name, _, prefix = target.partition("/")
        snap, _created = self.datasets.create(
            name,
            prefix,
            dataset,
            labels=labels,
            labels_table=labels_table,
            eval_fraction=eval_fraction,
            split_seed=split_seed,
        )
        return snap

    def dataset(self, name: str) -> Dataset:
        """The dataset *name* (``NotFound`` if it has no snapshots yet)."""
        self.datasets.definition(name)
        return Dataset(self.datasets, name)

    def dataset_names(self) -> list[str]:
        return self.datasets.names()

    def resolve(self, ref: str) -> Snapshot:
        """``NAME@latest`` / ``NAME@<n>`` / ``NAME@<hash prefix>`` -> a snapshot."""
        parse_ref(ref)
        return self.datasets.resolve(ref)

    def gc(self) -> dict[str, int]:
        """Release pins and manifests no snapshot owns (left by a crash while one was
        being made); -> {namespace: pins released}."""
        return self.datasets.gc()

    def close(self) -> None:
        with self._lock:
            for idx in self._indexes.values():
                idx.close()
            self._indexes.clear()

    def __enter__(self) -> Catalog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
