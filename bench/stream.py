#!/usr/bin/env python3
"""Stream benchmark: events/s and end-to-end latency per backend, in one run.

For each backend (embedded in a fresh lake; a real redis-server with ``appendfsync
always``; a real ``nats-server -js``) it measures, with prediction-log-sized events
(about 300 bytes of JSON):

1. ``publish`` one event at a time, from one thread: events/s (each a durable publish);
2. ``publish`` from 16 threads at once (the serving case: the embedded backend's group
   commit shares fsyncs between them);
3. ``publish_many`` in batches of --batch: events/s;
4. consume + ack by a group, batches of 500: events/s;
5. end-to-end latency: a publisher sends one event every --gap seconds, a consumer in
   another process (``consume(block=1.0)``) receives it; p50/p99 of receive time minus
   the publish call's start (same clock, same machine), and the p50 of the publish call
   alone (the durable write's share of it).

The baseline row is the floor of one durable write on this disk: append a JSON line to
a file and ``fdatasync`` it. Ratios are against it, from the same run.

``embedded-batch`` is the embedded backend in a lake with ``sync = "batch"`` (an fsync
at most every ``sync_interval``, and a flusher closes the window when publishing
stops), so its publish rates are not bound by fsync.

    python bench/stream.py                 # default run (about a minute)
    python bench/stream.py --quick         # smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

SRC = str(Path(__file__).resolve().parent.parent / "src")
sys.path.insert(0, SRC)

from _machine import machine  # noqa: E402
from lakeloop import Lake  # noqa: E402
from lakeloop.stream import open_stream  # noqa: E402


def event(i: int) -> dict[str, object]:
    return {
        "prediction_id": f"{i:032x}",
        "time": time.time(),
        "model": "digits-cnn",
        "version": 3,
        "input": {"ref": f"digits-png/live/{i}.png"},
        "output": [0.01, 0.02, 0.9, 0.01, 0.01, 0.01, 0.01, 0.01, 0.01, 0.01],
        "shadow": False,
    }


# ---------------------------------------------------------------------------- servers
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(port: int) -> None:
    for _ in range(400):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def start_servers(folder: Path) -> tuple[dict[str, str], list[subprocess.Popen[bytes]]]:
    urls, procs = {}, []
    if shutil.which("redis-server"):
        port = _free_port()
        (folder / "redis").mkdir()
        procs.append(
            subprocess.Popen(
                ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir",
                 str(folder / "redis"), "--appendonly", "yes", "--appendfsync", "always",
                 "--save", "", "--loglevel", "warning"],
                stdout=subprocess.DEVNULL,
            )
        )  # fmt: skip
        _wait(port)
        urls["redis"] = f"redis://127.0.0.1:{port}/0"
    if shutil.which("nats-server"):
        port = _free_port()
        procs.append(
            subprocess.Popen(
                ["nats-server", "-js", "-a", "127.0.0.1", "-p", str(port), "-sd",
                 str(folder / "nats")],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
        )  # fmt: skip
        _wait(port)
        urls["nats"] = f"nats://127.0.0.1:{port}"
    return urls, procs


# ---------------------------------------------------------------------------- measures
def rate(n: int, fn: Callable[[], None]) -> float:
    t0 = time.perf_counter()
    fn()
    return n / (time.perf_counter() - t0)


def baseline_fsync(folder: Path, n: int) -> float:
    path = folder / "baseline.jsonl"
    line = (json.dumps(event(0)) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:

        def go() -> None:
            for _ in range(n):
                os.write(fd, line)
                os.fdatasync(fd)

        return rate(n, go)
    finally:
        os.close(fd)


_CONSUMER = r"""
import json, sys, time
sys.path.insert(0, sys.argv[4])
from lakeloop import Lake
from lakeloop.stream import open_stream
lake = Lake.open(sys.argv[1], background=False)
s = open_stream(lake, sys.argv[2], url=sys.argv[3] or None)
s.consume("latency", "c", max=1, block=0)   # the group exists before the first event
print("ready", flush=True)
want, lat = int(sys.argv[5]), []
while len(lat) < want:
    for m in s.consume("latency", "c", max=100, block=1.0):
        lat.append(time.time() - m.data["sent"])
        s.ack("latency", [m.offset])
