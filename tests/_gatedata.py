"""Synthetic labels and predictions for the gate's tests and benchmark."""

from __future__ import annotations

import numpy as np


def paired_labels(
    rng: np.random.Generator, n: int, acc_a: float, acc_b: float, discordant: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels of 10 classes and two models' predictions with given accuracies and share
    of discordant examples (one right, the other wrong)."""
    a_only = (discordant + acc_a - acc_b) / 2
    b_only = (discordant - acc_a + acc_b) / 2
    both = acc_a - a_only
    cat = rng.choice(4, size=n, p=[both, a_only, b_only, 1 - both - a_only - b_only])
    y = rng.integers(0, 10, n)
    wrong = (y + 1 + rng.integers(0, 9, n)) % 10
    a = np.where((cat == 0) | (cat == 1), y, wrong)
    b = np.where((cat == 0) | (cat == 2), y, wrong)
    return y, a, b


def scores(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """0/1 labels and two models' correlated probabilities."""
    y = rng.integers(0, 2, n)
    shared = rng.normal(size=n)
    logit = 2.0 * (2 * y - 1) + shared
    pa = 1 / (1 + np.exp(-(logit + 0.4 * rng.normal(size=n))))
    pb = 1 / (1 + np.exp(-(logit + 0.4 * rng.normal(size=n))))
    return y, pa, pb
