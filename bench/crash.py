#!/usr/bin/env python3
"""Crash loop: kill -9 a writing process N times and check what survived each time.

The child (tests/crash_child.py) writes to one lake from three threads, with the
background compactor on: puts of every size (some blobs), overwrites, deletes, bulk
loads and compactions, logging each acknowledged operation (flushed and fsynced). After
each SIGKILL at a random moment the lake is reopened and every acknowledged write must
read back identical (the last one of each key), every acknowledged delete must stay
deleted, and fsck must be clean. This is tests/test_crash.py at scale.

    python bench/crash.py --many 1000          # default: 1000 kills (about 20 minutes)
    python bench/crash.py --many 200 --max-sleep 0.5 --keep /tmp/crash-lake

It prints a summary line: kills, acknowledged operations, keys verified, operations under
way at a kill that did / did not take effect, failures. Exit status 1 on any failure.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from _crashloop import Summary, run


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--many", type=int, default=1000, help="kills (default 1000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--min-sleep", type=float, default=0.05, help="seconds before a kill, least")
    p.add_argument("--max-sleep", type=float, default=1.5, help="seconds before a kill, most")
    p.add_argument("--threads", type=int, default=3, help="writer threads in the child")
    p.add_argument(
        "--startup",
        action="store_true",
        help="count the sleep from the child's start (kills in imports/recovery)",
    )
    p.add_argument("--keep-going", action="store_true", help="go on after a failure")
    p.add_argument("--keep", metavar="DIR", help="work in DIR and keep it (default: a temp dir)")
    args = p.parse_args()

    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="lakeloop-crash-"))
    every = max(args.many // 20, 1)

    def progress(i: int, s: Summary) -> None:
        if (i + 1) % every == 0:
            print(f"  {i + 1:5d}/{args.many}  {s.line()}", flush=True)

    kwargs: dict[str, Any] = {
        "seed": args.seed,
        "min_sleep": args.min_sleep,
        "max_sleep": args.max_sleep,
        "threads": args.threads,
        "wait_ready": not args.startup,
        "stop_on_failure": not args.keep_going,
        "progress": progress,
    }
    print(f"crash loop in {root}: {args.many} kills", flush=True)
    try:
        result = run(root, args.many, **kwargs)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    print(result.line())
    for failure in result.failures:
        print("FAILURE", failure)
    return 1 if result.failures else 0


if __name__ == "__main__":
    sys.exit(main())
