"""Serving's parts in process: request parsing and checks, the micro-batcher, metrics.

The server itself, over HTTP in its own process, is tested in test_serve_server.py.
"""

from __future__ import annotations

import asyncio
import io
import json
import threading
import time
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lakeloop.serve import InputSpec
from lakeloop.serve._batcher import MicroBatcher
from lakeloop.serve._metrics import Metrics
from lakeloop.serve._payload import PayloadError, parse_feedback, parse_predict

IMAGE = InputSpec((3, 2, 1), "float32")


def _body(value: Any) -> bytes:
    return json.dumps(value).encode()


def _error(body: bytes, spec: InputSpec = IMAGE, ctype: str = "application/json") -> PayloadError:
    with pytest.raises(PayloadError) as info:
        parse_predict(body, ctype, spec)
    return info.value


# ---------------------------------------------------------------------------- parsing
@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 4),
    values=st.lists(st.floats(-1e6, 1e6, allow_nan=False, width=32), min_size=24, max_size=24),
    compact=st.booleans(),
)
def test_fast_path_equals_the_general_parser(n: int, values: list[float], compact: bool) -> None:
    arr = np.asarray(values[: n * 6], dtype=np.float32).reshape(n, 3, 2, 1)
    seps = (",", ":") if compact else (", ", ": ")
    body = json.dumps({"instances": arr.tolist()}, separators=seps).encode()
    fast = IMAGE.fast_batch(body)
    assert fast is not None
    general = IMAGE.batch(json.loads(body)["instances"])
    assert fast.dtype == general.dtype and np.array_equal(fast, general)
    batch, instances, key = parse_predict(body, "application/json", IMAGE)
    assert np.array_equal(batch, arr) and instances is None and key == "predictions"


def test_fast_path_declines_what_it_cannot_prove() -> None:
    good = [[[1], [2]], [[3], [4]], [[5], [6]]]
    assert IMAGE.fast_batch(_body({"instances": [good]})) is not None
    declined = [
        {"instances": [good], "signature_name": "serving_default"},  # another key
        {"instances": [[[1, 2], [3]], [[4], [5]], [[6], [7]]]},  # ragged, same count
        {"instances": [[[[1]], [2]], [[3], [4]], [[5], [6]]]},  # deeper
        {"instances": [[[True], [2]], [[3], [4]], [[5], [6]]]},  # a boolean
        {"instances": [[["1"], [2]], [[3], [4]], [[5], [6]]]},  # a string
        {"instances": []},
    ]
    for doc in declined:
        assert IMAGE.fast_batch(_body(doc)) is None, doc
    # not JSON numbers, though made of number characters
    assert IMAGE.fast_batch(b'{"instances": [[[1.2.3], [2]], [[3], [4]], [[5], [6]]]}') is None
    assert IMAGE.fast_batch(b'{"instances": [[[1 2], [2]], [[3], [4]], [[5], [6]]]}') is None
    ints = InputSpec((2,), "int32")
    assert ints.fast_batch(b'{"instances": [[1, 2.5]]}') is None


def test_bad_bodies_get_clear_errors() -> None:
    good = [[[1], [2]], [[3], [4]], [[5], [6]]]
    cases = [
        (b"{", 400, "MalformedJSON"),
        (_body([good]), 400, "MalformedRequest"),
        (_body({"instances": [good], "extra": 1}), 400, "MalformedRequest"),
        (_body({"instances": [good], "inputs": [good]}), 400, "MalformedRequest"),
        (_body({"instances": [[[1], [2]]]}), 400, "WrongShape"),
        (_body({"instances": [[[[1, 2], [3]], [[4], [5]], [[6], [7]]]]}), 400, "WrongShape"),
        (_body({"instances": [good, [[[1]], [2]]]}), 400, "WrongShape"),
        (_body({"instances": [[[["a"], [2]], [[3], [4]], [[5], [6]]]]}), 400, "WrongDtype"),
        (_body({"instances": [[[[True], [2]], [[3], [4]], [[5], [6]]]]}), 400, "WrongDtype"),
        (_body({"instances": []}), 400, "WrongShape"),
        (_body({"instances": 3}), 400, "WrongShape"),
    ]
    for body, status, code in cases:
        err = _error(body)
        assert (err.status, err.code) == (status, code), (body, err.message)
    assert _error(_body({"instances": [good]}), ctype="text/csv").status == 415
    ints = InputSpec((2,), "int32")
    assert _error(_body({"instances": [[1, 2.5]]}), ints).code == "WrongDtype"
    assert _error(_body({"instances": [[3_000_000_000, 1]]}), ints).code == "WrongDtype"
    # numbers float32 cannot hold arrive as infinity: refused, on the fast path and the other
    floats = InputSpec((2,), "float32")
    for body in (_body({"instances": [[1e39, 1]]}), _body({"inputs": [[1, -1e39]]})):
        assert _error(body, floats).code == "NotFinite", body


