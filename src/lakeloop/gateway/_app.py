"""The gateway's ASGI app: ``/api/v1/...`` goes to the JSON API, everything else is S3.

The JSON API is a Starlette app whose routes come from the endpoint registry (``_api``).
The S3 side is a bare ASGI callable (``_s3``): it is on the path of every data request and
routes by path shape and query parameters, which a path router does not express.
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Any

from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from lakeloop import _sigv4 as sigv4
from lakeloop.errors import StoreError
from lakeloop.gateway import _api as api
from lakeloop.gateway._auth import verify
from lakeloop.gateway._credentials import Credentials, Principal
from lakeloop.gateway._errors import S3Error
from lakeloop.gateway._s3 import Receive, S3App, Send
from lakeloop.store import Lake

__all__ = ["Gateway"]

log = logging.getLogger("lakeloop.gateway")
_JSON_BODY_LIMIT = 1 << 20
UI_PREFIX = "/ui"  # where the web UI is mounted (see docs/ui.md)


def _json(status: int, value: Any) -> Response:
    return Response(api.dumps(value), status_code=status, media_type="application/json")


def _error(status: int, code: str, message: str) -> Response:
    return _json(status, {"error": {"code": code, "message": message}})


async def _read_limited(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it passes *limit* bytes (declared or
    sent): a JSON call never holds more than that in memory."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise api.ApiError(413, "TooLarge", f"the request body is over {limit:,} bytes")
    parts: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise api.ApiError(413, "TooLarge", f"the request body is over {limit:,} bytes")
        parts.append(chunk)
    return b"".join(parts)


class Gateway:
    """The ASGI app serving *lake* to the principals of *credentials*.

    >>> app = Gateway(Lake.open("lake"), Credentials())        # doctest: +SKIP
    >>> uvicorn.run(app, host="127.0.0.1", port=9000)          # doctest: +SKIP
    """

    def __init__(
        self, lake: Lake, credentials: Credentials | None = None, *, owns_lake: bool = False
    ) -> None:
        self.lake = lake
        self._owns_lake = owns_lake  # close it at shutdown (worker processes open their own)
        self.credentials = credentials if credentials is not None else Credentials()
        self.s3 = S3App(lake, self.credentials)
        self.api = self._build_api()
        self.ui_enabled = bool(lake.settings["gateway_ui"])
        self._ui: Any = None

    def _build_api(self) -> Starlette:
        api.load_areas()
        document = api.dumps(api.openapi())

        async def openapi(request: Request) -> Response:
            return Response(document, media_type="application/json")

        routes = [Route(api.PREFIX + "/openapi.json", openapi, methods=["GET"])]
        for ep in api.ENDPOINTS:
            routes.append(Route(api.PREFIX + ep.path, self._handler(ep), methods=[ep.method]))

        async def http_error(request: Request, exc: Exception) -> Response:
            assert isinstance(exc, HTTPException)
            code = {404: "NotFound", 405: "MethodNotAllowed"}.get(exc.status_code, "BadRequest")
            return _error(exc.status_code, code, str(exc.detail))

        return Starlette(routes=routes, exception_handlers={HTTPException: http_error})

    def _handler(self, ep: api.Endpoint) -> Callable[[Request], Awaitable[Response]]:
        async def handle(request: Request) -> Response:
            upload = None
            raw = b""
            try:
                query = sigv4.parse_query(request.scope.get("query_string", b"").decode("latin-1"))
                principal = Principal("anonymous")
                if not ep.public:
                    # the signature covers the headers and the body's declared SHA-256;
                    # the body is checked against that hash once it has been read
                    principal, signed = self._authenticate(request.scope, query)
                else:
                    signed = sigv4.UNSIGNED
                ctx = api.ApiContext(self.lake, principal, dict(query))
                params = {k: str(v) for k, v in request.path_params.items()}
                # the grant and the target are checked before the body is read: a refused
                # upload costs no disk I/O
                api.precheck(ep, ctx, params)
                body: Any = None
                if ep.upload:
                    upload, digest = await self._spool(request)
                    body = upload
                else:
                    raw = await _read_limited(request, _JSON_BODY_LIMIT)
                    digest = hashlib.sha256(raw).hexdigest()
                if signed != sigv4.UNSIGNED and digest != signed.lower():
                    raise api.ApiError(
                        400,
                        "XAmzContentSHA256Mismatch",
                        "the body does not match its signed SHA-256",
                    )
                if not ep.upload and raw:
                    try:
                        body = json.loads(raw)
                    except ValueError:
                        raise api.ApiError(400, "InvalidJSON", "the body is not JSON") from None
                ctx.body = body
                result = await self.s3.run(api.call, ep, ctx, params)
                if isinstance(result, api.Binary):
                    return Response(result.data, media_type=result.content_type)
                if isinstance(result, api.Stream):
                    return self._stream(result)
                return _json(200, result)
            except api.ApiError as exc:
                return _error(exc.status, exc.code, exc.message)
            except Exception:
                log.exception("gateway: %s %s failed", request.method, request.url.path)
                return _error(500, "InternalError", "see the gateway log")
            finally:
                if upload is not None:
                    upload.close()

        handle.__name__ = ep.handler.__name__
        return handle

    def _stream(self, answer: api.Stream) -> StreamingResponse:
        """Send an open file in 1 MiB pieces read in the thread pool, then close it.

        The status and length go out before the file is read to its end, so a failure
        on the way (a blob chunk whose checksum fails, a file that ends early) cannot
        become a 500: it aborts the connection instead, and the client sees fewer bytes
        than the length it was promised (the remote lake raises ``StoreError``), never
        a short body that ends cleanly."""

        async def pieces() -> AsyncIterator[bytes]:
            try:
                left = answer.size
                while left > 0:
                    piece = await self.s3.run(answer.file.read, min(left, 1 << 20))
                    if not piece:
                        raise StoreError(
                            f"the file ended {left:,} bytes short of its {answer.size:,}",
                            op="stream an answer",
                        )
                    left -= len(piece)
                    yield piece
            finally:
                answer.file.close()

        return StreamingResponse(
            pieces(),
            media_type=answer.content_type,
            headers={"content-length": str(answer.size)},
            background=BackgroundTask(answer.file.close),  # also when the client left early
        )

    async def _spool(self, request: Request) -> tuple[Any, str]:
        """An upload's body in a temporary file (memory up to 1 MiB) -> (file, SHA-256),
        refused past ``gateway_max_object_size`` before more is read."""
        limit = self.s3.max_object
        spool = tempfile.SpooledTemporaryFile(_JSON_BODY_LIMIT)  # noqa: SIM115 (returned)
        digest = hashlib.sha256()
        size = 0
        try:
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise api.ApiError(413, "EntityTooLarge", f"the upload is over {limit} bytes")
                digest.update(chunk)
                await self.s3.run(spool.write, chunk)
        except BaseException:
            spool.close()
            raise
        spool.seek(0)
        return spool, digest.hexdigest()

    def _authenticate(
        self, scope: MutableMapping[str, Any], query: list[tuple[str, str]]
    ) -> tuple[Principal, str]:
        """The signing principal and the payload hash it signed."""
        self.credentials.refresh()
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        try:
            auth = verify(
                scope["method"],
                scope["path"],
                scope.get("raw_path", b"").decode("latin-1") or scope["path"],
                query,
                headers,
                self.credentials,
                max_skew=self.s3.max_skew,
                max_expires=self.s3.max_expires,
                anonymous=self.s3.anonymous,
            )
        except S3Error as exc:
            raise api.ApiError(403, exc.code, exc.message) from None
        return auth.principal, auth.payload_hash

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    if self._owns_lake:
                        self.lake.close()
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if kind != "http":
            return
        path: str = scope["path"]
        if path == api.PREFIX or path.startswith(api.PREFIX + "/"):
            await self.api(scope, receive, send)  # type: ignore[arg-type]
        elif (path == UI_PREFIX or path.startswith(UI_PREFIX + "/")) and self._is_browser(scope):
            await self._serve_ui(scope, receive, send)
        else:
            await self.s3(scope, receive, send)

    def _is_browser(self, scope: dict[str, Any]) -> bool:
        """A request for the web UI: ``gateway_ui`` is on and the request is not signed.

        Browsers never sign with SigV4 and S3 clients always do, so a namespace named
        ``ui`` stays reachable over S3 with signed requests.
        """
        if not self.ui_enabled:
            return False
        if any(k == b"authorization" for k, _ in scope["headers"]):
            return False
        return b"X-Amz-Signature=" not in scope.get("query_string", b"")

    async def _serve_ui(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["path"] == UI_PREFIX:  # relative links need the trailing slash
            await send({"type": "http.response.start", "status": 308,
                        "headers": [(b"location", (UI_PREFIX + "/").encode()),
                                    (b"content-length", b"0")]})  # fmt: skip
            await send({"type": "http.response.body", "body": b""})
            return
        if self._ui is None:
            from lakeloop.ui import create_app  # jinja2 loads on the first page, not at start

            self._ui = create_app(self.lake, self.credentials)
        sub = dict(scope, root_path=scope.get("root_path", "") + UI_PREFIX)
        await self._ui(sub, receive, send)


def from_environment() -> Gateway:
    """The app of one worker process of ``lakeloop gateway --workers N``: it opens the lake
    named by ``LAKELOOP_GATEWAY_LAKE`` and the credentials of ``LAKELOOP_CREDENTIALS``."""
    import os

    lake = Lake.open(os.environ["LAKELOOP_GATEWAY_LAKE"])
    return Gateway(
        lake, Credentials(os.environ.get("LAKELOOP_CREDENTIALS") or None), owns_lake=True
    )
