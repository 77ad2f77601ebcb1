"""The prediction server's ASGI app.

The predict routes (``POST /v1/predict``, ``POST /v1/models/NAME:predict``) are a bare
ASGI handler: they are on the path of every prediction, and a router's per-request
objects would cost more than the rest of the handler. Everything else (``/healthz``,
``/metrics``, ``GET /v1/models/NAME``, ``POST /v1/feedback``) is a small Starlette app.

A prediction's way through: the body is read (bounded), parsed and checked against the
serving model's input signature on the event loop; the checked batch goes to the
:class:`MicroBatcher`, whose worker thread runs it with others through the model in the
serving slot, hands the scored batch to the inference log (and the shadow model), and
answers each request with its rows, one prediction id per instance.

Two rules keep an answer honest: a batch runs through one model version only, and an
answer's ``model_version`` is the version that computed it. A request that names a
version (``/v1/models/NAME/versions/N:predict``) is computed by that version, even when a
hot swap happens while it waits; a version that is not loaded is a 404 at once.

Admission is bounded: when ``serve_max_queue`` instances wait for the model already, a
request is answered 503 with ``Retry-After`` right away, rather than joining a queue whose
wait would grow without bound under overload.
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lakeloop.serve._batcher import MicroBatcher, QueueFull
from lakeloop.serve._log import INPUTS_NS, FeedbackDesk, InferenceLog, LogUnavailable, Scored
from lakeloop.serve._metrics import Metrics
from lakeloop.serve._model import ServedModel
from lakeloop.serve._payload import PayloadError, dumps, parse_feedback, parse_predict
from lakeloop.serve._shadow import ShadowScorer
from lakeloop.serve._swap import AliasWatcher, ModelSlot

__all__ = ["ModelServer"]

log = logging.getLogger("lakeloop.serve")

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

_JSON = b"application/json"
_PREDICT_PREFIX = "/v1/models/"
# seconds a client refused for overload is told to wait (Retry-After): a queue at its
# bound drains in well under a second with the default settings
RETRY_AFTER = 1


@dataclass
class _Request:
    model: ServedModel  # the model whose signature checked the batch
    batch: np.ndarray
    instances: Any  # the JSON instances as sent, or None (a .npy body)
    ids: list[str]
    pinned: bool = False  # the request named this version: no other may compute it


def _overloaded(exc: Exception) -> str:
    return f"the server is at capacity: {exc}; retry later"


def _error_body(code: str, message: str) -> bytes:
    return dumps({"error": {"code": code, "message": message}})


async def _answer(
    send: Send,
    status: int,
    body: bytes,
    ctype: bytes = _JSON,
    extra: list[tuple[bytes, bytes]] | None = None,
) -> None:
    headers = [(b"content-type", ctype), (b"content-length", str(len(body)).encode())]
    await send(
        {"type": "http.response.start", "status": status, "headers": headers + (extra or [])}
    )
    await send({"type": "http.response.body", "body": body})


async def _read_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                declared = int(value)
            except ValueError:
                raise PayloadError(400, "BadRequest", "bad Content-Length") from None
            if declared > limit:
                raise PayloadError(413, "TooLarge", f"the body is over {limit} bytes")
    chunks = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise PayloadError(400, "Disconnected", "the client went away")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadError(413, "TooLarge", f"the body is over {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _content_type(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == b"content-type":
            return str(value.decode("latin-1"))
    return ""


class ModelServer:
    """The ASGI app serving ``NAME@ALIAS`` of *registry*'s lake.

    *predictions* and *feedback* are streams (``lakeloop.stream`` interface:
    ``publish_many(events, ids=...)``); *options* override the lake's ``serve_*``
    settings (without the prefix: ``max_batch_size=32``). The model is loaded and warmed
    here, so a bad reference fails before the server listens.

    >>> reg = Registry(lake)                                                # doctest: +SKIP
    >>> app = ModelServer(reg, "digits@prod", predictions=p, feedback=f)   # doctest: +SKIP
    >>> uvicorn.run(app, port=8080)                                         # doctest: +SKIP
    """

    def __init__(
        self,
        registry: Any,
        ref: str,
        *,
        predictions: Any,
        feedback: Any,
        shadow: str | None = None,
        seen_path: Path | None = None,
        options: dict[str, Any] | None = None,
    ) -> None:
        from lakeloop.errors import InvalidSetting
        from lakeloop.registry import parse_model_ref
        from lakeloop.settings import SETTINGS

        settings = registry.lake.settings
        opts = {
            name[len("serve_") :]: settings[name] for name in SETTINGS if name.startswith("serve_")
        }
        for key, value in (options or {}).items():
            if key not in opts:
                raise InvalidSetting(
                    f"unknown serve option {key!r}",
                    op="serve",
                    hint=f"options: {', '.join(sorted(opts))}",
                )
            try:
                opts[key] = SETTINGS["serve_" + key].parse(value)
            except (TypeError, ValueError) as exc:
                raise InvalidSetting(f"bad value for {key}: {exc}", op="serve") from None
        self.opts = opts
        self.registry = registry
        self.ref = ref
        self.name, self.alias = parse_model_ref(ref)
        self.metrics = Metrics()
        self.slot = ModelSlot("serving", self._load(ref))
        self.shadow_slot: ModelSlot | None = None
        self.shadow_alias = shadow
        if shadow is not None:
            self.shadow_slot = ModelSlot("shadow")
        self.log = InferenceLog(
            predictions,
            self.metrics,
            inputs=registry.lake.internal_namespace(INPUTS_NS),
            inline_max=opts["log_inline_max"],
            queue_limit=opts["log_queue"],
        )
        self.predictions_stream = predictions
        self.feedback_stream = feedback
        root = Path(registry.lake.root)
        self.desk = FeedbackDesk(
            feedback, seen_path or root / "serve" / "feedback-seen.sqlite", self.metrics
        )
        self.shadow: ShadowScorer | None = None
        if self.shadow_slot is not None:
            self.shadow = ShadowScorer(
                self.shadow_slot, self.log, self.metrics, opts["shadow_queue"]
            )
        self.batcher = MicroBatcher(
            self._score,
            max_batch=opts["max_batch_size"],
            max_wait=opts["max_wait_ms"] / 1000.0,
            max_queue=opts["max_queue"],
            name="model",
            on_batch=lambda n: self.metrics.observe("lakeloop_serve_batch_size", n),
        )
        self.feedback_batcher = MicroBatcher(
            self.desk.accept,
            max_batch=opts["max_instances"],
            max_wait=0.0,
            max_queue=opts["max_queue"],
            name="feedback",
        )
        self.watchers: list[AliasWatcher] = []
        self.metrics.gauge("lakeloop_serve_model_version", self._version_gauge)
        self.metrics.gauge("lakeloop_serve_queue_depth", lambda: {(): float(self.batcher.queued)})
        self.metrics.gauge("lakeloop_serve_log_queue_depth", lambda: {(): float(self.log.queued)})
        self.metrics.gauge("lakeloop_serve_load_failing", self._failing_gauge)
        self.api = self._build_api()

    # ------------------------------------------------------------------ models
    def _load(self, ref: str) -> ServedModel:
        served = ServedModel(self.registry.load(ref), max_batch=self.opts["max_batch_size"])
        served.warm()
        return served

    def _version_gauge(self) -> dict[tuple[tuple[str, str], ...], float]:
        out: dict[tuple[tuple[str, str], ...], float] = {}
        for slot in (self.slot, self.shadow_slot):
            if slot is not None and slot.current is not None:
                out[(("model", self.name), ("role", slot.role))] = float(slot.current.version)
        return out

    def _failing_gauge(self) -> dict[tuple[tuple[str, str], ...], float]:
        out: dict[tuple[tuple[str, str], ...], float] = {}
        for watcher in self.watchers:
            failure = watcher.failure
            if failure is not None:
                labels = (("role", watcher.slot.role), ("version", str(failure.version)))
                out[labels] = float(failure.attempts)
        return out

    def _loaded(self, version: str) -> ServedModel | None:
        """The serving role's loaded model of *version* (the one serving, or the one kept
        for rollback), or None."""
        for model in (self.slot.current, self.slot.previous):
            if model is not None and str(model.version) == version:
                return model
        return None

    def _score(self, requests: list[_Request]) -> tuple[list[tuple[np.ndarray, int]], Any]:
        """The batcher's work, in its worker thread: one model call per model in use."""
        current = self.slot.current
        assert current is not None
        groups: dict[tuple[int, tuple[int, ...], str], tuple[ServedModel, list[int]]] = {}
        for n, req in enumerate(requests):
            # a pinned request runs on its version, whatever serves now; another one
            # checked against an older model's signature that the new one does not share
            # (a swap in between) finishes on the model that checked it
            model = req.model if req.pinned or req.model.spec != current.spec else current
            # one model call per instance shape and dtype: a model with an open dimension
            # takes requests of different lengths, which cannot share one array
            key = (id(model), req.batch.shape[1:], req.batch.dtype.str)
            groups.setdefault(key, (model, []))[1].append(n)
        results: list[tuple[np.ndarray, int]] = [None] * len(requests)  # type: ignore[list-item]
        now = time.time()
        logged: list[concurrent.futures.Future[None]] = []
        for model, members in groups.values():
            parts = [requests[n] for n in members]
            batch = parts[0].batch if len(parts) == 1 else np.concatenate([p.batch for p in parts])
            out = _predict_chunks(model, batch, self.opts["max_batch_size"])
            ids: list[str] = []
            start = 0
            for n, part in zip(members, parts, strict=True):
                size = len(part.batch)
                results[n] = (out[start : start + size], model.version)
                start += size
                ids.extend(part.ids)
            instances: list[Any] | None = None
            if all(p.instances is not None for p in parts):
                instances = [x for p in parts for x in p.instances]
            self.metrics.inc(
                "lakeloop_serve_predictions_total", (("version", str(model.version)),), len(ids)
            )
            logged.append(
                self.log.submit(Scored(model.name, model.version, ids, batch, instances, out, now))
            )
            shadow_slot = self.shadow_slot
            if (
                self.shadow is not None
                and shadow_slot is not None
                and shadow_slot.current is not None
                and shadow_slot.current.version != model.version
            ):
                self.shadow.offer(batch, instances, ids, now)
        return results, (_all_of(logged) if self.opts["log_sync"] else None)

    # ------------------------------------------------------------------ predict
    async def _predict(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        name: str | None,
        version: str | None = None,
    ) -> None:
        started = time.perf_counter()
        batcher = self.batcher
        batcher.arriving += 1
        arriving = True
        status = 200
        try:
            current = self.slot.current
            assert current is not None
            if name is not None and name != self.name:
                raise PayloadError(
                    404, "NotFound", f"this server serves {self.name!r}, not {name!r}"
                )
            served = current
            if version is not None:
                pinned = self._loaded(version)
                if pinned is None:
                    previous = self.slot.previous
                    kept = "" if previous is None else f", {previous.version} kept for rollback"
                    raise PayloadError(
                        404,
                        "NotFound",
                        f"version {version} of {self.name!r} is not loaded here"
                        f" (serving {current.version}{kept})",
                    )
                served = pinned
            batcher.check_room()  # a full queue refuses before the body is even read
            body = await _read_body(scope, receive, self.opts["max_request_bytes"])
            batch, instances, key = parse_predict(body, _content_type(scope), served.spec)
            if len(batch) > self.opts["max_instances"]:
                raise PayloadError(
                    413,
                    "TooManyInstances",
                    f"{len(batch)} instances; at most {self.opts['max_instances']} per request",
                )
            ids = [uuid.uuid4().hex for _ in range(len(batch))]
            batcher.arriving -= 1
            arriving = False
            request = _Request(served, batch, instances, ids, pinned=version is not None)
            out, computed_by = await batcher.submit(request, len(ids))
            if out.dtype.kind not in "fiub":
                out = out.tolist()
            body = dumps({key: out, "prediction_ids": ids, "model_version": str(computed_by)})
            await _answer(send, 200, body)
        except QueueFull as exc:
            status = 503
            self.metrics.inc("lakeloop_serve_rejected_total", (("route", "predict"),))
            await _answer(
                send,
                status,
                _error_body("Overloaded", _overloaded(exc)),
                extra=[(b"retry-after", str(RETRY_AFTER).encode())],
            )
        except PayloadError as exc:
            status = exc.status
            await _answer(send, exc.status, _error_body(exc.code, exc.message))
        except LogUnavailable as exc:
            status = 503
            await _answer(send, status, _error_body("LogUnavailable", str(exc)[:300]))
        except Exception as exc:
            status = 500
            log.exception("serve: predict failed")
            await _answer(send, status, _error_body("InternalError", str(exc)[:300]))
        finally:
            if arriving:
                batcher.arriving -= 1
            self._count("predict", status, started)

    def _count(self, route: str, status: int, started: float) -> None:
        metrics = self.metrics
        metrics.inc("lakeloop_serve_requests_total", (("route", route),))
        if status >= 400:
            metrics.inc("lakeloop_serve_errors_total", (("code", str(status)), ("route", route)))
        metrics.observe("lakeloop_serve_request_seconds", time.perf_counter() - started)

    # ------------------------------------------------------------------ the rest
    def _build_api(self) -> Any:
        from starlette.applications import Starlette
        from starlette.requests import Request
        from starlette.responses import Response
        from starlette.routing import Route

        def json_response(
            status: int, value: Any, headers: dict[str, str] | None = None
        ) -> Response:
            return Response(
                dumps(value), status_code=status, media_type="application/json", headers=headers
            )

        async def healthz(request: Request) -> Response:
            started = time.perf_counter()
            served = self.slot.current
            shadow = self.shadow_slot.current if self.shadow_slot is not None else None
            self._count("healthz", 200, started)
            return json_response(
                200,
                {
                    "status": "ok",
                    "model": self.name,
                    "alias": self.alias,
                    "version": None if served is None else served.version,
                    "shadow": None if shadow is None else shadow.version,
                },
            )

        async def metrics(request: Request) -> Response:
            return Response(
                self.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8"
            )

        async def status(request: Request) -> Response:
            started = time.perf_counter()
            name = request.path_params["name"]
            served = self.slot.current
            if name != self.name or served is None:
                self._count("status", 404, started)
                return json_response(
                    404, {"error": {"code": "NotFound", "message": f"no model {name!r} here"}}
                )
            self._count("status", 200, started)
            if request.path_params.get("what") == "metadata":
                return json_response(
                    200, {"model_spec": {"name": name}, "metadata": served.describe()}
                )
            return json_response(200, {"model_version_status": self._version_status()})

        async def feedback(request: Request) -> Response:
            started = time.perf_counter()
            try:
                body = await _read_body(
                    request.scope, request.receive, self.opts["max_request_bytes"]
                )
                items = parse_feedback(body, self.opts["max_instances"])
                answer = await self.feedback_batcher.submit(items, len(items))
            except QueueFull as exc:
                self._count("feedback", 503, started)
                self.metrics.inc("lakeloop_serve_rejected_total", (("route", "feedback"),))
                return json_response(
                    503,
                    {"error": {"code": "Overloaded", "message": _overloaded(exc)}},
                    {"Retry-After": str(RETRY_AFTER)},
                )
            except PayloadError as exc:
                self._count("feedback", exc.status, started)
                return json_response(
                    exc.status, {"error": {"code": exc.code, "message": exc.message}}
                )
            except Exception as exc:
                log.exception("serve: feedback failed")
                self._count("feedback", 503, started)
                return json_response(
                    503, {"error": {"code": "FeedbackUnavailable", "message": str(exc)[:300]}}
                )
            self._count("feedback", 202, started)
            replaced = sum(a["replaced"] for a in answer)
            return json_response(
                202, {"accepted": len(answer), "replaced": replaced, "items": answer}
            )

        async def not_found(request: Request, exc: Exception) -> Response:
            code = getattr(exc, "status_code", 404)
            text = {404: "NotFound", 405: "MethodNotAllowed"}.get(code, "BadRequest")
            return json_response(code, {"error": {"code": text, "message": str(exc)}})

        from starlette.exceptions import HTTPException

        return Starlette(
            routes=[
                Route("/healthz", healthz, methods=["GET"]),
                Route("/metrics", metrics, methods=["GET"]),
                Route("/v1/feedback", feedback, methods=["POST"]),
                Route("/v1/models/{name}", status, methods=["GET"]),
                Route("/v1/models/{name}/{what:str}", status, methods=["GET"]),
            ],
            exception_handlers={HTTPException: not_found},
        )

    def _version_status(self) -> list[dict[str, Any]]:
        """TF Serving's version status: the serving version first, then the one kept for
        rollback (both answer pinned requests), then a version the alias points at that
        failed to load and is being retried (``LOADING``, with the error)."""
        out = []
        for model in (self.slot.current, self.slot.previous):
            if model is not None:
                out.append(
                    {
                        "version": str(model.version),
                        "state": "AVAILABLE",
                        "status": {"error_code": "OK", "error_message": ""},
                    }
                )
        for watcher in self.watchers:
            failure = watcher.failure
            if failure is not None and watcher.slot is self.slot:
                out.append(
                    {
                        "version": str(failure.version),
                        "state": "LOADING",
                        "status": {
                            "error_code": "UNAVAILABLE",
                            "error_message": failure.describe(),
                        },
                    }
                )
        return out

    # ------------------------------------------------------------------ ASGI
    async def startup(self) -> None:
        self.batcher.start()
        self.feedback_batcher.start()
        watchers = []
        if not self.alias.isdigit():  # a pinned version never moves
            watchers.append(AliasWatcher(
                self.registry, self.name, self.alias, self.slot, self._load, self.metrics,
                interval=self.opts["poll_interval"], retry=self.opts["load_retry"],
                retry_max=self.opts["load_retry_max"],
            ))  # fmt: skip
        if self.shadow_slot is not None and self.shadow_alias is not None:
            shadow_watch = AliasWatcher(
                self.registry, self.name, self.shadow_alias, self.shadow_slot, self._load,
                self.metrics, interval=self.opts["poll_interval"], retry=self.opts["load_retry"],
                retry_max=self.opts["load_retry_max"],
            )  # fmt: skip
            await shadow_watch.check()
            watchers.append(shadow_watch)
        for watcher in watchers:
            watcher.start()
        self.watchers = watchers

    async def shutdown(self) -> None:
        for watcher in self.watchers:
            await watcher.stop()
        await self.batcher.stop()
        await self.feedback_batcher.stop()
        if self.shadow is not None:
            self.shadow.close()
        self.log.close()
        self.desk.close()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            path: str = scope["path"]
            if scope["method"] == "POST":
                if path == "/v1/predict":
                    await self._predict(scope, receive, send, None)
                    return
                if path.startswith(_PREDICT_PREFIX) and path.endswith(":predict"):
                    name = path[len(_PREDICT_PREFIX) : -len(":predict")]
                    name, _, version = name.partition("/versions/")
                    await self._predict(scope, receive, send, name, version or None)
                    return
            await self.api(scope, receive, send)
            return
        if kind == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    try:
                        await self.startup()
                    except Exception as exc:
                        await send({"type": "lifespan.startup.failed", "message": str(exc)})
                        return
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await self.shutdown()
                    await send({"type": "lifespan.shutdown.complete"})
                    return


def _predict_chunks(model: ServedModel, batch: np.ndarray, size: int) -> np.ndarray:
    if len(batch) <= size:
        return model.predict(batch)
    return np.concatenate([model.predict(batch[i : i + size]) for i in range(0, len(batch), size)])


def _all_of(futures: list[concurrent.futures.Future[None]]) -> concurrent.futures.Future[None]:
    """One future done when every one of *futures* is (failed if any failed): log_sync
    answers a batch only when all of its groups' log writes are durable."""
    if len(futures) == 1:
        return futures[0]
    combined: concurrent.futures.Future[None] = concurrent.futures.Future()
    left = [len(futures)]
    lock = threading.Lock()

    def one_done(f: concurrent.futures.Future[None]) -> None:
        exc = f.exception()
        with lock:
            left[0] -= 1
            if combined.done():
                return
            if exc is not None:
                combined.set_exception(exc)
            elif left[0] == 0:
                combined.set_result(None)

    for f in futures:
        f.add_done_callback(one_done)
    return combined
