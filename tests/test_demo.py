"""`make demo` keeps working: the same module, on a small folder of real files, the
training step on the first 400 digits, and the flywheel on fewer digits (the same code
paths as the full demo)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from lakeloop import Lake
from lakeloop.loop import TurnLog, live_accuracy, loop_status
from lakeloop.registry import Registry
from lakeloop.train import Runs

# a checkout's own source first when the tests run with PYTHONPATH=src
PYTHONPATH = os.environ.get("PYTHONPATH", "")


@pytest.mark.slow
@pytest.mark.timeout(900)  # the flywheel trains three Keras models and serves one
def test_demo_runs_end_to_end(tmp_path: Path) -> None:
    src = Path(__file__).parent.parent / "src" / "lakeloop"  # real files of this project
    lake_path = tmp_path / "lake"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "lakeloop.demo",
            "--lake",
            str(lake_path),
            "--source",
            str(src),
            "--digits",
            "400",
            "--flywheel-initial",
            "300",
            "--traffic",
            "600",  # enough that retraining's gain beats the gate's noise: promote, not hold
            "--unseen",
            "100",
        ],
        capture_output=True,
        text=True,
        timeout=900,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin", "PYTHONPATH": PYTHONPATH},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "0 mismatches" in out and "fsck" in out and "ok:" in out
    assert "FAILED" not in out
    # the training step: digits as PNG objects, 4 trials, the best registered
    assert "400 real 8x8 images as PNG objects" in out
    assert "4 Keras CNN trials on the local engine, 2 at a time, 0 failed" in out
    assert "digits-cnn@1 (keras)" in out and "loaded back by reference" in out
    assert f"--lake {lake_path} models show digits-cnn@1" in out
    assert "oneDNN" not in proc.stderr and "absl" not in proc.stderr  # no wall of logs
    assert "WARNING" not in out + proc.stderr
    # the gate: one promotion by acceptance, one regression blocked, champion unmoved
    assert "digits-gated@1 promoted by acceptance" in out
    assert "digits-gated@2 blocked (CI exit 1)" in out and "champion stays" in out
    with Lake.open(lake_path, background=False) as lake:
        version = Registry(lake).get("digits-cnn@1")
        assert version.lineage.labels == [str(d) for d in range(10)]
        assert version.lineage.extra["trials"] == 4
        runs = [r for r in Runs(lake).list() if r.model == "digits-cnn"]
        assert len(runs) == 4 and {r.status for r in runs} == {"finished"}
        decisions = Registry(lake).decisions("digits-gated")
        assert [d["outcome"] for d in decisions] == ["promote", "block"]
        assert Registry(lake).get("digits-gated@champion").version == 1
        assert version.lineage.run_id in {r.id for r in runs}
    # the flywheel: served, replayed with feedback, retrained by the loop, swapped, then a
    # worse pipeline blocked; every turn recorded, the server gone
    assert "digits-live@1 trained on 300 digits and promoted by acceptance" in out
    assert "600 held-out digits through /v1/predict" in out
    grown = re.search(
        r"trained digits-live@2 on a snapshot of (\d+) examples, gated and promoted", out
    )
    assert grown and 300 + 480 <= int(grown.group(1)) <= 900  # the turn came at >= 80 % joined
    assert "-> served (hot swap)" in out
    assert "blocked; champion stays digits-live@2, the server still answers with version 2" in out
    assert f"lakeloop ui --lake {lake_path}" in out
    with Lake.open(lake_path, background=False) as lake:
        reg = Registry(lake)
        assert [d["outcome"] for d in reg.decisions("digits-live")] == [
            "promote",
            "promote",
            "block",
        ]
        assert reg.aliases("digits-live")["champion"] == 2
        turns = TurnLog(lake, "digits-live").turns()
        assert [(t.trigger, t.outcome) for t in turns] == [
            ("code", "promote"),
            ("examples", "promote"),
            ("code", "block"),
        ]
        live = live_accuracy(lake, "digits-live")
        assert live[(1, False)].n == 600 and live[(2, False)].n == 100
        ns = lake.namespace("live-digits")
        assert sum(1 for i in ns.list() if "/fb-" in i.key) == 700  # every label landed
        status = loop_status(lake, "digits-live")
        assert status["joiner"]["joined"] == 700 and status["joiner"]["unmatched"] == 0
        assert status["controller_pid"] is None  # nothing left running
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True)
    assert str(lake_path) not in ps.stdout  # the server it started is gone


def test_demo_without_training(tmp_path: Path) -> None:
    src = Path(__file__).parent.parent / "src" / "lakeloop" / "store"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "lakeloop.demo",
            "--lake",
            str(tmp_path / "lake"),
            "--source",
            str(src),
            "--no-train",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin", "PYTHONPATH": PYTHONPATH},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "fsck" in proc.stdout and "training on the lake" not in proc.stdout
