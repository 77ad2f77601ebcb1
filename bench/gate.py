#!/usr/bin/env python3
"""Gate benchmark: decision time at a million rows, and the gate's error rates.

1. Decision time for 1 M evaluation rows: accuracy (exact McNemar) and the bootstrap
   metrics (1,000 paired resamples): log loss, RMSE, AUC. Medians of --repeat runs.
2. The simulation table: how often each gate blocks, over n and effect size, for
   lakeloop's gate (Policy(metric="accuracy", margin=0.01), 95 %) beside a point-estimate
   gate that blocks when candidate < champion (what TFX and MLflow thresholds do).
   Two models at 90 % accuracy; the candidate's accuracy differs by the effect; errors
   are correlated (6 % of examples discordant) or independent (18 %). A row with effect
   0 measures false blocks; a negative effect measures power to catch a regression.
   Accuracy decisions depend only on the two discordant counts, so each simulated pair
   of counts is decided by the gate's own exact test (lakeloop.gate.stats), cached per
   distinct pair; a sample of them is checked against ``compare`` on real arrays.
3. False blocks of the bootstrap on equal models (log loss).

    python bench/gate.py            # full run (a few minutes)
    python bench/gate.py --quick    # smoke run, under a minute
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from _gatedata import paired_labels
from _machine import machine
from lakeloop.gate import Policy, compare
from lakeloop.gate.stats import exact_mcnemar

POLICY = Policy(metric="accuracy", margin=0.01, confidence=0.95)


def timed(fn, repeat: int) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """Median wall seconds and median CPU seconds of this process (the CPU time shows the
    work itself on a machine shared with other jobs, where wall time also counts waiting)."""
    wall, cpu = [], []
    for _ in range(repeat):
        t, c = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    return statistics.median(wall), statistics.median(cpu)


def decision_times(rows: int, repeat: int) -> list[tuple[str, float, float, str]]:
    rng = np.random.default_rng(0)
    y, a, b = paired_labels(rng, rows, 0.90, 0.90, 0.06)
    yb = rng.integers(0, 2, rows)
    logit = 1.5 * (2 * yb - 1) + rng.normal(size=rows)
    pa = 1 / (1 + np.exp(-(logit + 0.5 * rng.normal(size=rows))))
    pb = 1 / (1 + np.exp(-(logit + 0.5 * rng.normal(size=rows))))
    out = []
    cases = [
        ("accuracy (exact McNemar)", lambda: compare(y, a, b, POLICY)),
        ("log loss (bootstrap, 1,000)", lambda: compare(yb, pa, pb, Policy(metric="log_loss"))),
        ("RMSE (bootstrap, 1,000)", lambda: compare(logit, pa, pb, Policy(metric="rmse"))),
        ("AUC (bootstrap, 1,000)", lambda: compare(yb, pa, pb, Policy(metric="auc"))),
    ]
    compare(y[:100], a[:100], b[:100], POLICY)  # import scipy.stats outside the timings
    for name, fn in cases:
        wall, cpu = timed(fn, repeat)
        goal = "< 2 s" if "McNemar" in name else "< 10 s"
        out.append((name, wall, cpu, goal))
        print(f"  {name}: {wall:.3f} s wall, {cpu:.3f} s CPU", flush=True)
    return out


_CACHE: dict[tuple[int, int, int], str] = {}


def outcome(b: int, c: int, n: int) -> str:
    key = (b, c, n)
    if key not in _CACHE:
        ev = exact_mcnemar(b, c, n, confidence=POLICY.confidence, tolerance=POLICY.tolerance)
        if ev.upper < -POLICY.tolerance:
            _CACHE[key] = "block"
        elif ev.lower > -POLICY.margin:
            _CACHE[key] = "promote"
        else:
            _CACHE[key] = "hold"
    return _CACHE[key]


def simulate(n: int, effect: float, discordant: float, sims: int, seed: int) -> tuple[float, ...]:
    """Block rates of lakeloop's gate and of the point-estimate gate, and promote rate."""
    rng = np.random.default_rng(seed)
    a_only = (discordant - effect) / 2
    b_only = (discordant + effect) / 2
    counts = rng.multinomial(n, [a_only, b_only, 1 - a_only - b_only], size=sims)
    outcomes = [outcome(int(b), int(c), n) for b, c, _ in counts]
    ours = outcomes.count("block") / sims
    promoted = outcomes.count("promote") / sims
    point = float(np.mean(counts[:, 1] < counts[:, 0]))  # candidate's accuracy < champion's
    return ours, point, promoted


