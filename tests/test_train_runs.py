"""Runs: recorded params, epochs, timings, lineage, artifacts, event files; CLI; TensorBoard."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from lakeloop import Lake
from lakeloop.errors import InvalidInput, NotFound
from lakeloop.train import Runs
from lakeloop.train._events import EventWriter


def _model() -> object:
    from sklearn.tree import DecisionTreeClassifier

    return DecisionTreeClassifier(max_depth=2).fit([[0], [1], [2], [3]], [0, 0, 1, 1])


def _record_two(lake: Lake) -> tuple[str, str]:
    runs = Runs(lake)
    a = runs.start(
        params={"depth": 2, "lr": 0.1, "layers": [4]},
        snapshots={"digits": "ab" * 32},
        code={"content": "c" * 64, "commit": None, "dirty": None, "files": []},
        labels=["cat", "dog"],
        model="digits",
        study="s1",
        trial=0,
    )
    for epoch in (1, 2, 3):
        a.log_epoch(epoch, {"loss": 1.0 / epoch, "accuracy": np.float32(0.5 + epoch / 10)})
    a.time("fit", 0.25)
    a.finish({"accuracy": 0.8}, model=_model())
    b = runs.start(params={"depth": 3, "lr": 0.1, "layers": [4]}, study="s1", trial=1)
    b.fail("Traceback ...\nValueError: boom")
    return a.id, b.id


def test_run_records_everything(lake: Lake) -> None:
    a, b = _record_two(lake)
    runs = Runs(lake)
    rec = runs.get(a)
    assert rec.status == "finished" and rec.params["layers"] == [4]
    assert [e["epoch"] for e in rec.epochs] == [1, 2, 3]
    assert rec.epochs[2]["loss"] == pytest.approx(1 / 3)
    assert rec.epochs[0]["accuracy"] == pytest.approx(0.6)
    assert rec.metrics == {"accuracy": 0.8}
    assert rec.timings["fit"] == 0.25 and rec.timings["total"] > 0
    assert rec.system["cpus"] >= 1 and rec.system["python"]
    assert rec.snapshots == {"digits": "ab" * 32} and rec.code and rec.labels == ["cat", "dog"]
    assert rec.artifact and rec.artifact["flavor"] == "sklearn"
    assert runs.load_model(a).predict([[3]]).tolist() == [1]
    assert len(rec.tensorboard) == 1 and rec.tensorboard[0].startswith("events.out.tfevents")
    # the shortest prefix of b that a does not share (both ids may begin with one second)
    prefix = next(b[:n] for n in range(1, len(b) + 1) if not a.startswith(b[:n]))
    failed = runs.get(prefix)  # a unique prefix
    assert failed.status == "failed" and "boom" in (failed.error or "")
    assert [r.id for r in runs.list()] == [a, b] and runs.list(study="x") == []
    cmp = runs.compare([a, b])
    assert cmp["params"] == ["depth"] and cmp["metrics"] == ["accuracy"]
    assert [r["params"]["depth"] for r in cmp["rows"]] == [2, 3]
    assert cmp["rows"][1]["metrics"]["accuracy"] is None
    with pytest.raises(NotFound):
        runs.get("nope")
    with pytest.raises(InvalidInput):
        runs.get("../x")


def test_a_dead_trial_is_marked(lake: Lake) -> None:
    runs = Runs(lake)
    run = runs.start(params={})
    assert runs.mark(run.id, "failed", "process died").status == "failed"
    assert runs.mark(run.id, "interrupted", "x").status == "failed"  # only running changes


def test_event_files_are_valid_tfrecords(tmp_path: Path) -> None:
    import crc32c

    w = EventWriter(tmp_path)
    w.scalar("loss", 0.5, 1)
    w.close()
    data = Path(w.path).read_bytes()
    records = []
    while data:
        n = int.from_bytes(data[:8], "little")
        body = data[12 : 12 + n]
        crc = crc32c.crc32c(body)
        masked = (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF
        assert int.from_bytes(data[12 + n : 16 + n], "little") == masked
        records.append(body)
        data = data[16 + n :]
    assert len(records) == 2 and b"brain.Event:2" in records[0] and b"loss" in records[1]


def _cli(lake: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lakeloop", "--lake", str(lake), *args],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "250"},
    )


def test_runs_cli(tmp_path: Path) -> None:
    path = tmp_path / "lake"
    with Lake.open(path, create=True, background=False) as lake:
        a, b = _record_two(lake)
    listed = json.loads(_cli(path, "runs", "list", "--json").stdout)
    assert [r["id"] for r in listed] == [a, b]
    assert json.loads(_cli(path, "runs", "show", a).stdout)["metrics"] == {"accuracy": 0.8}
    cmp = json.loads(_cli(path, "runs", "compare", a, b, "--json").stdout)
    assert cmp["params"] == ["depth"]
    for args in (("runs", "list"), ("runs", "compare", a, b)):
        out = _cli(path, *args)
        assert out.returncode == 0 and a in out.stdout, out.stderr
    missing = _cli(path, "runs", "show", "nope")
    assert missing.returncode == 2 and "no such run" in missing.stderr


def test_tensorboard_starts_and_serves_the_runs(tmp_path: Path) -> None:
    path = tmp_path / "lake"
    with Lake.open(path, create=True, background=False) as lake:
        a, _ = _record_two(lake)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "lakeloop", "--lake", str(path), "tensorboard", a,
         "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        tags: dict[str, object] = {}
        while time.monotonic() < deadline and a not in tags:
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            try:
                url = f"http://127.0.0.1:{port}/data/plugin/scalars/tags"
                with urllib.request.urlopen(url, timeout=5) as resp:
                    tags = json.loads(resp.read())
            except OSError:
                pass
            time.sleep(0.5)
        assert a in tags and {"loss", "accuracy"} <= set(tags[a])  # type: ignore[call-overload]
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        if proc.stderr:
            proc.stderr.close()
    assert proc.returncode is not None
