#!/usr/bin/env python3
"""Gateway throughput: 1 KB PUT and GET over loopback, SigV4 on, at 1/16/64 clients.

Two servers answer the same signed requests, each in its own process:

* ``gateway``: ``lakeloop gateway`` over a fresh lake (default settings: ``sync =
  "always"``, so every acknowledged PUT is fsynced; concurrent PUTs share fsyncs);
* ``files``: a minimal ASGI app under the same uvicorn (uvloop + httptools) that writes
  one file per object (write, fsync, rename) and reads it back, verifying nothing; our
  own reference for "what the HTTP stack costs" on this machine.

The load generator is a third process: asyncio (uvloop) with N keep-alive connections,
requests signed ahead of time so that signing does not compete with the server for CPU
while the clock runs. Each cell runs for ``--seconds``; the PUTs write fresh keys, the
GETs read random keys of those written.

    python bench/gateway.py            # 1, 16, 64 clients, 3 runs of 5 s each: medians
    python bench/gateway.py --quick    # 1 and 16 clients, 1 run of 2 s

It prints a Markdown table (requests/s, p50 and p99 latency in ms) and the ratios to the
per-core SeaweedFS README figures (15,708 writes/s and 47,019 reads/s for 1 KB files with
16 clients on a 4-core laptop i7; the README says "1 Intel Core i7 2.6GHz").
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

SEAWEED_WRITES, SEAWEED_READS, SEAWEED_CORES = 15_708, 47_019, 4
BUCKET = "bench"


# ---------------------------------------------------------------------------- servers
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def minimal_app(folder: str) -> Any:
    """One file per object: PUT writes (fsync, rename), GET reads. No auth check."""
    os.makedirs(folder, exist_ok=True)

    def write(path: str, data: bytes) -> None:
        tmp = f"{path}.{os.getpid()}.{time.monotonic_ns()}.tmp"
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)

    def read(path: str) -> bytes | None:
        try:
            with open(path, "rb") as f:
                return f.read()
        except FileNotFoundError:
            return None

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        from anyio import to_thread

        name = hashlib.md5(scope["path"].encode()).hexdigest()
        path = os.path.join(folder, name)
        status, body = 200, b""
        if scope["method"] == "PUT":
            chunks, more = [], True
            while more:
                m = await receive()
                chunks.append(m.get("body", b""))
                more = m.get("more_body", False)
            await to_thread.run_sync(write, path, b"".join(chunks))
        else:
            data = await to_thread.run_sync(read, path)
            status, body = (200, data) if data is not None else (404, b"")
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})

    return app


STACKS = {"fast": ("uvloop", "httptools"), "plain": ("asyncio", "h11")}


def serve_minimal(folder: str, port: int, stack: str) -> None:
    import uvicorn

    loop, http = STACKS[stack]
    uvicorn.run(
        minimal_app(folder),
        host="127.0.0.1",
        port=port,
        loop=loop,
        http=http,
        log_level="warning",
        access_log=False,
    )


def start_server(
    kind: str, work: Path, stack: str, workers: int = 1
) -> tuple[subprocess.Popen[bytes], int, dict[str, str]]:
    port = _free_port()
    env = dict(os.environ)
    keys = {"access": "x", "secret": "y"}
    if kind == "gateway":
        from lakeloop.gateway import Credentials
        from lakeloop.store import Lake

        creds = Credentials(work / "credentials.json")
        access, secret = creds.create("bench")
        creds.grant("bench", "*", "admin")
        keys = {"access": access, "secret": secret}
        Lake.open(work / "lake", create=True, background=False).close()
        env["LAKELOOP_CREDENTIALS"] = str(work / "credentials.json")
        cmd = [sys.executable, "-m", "lakeloop", "--lake", str(work / "lake"), "gateway"]
        loop, http = STACKS[stack]
        cmd += ["--port", str(port), "--loop", loop, "--http", http, "--workers", str(workers)]
    else:
        cmd = [sys.executable, __file__, "--serve-minimal", str(work / "files"), str(port)]
        cmd += ["--stack", stack]
    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{kind} server did not start") from None
            time.sleep(0.05)
    return proc, port, keys


# ---------------------------------------------------------------------------- load
def signed(
    method: str, port: int, key: str, body: bytes, keys: dict[str, str], amz_date: str
) -> bytes:
    from lakeloop import _sigv4 as sigv4

    host = f"127.0.0.1:{port}"
    path = f"/{BUCKET}/{key}"
    hs = sigv4.sign_headers(
        method,
        path,
        [],
        {"host": host, "content-length": str(len(body))},
        access_key=keys["access"],
        secret_key=keys["secret"],
        amz_date=amz_date,
        payload_hash=hashlib.sha256(body).hexdigest(),
    )
    head = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hs.items())
    return head.encode() + b"\r\n" + body


async def _read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    if length:
        await reader.readexactly(length)
    return status


async def _client(
    port: int, requests: list[bytes], stop_at: float, latencies: list[float], errors: list[int]
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    i = 0
    try:
        while time.perf_counter() < stop_at and i < len(requests):
            t = time.perf_counter()
            writer.write(requests[i])
            status = await _read_response(reader)
            latencies.append(time.perf_counter() - t)
            if status >= 300:
                errors.append(status)
            i += 1
    finally:
        writer.close()


def load(spec: dict[str, Any]) -> dict[str, Any]:
    """Run one cell (in the load-generator process): returns rate and latencies."""
    import uvloop

    port, keys, op, clients, seconds = (
        spec["port"],
        spec["keys"],
        spec["op"],
        spec["clients"],
        spec["seconds"],
    )
    amz_date = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    body = os.urandom(1024)
    per_client = spec["per_client"]
    rng = random.Random(clients)
    plans = []
    for c in range(clients):
        reqs = []
        for i in range(per_client):
            if op == "PUT":
                key = f"{spec['tag']}/c{c}/k{i}"
                reqs.append(signed("PUT", port, key, body, keys, amz_date))
            else:
                key = (
                    f"seed/c{rng.randrange(spec['seed_clients'])}/k{rng.randrange(spec['seed_n'])}"
                )
                reqs.append(signed("GET", port, key, b"", keys, amz_date))
        plans.append(reqs)
    latencies: list[float] = []
    errors: list[int] = []

    async def main() -> float:
        start = time.perf_counter()
        stop_at = start + seconds
        await asyncio.gather(*(_client(port, p, stop_at, latencies, errors) for p in plans))
        return time.perf_counter() - start

    elapsed = uvloop.run(main())
    latencies.sort()
    n = len(latencies)
    return {
        "requests": n,
        "rate": n / elapsed,
        "p50": latencies[n // 2] * 1000 if n else 0.0,
        "p99": latencies[min(int(n * 0.99), n - 1)] * 1000 if n else 0.0,
        "errors": len(errors),
    }


def run_load(spec: dict[str, Any]) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, "--load", json.dumps(spec)],
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, Any] = json.loads(out.stdout)
    return result


# ---------------------------------------------------------------------------- driver
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 and 16 clients, 1 run of 2 s")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--stack",
        choices=sorted(STACKS),
        default="fast",
        help="fast: uvloop + httptools (the default of `lakeloop gateway`); plain: asyncio + h11",
    )
    parser.add_argument("--servers", default="gateway,files", help="which servers to measure")
    parser.add_argument("--workers", type=int, default=1, help="gateway worker processes")
    parser.add_argument("--serve-minimal", nargs=2, metavar=("FOLDER", "PORT"))
    parser.add_argument("--load", metavar="JSON")
    args = parser.parse_args()
    if args.serve_minimal:
        serve_minimal(args.serve_minimal[0], int(args.serve_minimal[1]), args.stack)
        return
    if args.load:
        print(json.dumps(load(json.loads(args.load))))
        return
    clients_list = [1, 16] if args.quick else [1, 16, 64]
    seconds = 2.0 if args.quick else args.seconds
    runs = 1 if args.quick else args.runs
    rows = []
    for kind in args.servers.split(","):
        work = Path(tempfile.mkdtemp(prefix=f"lakeloop-bench-{kind}-"))
        proc, port, keys = start_server(kind, work, args.stack, args.workers)
        try:
            seed_clients, seed_n = 16, 200
            base = {"port": port, "keys": keys, "seconds": 60.0}
            if kind == "gateway":
                from lakeloop import _sigv4 as sigv4  # create the bucket with one signed PUT

                hs = sigv4.sign_headers(
                    "PUT",
                    f"/{BUCKET}",
                    [],
                    {"host": f"127.0.0.1:{port}", "content-length": "0"},
                    access_key=keys["access"],
                    secret_key=keys["secret"],
                    amz_date=time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()),
                    payload_hash=hashlib.sha256(b"").hexdigest(),
                )
                import http.client

                conn = http.client.HTTPConnection("127.0.0.1", port)
                conn.request("PUT", f"/{BUCKET}", headers=hs)
                assert conn.getresponse().status == 200
                conn.close()
            run_load(
                {
                    **base,
                    "op": "PUT",
                    "clients": seed_clients,
                    "per_client": seed_n,
                    "tag": "seed",
                    "seed_clients": 1,
                    "seed_n": 1,
                }
            )
            for op in ("PUT", "GET"):
                for clients in clients_list:
                    results = []
                    for r in range(runs):
                        per_client = max(int(6000 * seconds / clients), 200)
                        spec = {
                            **base,
                            "seconds": seconds,
                            "op": op,
                            "clients": clients,
                            "per_client": per_client,
                            "tag": f"{op}{clients}r{r}",
                            "seed_clients": seed_clients,
                            "seed_n": seed_n,
                        }
                        results.append(run_load(spec))
                    best = sorted(results, key=lambda x: x["rate"])[len(results) // 2]
                    row = {
                        "server": kind,
                        "op": op,
                        "clients": clients,
                        "rate": statistics.median(x["rate"] for x in results),
                        "p50": best["p50"],
                        "p99": best["p99"],
                        "errors": sum(x["errors"] for x in results),
                        "runs": [round(x["rate"]) for x in results],
                    }
                    rows.append(row)
                    print(json.dumps(row), file=sys.stderr, flush=True)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
            shutil.rmtree(work, ignore_errors=True)
    cores = os.cpu_count() or 1
    print(
        f"\n{cores} cores; {runs} run(s) of {seconds:.0f} s per cell; median rate; "
        f"stack {args.stack} ({' + '.join(STACKS[args.stack])}); "
        f"{args.workers} gateway process(es)\n"
    )
    print("| server | op | clients | req/s | p50 ms | p99 ms | errors | runs (req/s) |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['server']} | {r['op']} | {r['clients']} | {r['rate']:,.0f} | {r['p50']:.2f} "
            f"| {r['p99']:.2f} | {r['errors']} | {', '.join(map(str, r['runs']))} |"
        )
    by = {(r["server"], r["op"], r["clients"]): r["rate"] for r in rows}
    print()
    for op, seaweed in (("PUT", SEAWEED_WRITES), ("GET", SEAWEED_READS)):
        ours = by.get(("gateway", op, 16))
        files = by.get(("files", op, 16))
        if ours is None or files is None:
            continue
        per_core = ours / cores
        ref = seaweed / SEAWEED_CORES
        print(
            f"- {op} at 16 clients: {per_core:,.0f} req/s per core vs SeaweedFS {ref:,.0f} "
            f"(x{per_core / ref:.2f}); vs one-file-per-object app x{ours / files:.2f}"
        )


if __name__ == "__main__":
    main()
