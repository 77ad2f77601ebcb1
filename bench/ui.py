#!/usr/bin/env python3
"""Web UI benchmark: page latency on a small and a large lake, beside the library call
each page is built on.

A page must cost the same on a lake of 10 k objects and one of N (200 k by default): it
lists one page, never a namespace. For each page this prints the median latency of a
real ``lakeloop ui`` server (uvicorn in a subprocess, fetched over HTTP with one
keep-alive connection) on both lakes, and the median of the store or catalog call the
page is built on, measured in this process on the large lake (the same run). The ratio
page / call is what rendering, HTTP and the page's other lookups add.

    python bench/ui.py                 # 10 k and 200 k objects
    python bench/ui.py --large 1000000
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from lakeloop import Lake
from lakeloop.catalog import Catalog

ROUNDS = 25


def png(i: int) -> bytes:
    from PIL import Image

    img = Image.new("L", (8, 8), color=i % 256)
    out = io.BytesIO()
    img.save(out, format="PNG")
    return out.getvalue()


def build(root: Path, n: int) -> None:
    """``n`` objects: half in one flat folder, half spread over 100 folders; 500 PNGs;
    a CSV. The search index is built before timing starts."""
    with Lake.open(root, create=True, background=False) as lake:
        ns = lake.create_namespace("data")
        batch: list[Any] = []
        for i in range(n):
            key = f"flat/{i:09d}.json" if i % 2 else f"tree/{i % 100:03d}/{i:09d}.json"
            batch.append((key, b'{"i": %d}' % i, {"content_type": "application/json"}))
            if len(batch) == 20_000:
                ns.put_many(batch)
                batch = []
        ns.put_many(batch)
        ns.put_many(
            [(f"img/{i:04d}.png", png(i), {"content_type": "image/png"}) for i in range(500)]
        )
        ns.put("tables/t.csv", b"a,b\n" + b"".join(b"%d,%d\n" % (i, i * i) for i in range(1000)),
               content_type="text/csv")  # fmt: skip
        cat = Catalog(lake)
        while cat.refresh(["data"]):
            pass
        cat.close()


def median_ms(fn: Callable[[], Any], rounds: int = ROUNDS) -> float:
    fn()  # warm
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


PAGES = {
    "lake overview": "/",
    "browse: 100 folders": "/ns/data?prefix=tree/",
    "browse: flat folder, 1st page": "/ns/data?prefix=flat/",
    "browse: flat folder, mid page": "/ns/data?prefix=flat/&after=flat/{mid:09d}.json",
    "browse: 100 image thumbnails page": "/ns/data?prefix=img/",
    "one thumbnail": "/thumb/data?key=img/0007.png",
    "search: key words (trigram)": "/search?q=0001",
    "search: type facet + prefix": "/search?type=JSON&prefix=flat/0000",
    "search: 2nd page (cursor)": None,
    "object: table preview": "/object/data?key=tables/t.csv",
}


def baselines(root: Path, n: int) -> dict[str, Callable[[], Any]]:
    from lakeloop.ui._listing import list_page

    lake = Lake.open(root, background=False)
    ns = lake.namespace("data")
    cat = Catalog(lake)
    mid = f"flat/{(n // 2) | 1:09d}.json"
    first = cat.search("0001", limit=100)
    return {
        "lake overview": lambda: (ns.usage(), ns.volumes()),
        "browse: 100 folders": lambda: list_page(ns, "tree/", None, 100),
        "browse: flat folder, 1st page": lambda: list_page(ns, "flat/", None, 100),
        "browse: flat folder, mid page": lambda: list_page(ns, "flat/", mid, 100),
        "browse: 100 image thumbnails page": lambda: list_page(ns, "img/", None, 100),
        "one thumbnail": lambda: cat.preview("data/img/0007.png"),
        "search: key words (trigram)": lambda: cat.search("0001", limit=100),
        "search: type facet + prefix": lambda: cat.search(
            None, content_type="application/json", prefix="flat/0000", limit=100
        ),
        "search: 2nd page (cursor)": lambda: cat.search(
            "0001", limit=100, cursor=first.next_cursor
        ),
        "object: table preview": lambda: (
            ns.stat("tables/t.csv"),
            cat.preview("data/tables/t.csv"),
        ),
    }


def serve(root: Path) -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "lakeloop", "ui", "--lake", str(root), "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    for _ in range(300):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, f"http://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("lakeloop ui did not start")


def page_times(root: Path, n: int) -> dict[str, float]:
    proc, url = serve(root)
    out = {}
    try:
        with httpx.Client(base_url=url, timeout=60) as client:
            first = client.get("/search?q=0001").text
            marker = 'id="next-page" href="'
            cursor_url = first[first.index(marker) + len(marker) :].split('"')[0]
            cursor_url = cursor_url.replace("&amp;", "&")
            for name, path in PAGES.items():
                target = cursor_url if path is None else path.format(mid=(n // 2) | 1)

                def get(target: str = target) -> None:
                    r = client.get(target)
                    assert r.status_code == 200, (target, r.status_code)

                out[name] = median_ms(get)
    finally:
        proc.terminate()
        proc.wait()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--small", type=int, default=10_000)
    ap.add_argument("--large", type=int, default=200_000)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="lakeloop-bench-ui-"))
    try:
        results = {}
        for n in (args.small, args.large):
            t0 = time.perf_counter()
            build(tmp / f"lake{n}", n)
            print(f"built {n:,} objects in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
            results[n] = page_times(tmp / f"lake{n}", n)
        large = tmp / f"lake{args.large}"
        calls = {k: median_ms(fn) for k, fn in baselines(large, args.large).items()}
        s3_folders = s3_listing(large)
        machine = platform.processor() or platform.machine()
        print(f"\nmachine: {machine}, {os.cpu_count()} CPUs, Python "
              f"{platform.python_version()}; median of {ROUNDS} requests each\n")  # fmt: skip
        print(f"| page | {args.small:,} objects (ms) | {args.large:,} objects (ms) | "
              f"large / small | library call (ms) | page / call |")  # fmt: skip
        print("|---|---:|---:|---:|---:|---:|")
        for name in PAGES:
            small, large, call = results[args.small][name], results[args.large][name], calls[name]
            print(f"| {name} | {small:.1f} | {large:.1f} | {large / small:.2f} | "
                  f"{call:.2f} | {large / call:.1f} |")  # fmt: skip
        print(f"\nThe gateway's S3 listing of the same 100 folders (ListObjectsV2's page function, "
              f"which restarts with 1,000-row reads): {s3_folders:.1f} ms.")  # fmt: skip
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def s3_listing(root: Path) -> float:
    from lakeloop.gateway._s3 import list_page

    with Lake.open(root, background=False) as lake:
        ns = lake.namespace("data")
        return median_ms(lambda: list_page(ns, "tree/", "/", None, 100), rounds=5)


if __name__ == "__main__":
    main()
