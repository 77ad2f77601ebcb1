"""``lakeloop serve NAME@ALIAS``: serve a registry model over HTTP."""

from __future__ import annotations

import click

from lakeloop.cli._common import _State

__all__ = ["serve"]


@click.command()
@click.argument("ref", metavar="NAME@ALIAS")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8080, show_default=True, type=int, help="Port to listen on.")
@click.option(
    "--shadow",
    metavar="ALIAS",
    default=None,
    help="Also score live traffic with NAME@ALIAS (logged with shadow: true, never answered).",
)
@click.option(
    "--stream",
    "stream_url",
    default=None,
    help="Stream backend for the inference log and feedback "
    "(embedded, redis://..., nats://...; default: the lake's setting).",
)
@click.option(
    "--set",
    "assignments",
    multiple=True,
    metavar="NAME=VALUE",
    help="Override a serve_* setting for this server, e.g. --set max_batch_size=32.",
)
@click.option("--log-level", default="warning", show_default=True, help="uvicorn's log level.")
@click.pass_obj
def serve(
    state: _State,
    ref: str,
    host: str,
    port: int,
    shadow: str | None,
    stream_url: str | None,
    assignments: tuple[str, ...],
    log_level: str,
) -> None:
    """Serve model NAME@ALIAS (TensorFlow Serving's REST API) until interrupted.

    POST /v1/models/NAME:predict or /v1/predict with {"instances": [...]}; feedback to
    POST /v1/feedback; GET /healthz and /metrics. The alias is followed: when it moves,
    the new version takes over without a failed request.
    """
    from lakeloop.errors import InvalidSetting
    from lakeloop.registry import parse_model_ref
    from lakeloop.serve import serve as run

    parse_model_ref(ref)
    options: dict[str, str] = {}
    for item in assignments:
        name, sep, value = item.partition("=")
        if not sep:
            raise InvalidSetting(f"expected NAME=VALUE, got {item!r}", op="serve")
        options[name.strip().removeprefix("serve_")] = value.strip()
    click.echo(f"lakeloop serve: {ref} of {state.lake_path} on http://{host}:{port}", err=True)
    run(
        state.lake(),
        ref,
        host=host,
        port=port,
        shadow=shadow,
        stream_url=stream_url,
        options=options,
        log_level=log_level,
    )