def exact_false_block(n: int, discordant: float) -> float:
    """The exact probability that lakeloop's gate blocks two equal models (no simulation):
    the sum over the number of discordant examples m of P(m) times the binomial(m, 1/2)
    probability of landing in the block region, found with the gate's own test."""
    from scipy.stats import binom

    alpha = 1 - POLICY.confidence
    ms = np.arange(0, n + 1)
    weights = binom.pmf(ms, n, discordant)
    keep = weights > 1e-12
    total = 0.0
    for m, w in zip(ms[keep], weights[keep], strict=True):
        # the largest c (candidate-only examples) that blocks, via the gate's p-value
        c = int(binom.ppf(alpha, m, 0.5))
        while (
            c >= 0
            and exact_mcnemar(m - c, c, n, confidence=POLICY.confidence, tolerance=0.0).upper >= 0
        ):
            c -= 1
        if c >= 0:
            total += w * float(binom.cdf(c, m, 0.5))
    return total


def check_against_compare(samples: int) -> None:
    rng = np.random.default_rng(99)
    for _ in range(samples):
        y, a, b = paired_labels(rng, 2000, 0.90, 0.88, 0.06)
        right_a, right_b = a == y, b == y
        bb, cc = int((right_a & ~right_b).sum()), int((right_b & ~right_a).sum())
        assert compare(y, a, b, POLICY).outcome == outcome(bb, cc, 2000)


def bootstrap_false_blocks(n: int, sims: int) -> float:
    rng = np.random.default_rng(7)
    blocks = 0
    for _ in range(sims):
        y = rng.integers(0, 2, n)
        logit = 1.5 * (2 * y - 1) + rng.normal(size=n)
        pa = 1 / (1 + np.exp(-(logit + 0.5 * rng.normal(size=n))))
        pb = 1 / (1 + np.exp(-(logit + 0.5 * rng.normal(size=n))))
        blocks += compare(y, pa, pb, Policy(metric="log_loss")).outcome == "block"
    return blocks / sims


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run, under a minute")
    parser.add_argument("--rows", type=int, default=None, help="rows for decision time")
    parser.add_argument("--repeat", type=int, default=None, help="runs per timing (median)")
    parser.add_argument("--sims", type=int, default=None, help="simulated pairs per cell")
    parser.add_argument("--times-only", action="store_true", help="decision times only")
    args = parser.parse_args()
    rows = args.rows or (100_000 if args.quick else 1_000_000)
    repeat = args.repeat or (1 if args.quick else 3)
    sims = args.sims or (300 if args.quick else 4000)
    print(f"# gate benchmark — {machine(f'numpy {np.__version__}')}\n")
    print(f"## Decision time, {rows:,} rows (median of {repeat})\n")
    times = decision_times(rows, repeat)
    print("\n| decision | wall s | CPU s | goal |\n|---|---:|---:|---|")
    for name, wall, cpu, goal in times:
        print(f"| {name} | {wall:.3f} | {cpu:.3f} | {goal} |")
    if args.times_only:
        return
    check_against_compare(10 if args.quick else 50)
    ns = [500, 1000, 2000, 5000] if args.quick else [500, 1000, 2000, 5000, 10000]
    effects = [0.0, -0.01, -0.02, -0.03, 0.02]
    for discordant, label in (
        (0.06, "correlated errors, 6 % discordant"),
        (0.18, "independent errors, 18 % discordant"),
    ):
        print(f"\n## Block rate, {label} ({sims:,} simulated pairs per cell)\n")
        print(
            "lakeloop / point estimate; the promote rate of lakeloop in brackets; the "
            "'exact' row is lakeloop's false-block probability computed, not simulated\n"
        )
        print("| effect | " + " | ".join(f"n={n:,}" for n in ns) + " |")
        print("|---|" + "---:|" * len(ns))
        exact = [exact_false_block(n, discordant) for n in ns]
        print("| equal, exact | " + " | ".join(f"{e:.2%}" for e in exact) + " |")
        for i, effect in enumerate(effects):
            cells = []
            for j, n in enumerate(ns):
                ours, point, promoted = simulate(n, effect, discordant, sims, seed=1000 * i + j)
                cells.append(f"{ours:.1%} / {point:.1%} ({promoted:.0%})")
            name = "equal" if effect == 0 else f"{effect * 100:+.0f} pt"
            print(f"| {name} | " + " | ".join(cells) + " |", flush=True)
    boot_sims = 100 if args.quick else 400
    print(f"\n## Bootstrap false blocks on equal models (log loss, {boot_sims} pairs)\n")
    print("| n | block rate |\n|---:|---:|")
    for n in (500, 2000) if args.quick else (500, 2000, 10000):
        print(f"| {n:,} | {bootstrap_false_blocks(n, boot_sims):.1%} |", flush=True)


if __name__ == "__main__":
    main()
