"""The Jinja2 environment of the UI: templates shipped in the package, escaping always on.

Autoescaping is on for every template, so keys, metadata, metric names and error texts
(all user data) reach the page as text, never as markup. The only values marked safe are
the SVG charts, which :mod:`lakeloop.ui._charts` builds from escaped parts.
"""

from __future__ import annotations

import json
import math
import time
import urllib.parse
from functools import lru_cache
from typing import Any

__all__ = ["render"]


def human_bytes(n: Any) -> str:
    if n is None:
        return "–"
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def when(t: Any) -> str:
    if not t:
        return "–"
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(float(t)))


def num(v: Any, digits: int = 4) -> str:
    if v is None:
        return "–"
    if isinstance(v, bool) or not isinstance(v, int | float):
        return str(v)
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    if isinstance(v, int):
        return f"{v:,}"
    return f"{v:.{digits}g}"


def pct(v: Any) -> str:
    return "–" if v is None else f"{100 * float(v):.1f} %"


def as_json(value: Any) -> str:
    return json.dumps(value, indent=1, sort_keys=True, default=str, ensure_ascii=False)


def q(value: Any) -> str:
    """Quote one URL query value (keys may hold anything)."""
    return urllib.parse.quote(str(value), safe="")


def qs(params: dict[str, Any]) -> str:
    """A query string from the non-empty *params*."""
    return urllib.parse.urlencode({k: v for k, v in params.items() if v not in (None, "")})


@lru_cache(maxsize=1)
def _env() -> Any:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("lakeloop.ui", "templates"),
        autoescape=True,
        undefined=jinja2.ChainableUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(bytes=human_bytes, when=when, num=num, pct=pct, json=as_json, q=q)
    env.globals.update(qs=qs)
    return env


def render(template: str, **context: Any) -> str:
    return str(_env().get_template(template).render(**context))


def safe(html: str) -> Any:
    """Mark trusted markup (the charts) as safe for the templates."""
    import markupsafe

    return markupsafe.Markup(html)
