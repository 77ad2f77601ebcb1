"""The native JSON API under ``/api/v1/``: a registry of endpoints and its OpenAPI document.

Each area of lakeloop adds its endpoints from its own module with ``@endpoint`` (see
``_api_store``; later: ``_api_catalog``, ``_api_runs``...) and lists that module in
``AREAS``. An endpoint is a plain blocking function ``(ctx, **path_params) -> JSON``; it runs
in the gateway's thread pool, after SigV4 authentication and the role check it declares.
The OpenAPI document is built from the same registry, so it cannot drift from the routes.

>>> @endpoint("GET", "/namespaces/{namespace}/size", summary="Bytes in a namespace",
...           role="read", response={"type": "object"})           # doctest: +SKIP
... def size(ctx: ApiContext, namespace: str) -> dict: ...
"""

from __future__ import annotations

import importlib
import json
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from lakeloop.errors import (
    AccessDenied,
    AlreadyExists,
    ChecksumError,
    InvalidInput,
    LakeloopError,
    NotFound,
    Refused,
)
from lakeloop.gateway._credentials import Principal
from lakeloop.gateway._errors import S3Error
from lakeloop.store import Lake

__all__ = [
    "AREAS", "ENDPOINTS", "ApiContext", "ApiError", "Binary", "Endpoint", "Stream", "endpoint",
    "openapi", "precheck",
]  # fmt: skip

PREFIX = "/api/v1"
AREAS = [
    "lakeloop.gateway._api_store",
    "lakeloop.gateway._api_catalog",
    "lakeloop.gateway._api_registry",
]


class ApiError(Exception):
    """An answer with a status other than 200: ``{"error": {"code", "message"}}``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@dataclass(frozen=True)
class Binary:
    """An endpoint's answer that is bytes, not JSON (an artifact, a manifest)."""

    data: bytes
    content_type: str = "application/octet-stream"


@dataclass(frozen=True)
class Stream:
    """An endpoint's answer that is an open file of *size* bytes: sent in pieces and then
    closed, so an artifact of any size never sits whole in the server's memory."""

    file: BinaryIO
    size: int
    content_type: str = "application/octet-stream"


@dataclass
class ApiContext:
    """What an endpoint gets: the lake, the caller, the query parameters, the JSON body."""

    lake: Lake
    principal: Principal
    query: dict[str, str]
    body: Any = None

    def require(self, namespace: str, role: str) -> None:
        if namespace.startswith("_"):
            raise ApiError(404, "NotFound", "reserved namespaces are not served")
        if not self.principal.can(namespace, role):
            raise ApiError(403, "AccessDenied", f"no {role} grant on {namespace}")

    def require_grant(self, target: str, role: str) -> None:
        """403 unless the caller holds *role* on a grant target (``@models``, ``@runs``)."""
        if not self.principal.can(target, role):
            raise ApiError(403, "AccessDenied", f"no {role} grant on {target}")


@dataclass
class Endpoint:
    method: str
    path: str
    handler: Callable[..., Any]
    summary: str
    role: str | None  # checked against the {namespace} path parameter; None: any caller
    response: dict[str, Any]
    query: dict[str, dict[str, Any]] = field(default_factory=dict)
    public: bool = False  # no authentication (the OpenAPI document, health)
    upload: bool = False  # the body is raw bytes (a file object in ctx.body), not JSON
    grant: tuple[str, str] | None = None  # (target, role) checked before the body is read
    # (ctx, **path_params) -> None: refuses a bad target before the body is read
    check: Callable[..., None] | None = None


ENDPOINTS: list[Endpoint] = []


