#!/usr/bin/env python3
"""The training reader over a gateway URL vs the same reader on the lake's folder.

N small PNGs (scikit-learn's 8x8 digits scaled to 28x28, repeated to N; default 20,000)
go into a local lake and one snapshot. ``lakeloop gateway`` then serves that lake from a
subprocess on a loopback port, and one pass of bytes-only batches of 256
(``lakeloop.train.data.batches``, no decoding) is timed:

- **local**: ``Lake.open(folder)`` — whole volumes read in file order (``scan``);
- **gateway, batches**: ``Lake.open("http://...")`` — the reader as shipped: batch reads
  of 1,024 exact versions per request (``POST /api/v1/namespaces/NS/read``), W of them
  in flight (``remote_read_workers``; W=1: one after another);
- **gateway, per-object GETs**: the same examples, one S3 GET of each exact version
  (``?versionId=``), 8 in flight (``RemoteNamespace.get_many``): what any S3 client
  could do, for comparison.

Both read the same snapshot in the same run; figures are medians of ``--repeat`` passes,
and the planning step (manifest and volume lookup) is timed separately. The client, the
gateway and the store share the machine's cores, so only same-run ratios count.

    python bench/remote_reader.py                       # 20 k images
    python bench/remote_reader.py --n 5000 --repeat 1   # a quick look
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
from pathlib import Path
from typing import Any

import numpy as np

BATCH = 256


def images(n: int) -> tuple[list[bytes], np.ndarray]:
    from PIL import Image
    from sklearn.datasets import load_digits

    d = load_digits()
    small = (d.images * (255 / 16)).round().astype(np.uint8)
    pngs = []
    for im in small:
        buf = io.BytesIO()
        Image.fromarray(im).resize((28, 28)).save(buf, format="PNG")
        pngs.append(buf.getvalue())
    reps = -(-n // len(pngs))
    return (pngs * reps)[:n], np.tile(d.target, reps)[:n]


def build(work: Path, n: int) -> str:
    from lakeloop import Lake
    from lakeloop.catalog import Catalog

    blobs, labels = images(n)
    with Lake.open(work / "lake", create=True, background=False) as lake:
        ns = lake.create_namespace("digits")
        pairs = enumerate(zip(blobs, labels, strict=True))
        items = [(f"{y}/{i:07d}.png", b, {}) for i, (b, y) in pairs]
        for s in range(0, len(items), 5000):
            ns.put_many(items[s : s + 5000])
        snap = Catalog(lake).snapshot("digits/", dataset="digits", labels="{label}/{name}")
    print(f"{n:,} PNGs of {sum(map(len, blobs)) / n:.0f} B in snapshot {snap.ref}", flush=True)
    return f"digits@{snap.id}"


def start_gateway(work: Path) -> tuple[subprocess.Popen[bytes], str, dict[str, str]]:
    from lakeloop.gateway import Credentials

    creds = Credentials(work / "credentials.json")
    access, secret = creds.create("bench")
    creds.grant("bench", "*", "read")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "LAKELOOP_CREDENTIALS": str(work / "credentials.json")}
    cmd = [sys.executable, "-m", "lakeloop", "--lake", str(work / "lake"), "gateway",
           "--host", "127.0.0.1", "--port", str(port)]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the gateway did not start") from None
            time.sleep(0.05)
    return proc, f"http://127.0.0.1:{port}", {"access_key": access, "secret_key": secret}


def one_pass(open_lake: Any, ref: str, per_object: bool) -> tuple[float, float, int]:
    """(planning seconds, reading seconds, examples) of one bytes-only pass."""
    from lakeloop.train.data import SnapshotReader, _batches

    with open_lake() as lake:
        t0 = time.perf_counter()
        reader = SnapshotReader(lake, ref, None)
        t1 = time.perf_counter()
        if per_object:
            ns = lake.namespace(reader.snapshot.namespace)
            order = [e for vol in reader.volumes for e in reader._plan[vol].entries]
            got = ns.get_many(((e.key, e.version) for e in order), workers=8)
            n = sum(1 for e, data in zip(order, got, strict=True) if reader.snapshot.check(e, data))
        else:
            n = sum(len(y) for _, y in _batches(reader, None, BATCH, 0, False))
        t2 = time.perf_counter()
    return t1 - t0, t2 - t1, n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--workers", default="1,2,4", help="remote_read_workers values")
    args = ap.parse_args()
    from lakeloop import Lake

    work = Path(tempfile.mkdtemp(prefix="lakeloop-bench-remote-"))
    proc = None
    try:
        ref = build(work, args.n)
        proc, url, keys = start_gateway(work)
        cases: list[tuple[str, Any, bool]] = [
            ("local (folder)", lambda: Lake.open(work / "lake", background=False), False)
        ]
        for w in [int(v) for v in args.workers.split(",")]:

            def remote(w: int = w) -> Any:
                os.environ["LAKELOOP_REMOTE_READ_WORKERS"] = str(w)
                return Lake.open(url, **keys)

            cases.append((f"gateway, batches, {w} in flight", remote, False))
        per_object = ("gateway, per-object GETs, 8 in flight", lambda: Lake.open(url, **keys), True)
        cases.append(per_object)
        rows = []
        for name, make, single in cases:
            one_pass(make, ref, single)  # warm: page cache, connections, imports
            runs = [one_pass(make, ref, single) for _ in range(args.repeat)]
            plan = statistics.median(r[0] for r in runs)
            read = statistics.median(r[1] for r in runs)
            rows.append((name, runs[0][2] / read, plan))
            print(f"  {name}: {runs[0][2] / read:,.0f} samples/s", flush=True)
        base = rows[0][1]
        print(f"\n{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
              f"n={args.n:,}, batch {BATCH}, bytes only, median of {args.repeat}\n")  # fmt: skip
        print("| reader | samples/s | vs local | planning (s) |")
        print("|---|---:|---:|---:|")
        for name, rate, plan in rows:
            print(f"| {name} | {rate:,.0f} | {rate / base:.2f}x | {plan:.2f} |")
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
