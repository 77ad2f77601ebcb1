"""`lakeloop serve` under overload, across hot swaps, and when a new version will not load:
a real server in its own process, HTTP over loopback.

The models are :class:`GatedModel` pyfuncs (4 numbers -> their sum + an offset per
version) that hold every call while a gate file exists, so a test can keep requests
waiting in the server exactly as long as it needs: no test here depends on timing luck.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from _serve import GatedModel, Server
from lakeloop import Lake
from lakeloop.registry import Registry

ROW = [1.0, 2.0, 3.0, 4.0]  # sums to 10: version v answers 10 + 100 * v


@pytest.fixture
def gated(tmp_path: Path) -> Iterator[tuple[Lake, Registry, dict[int, Path]]]:
    """A lake with model ``g`` versions 1..3 (offsets 100, 200, 300), ``prod`` -> 1, and
    each version's gate path (open: no file)."""
    gates = {v: tmp_path / f"gate-{v}" for v in (1, 2, 3)}
    with Lake.open(tmp_path / "lake", create=True, background=False) as lake:
        reg = Registry(lake)
        for v, gate in gates.items():
            assert reg.register("g", GatedModel(100.0 * v, gate)).version == v
        reg.alias("g@1", "prod", reason="test")
        yield lake, reg, gates


def _metrics(server: Server) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    from prometheus_client.parser import text_string_to_metric_families

    out = {}
    for family in text_string_to_metric_families(server.client.get("/metrics").text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def _wait(what: str, ok: Callable[[], bool], server: Server, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not ok():
        assert time.monotonic() < deadline, f"{what}: not after {timeout} s\n{server.output()}"
        time.sleep(0.02)


def _batches(server: Server) -> float:
    return _metrics(server)[("lakeloop_serve_batch_size_count", ())]


def _queue_depth(server: Server) -> float:
    return _metrics(server)[("lakeloop_serve_queue_depth", ())]


class _Call(threading.Thread):
    """One predict request in the background; ``.response`` once joined."""

    def __init__(self, server: Server, path: str = "/v1/predict") -> None:
        super().__init__(daemon=True)
        self.server, self.path = server, path
        self.response: httpx.Response | None = None
        self.start()

    def run(self) -> None:
        with httpx.Client(base_url=self.server.url, timeout=120) as client:
            self.response = client.post(self.path, json={"instances": [ROW]})

    def result(self) -> dict[str, Any]:
        self.join(timeout=120)
        assert self.response is not None and self.response.status_code == 200, self.response
        doc: dict[str, Any] = self.response.json()
        return doc


def _hold_worker_and_fill(server: Server, calls: list[Callable[[], _Call]]) -> list[_Call]:
    """Start the first call and wait until the model's thread holds it (at the closed
    gate); then start the others and wait until all of them wait in the queue."""
    before = _batches(server)
    first = calls[0]()
    _wait("the first request reaches the model", lambda: _batches(server) > before, server)
    rest = [make() for make in calls[1:]]
    _wait("the others wait in the queue", lambda: _queue_depth(server) == len(rest), server)
    return [first, *rest]


def test_a_full_queue_answers_503_with_retry_after_at_once(
    gated: tuple[Lake, Registry, dict[int, Path]],
) -> None:
    lake, _, gates = gated
    options = {"max_batch_size": 1, "max_queue": 2, "poll_interval": 0}
    with Server(Path(lake.root), "g@prod", options=options) as server:
        gates[1].touch()
        held = _hold_worker_and_fill(server, [lambda: _Call(server)] * 3)
        # one in the model, two waiting: the queue is at its bound, a fourth is refused
        r = httpx.post(server.url + "/v1/predict", json={"instances": [ROW]}, timeout=30)
        assert r.status_code == 503, r.text
        assert r.headers["retry-after"] == "1"
        error = r.json()["error"]
        assert error["code"] == "Overloaded" and "at most 2" in error["message"]
        assert server.client.get("/healthz").status_code == 200  # the server itself is fine
        metrics = _metrics(server)
        assert metrics[("lakeloop_serve_rejected_total", (("route", "predict"),))] == 1
        assert metrics[("lakeloop_serve_errors_total", (("code", "503"), ("route", "predict")))]
        gates[1].unlink()
        for call in held:  # what was taken is answered, by the model
            doc = call.result()
            assert doc["predictions"] == [110.0] and doc["model_version"] == "1"
        assert _queue_depth(server) == 0
        r = server.predict([ROW])  # room again
        assert r.status_code == 200 and r.json()["predictions"] == [110.0]


def test_a_pinned_request_is_computed_by_its_version_across_swaps(
    gated: tuple[Lake, Registry, dict[int, Path]],
) -> None:
    lake, reg, gates = gated
    options = {"max_batch_size": 1, "poll_interval": 0.1}
    pinned = "/v1/models/g/versions/1:predict"
    with Server(Path(lake.root), "g@prod", options=options) as server:
        gates[1].touch()
        held = _hold_worker_and_fill(
            server,
            [lambda: _Call(server, pinned), lambda: _Call(server, pinned), lambda: _Call(server)],
        )
        # version 2 takes over while a pinned and a plain request wait for the model
        reg.alias("g@2", "prod", reason="test")
        _wait("the swap", lambda: server.client.get("/healthz").json()["version"] == 2, server)
        gates[1].unlink()
        first, waited, plain = (call.result() for call in held)
        assert (first["model_version"], first["predictions"]) == ("1", [110.0])
        assert (waited["model_version"], waited["predictions"]) == ("1", [110.0])
        # the plain request runs on what serves when its batch runs, and says so
        assert (plain["model_version"], plain["predictions"]) == ("2", [210.0])
        # version 1 is kept loaded for rollback: pinned requests still get it
        r = server.predict([ROW], path=pinned)
        assert r.status_code == 200
        assert (r.json()["model_version"], r.json()["predictions"]) == ("1", [110.0])
        status = server.client.get("/v1/models/g").json()["model_version_status"]
        assert [(s["version"], s["state"]) for s in status] == [
            ("2", "AVAILABLE"),
            ("1", "AVAILABLE"),
        ]
        # after the next swap version 1 is no longer loaded: a clear 404, nothing computed
        reg.alias("g@3", "prod", reason="test")
        _wait("the swap", lambda: server.client.get("/healthz").json()["version"] == 3, server)
        before = _batches(server)
        r = server.predict([ROW], path=pinned)
        assert r.status_code == 404, r.text
        assert r.json()["error"]["code"] == "NotFound"
        assert "not loaded" in r.json()["error"]["message"]
        assert "serving 3, 2 kept for rollback" in r.json()["error"]["message"]
        assert _batches(server) == before
        r = server.predict([ROW], path="/v1/models/g/versions/2:predict")
        assert (r.json()["model_version"], r.json()["predictions"]) == ("2", [210.0])


def test_a_version_that_fails_to_load_is_retried_until_it_loads(
    gated: tuple[Lake, Registry, dict[int, Path]],
) -> None:
    lake, reg, _ = gated
    ns = lake.internal_namespace("_registry")
    key = "models/g/artifacts/00000002.pkl"
    good = ns.get(key)
    ns.put(key, b"not the registered artifact")  # version 2 cannot be loaded (checksum)
    options = {"poll_interval": 0.1, "load_retry": 0.1, "load_retry_max": 0.4}
    with Server(Path(lake.root), "g@prod", options=options) as server:
        reg.alias("g@2", "prod", reason="test")
        failing = ("lakeloop_serve_load_failing", (("role", "serving"), ("version", "2")))
        _wait("two failed tries", lambda: _metrics(server).get(failing, 0) >= 2, server)
        status = server.client.get("/v1/models/g").json()["model_version_status"]
        assert (status[0]["version"], status[0]["state"]) == ("1", "AVAILABLE")
        assert status[-1]["version"] == "2" and status[-1]["state"] == "LOADING"
        assert "checksum" in status[-1]["status"]["error_message"]
        r = server.predict([ROW])  # the old version serves meanwhile
        assert (r.json()["model_version"], r.json()["predictions"]) == ("1", [110.0])
        assert "could not load g@2" in server.output()
        reg.remove_alias("g", "prod", reason="test")  # nothing to load any more: not LOADING

        def states() -> list[str]:
            body = server.client.get("/v1/models/g").json()
            return [s["state"] for s in body["model_version_status"]]

        _wait("the failure cleared", lambda: states() == ["AVAILABLE"], server)
        assert failing not in _metrics(server)
        reg.alias("g@2", "prod", reason="test")  # back, and still unreadable
        _wait("a failed try again", lambda: "LOADING" in states(), server)
        ns.put(key, good)  # the artifact is readable again: the next try swaps
        _wait("the swap", lambda: server.client.get("/healthz").json()["version"] == 2, server)
        r = server.predict([ROW])
        assert (r.json()["model_version"], r.json()["predictions"]) == ("2", [210.0])
        assert [s["version"] for s in server.client.get("/v1/models/g").json()[
            "model_version_status"]] == ["2", "1"]  # fmt: skip
        metrics = _metrics(server)
        assert failing not in metrics
        assert metrics[("lakeloop_serve_swap_failures_total", (("role", "serving"),))] >= 2
