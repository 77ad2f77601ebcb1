#!/usr/bin/env python3
"""Loop benchmark: time from the N-th feedback event to a promoted model.

Each run builds a fresh project (tests/_loopproject.py: scikit-learn on the 8x8 digits
as PNG objects, the first 300 as the initial dataset), lets the loop's first turn promote
``digits@1``, then starts ``lakeloop loop run`` as its own process
(``loop_min_new_examples`` = N, ``loop_poll`` = 0.5 s) and publishes, to the embedded
streams, the predictions for the next M digits and then their labels, in batches of 50
every 50 ms. It measures, from the moment the batch holding the N-th label is durable:

- until the controller's turn began (the joiner landed N examples and the trigger fired);
- each step of the turn (snapshot, train, gate) from the turn's record;
- until ``champion`` moved (the registry's alias move), the figure asked for.

In the same run, the baseline is the pipeline alone on the same grown data: ``run_ci``
with ``force=True`` (snapshot, train, gate) called directly; the ratio says what the loop
adds on top of the work itself (joining, polling, journaling).

    python bench/loop.py              # N = 500, M = 600, 3 runs
    python bench/loop.py --quick      # N = 100, M = 150, 1 run
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from _loopproject import GIT_ENV, digit_images, make_project
from _machine import machine
from lakeloop import Lake
from lakeloop.loop import TurnLog, run_ci, run_turn
from lakeloop.loop._joinstate import JoinState, state_path
from lakeloop.registry import Registry
from lakeloop.stream import open_stream

HERE = Path(__file__).resolve().parent
INITIAL = 300


def scores(label: int) -> list[float]:
    out = [0.01] * 10
    out[label] = 0.91
    return out


def one_run(root: Path, n: int, m: int) -> dict[str, float]:
    repo = make_project(
        root, slice(0, INITIAL), loop_min_new_examples=n, loop_poll=0.5, loop_interval=0
    )
    first = run_turn(repo)
    assert first.outcome == "promote", first
    images, labels = digit_images()
    rows = range(INITIAL, INITIAL + m)
    ids = {i: uuid.uuid4().hex for i in rows}
    with Lake.open(repo / "lake", background=False) as lake, open_stream(lake, "predictions") as s:
        s.publish_many(
            [
                {
                    "prediction_id": ids[i],
                    "time": time.time(),
                    "model": "digits",
                    "version": 1,
                    "input": images[i].tolist(),
                    "output": scores(int(labels[i])),
                    "shadow": False,
                }
                for i in rows
            ],
            ids=[ids[i] for i in rows],
        )
    env = {**GIT_ENV, "PYTHONPATH": str(HERE.parent / "src")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "lakeloop", "loop", "run", "--max-turns", "1"],
        cwd=repo,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        # the controller is up once its joiner has read the predictions
        path = state_path(repo / "lake", "digits")
        deadline = time.monotonic() + 120
        while True:
            if path.is_file():
                with JoinState(path) as state:
                    if state.counters()["predictions"] >= m:
                        break
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("the controller did not start")
            time.sleep(0.1)
        t_nth: float | None = None
        sent = 0
        order = list(rows)
        with Lake.open(repo / "lake", background=False) as lk, open_stream(lk, "feedback") as s:
            for start in range(0, m, 50):
                batch = order[start : start + 50]
                s.publish_many(
                    [
                        {"prediction_id": ids[i], "label": int(labels[i]), "time": time.time()}
                        for i in batch
                    ],
                    ids=[uuid.uuid4().hex for _ in batch],
                )
                sent += len(batch)
                if sent >= n and t_nth is None:
                    t_nth = time.time()
                time.sleep(0.05)
        proc.wait(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    with Lake.open(repo / "lake", background=False) as lake:
        turn = TurnLog(lake, "digits").last()
        moves = [h for h in Registry(lake).history("digits") if h.alias == "champion"]
    assert turn is not None and turn.outcome == "promote", turn
    assert t_nth is not None
    promoted = moves[-1].when
    t0 = time.perf_counter()
    base = run_ci(repo, force=True)
    baseline = time.perf_counter() - t0
    assert base.outcome in ("promote", "hold", "block"), base.outcome
    return {
        "to_turn": turn.started - t_nth,
        "snapshot": turn.steps.get("snapshot", 0.0),
        "train": turn.steps.get("train", 0.0),
        "gate": turn.steps.get("gate", 0.0),
        "to_promoted": promoted - t_nth,
        "baseline": baseline,
        "examples": float(turn.examples or 0),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=500, help="labels that start a turn")
    parser.add_argument("--m", type=int, default=600, help="predictions and labels sent")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="N 100, M 150, one run")
    args = parser.parse_args()
    if args.quick:
        args.n, args.m, args.repeat = 100, 150, 1
    if args.m < args.n or INITIAL + args.m > 1797:
        parser.error("need N <= M and 300 + M <= 1797")
    print(f"# loop: N-th feedback -> promoted model ({machine()})")
    print(
        f"# N = {args.n} labels start a turn; {args.m} predictions and labels; {args.repeat} runs"
    )
    results = []
    with tempfile.TemporaryDirectory(prefix="lakeloop-bench-loop-") as tmp:
        for r in range(args.repeat):
            res = one_run(Path(tmp) / f"run{r}", args.n, args.m)
            results.append(res)
            print(
                f"run {r + 1}: N-th label -> turn {res['to_turn']:.2f}s, turn "
                f"{res['snapshot']:.2f} + {res['train']:.2f} + {res['gate']:.2f}s, -> champion "
                f"{res['to_promoted']:.2f}s; run_ci alone {res['baseline']:.2f}s",
                flush=True,
            )

    def med(key: str) -> float:
        return statistics.median(r[key] for r in results)

    print()
    print("| measure (median of runs) | seconds |")
    print("|---|---:|")
    print(f"| N-th label durable -> turn begins (join + trigger) | {med('to_turn'):.2f} |")
    print(f"| turn: snapshot of {med('examples'):,.0f} examples | {med('snapshot'):.2f} |")
    print(f"| turn: train (1 trial, its own process) | {med('train'):.2f} |")
    print(f"| turn: gate (score both versions, decide, promote) | {med('gate'):.2f} |")
    print(f"| **N-th label durable -> champion moved** | **{med('to_promoted'):.2f}** |")
    print(f"| baseline: `run_ci(force=True)` alone, same data | {med('baseline'):.2f} |")
    print(
        f"| ratio: N-th label -> champion / pipeline alone | "
        f"{med('to_promoted') / med('baseline'):.2f}x |"
    )


if __name__ == "__main__":
    main()
