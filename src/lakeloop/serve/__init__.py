"""Serving: a registry model over HTTP, micro-batched, hot-swapped, with an inference log.

Public surface::

    ModelServer(registry, "digits@champion", predictions=stream, feedback=stream,
                shadow="challenger", options={"max_batch_size": 32})  -> ASGI app
    serve(lake, "digits@champion", host=..., port=..., shadow=..., stream_url=...)
    ServedModel(loaded_model)      one version ready to predict batches (.predict, .spec)
    InputSpec                      the instance shape and dtype a request is checked against

Requests speak TensorFlow Serving's REST API (``POST /v1/models/NAME:predict`` with
``{"instances": [...]}``), every instance gets a prediction id, every prediction goes to
stream ``predictions`` and every label posted to ``/v1/feedback`` to stream ``feedback``.
Start it with ``lakeloop serve NAME@ALIAS --port 8080``; docs/serve.md has the details.
"""

from __future__ import annotations

from typing import Any

from lakeloop.serve._app import ModelServer
from lakeloop.serve._model import ServedModel
from lakeloop.serve._payload import InputSpec

__all__ = ["InputSpec", "ModelServer", "ServedModel", "serve"]


def serve(
    lake: Any,
    ref: str,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    shadow: str | None = None,
    stream_url: str | None = None,
    options: dict[str, Any] | None = None,
    log_level: str = "warning",
    loop: str = "auto",
    http: str = "auto",
    **uvicorn_options: Any,
) -> None:
    """Serve model *ref* (``NAME@ALIAS``) of *lake* (a ``Lake`` or its path) until
    interrupted. *stream_url* picks the stream backend (default: the lake's
    ``stream_url`` setting, else the embedded log in the lake)."""
    import importlib.util

    import uvicorn

    from lakeloop.registry import Registry
    from lakeloop.store import Lake
    from lakeloop.stream import open_stream

    own = not isinstance(lake, Lake)
    if own:
        lake = Lake.open(lake)
    if loop == "auto":
        loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    if http == "auto":
        http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    kwargs = {} if stream_url is None else {"url": stream_url}
    predictions = open_stream(lake, "predictions", **kwargs)
    feedback = open_stream(lake, "feedback", **kwargs)
    try:
        app = ModelServer(
            Registry(lake),
            ref,
            predictions=predictions,
            feedback=feedback,
            shadow=shadow,
            options=options,
        )
        uvicorn.run(
            app,
            host=host,
            port=port,
            loop=loop,
            http=http,
            log_level=log_level,
            access_log=False,
            lifespan="on",
            **uvicorn_options,
        )
    finally:
        predictions.close()
        feedback.close()
        if own:
            lake.close()
