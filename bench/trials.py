#!/usr/bin/env python3
"""Parallel trials: wall time of K Keras trials with 1 worker vs W workers.

The trials are the digits example's CNN (examples/digits/pipeline.py: scikit-learn's
1,797 digits as PNGs in a lake) over a grid of K parameter sets, each trial a fresh
process limited to one thread (``train_threads_per_trial = 1``), run by ``lakeloop
train``'s local engine. Each trial's wall time includes its process start and the import
of TensorFlow, as in real use. The goal is a speed-up of at least 0.8 x W.

    python bench/trials.py                   # K = 4, W = 1 and every count up to the CPUs
    python bench/trials.py --k 8 --epochs 10 --repeat 2
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "digits"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--k", type=int, default=4, help="trials (parameter sets)")
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--workers", type=int, nargs="*", default=None, help="default: 1..CPUs")
    ap.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args()
    cpus = len(os.sched_getaffinity(0))
    counts = sorted({1, *(args.workers or range(1, cpus + 1))})

    from lakeloop.train.study import train_project

    work = Path(tempfile.mkdtemp(prefix="lakeloop-bench-trials-"))
    try:
        spec = importlib.util.spec_from_file_location("prepare", EXAMPLE / "prepare.py")
        assert spec is not None and spec.loader is not None
        prepare = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(prepare)
        prepare.main([str(work / "lake")])
        proj = work / "proj"
        proj.mkdir()
        text = (EXAMPLE / "pipeline.py").read_text()
        grid = f'params = {{"filters": list(range(8, 8 + {args.k})), "dropout": [0.1], ' \
               f'"epochs": [{args.epochs}]}}'  # fmt: skip
        lines = [grid if line.startswith("params = ") else line for line in text.splitlines()]
        (proj / "pipeline.py").write_text("\n".join(lines) + "\n")
        (proj / "lakeloop.toml").write_text(
            '[project]\nlake = "../lake"\npipeline = "pipeline.py"\ndataset = "digits"\n'
            'model = "bench"\n\n[train]\nthreads = 1\n'
        )
        print(f"{args.k} trials, {args.epochs} epochs each, {cpus} CPUs, Python "
              f"{sys.version.split()[0]}", flush=True)  # fmt: skip
        walls: dict[int, float] = {}
        for w in counts:
            times = []
            for _ in range(args.repeat):
                t0 = time.perf_counter()
                result = train_project(proj, workers=w, register=False)
                times.append(time.perf_counter() - t0)
                assert not result.failed, [t.error for t in result.failed]
            walls[w] = statistics.median(times)
            trial_s = statistics.median(t.seconds for t in result.trials)
            print(f"W={w}: {walls[w]:.1f} s wall (median trial {trial_s:.1f} s)", flush=True)
        print("\n| workers | wall (s) | speed-up | speed-up / W |\n|---:|---:|---:|---:|")
        for w in counts:
            speedup = walls[1] / walls[w]
            print(f"| {w} | {walls[w]:.1f} | {speedup:.2f}x | {speedup / w:.2f} |")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
