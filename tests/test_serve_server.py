"""`lakeloop serve` for real: its own process, HTTP over loopback, real TensorFlow.

One Keras server (two versions of a small CNN: ``prod`` -> 1, ``challenger`` -> 2, the
challenger in shadow mode) serves most tests of this module in order; a scikit-learn
server takes the feedback load and the ``kill -9``.
"""

from __future__ import annotations

import io
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from _serve import SHAPE, Server, images, keras_model
from lakeloop import Lake
from lakeloop.registry import Registry
from lakeloop.stream import open_stream

# Keras 3 saving a TF variable through NumPy 2 (not ours; the training tests say the same)
pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"
)


def _events(lake: Lake, name: str) -> list[Any]:
    with open_stream(lake, name) as s:
        return list(s.replay())


@pytest.fixture(scope="module")
def keras_setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("serve")
    lake = Lake.open(root / "lake", create=True, background=False)
    reg = Registry(lake)
    models = {1: keras_model(1), 2: keras_model(2)}
    for v in (1, 2):
        assert reg.register("cnn", models[v]).version == v
    reg.alias("cnn@1", "prod", reason="test")
    reg.alias("cnn@2", "challenger", reason="test")
    x = images(40, seed=3)
    expected = {v: m.predict(x, verbose=0) for v, m in models.items()}
    server = Server(
        root / "lake",
        "cnn@prod",
        shadow="challenger",
        options={
            "poll_interval": 0.2,
            "max_wait_ms": 5,
            "max_batch_size": 16,
            "max_request_bytes": "64KiB",
            "max_instances": 32,
            "log_inline_max": 16,
        },
    )
    try:
        yield {"lake": lake, "reg": reg, "server": server, "x": x, "expected": expected}
    finally:
        server.stop()
        lake.close()


def _concurrently(n_threads: int, job: Any) -> list[Any]:
    out: list[Any] = [None] * n_threads

    def run(i: int) -> None:
        out[i] = job(i)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


# ---------------------------------------------------------------------------- predict
def test_each_batched_answer_equals_the_single_request_answer(keras_setup: dict[str, Any]) -> None:
    server, x, expected = keras_setup["server"], keras_setup["x"], keras_setup["expected"]
    single = []
    for i in range(len(x)):
        r = server.predict([x[i].tolist()])
        assert r.status_code == 200, r.text
        single.append(np.asarray(r.json()["predictions"][0], dtype=np.float32))
    np.testing.assert_allclose(np.stack(single), expected[1], atol=1e-5)
    before = _batch_counts(server)

    def job(i: int) -> list[tuple[list[int], Any]]:
        got = []
        with httpx.Client(base_url=server.url, timeout=60) as client:
            for k in range(4):
                rows = [(i * 4 + k + j) % len(x) for j in range(1 + (i + k) % 3)]
                r = client.post("/v1/predict", json={"instances": x[rows].tolist()})
                assert r.status_code == 200, r.text
                doc = r.json()
                assert doc["model_version"] == "1"
                assert len(doc["prediction_ids"]) == len(rows) == len(doc["predictions"])
                got.append((rows, doc))
        return got

    ids = set()
    n_requests = 0
    for answers in _concurrently(12, job):
        for rows, doc in answers:
            n_requests += 1
            want = np.stack([single[r] for r in rows])
            got = np.asarray(doc["predictions"], dtype=np.float32)
            np.testing.assert_allclose(got, want, atol=1e-5)
            ids.update(doc["prediction_ids"])
    assert all(len(i) == 32 for i in ids)
    after = _batch_counts(server)
    batches = after[0] - before[0]
    instances = after[1] - before[1]
    assert instances == sum(1 + (i + k) % 3 for i in range(12) for k in range(4))
    assert batches < n_requests  # requests shared model calls


def _batch_counts(server: Server) -> tuple[float, float]:
    text = server.client.get("/metrics").text
    values = {}
    for line in text.splitlines():
        if line.startswith("lakeloop_serve_batch_size_"):
            name, value = line.split(" ")
            values[name] = float(value)
    return values["lakeloop_serve_batch_size_count"], values["lakeloop_serve_batch_size_sum"]