def test_npy_bodies_with_nan_or_a_lying_header_are_refused() -> None:
    buf = io.BytesIO()
    np.save(buf, np.full((1, 3, 2, 1), np.nan, np.float32))
    assert _error(buf.getvalue(), ctype="application/x-npy").code == "NotFinite"
    buf = io.BytesIO()  # a header declaring 10**12 images, then 24 bytes: never allocated
    header = {"descr": "<f4", "fortran_order": False, "shape": (10**12, 3, 2, 1)}
    np.lib.format.write_array_header_1_0(buf, header)
    assert _error(buf.getvalue() + bytes(24), ctype="application/x-npy").code == "MalformedNpy"
    # a Fortran-ordered array is served (and logged) as a C-ordered one
    buf = io.BytesIO()
    np.save(buf, np.asfortranarray(np.arange(12, dtype=np.float32).reshape(2, 3, 2, 1)))
    batch, _, _ = parse_predict(buf.getvalue(), "application/x-npy", IMAGE)
    assert batch.flags.c_contiguous


def test_npy_bodies_and_columnar_inputs() -> None:
    arr = np.arange(12, dtype=np.float32).reshape(2, 3, 2, 1)
    buf = io.BytesIO()
    np.save(buf, arr)
    batch, instances, key = parse_predict(buf.getvalue(), "application/x-npy", IMAGE)
    assert np.array_equal(batch, arr) and instances is None and key == "predictions"
    buf = io.BytesIO()
    np.save(buf, arr.astype(np.float64))  # float64 -> the model's float32 (same kind)
    assert parse_predict(buf.getvalue(), "application/x-npy", IMAGE)[0].dtype == np.float32
    buf = io.BytesIO()
    np.save(buf, np.array(["a"] * 6).reshape(1, 3, 2, 1))
    assert _error(buf.getvalue(), ctype="application/x-npy").code == "WrongDtype"
    buf = io.BytesIO()
    np.save(buf, np.zeros((1, 2, 2, 1), np.float32))
    assert _error(buf.getvalue(), ctype="application/x-npy").code == "WrongShape"
    assert _error(b"not npy", ctype="application/x-npy").code == "MalformedNpy"
    batch, instances, key = parse_predict(_body({"inputs": arr.tolist()}), "", IMAGE)
    assert np.array_equal(batch, arr) and key == "outputs" and instances == arr.tolist()
    batch, _, key = parse_predict(_body({"inputs": {"x": arr.tolist()}}), "", IMAGE)
    assert np.array_equal(batch, arr) and key == "outputs"


def test_feedback_bodies() -> None:
    pid = "ab" * 16
    assert parse_feedback(_body({"prediction_id": pid, "label": 3}), 10) == [
        {"prediction_id": pid, "label": 3}
    ]
    two = [{"prediction_id": pid, "label": "cat"}, {"prediction_id": "cd" * 16, "label": [1]}]
    assert len(parse_feedback(_body(two), 10)) == 2
    bad = [
        b"{",
        _body([]),
        _body({"prediction_id": pid}),
        _body({"label": 1}),
        _body({"prediction_id": pid, "label": None}),
        _body({"prediction_id": "nope", "label": 1}),
        _body({"prediction_id": pid.upper(), "label": 1}),
        _body({"prediction_id": pid, "label": 1, "extra": 2}),
        _body([{"prediction_id": pid, "label": 1}, 5]),
        _body("text"),
    ]
    for body in bad:
        with pytest.raises(PayloadError) as info:
            parse_feedback(body, 10)
        assert info.value.status == 400, body
    with pytest.raises(PayloadError) as info:
        parse_feedback(_body([{"prediction_id": pid, "label": 1}] * 11), 10)
    assert info.value.status == 413
    with pytest.raises(PayloadError) as info:  # would not fit the feedback stream's events
        parse_feedback(_body({"prediction_id": pid, "label": "x" * 70_000}), 10)
    assert (info.value.status, info.value.code) == (413, "LabelTooLarge")


