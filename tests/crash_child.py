"""The child process of the crash tests: it writes to a lake until it is killed.

    python tests/crash_child.py LAKE ACKLOG SEED [THREADS]

It opens the lake at LAKE (made by the parent) and loops forever: puts of every size
(some above blob_threshold), overwrites, deletes, bulk loads (``put_many``) and now and
then a compaction, from THREADS threads (each on keys of its own, so the order of the
writes of one key is the order of its log lines), while the background compactor runs
too. Around every operation it appends one JSON line to ACKLOG (see
``_lakemodel.Model.apply_log_line``): ``{"b": ...}`` before calling the store, and
``{"a": ...}`` once the store returned, flushed and fsynced. The parent kills it with
SIGKILL at a random moment and checks the reopened lake against the log.
"""

from __future__ import annotations

import json
import os
import random
import sys
import threading
import traceback
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _lakemodel import DELETED, digest, make_data
from lakeloop import Lake

KEYS_PER_THREAD = 120


class AckLog:
    def __init__(self, path: str) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def _line(self, entry: dict[str, Any], durable: bool) -> None:
        os.write(self.fd, (json.dumps(entry, separators=(",", ":")) + "\n").encode())
        if durable:
            os.fsync(self.fd)

    def begin(self, pairs: list[tuple[str, str]]) -> None:
        self._line({"b": pairs}, durable=False)  # a kill keeps what was written

    def ack(self, pairs: list[tuple[str, str]]) -> None:
        self._line({"a": pairs}, durable=True)


def size(rng: random.Random) -> int:
    r = rng.random()
    if r < 0.05:
        return rng.randint(33_000, 120_000)  # a blob (blob_threshold is 32KiB)
    if r < 0.15:
        return 0
    if r < 0.7:
        return rng.randint(1, 2000)
    return rng.randint(2000, 30_000)


def writer(ns: Any, log: AckLog, seed: int, thread: int, mixed: bool) -> None:
    try:
        loop(ns, log, seed, thread, mixed)
    except BaseException:
        traceback.print_exc()
        sys.stderr.flush()
        os._exit(3)  # an error is a failure of the test: the parent sees the exit


def loop(ns: Any, log: AckLog, seed: int, thread: int, mixed: bool) -> None:
    rng = random.Random(seed * 1000 + thread)
    prefix = f"t{thread}/"
    while True:
        r = rng.random()
        if mixed and r < 0.02:
            ns.compact()
            continue
        if mixed and r < 0.12:
            items = []
            for _ in range(rng.randint(2, 25)):
                key = f"{prefix}{rng.randrange(KEYS_PER_THREAD):04d}"
                if key not in {k for k, _ in items}:
                    items.append((key, make_data(rng, size(rng))))
            pairs = [(k, digest(d)) for k, d in items]
            log.begin(pairs)
            ns.put_many(items)
            log.ack(pairs)
            continue
        key = f"{prefix}{rng.randrange(KEYS_PER_THREAD):04d}"
        if r < 0.3:
            log.begin([(key, DELETED)])
            ns.delete(key, missing_ok=True)
            log.ack([(key, DELETED)])
        else:
            data = make_data(rng, size(rng))
            log.begin([(key, digest(data))])
            ns.put(key, data)
            log.ack([(key, digest(data))])


def main() -> None:
    lake_path, log_path, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
    threads = int(sys.argv[4]) if len(sys.argv) > 4 else 3
    log = AckLog(log_path)
    lake = Lake.open(lake_path, background=True)
    ns = lake.namespace("photos")
    workers = [
        threading.Thread(target=writer, args=(ns, log, seed, i, i == 0), daemon=True)
        for i in range(threads)
    ]
    for t in workers:
        t.start()
    print("ready", flush=True)
    for t in workers:
        t.join()  # forever: the parent kills us


if __name__ == "__main__":
    main()