def test_tf_serving_paths_binary_and_columnar(keras_setup: dict[str, Any]) -> None:
    server, x, expected = keras_setup["server"], keras_setup["x"], keras_setup["expected"]
    r = server.predict(x[:3].tolist(), path="/v1/models/cnn:predict")
    assert r.status_code == 200
    np.testing.assert_allclose(r.json()["predictions"], expected[1][:3], atol=1e-5)
    r = server.predict(x[:1].tolist(), path="/v1/models/cnn/versions/1:predict")
    assert r.status_code == 200 and r.json()["model_version"] == "1"
    r = server.predict(x[:1].tolist(), path="/v1/models/cnn/versions/9:predict")
    assert r.status_code == 404 and "serving 1" in r.json()["error"]["message"]
    status = server.client.get("/v1/models/cnn").json()
    assert status["model_version_status"][0]["state"] == "AVAILABLE"
    meta = server.client.get("/v1/models/cnn/metadata").json()
    assert meta["metadata"]["input"] == {"shape": list(SHAPE), "dtype": "float32"}
    assert server.client.get("/v1/models/other").status_code == 404
    buf = io.BytesIO()
    np.save(buf, x[3:6])
    r = server.client.post(
        "/v1/predict", content=buf.getvalue(), headers={"content-type": "application/x-npy"}
    )
    assert r.status_code == 200
    np.testing.assert_allclose(r.json()["predictions"], expected[1][3:6], atol=1e-5)
    r = server.client.post("/v1/models/cnn:predict", json={"inputs": x[6:8].tolist()})
    assert r.status_code == 200 and len(r.json()["outputs"]) == 2
    health = server.client.get("/healthz").json()
    assert health == {
        "status": "ok", "model": "cnn", "alias": "prod", "version": 1, "shadow": 2,
    }  # fmt: skip


def test_bad_payloads_get_4xx_and_log_nothing(keras_setup: dict[str, Any]) -> None:
    server, lake, x = keras_setup["server"], keras_setup["lake"], keras_setup["x"]
    _logged_marker(server, lake, x)  # the log is written in order: earlier events are in
    before = len(_events(lake, "predictions")), len(_events(lake, "feedback"))
    img = x[0].tolist()
    big = json.dumps({"instances": [img]}).encode() + b" " * 70_000  # valid, over 64 KiB
    buf = io.BytesIO()
    np.save(buf, np.zeros((1, 4, 4, 1), np.float32))
    cases = [
        ("/v1/predict", b"{nope", {}, 400, "MalformedJSON"),
        ("/v1/predict", json.dumps({"instances": [[1, 2, 3]]}).encode(), {}, 400, "WrongShape"),
        ("/v1/predict", json.dumps({"instances": [img, img[:4]]}).encode(), {}, 400, "WrongShape"),
        ("/v1/predict", json.dumps({"instances": [[[["x"]] * 8] * 8]}).encode(), {}, 400,
         "WrongDtype"),
        ("/v1/predict", json.dumps({"instances": [img] * 33}).encode(), {}, 413,
         "TooManyInstances"),
        ("/v1/predict", big, {}, 413, "TooLarge"),
        ("/v1/predict", json.dumps({"rows": [img]}).encode(), {}, 400, "MalformedRequest"),
        ("/v1/predict", b"a,b", {"content-type": "text/csv"}, 415, "UnsupportedMediaType"),
        ("/v1/predict", buf.getvalue(), {"content-type": "application/x-npy"}, 400,
         "WrongShape"),
        ("/v1/models/other:predict", json.dumps({"instances": [img]}).encode(), {}, 404,
         "NotFound"),
        ("/v1/feedback", b"{", {}, 400, "MalformedJSON"),
        ("/v1/feedback", json.dumps({"prediction_id": "x", "label": 1}).encode(), {}, 400,
         "MalformedFeedback"),
        ("/v1/feedback", json.dumps([{"prediction_id": "a" * 32, "label": 1}, {}]).encode(), {},
         400, "MalformedFeedback"),
    ]  # fmt: skip
    for path, body, headers, status, code in cases:
        r = server.client.post(path, content=body, headers=headers)
        assert r.status_code == status, (path, body[:60], r.text)
        assert r.json()["error"]["code"] == code, r.text
        assert r.json()["error"]["message"]
    marker = _logged_marker(server, lake, x)  # and so would any event of the bad requests
    after = len(_events(lake, "predictions")) - marker, len(_events(lake, "feedback"))
    assert after == before


def _logged_marker(server: Server, lake: Lake, x: Any) -> int:
    """Make one good prediction and wait until the inference log holds it (the log writes
    events in order, so everything asked before it is in the log too); its event count."""
    pids = server.predict(x[:1].tolist()).json()["prediction_ids"]
    want = 2 if server.client.get("/healthz").json().get("shadow") else 1  # main (+ shadow)
    deadline = time.monotonic() + 30
    while True:
        events = [m for m in _events(lake, "predictions") if m.data["prediction_id"] in pids]
        if len(events) == want:
            return want
        assert time.monotonic() < deadline, "the marker prediction was never logged"
        time.sleep(0.05)


