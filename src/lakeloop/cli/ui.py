"""``lakeloop ui``: the web UI over one lake, for its owner."""

from __future__ import annotations

import click

from lakeloop.cli._common import _State

__all__ = ["ui"]

_LOOPBACK = ("127.0.0.1", "localhost", "::1")


@click.command()
@click.option(
    "--lake",
    "lake_path",
    default=None,
    help="The lake's folder (the same as `lakeloop --lake PATH ui`).",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8080, show_default=True, type=int, help="Port to listen on.")
@click.option(
    "--login",
    is_flag=True,
    help="Ask for an access key and secret (grants filter every page), as the gateway's /ui "
    "does; required to listen on anything but the loopback interface.",
)
@click.option(
    "--credentials",
    "credentials_path",
    envvar="LAKELOOP_CREDENTIALS",
    default=None,
    help="The credentials file for --login (default: $XDG_CONFIG_HOME/lakeloop/credentials.json).",
)
@click.option("--log-level", default="warning", show_default=True, help="uvicorn's log level.")
@click.pass_obj
def ui(
    state: _State,
    lake_path: str | None,
    host: str,
    port: int,
    login: bool,
    credentials_path: str | None,
    log_level: str,
) -> None:
    """Serve the web UI of the lake until interrupted.

    Without --login it shows everything in the lake to whoever can reach the port, like
    opening the lake's folder: it then listens on the loopback interface only.
    """
    from lakeloop.errors import InvalidInput
    from lakeloop.store import Lake

    credentials = None
    if login:
        from lakeloop.gateway import Credentials

        credentials = Credentials(credentials_path)
    elif host not in _LOOPBACK:
        raise InvalidInput(
            "without --login the UI shows the whole lake: it listens on loopback only",
            op="ui",
            target=host,
            hint="add --login (access keys and grants, as for the gateway), or use the "
            "gateway's /ui",
        )
    path = lake_path or state.lake_path
    lake = Lake.open(path, background=False)  # the UI reads; compaction is not its job
    try:
        from lakeloop.ui import serve

        who = "principals of " + str(credentials.path) if credentials else "the lake's owner"
        click.echo(f"lakeloop ui: {path} on http://{host}:{port}/ ({who})", err=True)
        serve(lake, host=host, port=port, credentials=credentials, log_level=log_level)
    finally:
        lake.close()
