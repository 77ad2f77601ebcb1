"""The web UI: the lake, search, previews, snapshots, runs, models and gate reports.

Public surface::

    create_app(lake, credentials=None) -> ASGI app   (None: the lake's owner, no login)
    serve(lake, host="127.0.0.1", port=8080)          run it locally under uvicorn

``lakeloop ui --port 8080`` serves a lake to its owner on the loopback interface; the
gateway mounts the same app at ``/ui`` with a login (see docs/ui.md). Pages are rendered
on the server from Jinja2 templates shipped in this package; charts are inline SVG; the
only script and stylesheet are served by the app itself.
"""

from __future__ import annotations

from typing import Any

from lakeloop.store import Lake

__all__ = ["create_app", "serve"]


def create_app(lake: Lake, credentials: Any = None) -> Any:
    """The UI over *lake* as an ASGI app; with *credentials* (a gateway ``Credentials``)
    principals log in and see what their grants allow."""
    from lakeloop.ui._app import UI

    return UI(lake, credentials)


def serve(
    lake: Lake | str,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    credentials: Any = None,
    log_level: str = "warning",
) -> None:
    """Serve the UI until interrupted (blocking)."""
    import uvicorn

    own = not isinstance(lake, Lake)
    opened = Lake.open(lake, background=False) if not isinstance(lake, Lake) else lake
    try:
        uvicorn.run(
            create_app(opened, credentials),
            host=host,
            port=port,
            log_level=log_level,
            access_log=False,
            lifespan="off",
        )
    finally:
        if own:
            opened.close()