print(json.dumps(lat), flush=True)
s.close()
"""


def latency(root: Path, name: str, url: str, n: int, gap: float) -> tuple[list[float], list[float]]:
    """-> (end-to-end ms, publish call ms) per event."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _CONSUMER, str(root), name, url, SRC, str(n)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    with Lake.open(root, background=False) as lake, open_stream(lake, name, url=url or None) as s:
        calls = []
        for i in range(n):
            t0 = time.perf_counter()
            s.publish({**event(i), "sent": time.time()})
            calls.append((time.perf_counter() - t0) * 1000)
            time.sleep(gap)
    out = json.loads(proc.stdout.readline())
    proc.wait(timeout=60)
    return [x * 1000 for x in out], calls


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def measure(
    backend: str, url: str, root: Path, args: argparse.Namespace, round_: int
) -> dict[str, float]:
    name = f"bench-{backend}-{round_}"
    n, threads = args.events, 16
    with Lake.open(root, background=False) as lake, open_stream(lake, name, url=url) as s:
        one = rate(n, lambda: [s.publish(event(i)) for i in range(n)] and None)

        def per_thread() -> None:
            for i in range(n // threads):
                s.publish(event(i))

        def many_threads() -> None:
            ts = [threading.Thread(target=per_thread) for _ in range(threads)]
            for t in ts:
                t.start()
            for t in ts:
                t.join()

        parallel = rate(n // threads * threads, many_threads)
        batches = args.events * 5 // args.batch

        def batched() -> None:
            for b in range(batches):
                s.publish_many([event(b * args.batch + i) for i in range(args.batch)])

        many = rate(batches * args.batch, batched)
        total = n + n // threads * threads + batches * args.batch

        def drain() -> None:
            got = 0
            while got < total:
                msgs = s.consume("drain", "c", max=500, block=1.0)
                s.ack("drain", [m.offset for m in msgs])
                got += len(msgs)

        consume = rate(total, drain)
    lat, calls = latency(root, name + "-lat", url, args.latency_events, args.gap)
    return {
        "publish": one,
        "publish_16": parallel,
        "publish_many": many,
        "consume": consume,
        "call_p50": pct(calls, 0.5),
        "p50": pct(lat, 0.5),
        "p99": pct(lat, 0.99),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--events", type=int, default=800, help="events per publish measure")
    ap.add_argument("--batch", type=int, default=100, help="publish_many batch size")
    ap.add_argument("--latency-events", type=int, default=300)
    ap.add_argument("--gap", type=float, default=0.01, help="seconds between latency events")
    ap.add_argument("--backends", default="embedded,embedded-batch,redis,nats")
    ap.add_argument("--repeat", type=int, default=3, help="rounds; medians are printed")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", help="also write the medians to this file")
    args = ap.parse_args()
    if args.quick:
        args.events, args.latency_events, args.repeat = 160, 60, 1
    folder = Path(tempfile.mkdtemp(prefix="lakeloop-bench-stream-"))
    urls, procs = start_servers(folder)
    urls["embedded"] = urls["embedded-batch"] = "embedded"
    roots = {b: folder / "lake" for b in urls}
    roots["embedded-batch"] = folder / "lake-batch"
    runs: dict[str, list[dict[str, float]]] = {}
    bases: list[float] = []
    backends = [b for b in args.backends.split(",") if b in urls]
    for b in set(args.backends.split(",")) - set(backends):
        print(f"skipping {b}: its server is not installed", file=sys.stderr)
    try:
        Lake.open(folder / "lake", create=True, background=False).close()
        batch = {"sync": "batch"}
        Lake.open(roots["embedded-batch"], create=True, settings=batch, background=False).close()
        for r in range(args.repeat):  # rounds interleave the backends: noise hits all
            bases.append(baseline_fsync(folder, args.events))
            for backend in backends:
                got = measure(backend, urls[backend], roots[backend], args, r)
                runs.setdefault(backend, []).append(got)
    finally:
        for p in procs:
            p.terminate()
            p.wait(timeout=10)
        shutil.rmtree(folder, ignore_errors=True)
    base = statistics.median(bases)
    rows = {b: {k: statistics.median(x[k] for x in rs) for k in rs[0]} for b, rs in runs.items()}
    if args.json:
        Path(args.json).write_text(json.dumps({"baseline": base, "rows": rows}, indent=1))
    print(f"machine: {machine()}")
    print(f"medians of {args.repeat} rounds")
    print(
        f"events: {args.events} per publish measure, publish_many batches of {args.batch},"
        f" latency over {args.latency_events} events {args.gap * 1000:.0f} ms apart"
    )
    print()
    head = (
        "| backend | publish ev/s (x fsync floor) | publish, 16 threads ev/s "
        "| publish_many ev/s | consume+ack ev/s | publish call p50 ms | e2e p50 ms | e2e p99 ms |"
    )
    print(head)
    print("|---|---|---|---|---|---|---|---|")
    print(f"| baseline: append + fdatasync | {base:,.0f} (1.00) | | | | | | |")
    for backend, r in rows.items():
        print(
            f"| {backend} | {r['publish']:,.0f} ({r['publish'] / base:.2f}) "
            f"| {r['publish_16']:,.0f} | {r['publish_many']:,.0f} | {r['consume']:,.0f} "
            f"| {r['call_p50']:.1f} | {r['p50']:.1f} | {r['p99']:.1f} |"
        )


if __name__ == "__main__":
    main()