# ---------------------------------------------------------------------------- batching
def test_batcher_groups_concurrent_requests_and_returns_each_its_rows() -> None:
    calls: list[list[int]] = []
    threads: set[str] = set()

    def work(payloads: list[np.ndarray]) -> tuple[list[np.ndarray], None]:
        threads.add(threading.current_thread().name)
        calls.append([len(p) for p in payloads])
        time.sleep(0.01)  # the model is busy: requests pile up behind it
        return [p * 2 for p in payloads], None

    async def main() -> list[np.ndarray]:
        batcher = MicroBatcher(work, max_batch=8, max_wait=0.0)
        batcher.start()
        try:
            payloads = [np.full((1 + i % 3, 2), i) for i in range(30)]
            outs = await asyncio.gather(*(batcher.submit(p, len(p)) for p in payloads))
            return [*outs, np.array(batcher.queued)]
        finally:
            await batcher.stop()

    results = asyncio.run(main())
    assert int(results.pop()) == 0
    for i, out in enumerate(results):
        assert np.array_equal(out, np.full((1 + i % 3, 2), 2 * i))
    assert max(sum(c) for c in calls) <= 8
    assert len(calls) < 30  # batches formed
    assert len(threads) == 1  # one worker thread runs the model


def test_batcher_waits_only_for_requests_already_arriving() -> None:
    sizes: list[int] = []

    def work(payloads: list[int]) -> tuple[list[int], None]:
        sizes.append(len(payloads))
        return payloads, None

    async def main() -> float:
        batcher = MicroBatcher(work, max_batch=8, max_wait=5.0)
        batcher.start()
        try:
            started = time.perf_counter()
            assert await batcher.submit(1) == 1  # nobody else arriving: no wait
            lone = time.perf_counter() - started
            batcher.arriving += 1  # a request is being read ...

            async def late() -> int:
                await asyncio.sleep(0.05)
                batcher.arriving -= 1
                return int(await batcher.submit(2))

            assert await asyncio.gather(batcher.submit(3), late()) == [3, 2]
            return lone
        finally:
            await batcher.stop()

    lone = asyncio.run(main())
    assert lone < 2.0
    assert sizes == [1, 2]  # the second batch waited for the arriving request


def test_batcher_hands_a_failure_to_every_request_of_the_batch() -> None:
    def work(payloads: list[int]) -> tuple[list[int], None]:
        if 13 in payloads:
            raise RuntimeError("model failed")
        return payloads, None

    async def main() -> list[Any]:
        batcher = MicroBatcher(work, max_batch=1, max_wait=0.0)
        batcher.start()
        try:
            return list(
                await asyncio.gather(
                    batcher.submit(1), batcher.submit(13), batcher.submit(2),
                    return_exceptions=True,
                )
            )  # fmt: skip
        finally:
            await batcher.stop()

    one, failed, two = asyncio.run(main())
    assert (one, two) == (1, 2) and isinstance(failed, RuntimeError)


# ---------------------------------------------------------------------------- metrics
def test_metrics_render_prometheus_text() -> None:
    from prometheus_client.parser import text_string_to_metric_families

    m = Metrics()
    m.inc("lakeloop_serve_requests_total", (("route", "predict"),), 3)
    m.inc("lakeloop_serve_errors_total", (("code", "400"), ("route", 'we"ird\n')))
    for v in (0.0005, 0.003, 0.2, 20.0):
        m.observe("lakeloop_serve_request_seconds", v)
    m.observe("lakeloop_serve_batch_size", 17)
    m.gauge("lakeloop_serve_model_version", lambda: {(("role", "serving"),): 4.0})
    families = {f.name: f for f in text_string_to_metric_families(m.render())}
    req = families["lakeloop_serve_requests"]
    assert req.type == "counter" and req.samples[0].value == 3
    assert families["lakeloop_serve_errors"].samples[0].labels["route"] == 'we"ird\n'
    hist = {
        s.labels.get("le"): s.value
        for s in families["lakeloop_serve_request_seconds"].samples
        if s.name.endswith("_bucket")
    }
    assert hist["0.001"] == 1 and hist["0.005"] == 2 and hist["10"] == 3 and hist["+Inf"] == 4
    assert families["lakeloop_serve_model_version"].samples[0].value == 4.0


def test_bad_server_options_are_refused_before_anything_starts(tmp_path: Any) -> None:
    from lakeloop import Lake
    from lakeloop.errors import InvalidSetting
    from lakeloop.registry import Registry
    from lakeloop.serve import ModelServer

    with Lake.open(tmp_path / "lake", create=True, background=False) as lake:
        reg = Registry(lake)
        for options in ({"max_batch_size": "many"}, {"batch": 3}):
            with pytest.raises(InvalidSetting):
                ModelServer(reg, "m@1", predictions=None, feedback=None, options=options)
        assert lake.namespaces(include_internal=True) == []  # nothing was made


