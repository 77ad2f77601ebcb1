"""``lakeloop gateway``: serve the lake over S3 and the JSON API."""

from __future__ import annotations

import click

from lakeloop.cli._common import _State

__all__ = ["gateway"]


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=9000, show_default=True, type=int, help="Port to listen on.")
@click.option(
    "--credentials",
    "credentials_path",
    envvar="LAKELOOP_CREDENTIALS",
    default=None,
    help="The credentials file (default: $XDG_CONFIG_HOME/lakeloop/credentials.json).",
)
@click.option("--log-level", default="warning", show_default=True, help="uvicorn's log level.")
@click.option(
    "--loop",
    type=click.Choice(["auto", "uvloop", "asyncio"]),
    default="auto",
    show_default=True,
    help="Event loop (auto: uvloop when installed).",
)
@click.option(
    "--http",
    type=click.Choice(["auto", "httptools", "h11"]),
    default="auto",
    show_default=True,
    help="HTTP parser (auto: httptools when installed).",
)
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=click.IntRange(1, 64),
    help="Processes serving the same port, each with its own view of the lake.",
)
@click.pass_obj
def gateway(
    state: _State,
    host: str,
    port: int,
    credentials_path: str | None,
    log_level: str,
    loop: str,
    http: str,
    workers: int,
) -> None:
    """Serve the lake as S3 (path style) and /api/v1/ JSON until interrupted."""
    from lakeloop.gateway import Credentials, serve
    from lakeloop.store import Lake

    credentials = Credentials(credentials_path)
    click.echo(
        f"lakeloop gateway: {state.lake_path} on http://{host}:{port} "
        f"(credentials: {credentials.path}; {workers} process(es))",
        err=True,
    )
    if workers > 1:  # each worker process opens the lake itself
        Lake.open(state.lake_path, background=False).close()  # fail here if there is none
        serve(
            state.lake_path,
            host=host,
            port=port,
            credentials=credentials,
            log_level=log_level,
            loop=loop,
            http=http,
            workers=workers,
        )
        return
    lake = Lake.open(state.lake_path)
    try:
        serve(
            lake,
            host=host,
            port=port,
            credentials=credentials,
            log_level=log_level,
            loop=loop,
            http=http,
        )
    finally:
        lake.close()
