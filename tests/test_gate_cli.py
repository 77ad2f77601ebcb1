"""``lakeloop gate compare`` and ``lakeloop gate accept`` on saved predictions."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from _gatedata import paired_labels


def lakeloop(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "lakeloop", *args], capture_output=True, text=True, env=env
    )


def test_compare_and_accept(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    y, a, b = paired_labels(rng, 5000, 0.90, 0.87, 0.06)
    for name, arr in (("y", y), ("a", a), ("b", b)):
        np.save(tmp_path / f"{name}.npy", arr)
    np.savetxt(tmp_path / "a.csv", a, fmt="%d")
    f = {k: str(tmp_path / f"{k}.npy") for k in "yab"}
    blocked = lakeloop(
        "gate",
        "compare",
        "--y-true",
        f["y"],
        "--champion",
        f["a"],
        "--candidate",
        f["b"],
        "--margin",
        "0.01",
        "--report",
        "json",
    )
    assert blocked.returncode == 1, blocked.stderr
    assert json.loads(blocked.stdout)["outcome"] == "block"
    promoted = lakeloop(
        "gate",
        "compare",
        "--y-true",
        f["y"],
        "--champion",
        f["b"],
        "--candidate",
        str(tmp_path / "a.csv"),
        "--margin",
        "0.01",
    )
    assert promoted.returncode == 0 and "promote" in promoted.stdout
    accepted = lakeloop(
        "gate", "accept", "--y-true", f["y"], "--pred", f["a"], "--threshold", "0.85"
    )
    assert accepted.returncode == 0 and "Acceptance" in accepted.stdout
    refused = lakeloop(
        "gate", "accept", "--y-true", f["y"], "--pred", f["b"], "--threshold", "0.95"
    )
    assert refused.returncode == 1
    bad = lakeloop(
        "gate",
        "compare",
        "--y-true",
        f["y"],
        "--champion",
        f["a"],
        "--candidate",
        f["b"],
        "--metric",
        "acc",
    )
    assert bad.returncode == 2 and "unknown metric" in bad.stderr and "Traceback" not in bad.stderr
    np.save(tmp_path / "short.npy", a[:10])
    short = lakeloop(
        "gate",
        "compare",
        "--y-true",
        f["y"],
        "--champion",
        f["a"],
        "--candidate",
        str(tmp_path / "short.npy"),
    )
    assert short.returncode == 2 and "rows" in short.stderr
    assert "gate" in lakeloop("--help").stdout