def test_log_sync_waits_for_every_group_of_a_batch() -> None:
    import concurrent.futures

    from lakeloop.serve._app import _all_of

    a: concurrent.futures.Future[None] = concurrent.futures.Future()
    b: concurrent.futures.Future[None] = concurrent.futures.Future()
    both = _all_of([a, b])
    b.set_result(None)
    assert not both.done()  # the first group's write is not durable yet
    a.set_result(None)
    assert both.done() and both.exception() is None
    c: concurrent.futures.Future[None] = concurrent.futures.Future()
    d: concurrent.futures.Future[None] = concurrent.futures.Future()
    either = _all_of([c, d])
    c.set_exception(OSError("disk full"))
    assert isinstance(either.exception(timeout=0), OSError)
    d.set_result(None)  # a later success changes nothing
    assert isinstance(either.exception(timeout=0), OSError)


def test_batcher_refuses_beyond_its_queue_bound_and_takes_a_big_payload_alone() -> None:
    from lakeloop.serve._batcher import QueueFull

    release = threading.Event()
    running = threading.Event()

    def work(payloads: list[int]) -> tuple[list[int], None]:
        running.set()
        assert release.wait(30)
        return payloads, None

    async def main() -> list[Any]:
        batcher = MicroBatcher(work, max_batch=1, max_wait=0.0, max_queue=3)
        batcher.start()
        try:
            first = asyncio.ensure_future(batcher.submit(0))
            # until the worker holds the first payload
            assert await asyncio.get_running_loop().run_in_executor(None, running.wait, 30)
            waiting = [asyncio.ensure_future(batcher.submit(n, 1)) for n in (1, 2, 3)]
            await asyncio.sleep(0)
            assert batcher.queued == 3
            with pytest.raises(QueueFull):
                await batcher.submit(4)
            release.set()
            return [await first, *[await w for w in waiting]]
        finally:
            await batcher.stop()

    assert asyncio.run(main()) == [0, 1, 2, 3]

    async def big() -> int:  # an empty queue takes a payload over the bound
        batcher = MicroBatcher(lambda p: (p, None), max_batch=1, max_wait=0.0, max_queue=3)
        batcher.start()
        try:
            return int(await batcher.submit(7, 10))
        finally:
            await batcher.stop()

    assert asyncio.run(big()) == 7


def test_consumer_waits_or_skips_when_full_and_finishes_the_queue_on_close() -> None:
    from lakeloop.serve._background import Consumer

    handled: list[list[int]] = []
    gate = threading.Event()

    def handle(items: list[int]) -> None:
        assert gate.wait(30)
        handled.append(items)
        if 13 in items:
            raise RuntimeError("one bad batch")  # logged; the thread goes on

    consumer: Consumer[int] = Consumer("test", handle, limit=2)
    assert consumer.put(13, 1, wait=True)
    assert consumer.put(1, 1, wait=True)  # 2 queued: full
    assert not consumer.put(2, 1, wait=False)  # skipped
    blocked = threading.Thread(target=consumer.put, args=(3, 1), kwargs={"wait": True})
    blocked.start()
    deadline = time.monotonic() + 30
    while not consumer._cond._waiters:  # type: ignore[attr-defined]  # the put waits for room
        assert time.monotonic() < deadline and blocked.is_alive()
        time.sleep(0.01)
    assert blocked.is_alive() and consumer.queued == 2  # 3 is not in yet
    gate.set()
    blocked.join(30)
    consumer.close()
    assert [x for items in handled for x in items] == [13, 1, 3]
    assert consumer.queued == 0


def test_a_one_at_a_time_consumer_frees_room_per_item() -> None:
    from lakeloop.serve._background import Consumer

    gate = threading.Event()
    seen: list[tuple[list[int], int]] = []
    consumer: Consumer[int] | None = None

    def handle(items: list[int]) -> None:
        assert gate.wait(30) and consumer is not None
        seen.append((items, consumer.queued))

    consumer = Consumer("one", handle, limit=3, one_at_a_time=True)
    for i in range(3):
        assert consumer.put(i, 1, wait=True)
    gate.set()  # all three are queued (the first being handled) before any is done
    consumer.close()
    assert seen == [([0], 3), ([1], 2), ([2], 1)]  # the room frees item by item
    assert consumer.queued == 0
