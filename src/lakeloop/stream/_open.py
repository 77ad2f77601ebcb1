"""Choosing a backend: ``open_stream`` and ``list_streams`` read the lake's settings.

The URL decides: ``embedded`` (or empty with ``stream_backend = "embedded"``), then
``redis://HOST:PORT/DB`` and ``nats://HOST:PORT``. The client libraries of Redis and NATS
are imported only when such a URL is opened.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from lakeloop.errors import InvalidInput
from lakeloop.settings import Settings
from lakeloop.stream._base import Stream, check_stream_name

__all__ = ["list_streams", "open_stream", "resolve_url"]

_DEFAULT_URLS = {
    "embedded": "embedded",
    "redis": "redis://127.0.0.1:6379/0",
    "nats": "nats://127.0.0.1:4222",
}
_SCHEMES = {"redis": "redis", "rediss": "redis", "nats": "nats", "tls": "nats"}


def _settings(lake: Any) -> Settings:
    settings = getattr(lake, "settings", None)
    return settings if isinstance(settings, Settings) else Settings({})


def resolve_url(lake: Any, url: str | None = None) -> tuple[str, str]:
    """-> (backend, url) from *url*, else the ``stream_url`` / ``stream_backend`` settings."""
    settings = _settings(lake)
    if url is None:
        url = str(settings["stream_url"]) or _DEFAULT_URLS[str(settings["stream_backend"])]
    if not isinstance(url, str):
        raise InvalidInput("a stream URL is a string", op="open stream", target=repr(url))
    if url.strip().lower() == "embedded":
        return "embedded", "embedded"
    scheme = urlsplit(url).scheme.lower()
    backend = _SCHEMES.get(scheme)
    if backend is None:
        raise InvalidInput(
            "unknown stream backend URL",
            op="open stream",
            target=url,
            hint="use 'embedded', redis://HOST:PORT/DB or nats://HOST:PORT",
        )
    return backend, url


def open_stream(lake: Any, name: str, *, url: str | None = None) -> Stream:
    """Open (creating on first use) the stream *name* of *lake*.

    >>> s = open_stream(lake, "predictions")                    # doctest: +SKIP
    >>> s.publish({"prediction_id": "p1"}, id="p1")             # doctest: +SKIP
    '0'
    """
    check_stream_name(name)
    backend, resolved = resolve_url(lake, url)
    settings = _settings(lake)
    if backend == "embedded":
        from lakeloop.stream._embedded import EmbeddedStream

        return EmbeddedStream(lake, name)
    if backend == "redis":
        from lakeloop.stream._redis import RedisStream

        return RedisStream(resolved, name, settings)
    from lakeloop.stream._nats import NatsStream

    return NatsStream(resolved, name, settings)


def list_streams(lake: Any, *, url: str | None = None) -> list[str]:
    """Names of the streams of *lake* on its backend, sorted."""
    backend, resolved = resolve_url(lake, url)
    settings = _settings(lake)
    if backend == "embedded":
        from lakeloop.stream._embedded import list_embedded

        return list_embedded(lake)
    if backend == "redis":
        from lakeloop.stream._redis import list_redis

        return list_redis(resolved, settings)
    from lakeloop.stream._nats import list_nats

    return list_nats(resolved, settings)
