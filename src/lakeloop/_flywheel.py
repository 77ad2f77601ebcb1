"""The demo's flywheel: a model that improves from its own traffic, then a worse change
that the gate blocks — every part real (``lakeloop serve`` in its own process on a
loopback port, HTTP requests, the embedded streams, the joiner, the loop controller).

1. The first digits (a random part of scikit-learn's 1,797) go in as PNG objects of
   dataset ``live-digits``; the loop's first turn trains a small Keras CNN on them and
   promotes it by the acceptance claim (``digits-live@1``).
2. ``lakeloop serve digits-live@champion`` starts; held-out digits are replayed through
   ``POST /v1/predict``, and their true labels come back a moment later through
   ``POST /v1/feedback`` — while the loop controller (joiner + triggers) runs beside it.
3. Once ``loop_min_new_examples`` labels have joined, the controller's turn snapshots
   the grown dataset, trains, gates the new version against the champion on the same
   evaluation split, and promotes it; the server notices the alias move and swaps.
4. Digits never seen by either model are replayed against the new version, so the live
   accuracy of both versions is measured on traffic.
5. A pipeline change that trains one epoch instead of twenty is a code change: the next
   turn trains it, the gate blocks it, and the server keeps serving the champion.

Only :func:`run` is meant to be called (by :mod:`lakeloop.demo`).
"""

from __future__ import annotations

import io
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress

__all__ = ["FlywheelResult", "run"]

NAMESPACE = "live-digits"
DATASET = "live-digits"
MODEL = "digits-live"
EPOCHS = 20

PIPELINE = f'''\
"""The flywheel's model: a small Keras CNN on the 8x8 digits (pixels 0..255)."""
import keras

from lakeloop.train.data import decode_image

params = {{"filters": [16], "epochs": [{EPOCHS}]}}
metric = "accuracy"


def decode(data):
    return decode_image(data)[..., None]


def build(params):
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Rescaling(1 / 255),
            keras.layers.Conv2D(params["filters"], 3, activation="relu", padding="same"),
            keras.layers.MaxPooling2D(),
            keras.layers.Flatten(),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def fit(model, data, params):
    train = data.train.tf_dataset(batch_size=32, shuffle_buffer=4096)
    model.fit(train, epochs=params["epochs"], verbose=0, shuffle=False)


def evaluate(model, data, params):
    loss, accuracy = model.evaluate(data.eval.tf_dataset(batch_size=256), verbose=0)
    return {{"accuracy": accuracy, "loss": loss}}
'''
GOOD = f'params = {{"filters": [16], "epochs": [{EPOCHS}]}}'
WORSE = 'params = {"filters": [2], "epochs": [1]}'  # one epoch of a thinner network

PROJECT = """\
[project]
lake = "{lake}"
pipeline = "pipeline.py"
dataset = "{dataset}"
model = "{model}"
code = ["pipeline.py"]

[[gate.policy]]
metric = "accuracy"
margin = 0.02

[gate.acceptance]
threshold = 0.6

[train]
workers = 1
"""


@dataclass
class FlywheelResult:
    """What the flywheel did, for the demo's summary (rows) and the benchmark (figures)."""

    rows: list[tuple[str, str]] = field(default_factory=list)
    versions: list[dict[str, Any]] = field(default_factory=list)
    figures: dict[str, float] = field(default_factory=dict)
    commands: list[str] = field(default_factory=list)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _png(pixels: Any) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


