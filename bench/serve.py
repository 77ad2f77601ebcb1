#!/usr/bin/env python3
"""Serving throughput: one MNIST-size Keras CNN, one 28x28x1 image per JSON request,
served four ways, at 1, 16 and 64 concurrent clients over loopback.

The servers, each in its own process, one after the other, all under uvicorn with uvloop
and httptools where they use uvicorn:

* ``lakeloop``: ``lakeloop serve cnn@prod`` over a lake holding the model: micro-batched
  through a compiled function, every prediction with an id, written to the inference log
  (stream ``predictions``, the lake's default backend);
* ``predict``: a plain FastAPI app whose endpoint calls ``model.predict`` per request;
* ``compiled``: the same app calling a ``tf.function`` with a fixed input signature per
  request (traced once at start): the strong plain baseline;
* ``compiled-async``: the same compiled call from an ``async`` endpoint that reads the
  raw body and parses it with ``json`` (no pydantic, no thread pool hop; the model then
  runs on the event loop, one request at a time): a leaner variant of that baseline;
* ``ray``: Ray Serve, one replica whose ``@serve.batch`` method runs the same compiled
  function on each batch (``max_batch_size=64``, ``batch_wait_timeout_s=0.002``).

The load generator is another process (asyncio + uvloop, one keep-alive connection per
client, request bodies encoded before the clock starts). Every answer is checked after
the clock stops: status 200, and the image's 10 outputs equal to ``model.predict``'s
(max abs difference 1e-4, same arg max). Each cell runs ``--runs`` times for
``--seconds``; the table gives the median rate and the p50/p99 of the median run, and
the CPU time the server's processes spent per answered request (median of the runs):
on a shared machine, the figure least moved by other people's load.

    python bench/serve.py               # 4 servers x 1/16/64 clients, 3 runs of 5 s
    python bench/serve.py --quick       # 1 run of 3 s per cell
    python bench/serve.py --servers lakeloop,compiled

``--overload`` measures something else: lakeloop alone, serving the same CNN with
convolutions ``--width`` (8) times as wide, so that the model's compute is what limits
it, offered more requests per second than it can answer (open loop: requests are sent on
a fixed schedule whatever the answers do, each on a free keep-alive connection or a new
one), with the admission bound (``serve_max_queue``: the default, 1024, and 128) and
without it (``--set max_queue=0``). Its capacity is measured first (64 closed-loop
clients); the offered rate is ``--factor`` times that. Latency is counted from when a
request was due to be sent, so a late send counts too.

    python bench/serve.py --overload                 # 2x capacity for 8 s, bound vs none
    python bench/serve.py --overload --factor 1.5 --seconds 6
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# module level: FastAPI resolves the endpoints' annotations in this module's globals
from starlette.requests import Request
from starlette.responses import Response

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

SHAPE = (28, 28, 1)
N_IMAGES = 512
ROUTE = "/v1/models/cnn:predict"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---------------------------------------------------------------------------- the model
def build_model(seed: int = 7, width: int = 1) -> Any:
    """The CNN of the MNIST tutorials (225,034 parameters), weights fixed by *seed*; its
    convolutions *width* times as wide for a model whose compute is the bottleneck."""
    import keras

    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [
            keras.Input(SHAPE),
            keras.layers.Conv2D(32 * width, 3, activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(64 * width, 3, activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Flatten(),
            keras.layers.Dense(128, activation="relu"),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )


def make_images(n: int) -> Any:
    """Digit-like images: mostly zeros, a blob of ink with 3-decimal intensities."""
    import numpy as np

    rng = np.random.default_rng(0)
    imgs = np.zeros((n, *SHAPE), dtype=np.float32)
    for i in range(n):
        r, c = rng.integers(6, 22, size=2)
        patch = rng.random((10, 10)) * (rng.random((10, 10)) < 0.6)
        imgs[i, r - 5 : r + 5, c - 5 : c + 5, 0] = np.round(patch, 3)
    return imgs


# ---------------------------------------------------------------------------- plain servers
def plain_app(model_path: str, compiled: bool, lean: bool = False) -> Any:
    import keras
    import numpy as np
    from fastapi import FastAPI

    model = keras.saving.load_model(model_path, compile=False)
    if compiled:
        import tensorflow as tf

        @tf.function(input_signature=[tf.TensorSpec((None, *SHAPE), tf.float32)])
        def run(x: Any) -> Any:
            return model(x, training=False)

        run(np.zeros((1, *SHAPE), np.float32))  # traced once, before the first request

        def infer(x: Any) -> Any:
            return run(x).numpy()
    else:

        def infer(x: Any) -> Any:
            return model.predict(x, verbose=0)

    app = FastAPI()
    if lean:

        @app.post(ROUTE)
        async def predict_lean(request: Request) -> Response:  # on the event loop
            x = np.asarray(json.loads(await request.body())["instances"], dtype=np.float32)
            body = json.dumps({"predictions": infer(x).tolist()})
            return Response(body, media_type="application/json")

        return app

    @app.post(ROUTE)
    def predict(body: dict[str, Any]) -> dict[str, Any]:  # sync: FastAPI's thread pool
        x = np.asarray(body["instances"], dtype=np.float32)
        return {"predictions": infer(x).tolist()}

    return app


def serve_plain(model_path: str, port: int, kind: str) -> None:
    import uvicorn

    uvicorn.run(
        plain_app(model_path, kind != "predict", lean=kind == "compiled-async"),
        host="127.0.0.1",
        port=port,
        loop="uvloop",
        http="httptools",
        log_level="warning",
        access_log=False,
    )


def serve_ray(model_path: str, port: int) -> None:
    import numpy as np
    import ray
    from ray import serve

    ray.init(num_cpus=os.cpu_count() or 2, include_dashboard=False, log_to_driver=False)

    @serve.deployment(max_ongoing_requests=256)
    class CNN:
        def __init__(self, path: str) -> None:
            import keras
            import tensorflow as tf

            model = keras.saving.load_model(path, compile=False)

            @tf.function(input_signature=[tf.TensorSpec((None, *SHAPE), tf.float32)])
            def run(x: Any) -> Any:
                return model(x, training=False)

            run(np.zeros((1, *SHAPE), np.float32))
            self.run = run

        @serve.batch(max_batch_size=64, batch_wait_timeout_s=0.002)
        async def predict(self, images: list[Any]) -> list[Any]:
            out = self.run(np.stack(images)).numpy()
            return list(out)

        async def __call__(self, request: Request) -> dict[str, Any]:
            body = await request.json()
            x = np.asarray(body["instances"][0], dtype=np.float32)
            y = await self.predict(x)
            return {"predictions": [y.tolist()]}

    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(CNN.bind(model_path), route_prefix="/", blocking=False)
    stop = False

    def on_term(*_: Any) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    while not stop:
        time.sleep(0.2)
    serve.shutdown()
    ray.shutdown()


def start_server(
    kind: str, work: Path, options: dict[str, str] | None = None
) -> tuple[subprocess.Popen[bytes], int]:
    port = _free_port()
    env = dict(os.environ)
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    env["PYTHONPATH"] = str(ROOT / "src")
    env.setdefault("RAY_AUTH_MODE", "disabled")
    model_path = str(work / "cnn.keras")
    if kind == "lakeloop":
        cmd = [sys.executable, "-m", "lakeloop", "--lake", str(work / "lake"), "serve", "cnn@prod"]
        cmd += ["--port", str(port)]
        for name, value in (options or {}).items():
            cmd += ["--set", f"{name}={value}"]
    elif kind in ("predict", "compiled", "compiled-async"):
        cmd = [sys.executable, __file__, "--serve-plain", kind, model_path, str(port)]
    elif kind == "ray":
        cmd = [sys.executable, __file__, "--serve-ray", model_path, str(port)]
    else:
        raise SystemExit(f"unknown server {kind!r}")
    with open(work / f"{kind}.log", "wb") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    body = json.dumps({"instances": [[[[0.0]] * 28] * 28]}).encode()
    deadline = time.monotonic() + 300
    import http.client

    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{kind} exited: {(work / f'{kind}.log').read_text()[-3000:]}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            conn.request("POST", ROUTE, body, {"Content-Type": "application/json"})
            status = conn.getresponse().status
            conn.close()
            if status == 200:
                return proc, port
        except OSError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"{kind} did not start")
        time.sleep(0.25)


def _cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of a server process and all its descendants (Ray's
    proxy and replica are processes of their own)."""
    import psutil

    total = 0.0
    try:
        root = psutil.Process(pid)
        for p in [root, *root.children(recursive=True)]:
            try:
                t = p.cpu_times()
                total += t.user + t.system
            except psutil.Error:
                pass
    except psutil.Error:
        pass
    return total


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGINT if proc.args[1] == "-m" else signal.SIGTERM)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=30)