def endpoint(
    method: str,
    path: str,
    *,
    summary: str,
    response: dict[str, Any],
    role: str | None = None,
    query: dict[str, dict[str, Any]] | None = None,
    public: bool = False,
    upload: bool = False,
    grant: tuple[str, str] | None = None,
    check: Callable[..., None] | None = None,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register a JSON endpoint at ``/api/v1`` + *path*. With *upload*, the request body
    is raw bytes (up to ``gateway_max_object_size``), spooled to a temporary file and
    checked against its signed SHA-256 before the handler sees it; a handler may answer
    bytes by returning :class:`Binary` (*response* then describes the bytes). *grant*
    (``("@models", "write")``) is checked right after authentication, so a caller
    without it is refused before an upload is read; so is a target that *check*
    (``(ctx, **path_params) -> None``, pure and quick: it runs on the event loop) refuses."""

    def register(fn: Callable[..., Any]) -> Callable[..., Any]:
        ep = Endpoint(method, path, fn, summary, role, response, query or {})
        ep.public, ep.upload, ep.grant, ep.check = public, upload, grant, check
        ENDPOINTS.append(ep)
        return fn

    return register


def load_areas() -> None:
    for module in AREAS:
        importlib.import_module(module)


def precheck(ep: Endpoint, ctx: ApiContext, params: dict[str, str]) -> None:
    """What an endpoint checks before its body is read: the role on the namespace, the
    grant, and its own *check* of the target. A refused request costs no upload."""
    with _mapped_errors():
        if ep.role is not None and "namespace" in params:
            ctx.require(params["namespace"], ep.role)
        if ep.grant is not None:
            ctx.require_grant(*ep.grant)
        if ep.check is not None:
            ep.check(ctx, **params)


def call(ep: Endpoint, ctx: ApiContext, params: dict[str, str]) -> Any:
    """Run one endpoint (after :func:`precheck`), mapping lakeloop errors to API errors."""
    with _mapped_errors():
        return ep.handler(ctx, **params)


@contextmanager
def _mapped_errors() -> Iterator[None]:
    try:
        yield
    except NotFound as exc:
        raise ApiError(404, "NotFound", str(exc)) from None
    except AlreadyExists as exc:
        raise ApiError(409, "AlreadyExists", str(exc)) from None
    except InvalidInput as exc:
        raise ApiError(400, "InvalidInput", str(exc)) from None
    except Refused as exc:
        raise ApiError(409, "Refused", str(exc)) from None
    except AccessDenied as exc:
        raise ApiError(403, "AccessDenied", str(exc)) from None
    except ChecksumError as exc:
        raise ApiError(500, "ChecksumError", str(exc)) from None
    except S3Error as exc:
        raise ApiError(exc.status, exc.code, exc.message) from None
    except LakeloopError as exc:
        raise ApiError(503, type(exc).__name__, str(exc)) from None


_ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
        }
    },
}


BYTES: dict[str, Any] = {"type": "string", "format": "binary"}  # a raw body or answer


def _media(schema: dict[str, Any]) -> str:
    return "application/octet-stream" if schema.get("format") == "binary" else "application/json"


def openapi() -> dict[str, Any]:
    """The OpenAPI 3.0 document of every registered endpoint."""
    load_areas()
    paths: dict[str, Any] = {}
    for ep in ENDPOINTS:
        params: list[dict[str, Any]] = [
            {"name": n, "in": "path", "required": True, "schema": {"type": "string"}}
            for n in re.findall(r"\{(\w+)\}", ep.path)
        ]
        params += [
            {"name": n, "in": "query", "required": False, "schema": s} for n, s in ep.query.items()
        ]
        responses: dict[str, Any] = {
            "200": {
                "description": "OK",
                "content": {_media(ep.response): {"schema": ep.response}},
            },
        }
        for status in ("400", "404", "405", "409", "503") if not ep.public else ():
            responses[status] = {
                "description": "error",
                "content": {"application/json": {"schema": _ERROR_SCHEMA}},
            }
        if not ep.public:
            responses["403"] = {
                "description": "not authenticated or not granted",
                "content": {"application/json": {"schema": _ERROR_SCHEMA}},
            }
        op: dict[str, Any] = {
            "summary": ep.summary,
            "operationId": ep.handler.__name__,
            "parameters": params,
            "responses": responses,
        }
        if not ep.public:
            op["security"] = [{"sigv4": []}]
        if ep.upload:
            op["requestBody"] = {"required": True, "content": {_media(BYTES): {"schema": BYTES}}}
        paths.setdefault(PREFIX + ep.path, {})[ep.method.lower()] = op
    return {
        "openapi": "3.0.3",
        "info": {"title": "lakeloop JSON API", "version": "1"},
        "paths": paths,
        "components": {
            "securitySchemes": {
                "sigv4": {
                    "type": "apiKey",
                    "name": "Authorization",
                    "in": "header",
                    "description": "AWS Signature Version 4 with a lakeloop access key",
                }
            }
        },
    }


def dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), default=str).encode()
