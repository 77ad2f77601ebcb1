"""The gateway: the lake over HTTP, as S3 and as a JSON API, for signed-in principals.

Public surface::

    Gateway(lake, credentials) -> ASGI app      (S3 at /, JSON API at /api/v1/, web UI at /ui/)
    serve(lake, host=..., port=..., credentials=...)   run it under uvicorn
    Credentials(path) / Principal                principals, access keys, grants
    ROLES                                        ("read", "write", "admin")

Start it from the command line with ``lakeloop gateway --host 127.0.0.1 --port 9000``;
docs/gateway.md lists the supported S3 operations.
"""

from __future__ import annotations

from typing import Any

from lakeloop.gateway._app import Gateway
from lakeloop.gateway._credentials import ROLES, Credentials, Principal, default_credentials_path
from lakeloop.store import Lake

__all__ = ["ROLES", "Credentials", "Gateway", "Principal", "default_credentials_path", "serve"]


def serve(
    lake: Lake | str,
    *,
    host: str = "127.0.0.1",
    port: int = 9000,
    credentials: Credentials | None = None,
    log_level: str = "warning",
    loop: str = "auto",
    http: str = "auto",
    workers: int = 1,
    **uvicorn_options: Any,
) -> None:
    """Serve *lake* until interrupted. ``loop`` (uvloop | asyncio) and ``http``
    (httptools | h11) default to the faster one when it is installed.

    ``workers > 1`` runs that many processes on one port, each with its own ``Lake``
    (give the lake's path then); they share the namespaces' cross-process writer locks.
    """
    import importlib.util
    import os

    import uvicorn

    if loop == "auto":
        loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    if http == "auto":
        http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    if workers > 1:
        if not os.environ.get("LAKELOOP_UI_SECRET"):
            import secrets

            # every worker must check the UI's session cookies with the same secret
            os.environ["LAKELOOP_UI_SECRET"] = secrets.token_urlsafe(32)
        if isinstance(lake, Lake):
            lake = str(lake.root)
        os.environ["LAKELOOP_GATEWAY_LAKE"] = str(lake)
        os.environ["LAKELOOP_CREDENTIALS"] = str((credentials or Credentials()).path)
        uvicorn.run(
            "lakeloop.gateway._app:from_environment",
            factory=True,
            workers=workers,
            host=host,
            port=port,
            loop=loop,
            http=http,
            log_level=log_level,
            access_log=False,
            lifespan="on",
            **uvicorn_options,
        )
        return
    if not isinstance(lake, Lake):
        lake = Lake.open(lake)
    uvicorn.run(
        Gateway(lake, credentials),
        host=host,
        port=port,
        loop=loop,
        http=http,
        log_level=log_level,
        access_log=False,
        lifespan="on",
        **uvicorn_options,
    )
