"""The gateway's ASGI app: ``/api/v1/...`` goes to the JSON API, everything else is S3."""

from __future__ import annotations

import json
import logging
from typing import Any

from lakeloop import _sigv4 as sigv4
from lakeloop.gateway import _api as api
from lakeloop.gateway._auth import verify
from lakeloop.gateway._credentials import Credentials
from lakeloop.gateway._errors import S3Error
from lakeloop.gateway._s3 import Receive, S3App, Send
from lakeloop.store import Lake

__all__ = ["Gateway"]

log = logging.getLogger("lakeloop.gateway")
_JSON_BODY_LIMIT = 1 << 20


class Gateway:
    """The ASGI app serving *lake* to the principals of *credentials*.

    >>> app = Gateway(Lake.open("lake"), Credentials())        # doctest: +SKIP
    >>> uvicorn.run(app, host="127.0.0.1", port=9000)          # doctest: +SKIP
    """

    def __init__(self, lake: Lake, credentials: Credentials | None = None) -> None:
        self.lake = lake
        self.credentials = credentials if credentials is not None else Credentials()
        self.s3 = S3App(lake, self.credentials)
        api.load_areas()
        self._openapi = api.dumps(api.openapi())

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if kind != "http":
            return
        path: str = scope["path"]
        if path == api.PREFIX or path.startswith(api.PREFIX + "/"):
            await self._api(scope, receive, send, path[len(api.PREFIX) :] or "/")
        else:
            await self.s3(scope, receive, send)

    async def _json(self, send: Send, status: int, body: bytes) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def _api(self, scope: dict[str, Any], receive: Receive, send: Send, sub: str) -> None:
        method = scope["method"]
        try:
            if sub == "/openapi.json" and method == "GET":
                await self._json(send, 200, self._openapi)
                return
            ep, params = api.match(method, sub)
            raw_query = scope.get("query_string", b"").decode("latin-1")
            query = sigv4.parse_query(raw_query)
            headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
            raw = b""
            more = True
            while more:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return
                raw += message.get("body", b"")
                more = message.get("more_body", False)
                if len(raw) > _JSON_BODY_LIMIT:
                    raise api.ApiError(413, "TooLarge", "the request body is over 1 MiB")
            principal = None
            if not ep.public:
                self.credentials.refresh()
                try:
                    auth = verify(
                        method,
                        scope["path"],
                        scope.get("raw_path", b"").decode("latin-1") or scope["path"],
                        query,
                        headers,
                        self.credentials,
                        max_skew=self.s3.max_skew,
                        max_expires=self.s3.max_expires,
                    )
                except S3Error as exc:
                    raise api.ApiError(403, exc.code, exc.message) from None
                principal = auth.principal
            body = None
            if raw:
                try:
                    body = json.loads(raw)
                except ValueError:
                    raise api.ApiError(400, "InvalidJSON", "the body is not JSON") from None
            from lakeloop.gateway._credentials import Principal

            ctx = api.ApiContext(self.lake, principal or Principal("anonymous"), dict(query), body)
            result = await self.s3.run(api.call, ep, ctx, params)
            await self._json(send, 200, api.dumps(result))
        except api.ApiError as exc:
            await self._json(
                send, exc.status, api.dumps({"error": {"code": exc.code, "message": exc.message}})
            )
        except Exception:
            log.exception("gateway: %s %s failed", method, scope["path"])
            await self._json(
                send,
                500,
                api.dumps({"error": {"code": "InternalError", "message": "see the gateway log"}}),
            )
