#!/usr/bin/env python3
"""Catalog benchmark: search latency by query kind, indexing cost, preview of a big Parquet.

Sections, all in one run on the same lake:

  search      p50 / p95 latency (first page of 50 plus the capped total) of each query kind
              over N objects (1 M by default, 10 M with --large, 100 k with --quick), beside
              a brute-force scan of the store's listing with the same filter, and beside a
              prefix-only listing (what object-store consoles offer)
  indexing    catalog build time for the N objects (objects indexed per second), and
              store put throughput with and without a catalog indexer following the change
              feed in another process at the same time (the overhead on puts)
  preview     latency of previewing a Parquet file of 1 GB (100 MB with --quick), and how
              many bytes the preview read

    python bench/catalog.py --quick
    python bench/catalog.py                 # 1 M objects
    python bench/catalog.py --large         # 10 M objects (long; needs ~15 GB of disk)
    python bench/catalog.py --out bench/out/catalog.md
"""

from __future__ import annotations

import argparse
import datetime as dt
import multiprocessing as mp
import os
import platform
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lakeloop import Lake
from lakeloop.catalog import Catalog

LABELS = ["cat", "dog", "bird", "fish", "horse", "sheep", "cow", "frog", "deer", "fox"]
CAMERAS = ["nikon", "canon", "sony", "fuji", "leica"]
WORDS = [
    "sunny",
    "beach",
    "forest",
    "night",
    "snow",
    "river",
    "city",
    "mountain",
    "street",
    "portrait",
    "garden",
    "lake",
    "bridge",
    "harbor",
    "market",
    "desert",
    "field",
    "storm",
    "sunset",
    "morning",
]
EXT = {"png": "image/png", "jpg": "image/jpeg", "csv": "text/csv", "json": "application/json"}
T0 = 1_700_000_000.0


def objects(n: int, seed: int = 7) -> Iterator[tuple[str, bytes, str, dict[str, str]]]:
    rng = random.Random(seed)
    exts = list(EXT)
    for i in range(n):
        label = LABELS[i % len(LABELS)]
        ext = exts[(i // 10) % len(exts)]
        dept = f"dept{i % 8}"
        key = f"{dept}/{label}/{2020 + i % 5}/{i:09d}.{ext}"
        meta = {
            "label": label,
            "camera": CAMERAS[rng.randrange(len(CAMERAS))],
            "caption": " ".join(rng.sample(WORDS, 3)),
        }
        if i % 100 == 0:
            meta["tags"] = "reviewed"
        size = 64 + rng.randrange(2000)
        yield key, b"x" * size, EXT[ext], meta


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, round(q * (len(values) - 1)))]


def load(lake: Lake, n: int) -> float:
    ns = lake.create_namespace("photos", exist_ok=True)
    t = time.perf_counter()
    batch: list[Any] = []
    for key, data, ctype, meta in objects(n):
        batch.append((key, data, {"content_type": ctype, "metadata": meta}))
        if len(batch) == 20_000:
            ns.put_many(batch)  # (key, data, {content_type, metadata}) items
            batch = []
    if batch:
        ns.put_many(batch)
    return time.perf_counter() - t


SCANNED = ("prefix", "key substring (1 match)", "full text (2 words)", "combined")


def query_kinds(n: int) -> list[tuple[str, dict[str, Any]]]:
    """(name, catalog query); ``brute`` answers the same queries by scanning."""
    probe = f"{n // 2:09d}"
    return [
        ("prefix", {"prefix": "dept2/cat/2020/"}),
        ("key substring (1 match)", {"key": probe}),
        ("key substring (10 %)", {"key": "horse"}),
        ("glob", {"glob": "dept1/*/2022/*7.jpg"}),
        ("content type", {"content_type": "application/json"}),
        ("size range", {"min_size": 1000, "max_size": 1010}),
        ("time range (newest 1 %)", {"after": "__recent__"}),
        ("metadata", {"metadata": {"camera": "leica"}}),
        ("tag (1 %)", {"tags": ["reviewed"]}),
        ("full text (2 words)", {"text": "sunset harbor"}),
        ("combined", {"text": "storm", "content_type": "image/*", "min_size": 1500}),
    ]


