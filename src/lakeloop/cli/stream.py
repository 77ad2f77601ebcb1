"""``lakeloop stream``: list the lake's event streams, show one, print its latest events."""

from __future__ import annotations

import json
import time
from collections import deque
from typing import Any

import click

from lakeloop.cli._common import _console, _State

_URL_HELP = "The stream backend: 'embedded', redis://... or nats://... (default: stream_url)."


@click.group()
def stream() -> None:
    """Event streams (the inference log, feedback, ...): list, inspect, tail."""


@stream.command("ls")
@click.option("--url", help=_URL_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def stream_ls(state: _State, url: str | None, as_json: bool) -> None:
    """Every stream of the lake, with its length."""
    from lakeloop.stream import list_streams, open_stream

    lake = state.lake()
    rows: list[dict[str, Any]] = []
    for name in list_streams(lake, url=url):
        with open_stream(lake, name, url=url) as s:
            info = s.info()
        rows.append({k: info.get(k) for k in ("name", "backend", "length", "last_offset")})
        rows[-1]["groups"] = sorted(info["groups"])
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    from rich.table import Table

    table = Table()
    for col in ("stream", "backend", "events", "last offset", "groups"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            r["name"], r["backend"], str(r["length"]), str(r["last_offset"]), ", ".join(r["groups"])
        )
    _console().print(table)


@stream.command("info")
@click.argument("name")
@click.option("--url", help=_URL_HELP)
@click.pass_obj
def stream_info(state: _State, name: str, url: str | None) -> None:
    """Length, first and last offset, and each consumer group's pending events and lag."""
    from lakeloop.stream import open_stream

    with open_stream(state.lake(), name, url=url) as s:
        click.echo(json.dumps(s.info(), indent=2))


@stream.command("tail")
@click.argument("name")
@click.option("--from", "from_offset", help="Print the events after this offset instead.")
@click.option(
    "-n", "count", type=click.IntRange(min=1), default=10, show_default=True, help="How many."
)
@click.option("--url", help=_URL_HELP)
@click.pass_obj
def stream_tail(
    state: _State, name: str, from_offset: str | None, count: int, url: str | None
) -> None:
    """The last N events (or the N after --from), one JSON object per line."""
    from lakeloop.stream import open_stream

    with open_stream(state.lake(), name, url=url) as s:
        if from_offset is None and s.backend == "embedded":
            last = s.info()["last_offset"]  # dense integer offsets: start N back
            if last is not None and int(last) >= count:
                from_offset = str(int(last) - count)
            picked: Any = s.replay(from_offset)
        elif from_offset is None:
            picked = deque(s.replay(), maxlen=count)  # other backends: read it through
        else:
            picked = s.replay(from_offset)
        for i, m in enumerate(picked):
            if i >= count:
                break
            when = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(m.time))
            doc = {"offset": m.offset, "id": m.id, "time": when, "data": m.data}
            click.echo(json.dumps(doc, ensure_ascii=False))