# ---------------------------------------------------------------------------- the log
def test_every_prediction_is_logged_with_its_input_and_shadow_score(
    keras_setup: dict[str, Any],
) -> None:
    server, lake, x, expected = (keras_setup[k] for k in ("server", "lake", "x", "expected"))
    r = server.predict(x[10:13].tolist())
    ids = r.json()["prediction_ids"]
    deadline = time.monotonic() + 30
    while True:
        events = [m for m in _events(lake, "predictions") if m.data["prediction_id"] in ids]
        if len(events) == 6 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    main = {m.data["prediction_id"]: m for m in events if not m.data["shadow"]}
    shadow = {m.data["prediction_id"]: m for m in events if m.data["shadow"]}
    assert set(main) == set(shadow) == set(ids)
    ns = lake.internal_namespace("_inference")
    for k, pid in enumerate(ids):
        m, s = main[pid], shadow[pid]
        assert m.id == pid and s.id == pid + "-shadow"
        assert (m.data["model"], m.data["version"], s.data["version"]) == ("cnn", 1, 2)
        np.testing.assert_allclose(m.data["output"], expected[1][10 + k], atol=1e-5)
        np.testing.assert_allclose(s.data["output"], expected[2][10 + k], atol=1e-5)
        # 64 numbers > log_inline_max (16): the input is an object in the lake
        ref = m.data["input"]["ref"]
        assert s.data["input"] == m.data["input"] and ref.startswith("_inference/cnn/")
        stored = json.loads(ns.get(ref.split("/", 1)[1]))
        np.testing.assert_array_equal(np.asarray(stored, dtype=np.float32), x[10 + k])
    # the answer is the serving model's, never the shadow's
    np.testing.assert_allclose(r.json()["predictions"], expected[1][10:13], atol=1e-5)


def test_feedback_is_durable_and_repeats_replace(keras_setup: dict[str, Any]) -> None:
    server, lake, x = keras_setup["server"], keras_setup["lake"], keras_setup["x"]
    ids = server.predict(x[:2].tolist()).json()["prediction_ids"]
    r = server.client.post("/v1/feedback", json={"prediction_id": ids[0], "label": 1})
    assert r.status_code == 202 and r.json()["replaced"] == 0
    r = server.client.post(
        "/v1/feedback",
        json=[{"prediction_id": ids[0], "label": 2}, {"prediction_id": ids[1], "label": 0}],
    )
    assert r.status_code == 202
    assert [i["replaced"] for i in r.json()["items"]] == [True, False]
    labels = [
        (m.data["prediction_id"], m.data["label"])
        for m in _events(lake, "feedback")
        if m.data["prediction_id"] in ids
    ]
    assert labels == [(ids[0], 1), (ids[0], 2), (ids[1], 0)]  # in order: the last label wins


def test_metrics_are_prometheus_text(keras_setup: dict[str, Any]) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    r = keras_setup["server"].client.get("/metrics")
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    families = {f.name: f for f in text_string_to_metric_families(r.text)}
    requests = {s.labels["route"]: s.value for s in families["lakeloop_serve_requests"].samples}
    assert requests["predict"] > 50 and requests["feedback"] >= 2
    errors = {
        (s.labels["route"], s.labels["code"]) for s in families["lakeloop_serve_errors"].samples
    }
    assert {("predict", "400"), ("predict", "413"), ("feedback", "400")} <= errors
    versions = {s.labels["role"]: s.value for s in families["lakeloop_serve_model_version"].samples}
    assert versions == {"serving": 1.0, "shadow": 2.0}
    assert families["lakeloop_serve_request_seconds"].type == "histogram"
    # every request was answered before the scrape: nothing waits for the model
    assert [q.value for q in families["lakeloop_serve_queue_depth"].samples] == [0.0]