def brute(ns: Any, q: dict[str, Any]) -> int:
    """The same query by scanning every object's index entry (no catalog)."""
    import fnmatch

    count = 0
    for info in ns.list():
        m = info.metadata
        if "prefix" in q and not info.key.startswith(q["prefix"]):
            continue
        if "key" in q and q["key"].lower() not in info.key.lower():
            continue
        if "glob" in q and not fnmatch.fnmatchcase(info.key, q["glob"]):
            continue
        if "content_type" in q:
            ct = q["content_type"]
            if ct.endswith("/*"):
                if not (info.content_type or "").startswith(ct[:-1]):
                    continue
            elif info.content_type != ct:
                continue
        if not q.get("min_size", 0) <= info.size <= q.get("max_size", info.size):
            continue
        if "after" in q and info.mtime < q["after"]:
            continue
        if "metadata" in q and any(m.get(k) != v for k, v in q["metadata"].items()):
            continue
        if "tags" in q and "reviewed" not in m.get("tags", ""):
            continue
        if "text" in q:
            text = (info.key + " " + " ".join(m.values())).lower()
            if not all(w in text for w in q["text"].lower().split()):
                continue
        count += 1
    return count


def _indexer(root: str, stop: Any, out: Any) -> None:
    with Lake.open(root, background=False) as lake:
        cat = Catalog(lake)
        n = 0
        while not stop.is_set():
            n += cat.refresh(["photos"])
            time.sleep(0.25)
        n += cat.refresh(["photos"])
        out.put(n)


def put_rate(lake: Lake, root: Path, n: int, with_indexer: bool, start: int) -> float:
    """Durable single puts from 16 threads (the store's group-commit path), objects/s."""
    import threading

    ns = lake.namespace("photos")
    ctx = mp.get_context("spawn")
    stop, out = ctx.Event(), ctx.Queue()
    proc = None
    if with_indexer:
        proc = ctx.Process(target=_indexer, args=(str(root), stop, out))
        proc.start()
        time.sleep(2.0)  # let it open and catch up
    items = [
        (f"extra/{start + i:09d}.png", b"y" * 1024, {"label": "cat", "caption": "fresh put"})
        for i in range(n)
    ]
    chunks = [items[t::16] for t in range(16)]

    def work(chunk: list[Any]) -> None:
        for key, data, meta in chunk:
            ns.put(key, data, content_type="image/png", metadata=meta)

    t = time.perf_counter()
    threads = [threading.Thread(target=work, args=(c,)) for c in chunks]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    elapsed = time.perf_counter() - t
    if proc is not None:
        stop.set()
        out.get(timeout=600)
        proc.join()
    return n / elapsed