class _Http:
    """JSON over one keep-alive loopback connection per thread (the standard library's
    client, so the demo needs nothing beyond lakeloop's own dependencies)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self._local = threading.local()

    def request(self, method: str, path: str, doc: Any = None) -> tuple[int, Any]:
        import http.client
        import json

        body = None if doc is None else json.dumps(doc).encode()
        headers = {} if body is None else {"Content-Type": "application/json"}
        for attempt in (1, 2):
            conn = getattr(self._local, "conn", None)
            fresh = conn is None
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
                self._local.conn = conn
            try:
                conn.request(method, path, body=body, headers=headers)
                answer = conn.getresponse()
                raw = answer.read()
                break
            except (OSError, http.client.HTTPException):
                conn.close()
                self._local.conn = None
                # the server closes a keep-alive connection that sat idle; a request sent
                # on it was never read, so it is sent again once on a new connection
                if fresh or attempt == 2:
                    raise
        try:
            return answer.status, json.loads(raw) if raw else None
        except ValueError:
            return answer.status, raw.decode(errors="replace")

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()


class _Server:
    """``lakeloop serve MODEL@champion`` in its own process, output kept in a file."""

    def __init__(self, lake_path: Path, log_path: Path) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = dict(os.environ)
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        env.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
        cmd = [sys.executable, "-m", "lakeloop", "--lake", str(lake_path), "serve"]
        cmd += [f"{MODEL}@champion", "--port", str(self.port), "--set", "poll_interval=0.5"]
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(cmd, env=env, stdout=self._log, stderr=subprocess.STDOUT)
        self.client = _Http(self.port)

    def wait_ready(self, timeout: float = 180.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise SystemExit(f"demo failed: lakeloop serve exited:\n{self.tail()}")
            try:
                if self.client.request("GET", "/healthz")[0] == 200:
                    return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"demo failed: lakeloop serve did not start:\n{self.tail()}")
            time.sleep(0.2)

    def version(self) -> int:
        doc = self.client.request("GET", f"/v1/models/{MODEL}")[1]
        return int(doc["model_version_status"][0]["version"])

    def tail(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-3000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)
        self.client.close()
        self._log.close()


class _Traffic:
    """Replays images through /v1/predict and sends their labels back to /v1/feedback
    *delay* seconds later, from a second thread, in small batches."""

    def __init__(self, server: _Server, delay: float, on_feedback: Callable[[int], None]) -> None:
        self.server = server
        self.delay = delay
        self.on_feedback = on_feedback
        self.queue: list[tuple[float, str, str]] = []  # (due, prediction id, label)
        self.cond = threading.Condition()
        self.done_sending = False
        self.sent = 0
        self.sent_at: list[float] = []  # time each label was durably accepted (202)
        self.predicted: list[tuple[str, int, str]] = []  # (prediction id, version, label)
        self.errors: list[str] = []
        self.thread = threading.Thread(target=self._feedback, name="feedback", daemon=True)
        self.thread.start()

    def predict(self, batch: Any, labels: list[str]) -> None:
        status, doc = self.server.client.request(
            "POST", "/v1/predict", {"instances": batch.tolist()}
        )
        if status != 200:
            self.errors.append(f"predict {status}: {str(doc)[:200]}")
            return
        version = int(doc["model_version"])
        due = time.monotonic() + self.delay
        with self.cond:
            for pid, label in zip(doc["prediction_ids"], labels, strict=True):
                self.predicted.append((pid, version, label))
                self.queue.append((due, pid, label))
            self.cond.notify()

    def finish(self) -> None:
        with self.cond:
            self.done_sending = True
            self.cond.notify()
        self.thread.join()

    def _feedback(self) -> None:
        while True:
            with self.cond:
                while not self.queue and not self.done_sending:
                    self.cond.wait()
                if not self.queue:
                    self.server.client.close()  # this thread's connection
                    return
                wait = self.queue[0][0] - time.monotonic()
                if wait > 0 and not self.done_sending:
                    self.cond.wait(wait)
                    continue
                now = time.monotonic()
                ready = [q for q in self.queue if q[0] <= now or self.done_sending][:32]
                self.queue = self.queue[len(ready) :]
            body = [{"prediction_id": pid, "label": label} for _, pid, label in ready]
            status, doc = self.server.client.request("POST", "/v1/feedback", body)
            if status != 202:
                self.errors.append(f"feedback {status}: {str(doc)[:200]}")
                continue
            accepted = time.time()
            self.sent += len(ready)
            self.sent_at.extend([accepted] * len(ready))
            self.on_feedback(len(ready))


def _versions(lake_path: Path) -> list[dict[str, Any]]:
    """Each version of the model: its training data, its accuracy at the gate with the
    interval (from its own decision), the decision, its live accuracy on traffic."""
    from lakeloop import Lake
    from lakeloop.catalog import Catalog
    from lakeloop.loop import live_accuracy
    from lakeloop.registry import Registry

    out = []
    with Lake.open(lake_path, background=False) as lake:
        reg = Registry(lake)
        live = live_accuracy(lake, MODEL)
        decisions = {d["candidate"]: d for d in reg.decisions(MODEL)}
        snaps = {s.id: s for s in Catalog(lake).dataset(DATASET).snapshots()}
        for v in reg.versions(MODEL):
            d = decisions.get(v.ref, {})
            point: dict[str, Any] = next(
                (p for p in d.get("values") or [] if p.get("version") == v.ref),
                {},
            )
            snap = snaps.get(v.lineage.snapshots.get(DATASET, ""))
            acc = live.get((v.version, False))
            out.append(
                {
                    "ref": v.ref,
                    "trained_on": None if snap is None else snap.splits.get("train", 0),
                    "snapshot": None if snap is None else snap.ref,
                    "gate_n": (d.get("snapshot") or {}).get("n"),
                    "gate_accuracy": point.get("value"),
                    "gate_lower": point.get("lower"),
                    "gate_upper": point.get("upper"),
                    "outcome": d.get("outcome"),
                    "against": d.get("champion"),
                    "live": None if acc is None else acc.to_dict(),
                    "aliases": list(v.aliases),
                }
            )
    return out


def run(
    lake_path: Path,
    *,
    initial: int,
    traffic: int,
    after: int,
    progress: Callable[..., Progress],
    console: Console,
) -> FlywheelResult:
    """The flywheel on the demo lake (see the module docstring); -> rows and figures."""
    import numpy as np
    from rich.progress import TimeElapsedColumn
    from sklearn.datasets import load_digits

    from lakeloop import Lake
    from lakeloop.catalog import Catalog
    from lakeloop.loop import Controller, Trigger, run_turn

    # the gate scores Keras models in this process; their retracing notices are noise here
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    result = FlywheelResult()
    digits = load_digits()
    pixels = (digits.images * (255 / 16)).round().astype(np.uint8)
    order = np.random.default_rng(7).permutation(len(pixels))
    first, live = order[:initial], order[initial : initial + traffic]
    fresh = order[initial + traffic : initial + traffic + after]
    # the project folder stays beside the lake, so the commands printed at the end work
    folder = lake_path.parent / f"{lake_path.name}-project"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    server: _Server | None = None
    try:
        (folder / "pipeline.py").write_text(PIPELINE)
        (folder / "lakeloop.toml").write_text(
            PROJECT.format(lake=lake_path.resolve(), dataset=DATASET, model=MODEL)
        )
        # 1. the first data and the first turn
        with Lake.open(lake_path, background=False) as lake:
            ns = lake.create_namespace(NAMESPACE, exist_ok=True)
            ns.put_many(
                (f"{digits.target[i]}/{i:05d}.png", _png(pixels[i]), {"content_type": "image/png"})
                for i in first
            )
            Catalog(lake).snapshot(f"{NAMESPACE}/", dataset=DATASET, labels="{label}/{name}")
        t0 = time.perf_counter()
        with progress(TimeElapsedColumn()) as bar:
            task = bar.add_task("turn 1: snapshot, train, gate", total=None)
            turn1 = run_turn(folder, lake=str(lake_path), trigger=Trigger("code", "first turn"))
            bar.update(task, total=1, completed=1)
        if turn1.outcome != "promote":
            raise SystemExit(f"demo failed: the first model was not promoted: {turn1}")
        result.rows.append(
            (
                "flywheel: first model",
                f"{turn1.candidate} trained on {initial:,} digits and promoted by acceptance "
                f"in {time.perf_counter() - t0:.1f}s",
            )
        )
        # 2. serve it, replay traffic with delayed feedback, the controller beside it
        server = _Server(lake_path, folder / "serve.log")
        t0 = time.perf_counter()
        server.wait_ready()
        result.figures["serve_start_s"] = time.perf_counter() - t0
        lines: list[str] = []
        stop = threading.Event()
        turns: list[Any] = []
        failures: list[BaseException] = []
        with Controller(folder, lake=str(lake_path), log=lines.append) as controller:

            def drive() -> None:
                try:
                    while not stop.is_set() and not turns:
                        turn = controller.tick()
                        if turn is not None:
                            turns.append(turn)
                        stop.wait(0.3)
                except BaseException as exc:  # reported by the main thread
                    failures.append(exc)

            driver = threading.Thread(target=drive, name="loop-controller", daemon=True)
            driver.start()
            t0 = time.perf_counter()
            with progress(TimeElapsedColumn()) as bar:
                sent_task = bar.add_task("predict (held-out digits)", total=len(live))
                fb_task = bar.add_task("feedback (1 s later)", total=len(live))
                flow = _Traffic(server, 1.0, lambda n: bar.advance(fb_task, n))
                for start in range(0, len(live), 4):
                    rows = live[start : start + 4]
                    flow.predict(pixels[rows][..., None], [str(digits.target[i]) for i in rows])
                    bar.advance(sent_task, len(rows))
                flow.finish()
            replay_s = time.perf_counter() - t0
            if flow.errors:
                raise SystemExit(f"demo failed: {flow.errors[0]}")
            need = int(controller_settings(lake_path)["loop_min_new_examples"])
            with progress(TimeElapsedColumn()) as bar:
                task = bar.add_task("turn 2: waiting for the loop", total=None)
                while driver.is_alive() and not turns and not failures:
                    time.sleep(0.2)
                stop.set()
                driver.join()
                bar.update(task, total=1, completed=1)
            if failures:
                raise failures[0]
            turn2 = turns[0]
            if turn2.outcome != "promote":
                raise SystemExit(f"demo failed: the retrained model was not promoted: {turn2}")
            promoted_at = turn2.ended
            t_nth = flow.sent_at[need - 1] if len(flow.sent_at) >= need else float("nan")
            deadline = time.monotonic() + 60
            while server.version() != int(turn2.candidate.split("@")[1]):
                if time.monotonic() > deadline:
                    raise SystemExit("demo failed: the server did not swap to the new champion")
                time.sleep(0.1)
            swapped_at = time.time()
            result.figures.update(
                {
                    "n": need,
                    "nth_to_promoted_s": promoted_at - t_nth,
                    "nth_to_serving_s": swapped_at - t_nth,
                    "replay_s": replay_s,
                    "requests": len(live) / 4,
                }
            )
            result.figures.update({f"turn_{k}_s": v for k, v in turn2.steps.items()})
            result.rows.append(
                (
                    "flywheel: traffic",
                    f"{len(live):,} held-out digits through /v1/predict ({len(live) // 4:,} "
                    f"requests of 4) in {replay_s:.1f}s, their labels through /v1/feedback 1 s "
                    f"later; the joiner landed them as PNG objects of {DATASET}",
                )
            )
            result.rows.append(
                (
                    "flywheel: retrained",
                    f"turn 2 ({turn2.trigger}: {turn2.reasons[0].split(': ', 1)[-1]}) trained "
                    f"{turn2.candidate} on a snapshot of {turn2.examples:,} examples, gated and "
                    "promoted it; "
                    f"{need}-th label -> promoted {result.figures['nth_to_promoted_s']:.1f}s, "
                    f"-> served (hot swap) {result.figures['nth_to_serving_s']:.1f}s",
                )
            )
            # 3. unseen digits against the new champion, with their labels
            with progress() as bar:
                task = bar.add_task("predict (unseen, new model)", total=len(fresh))
                flow = _Traffic(server, 0.0, lambda n: None)
                for start in range(0, len(fresh), 4):
                    rows = fresh[start : start + 4]
                    flow.predict(pixels[rows][..., None], [str(digits.target[i]) for i in rows])
                    bar.advance(task, len(rows))
                flow.finish()
            joined = controller.join_feedback()
            # 4. a worse pipeline: a code change the gate blocks
            pipeline = folder / "pipeline.py"
            pipeline.write_text(pipeline.read_text().replace(GOOD, WORSE))
            with progress(TimeElapsedColumn()) as bar:
                task = bar.add_task("turn 3: a worse pipeline", total=None)
                turn3 = controller.tick()
                bar.update(task, total=1, completed=1)
            if turn3 is None or turn3.outcome != "block":
                raise SystemExit(f"demo failed: the worse pipeline was not blocked: {turn3}")
            served = server.version()
            result.rows.append(
                (
                    "flywheel: worse code",
                    f"turn 3 ({turn3.trigger}) trained {turn3.candidate} with 1 epoch instead "
                    f"of {EPOCHS}: blocked; champion stays {turn3.champion_after}, the server "
                    f"still answers with version {served}",
                )
            )
            result.figures["blocked_turn_s"] = turn3.seconds or 0.0
            del joined
        result.versions = _versions(lake_path)
        result.commands = [f"loop status --project {folder}", f"models show {MODEL}"]
    finally:
        if server is not None:
            server.stop()
    return result


def controller_settings(lake_path: Path) -> Any:
    from lakeloop import Lake

    with Lake.open(lake_path, background=False) as lake:
        return lake.settings