# ---------------------------------------------------------------------------- hot swap
def test_hot_swap_and_rollback_under_load_fail_nothing(keras_setup: dict[str, Any]) -> None:
    server, reg, x, expected = (keras_setup[k] for k in ("server", "reg", "x", "expected"))
    stop = threading.Event()
    seen: list[tuple[str, int]] = []
    failures: list[str] = []

    def load(i: int) -> None:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            k = i
            while not stop.is_set():
                k = (k + 1) % len(x)
                r = client.post("/v1/predict", json={"instances": [x[k].tolist()]})
                if r.status_code != 200:
                    failures.append(r.text)
                    continue
                doc = r.json()
                version = int(doc["model_version"])
                want = expected[version][k]
                if not np.allclose(doc["predictions"][0], want, atol=1e-5):
                    failures.append(f"wrong answer from version {version}")
                seen.append((doc["model_version"], k))

    threads = [threading.Thread(target=load, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()

    def answered_by(version: str) -> None:  # load went on long enough on that version
        deadline = time.monotonic() + 60
        start = len(seen)
        while sum(v == version for v, _ in seen[start:]) < 12:
            assert time.monotonic() < deadline and not failures, failures[:3]
            time.sleep(0.05)

    try:
        answered_by("1")
        reg.alias("cnn@2", "prod", reason="swap under load")
        _wait_for(server, 2)
        answered_by("2")
        reg.alias("cnn@1", "prod", reason="roll back")
        _wait_for(server, 1)
        answered_by("1")
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert failures == []
    versions = [v for v, _ in seen]
    assert "2" in versions and versions[-1] == "1"
    first2, last2 = versions.index("2"), len(versions) - 1 - versions[::-1].index("2")
    assert "1" in versions[:first2] and "1" in versions[last2:]
    text = server.client.get("/metrics").text
    assert 'lakeloop_serve_swaps_total{role="serving"} 2' in text


def _wait_for(server: Server, version: int) -> None:
    deadline = time.monotonic() + 60
    while server.client.get("/healthz").json()["version"] != version:
        assert time.monotonic() < deadline, server.output()
        time.sleep(0.05)


# ---------------------------------------------------------------------------- kill -9
@pytest.fixture
def sklearn_lake(tmp_path: Path) -> Iterator[Lake]:
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    features = rng.random((200, 4))
    labels = (features.sum(axis=1) > 2).astype(int)
    with Lake.open(tmp_path / "lake", create=True, background=False) as lake:
        reg = Registry(lake)
        reg.register("lr", LogisticRegression().fit(features, labels))
        reg.alias("lr@1", "prod", reason="test")
        yield lake


def test_kill_9_during_feedback_loses_no_acknowledged_label(
    sklearn_lake: Lake, tmp_path: Path
) -> None:
    lake = sklearn_lake
    server = Server(Path(lake.root), "lr@prod", options={"poll_interval": 0})
    rows = np.random.default_rng(1).random((8, 4)).tolist()
    r = server.predict(rows)
    assert r.status_code == 200 and r.json()["model_version"] == "1"
    assert all(p in (0, 1) for p in r.json()["predictions"])
    ids = r.json()["prediction_ids"]
    acked: list[tuple[str, int]] = []
    lock = threading.Lock()
    stop = threading.Event()

    def load(i: int) -> None:
        n = 0
        with httpx.Client(base_url=server.url, timeout=30) as client:
            while not stop.is_set():
                label = i * 1_000_000 + n
                n += 1
                pid = ids[label % len(ids)]
                try:
                    r = client.post("/v1/feedback", json={"prediction_id": pid, "label": label})
                except httpx.TransportError:
                    return  # the server is gone
                if r.status_code == 202:
                    with lock:
                        acked.append((pid, label))

    threads = [threading.Thread(target=load, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 60
    while len(acked) < 150 and time.monotonic() < deadline:
        time.sleep(0.01)
    server.kill()  # kill -9 in the middle of the load
    stop.set()
    for t in threads:
        t.join()
    assert len(acked) >= 150
    on_stream = {(m.data["prediction_id"], m.data["label"]) for m in _events(lake, "feedback")}
    missing = [a for a in acked if a not in on_stream]
    assert missing == []
    # inline inputs for small instances: the 4 features as sent
    logged = {m.data["prediction_id"]: m.data for m in _events(lake, "predictions")}
    assert [logged[i]["input"] for i in ids] == rows
    # a restarted server knows the earlier feedback: a repeat is a replacement
    with Server(Path(lake.root), "lr@prod", options={"poll_interval": 0}) as again:
        r = again.client.post("/v1/feedback", json={"prediction_id": ids[0], "label": 1})
        assert r.status_code == 202 and r.json()["replaced"] == 1


def test_cli_refuses_an_unknown_model_in_one_line(tmp_path: Path) -> None:
    import subprocess
    import sys

    Lake.open(tmp_path / "lake", create=True, background=False).close()
    out = subprocess.run(
        [sys.executable, "-m", "lakeloop", "--lake", str(tmp_path / "lake"), "serve", "nope@prod"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2, out.stderr
    assert "nope" in out.stderr and "Traceback" not in out.stderr


def test_log_sync_answers_only_once_the_log_is_durable(sklearn_lake: Lake) -> None:
    """With log_sync, an answered prediction is in the log even when the server is killed
    with SIGKILL the moment the answer arrives (nothing was left in a queue to write)."""
    lake = sklearn_lake
    rows = np.random.default_rng(2).random((3, 4)).tolist()
    for k in range(3):
        with Server(Path(lake.root), "lr@1", options={"log_sync": "true"}) as server:
            r = server.predict([rows[k]])
            server.kill()
        assert r.status_code == 200
        logged = {m.id: m.data for m in _events(lake, "predictions")}
        pid = r.json()["prediction_ids"][0]
        assert pid in logged, "an answered prediction was lost with the server"
        assert logged[pid]["input"] == rows[k] and logged[pid]["version"] == 1