# ---------------------------------------------------------------------------- load
async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = -1
    chunked = False
    for line in head.split(b"\r\n"):
        low = line.lower()
        if low.startswith(b"content-length:"):
            length = int(line[15:])
        elif low.startswith(b"transfer-encoding:") and b"chunked" in low:
            chunked = True
    if chunked:
        parts = []
        while True:
            size = int((await reader.readuntil(b"\r\n"))[:-2].split(b";")[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                return status, b"".join(parts)
            parts.append(await reader.readexactly(size))
            await reader.readexactly(2)
    return status, (await reader.readexactly(length)) if length > 0 else b""


async def _client(
    port: int,
    requests: list[tuple[int, bytes]],
    stop_at: float,
    latencies: list[float],
    answers: list[tuple[int, int, bytes]],
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    i = 0
    try:
        while time.perf_counter() < stop_at:
            index, request = requests[i % len(requests)]
            t = time.perf_counter()
            writer.write(request)
            status, body = await _read_response(reader)
            latencies.append(time.perf_counter() - t)
            answers.append((index, status, body))
            i += 1
    finally:
        writer.close()


def load(spec: dict[str, Any]) -> dict[str, Any]:
    """One cell, in the load-generator process: rate, latencies, and every answer checked."""
    import numpy as np
    import uvloop

    images = np.load(spec["images"])
    expected = np.load(spec["expected"])
    port, clients, seconds = spec["port"], spec["clients"], spec["seconds"]
    encoded = []
    for i, img in enumerate(images):
        body = json.dumps({"instances": [img.tolist()]}).encode()
        head = (
            f"POST {ROUTE} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        encoded.append((i, head.encode() + body))
    plans = [
        encoded[c * 7 % len(encoded) :] + encoded[: c * 7 % len(encoded)] for c in range(clients)
    ]
    latencies: list[float] = []
    answers: list[tuple[int, int, bytes]] = []

    async def main() -> float:
        start = time.perf_counter()
        stop_at = start + seconds
        await asyncio.gather(*(_client(port, p, stop_at, latencies, answers) for p in plans))
        return time.perf_counter() - start

    elapsed = uvloop.run(main())
    wrong = 0
    errors = 0
    for index, status, body in answers:
        if status != 200:
            errors += 1
            continue
        doc = json.loads(body)
        got = np.asarray(doc["predictions"][0], dtype=np.float32)
        want = expected[index]
        ids_ok = not spec["ids"] or (
            len(doc["prediction_ids"]) == 1 and len(doc["prediction_ids"][0]) == 32
        )
        same = got.shape == want.shape and np.abs(got - want).max() <= 1e-4
        if not (ids_ok and same and got.argmax() == want.argmax()):
            wrong += 1
    latencies.sort()
    n = len(latencies)
    return {
        "requests": n,
        "rate": n / elapsed,
        "p50": latencies[n // 2] * 1000 if n else 0.0,
        "p99": latencies[min(int(n * 0.99), n - 1)] * 1000 if n else 0.0,
        "errors": errors,
        "wrong": wrong,
    }


async def _open_request(
    port: int,
    request: bytes,
    due: float,
    idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]],
    done: list[tuple[int, float, float]],
) -> None:
    """One request of the open-loop load on an idle connection (or a new one); records
    (status, seconds from when it was due, when it finished). Status 0: a transport error."""
    writer = None
    try:
        if idle:
            reader, writer = idle.pop()
        else:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(request)
        status, _ = await _read_response(reader)
        idle.append((reader, writer))
    except (OSError, asyncio.IncompleteReadError):
        status = 0
        if writer is not None:
            writer.close()
    now = time.perf_counter()
    done.append((status, now - due, now))


def load_open(spec: dict[str, Any]) -> dict[str, Any]:
    """Open loop: ``rate`` requests per second for ``seconds``, sent on schedule, then up
    to ``drain`` seconds for the last answers."""
    import numpy as np
    import uvloop

    images = np.load(spec["images"])
    port, rate, seconds = spec["port"], spec["rate"], spec["seconds"]
    encoded = []
    for img in images:
        body = json.dumps({"instances": [img.tolist()]}).encode()
        head = (
            f"POST {ROUTE} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        encoded.append(head.encode() + body)
    done: list[tuple[int, float, float]] = []
    idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    sent = 0

    async def main() -> float:
        nonlocal sent
        tasks = set()
        start = time.perf_counter()
        total = int(rate * seconds)
        while sent < total:
            now = time.perf_counter()
            due_count = min(total, int((now - start) * rate) + 1)
            while sent < due_count:
                due = start + sent / rate
                task = asyncio.ensure_future(
                    _open_request(port, encoded[sent % len(encoded)], due, idle, done)
                )
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                sent += 1
            await asyncio.sleep(0.002)
        if tasks:
            await asyncio.wait(tasks, timeout=spec["drain"])
        for _, writer in idle:
            writer.close()
        return start

    start = uvloop.run(main())
    ok = sorted(latency for status, latency, _ in done if status == 200)
    last = sorted(
        latency for status, latency, when in done if status == 200 and when - start > seconds - 1
    )
    n = len(ok)

    def pct(values: list[float], q: float) -> float:
        return values[min(int(len(values) * q), len(values) - 1)] * 1000 if values else 0.0

    return {
        "offered": rate,
        "sent": sent,
        "ok": n,
        "ok_rate": sum(1 for s, _, w in done if s == 200 and w - start <= seconds) / seconds,
        "rejected": sum(1 for status, _, _ in done if status == 503),
        "errors": sum(1 for status, _, _ in done if status not in (200, 503)),
        "unanswered": sent - len(done),
        "p50": pct(ok, 0.5),
        "p99": pct(ok, 0.99),
        "max": ok[-1] * 1000 if ok else 0.0,
        "last_p50": pct(last, 0.5),
    }


def overload(args: argparse.Namespace) -> None:
    """lakeloop with and without its admission bound, offered more than it can answer."""
    seconds = args.seconds if args.seconds != 5.0 else 8.0
    work = Path(tempfile.mkdtemp(prefix="lakeloop-bench-overload-"))
    rows = []
    try:
        prepare(work, args.width)
        bounds = [("1024 (default)", {}), ("128", {"max_queue": "128"})]
        bounds.append(("none (0)", {"max_queue": "0"}))
        for label, options in bounds:
            proc, port = start_server("lakeloop", work, options)
            try:
                base = {
                    "port": port,
                    "images": str(work / "images.npy"),
                    "expected": str(work / "expected.npy"),
                    "ids": True,
                }
                run_load({**base, "clients": 4, "seconds": 1.0})  # warm-up, not counted
                capacity = run_load({**base, "clients": 64, "seconds": 3.0})["rate"]
                spec = {
                    **base,
                    "rate": capacity * args.factor,
                    "seconds": seconds,
                    "drain": 120.0,
                }
                result = run_load(spec, "--load-open")
                result.update(bound=label, capacity=capacity)
                rows.append(result)
                print(json.dumps(result), file=sys.stderr, flush=True)
            finally:
                stop_server(proc)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(
        f"\n{os.cpu_count()} cores; open loop at {args.factor:g}x the capacity measured just "
        f"before (64 closed-loop clients, 3 s), for {seconds:g} s; latency from when each "
        "request was due\n"
    )
    print(
        "| serve_max_queue | capacity req/s | offered req/s | answered 200/s | 503 share "
        "| p50 ms (200) | p99 ms (200) | max ms | p50 ms, last second | errors | unanswered |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['bound']} | {r['capacity']:,.0f} | {r['offered']:,.0f} | {r['ok_rate']:,.0f} "
            f"| {100 * r['rejected'] / max(r['sent'], 1):.1f} % | {r['p50']:.0f} "
            f"| {r['p99']:.0f} | {r['max']:.0f} | {r['last_p50']:.0f} | {r['errors']} "
            f"| {r['unanswered']} |"
        )
    none = rows[-1]
    for r in rows[:-1]:
        if none["p99"]:
            print(f"- {r['bound']}: p99 / p99 without a bound = x{r['p99'] / none['p99']:.2f}")


def run_load(spec: dict[str, Any], mode: str = "--load") -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, mode, json.dumps(spec)],
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, Any] = json.loads(out.stdout)
    return result


# ---------------------------------------------------------------------------- driver
def prepare(work: Path, width: int = 1) -> None:
    """The model file, the lake holding it as cnn@prod, the images and expected outputs."""
    import numpy as np

    from lakeloop.registry import Registry
    from lakeloop.store import Lake

    model = build_model(width=width)
    model.save(str(work / "cnn.keras"))
    images = make_images(N_IMAGES)
    np.save(work / "images.npy", images)
    np.save(work / "expected.npy", model.predict(images, verbose=0))
    with Lake.open(work / "lake", create=True, background=False) as lake:
        reg = Registry(lake)
        v = reg.register("cnn", model)
        reg.alias(v.ref, "prod", reason="benchmark")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 run of 3 s per cell")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--clients", default="1,16,64")
    parser.add_argument("--servers", default="lakeloop,predict,compiled,compiled-async,ray")
    parser.add_argument("--serve-plain", nargs=3, metavar=("KIND", "MODEL", "PORT"))
    parser.add_argument("--serve-ray", nargs=2, metavar=("MODEL", "PORT"))
    parser.add_argument("--load", metavar="JSON")
    parser.add_argument("--load-open", metavar="JSON")
    parser.add_argument(
        "--overload", action="store_true", help="lakeloop past capacity, with and without its bound"
    )
    parser.add_argument("--factor", type=float, default=2.0, help="--overload: x capacity")
    parser.add_argument(
        "--width", type=int, default=8, help="--overload: the CNN's convolutions this many x wider"
    )
    args = parser.parse_args()
    if args.serve_plain:
        kind, path, port = args.serve_plain
        serve_plain(path, int(port), kind)
        return
    if args.serve_ray:
        serve_ray(args.serve_ray[0], int(args.serve_ray[1]))
        return
    if args.load:
        print(json.dumps(load(json.loads(args.load))))
        return
    if args.load_open:
        print(json.dumps(load_open(json.loads(args.load_open))))
        return
    if args.overload:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        overload(args)
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    seconds = 3.0 if args.quick else args.seconds
    runs = 1 if args.quick else args.runs
    clients_list = [int(c) for c in args.clients.split(",")]
    work = Path(tempfile.mkdtemp(prefix="lakeloop-bench-serve-"))
    rows = []
    try:
        prepare(work)
        for kind in args.servers.split(","):
            proc, port = start_server(kind, work)
            try:
                base = {
                    "port": port,
                    "images": str(work / "images.npy"),
                    "expected": str(work / "expected.npy"),
                    "ids": kind == "lakeloop",
                }
                run_load({**base, "clients": 4, "seconds": 1.0})  # warm-up, not counted
                for clients in clients_list:
                    results = []
                    for _ in range(runs):
                        cpu = _cpu_seconds(proc.pid)
                        result = run_load({**base, "clients": clients, "seconds": seconds})
                        cpu = _cpu_seconds(proc.pid) - cpu
                        result["cpu_ms"] = cpu * 1000 / max(result["requests"], 1)
                        results.append(result)
                    mid = sorted(results, key=lambda x: x["rate"])[len(results) // 2]
                    row = {
                        "server": kind,
                        "clients": clients,
                        "rate": statistics.median(x["rate"] for x in results),
                        "p50": mid["p50"],
                        "p99": mid["p99"],
                        "errors": sum(x["errors"] for x in results),
                        "wrong": sum(x["wrong"] for x in results),
                        "answers": sum(x["requests"] for x in results),
                        "runs": [round(x["rate"]) for x in results],
                        "cpu_ms": statistics.median(x["cpu_ms"] for x in results),
                    }
                    rows.append(row)
                    print(json.dumps(row), file=sys.stderr, flush=True)
            finally:
                stop_server(proc)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(
        f"\n{os.cpu_count()} cores; {runs} run(s) of {seconds:.0f} s per cell; median rate, "
        "p50/p99 of the median run\n"
    )
    print("| server | clients | req/s | p50 ms | p99 ms | server CPU ms/req | answers checked "
          "| errors | wrong | runs (req/s) |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in rows:
        print(
            f"| {r['server']} | {r['clients']} | {r['rate']:,.0f} | {r['p50']:.1f} "
            f"| {r['p99']:.1f} | {r['cpu_ms']:.2f} | {r['answers']:,} | {r['errors']} "
            f"| {r['wrong']} "
            f"| {', '.join(map(str, r['runs']))} |"
        )
    by = {(r["server"], r["clients"]): r for r in rows}
    print()
    for clients in clients_list:
        ours = by.get(("lakeloop", clients))
        for other in ("compiled", "compiled-async"):
            base = by.get((other, clients))
            if ours and base:
                print(
                    f"- {clients} clients: lakeloop / {other} = "
                    f"x{ours['rate'] / base['rate']:.2f} req/s, "
                    f"p99 {ours['p99']:.1f} vs {base['p99']:.1f} ms"
                )
        ray = by.get(("ray", clients))
        if ours and ray:
            print(f"- {clients} clients: lakeloop / ray = x{ours['rate'] / ray['rate']:.2f} req/s")


if __name__ == "__main__":
    main()
