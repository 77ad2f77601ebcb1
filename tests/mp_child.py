"""Child processes of the multi-process tests.

    python tests/mp_child.py writer LAKE ID COUNT OUT    puts (and, for ID 0, deletes)
    python tests/mp_child.py reader LAKE SECONDS OUT     reads while the writers write
    python tests/mp_child.py hold LAKE NAMESPACE         holds a namespace's writer lock

Writers and readers print "ready", wait for a line on stdin (so that all start
together), work, and write a JSON report to OUT. Every value a writer stores describes
itself (its key, then random bytes, then the MD5 of both), so a reader can check any
value it gets without knowing which write it came from. "hold" takes the writer lock,
prints "locked" and sleeps until it is killed.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from lakeloop import Lake
from lakeloop.errors import NotFound


def value(key: str, rng: random.Random, size: int) -> bytes:
    body = key.encode() + b"|" + rng.randbytes(max(size, 0))
    return body + hashlib.md5(body, usedforsecurity=False).digest()


def valid(key: str, data: bytes) -> bool:
    body, tail = data[:-16], data[-16:]
    return body.startswith(key.encode() + b"|") and (
        hashlib.md5(body, usedforsecurity=False).digest() == tail
    )


def wait_for_go() -> None:
    print("ready", flush=True)
    sys.stdin.readline()


def writer(lake_path: str, ident: int, count: int, out: str) -> None:
    rng = random.Random(ident)
    state: dict[str, str | None] = {}
    with Lake.open(lake_path, background=False) as lake:
        ns = lake.namespace("shared")
        wait_for_go()
        i = 0
        while i < count:
            if i % 25 == 10:  # a bulk load
                items = [
                    (f"w{ident}/{i + j:04d}", value(f"w{ident}/{i + j:04d}", rng, 300))
                    for j in range(8)
                ]
                ns.put_many(items)
                for key, data in items:
                    state[key] = hashlib.md5(data, usedforsecurity=False).hexdigest()
                i += len(items)
                continue
            key = f"w{ident}/{rng.randrange(max(i, 1)):04d}" if i % 4 == 3 else f"w{ident}/{i:04d}"
            size = 70_000 if i % 40 == 5 else rng.choice([0, 100, 2000, 9000])
            data = value(key, rng, size)
            ns.put(key, data)
            state[key] = hashlib.md5(data, usedforsecurity=False).hexdigest()
            if ident == 0 and i % 3 == 2:  # this writer deletes too
                victim = rng.choice(sorted(state))
                ns.delete(victim, missing_ok=True)
                state[victim] = None
            if ident == 1 and i == count // 2:
                ns.compact()  # while the others write
            i += 1
    with open(out, "w") as f:
        json.dump(state, f)


def reader(lake_path: str, seconds: float, out: str) -> None:
    rng = random.Random(os.getpid())
    stats = {"reads": 0, "found": 0, "lists": 0, "bad": []}
    with Lake.open(lake_path, background=False) as lake:
        ns = lake.namespace("shared")
        seeded = {
            f"seed/{i:03d}": value(f"seed/{i:03d}", random.Random(i), 500 + i) for i in range(40)
        }
        wait_for_go()
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            key = rng.choice(sorted(seeded))
            if ns.get(key) != seeded[key]:
                stats["bad"].append(f"{key}: seeded object changed")
            key = f"w{rng.randrange(4)}/{rng.randrange(200):04d}"
            stats["reads"] += 2
            try:
                data = ns.get(key)
            except NotFound:
                continue
            stats["found"] += 1
            if not valid(key, data):
                stats["bad"].append(f"{key}: read bytes that no writer wrote")
            if stats["reads"] % 50 == 0:
                stats["lists"] += 1
                for info in ns.list(prefix=f"w{rng.randrange(4)}/", limit=50):
                    if info.size < 16:
                        stats["bad"].append(f"{info.key}: listed with size {info.size}")
    with open(out, "w") as f:
        json.dump(stats, f)


def hold(lake_path: str, namespace: str) -> None:
    lake = Lake.open(lake_path, background=False)
    ns = lake.namespace(namespace)
    ns._lock.acquire(30.0, op="hold")
    print("locked", flush=True)
    time.sleep(600)


def main() -> None:
    mode = sys.argv[1]
    if mode == "writer":
        writer(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5])
    elif mode == "reader":
        reader(sys.argv[2], float(sys.argv[3]), sys.argv[4])
    elif mode == "hold":
        hold(sys.argv[2], sys.argv[3])
    else:
        raise SystemExit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