def big_parquet(path: Path, target_bytes: int) -> int:
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    rows_per_group = 1_000_000
    writer = None
    i = 0
    while True:
        ids = pa.array(range(i * rows_per_group, (i + 1) * rows_per_group), pa.int64())
        y = pc.cast(pc.floor(pc.multiply(pc.random(rows_per_group), 1_000_000)), pa.int64())
        table = pa.table(
            {
                "id": ids,
                "x": pc.random(rows_per_group),
                "y": y,
                "label": pc.cast(pc.bit_wise_and(y, 7), pa.string()),
            }
        )
        if writer is None:
            writer = pq.ParquetWriter(path, table.schema, compression="none")
        writer.write_table(table, row_group_size=rows_per_group)
        i += 1
        if path.stat().st_size >= target_bytes:
            break
    assert writer is not None
    writer.close()
    return path.stat().st_size


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--large", action="store_true")
    ap.add_argument("--objects", type=int, help="override the object count")
    ap.add_argument("--repeats", type=int, default=15, help="timed runs per query kind")
    ap.add_argument("--dir", help="where to build the lake (default: a temp dir)")
    ap.add_argument("--out", help="also write the tables as markdown here")
    ap.add_argument("--keep", help="build the lake in this folder and keep it (reused if there)")
    ap.add_argument("--no-scan", action="store_true", help="skip the brute-force scans")
    ap.add_argument("--only", default="search,indexing,preview")
    args = ap.parse_args()
    n = args.objects or (100_000 if args.quick else 10_000_000 if args.large else 1_000_000)
    parquet_bytes = 100 * 2**20 if args.quick else 2**30
    puts = 2_000 if args.quick else 10_000
    only = set(args.only.split(","))
    keep = Path(args.keep) if args.keep else None
    base = keep or Path(tempfile.mkdtemp(prefix="lakeloop-bench-", dir=args.dir))
    reuse = keep is not None and (keep / "lake" / "catalog" / "photos.sqlite").exists()
    lines: list[str] = []

    def emit(s: str = "") -> None:
        print(s, flush=True)
        lines.append(s)

    emit(f"# Catalog benchmark ({dt.date.today()}, {n:,} objects)")
    emit(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    try:
        root = base / "lake"
        fresh = not (root / "lake.toml").exists()
        with Lake.open(
            root, create=fresh, settings={"sync": "always"} if fresh else None, background=False
        ) as lake:
            ns = lake.create_namespace("photos", exist_ok=True)
            if reuse:
                cat = Catalog(lake)
                emit(f"reusing the lake in {root}")
            elif only & {"search", "indexing"}:
                t_load = load(lake, n)
                emit(f"loaded {n:,} objects into the store in {t_load:.1f} s")
                cat = Catalog(lake)
                t = time.perf_counter()
                cat.refresh(["photos"])
                t_index = time.perf_counter() - t
                size = (root / "catalog" / "photos.sqlite").stat().st_size
                emit(
                    f"catalog built in {t_index:.1f} s ({n / t_index:,.0f} objects/s), "
                    f"{size / 2**20:.0f} MiB on disk ({size / n:.0f} B/object)"
                )
            if "search" in only:
                emit("\n## Search latency (first page of 50 + total capped at 10,000), ms\n")
                emit("| query | matches | p50 | p95 | brute-force scan | ratio scan/p50 |")
                emit("|---|---:|---:|---:|---:|---:|")
                cutoff = _recent_cutoff(ns, n)
                for name, q in query_kinds(n):
                    q = dict(q)
                    if q.get("after") == "__recent__":
                        q["after"] = cutoff
                    cat.search(**q, limit=50)  # warm the page cache once
                    times = []
                    total = 0
                    for _ in range(args.repeats):
                        t = time.perf_counter()
                        page = cat.search(**q, limit=50)
                        times.append((time.perf_counter() - t) * 1000)
                        total = page.total
                    shown = f"{total:,}+" if page.total_capped else f"{total:,}"
                    scan_ms = ""
                    ratio = ""
                    if name in SCANNED and not args.no_scan:
                        t = time.perf_counter()
                        brute(ns, q)
                        scan = (time.perf_counter() - t) * 1000
                        scan_ms = f"{scan:,.0f}"
                        ratio = f"{scan / statistics.median(times):,.0f}x"
                    emit(
                        f"| {name} | {shown} | {statistics.median(times):.1f} | "
                        f"{pct(times, 0.95):.1f} | {scan_ms} | {ratio} |"
                    )
                times = []
                for _ in range(args.repeats):
                    t = time.perf_counter()
                    list(ns.list(prefix="dept2/cat/2020/", limit=50))
                    times.append((time.perf_counter() - t) * 1000)
                emit(
                    f"| prefix-only listing (store, 50 keys) | - | {statistics.median(times):.1f} "
                    f"| {pct(times, 0.95):.1f} | | |"
                )
            if "indexing" in only:
                emit("\n## Store puts with and without a catalog indexer running\n")
                emit(
                    "16 threads of durable 1 KB puts (sync = always), "
                    "indexer = another process following the change feed every 250 ms\n"
                )
                emit("| run | puts/s (median of 3) |")
                emit("|---|---:|")
                rates: dict[bool, list[float]] = {False: [], True: []}
                k = 0
                for _ in range(3):
                    for flag in (False, True):
                        rates[flag].append(put_rate(lake, root, puts, flag, k))
                        k += puts
                off, on = statistics.median(rates[False]), statistics.median(rates[True])
                emit(f"| no indexer | {off:,.0f} |")
                emit(f"| with indexer | {on:,.0f} |")
                emit(f"\noverhead: {100 * (1 - on / off):.1f} % (goal: at most 20 %)")
        if "preview" in only:
            emit(f"\n## Preview of a {parquet_bytes / 2**20:,.0f} MiB Parquet file\n")
            pq_path = base / "big.parquet"
            size = big_parquet(pq_path, parquet_bytes)
            with Lake.open(root, create=True, background=False) as lake:
                ns = lake.create_namespace("tables", exist_ok=True)
                with open(pq_path, "rb") as f:
                    ns.put_stream("big.parquet", f)
                pq_path.unlink()
                cat = Catalog(lake)
                times = []
                read = 0
                for _ in range(5):
                    t = time.perf_counter()
                    p = cat.preview("tables/big.parquet")
                    times.append((time.perf_counter() - t) * 1000)
                    read = p.bytes_read
                    assert p.error is None, p.error
                emit("| file | p50 ms | max ms | bytes read | share of file |")
                emit("|---|---:|---:|---:|---:|")
                emit(
                    f"| {size / 2**20:,.0f} MiB, {p.data['num_row_groups']} row groups | "
                    f"{statistics.median(times):.0f} | {max(times):.0f} | {read / 2**20:.1f} MiB | "
                    f"{100 * read / size:.2f} % |"
                )
    finally:
        if keep is None:
            shutil.rmtree(base, ignore_errors=True)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text("\n".join(lines) + "\n")


def _recent_cutoff(ns: Any, n: int) -> float:
    """An mtime such that about the newest 1 % of objects are at or after it."""
    stamps = sorted((i.mtime for i in ns.list(prefix="dept0/", limit=20_000)), reverse=True)
    return stamps[max(0, len(stamps) // 100 - 1)] if stamps else time.time()


if __name__ == "__main__":
    sys.exit(main())
