"""``lakeloop user``: principals, their access keys and their grants on namespaces."""

from __future__ import annotations

import json

import click

__all__ = ["user"]

_CREDENTIALS = click.option(
    "--credentials",
    "credentials_path",
    envvar="LAKELOOP_CREDENTIALS",
    default=None,
    help="The credentials file (default: $XDG_CONFIG_HOME/lakeloop/credentials.json).",
)
_JSON = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


@click.group()
def user() -> None:
    """Create principals and grant them read, write or admin on namespaces."""


@user.command("create")
@click.argument("name")
@_CREDENTIALS
@_JSON
def user_create(name: str, credentials_path: str | None, as_json: bool) -> None:
    """Create principal NAME with a new access key; the secret is shown this once."""
    from lakeloop.gateway._credentials import Credentials

    creds = Credentials(credentials_path)
    access, secret = creds.create(name)
    if as_json:
        click.echo(json.dumps({"name": name, "access_key": access, "secret_key": secret}))
        return
    click.echo(f"created user {name}")
    click.echo(f"access key: {access}")
    click.echo(f"secret key: {secret}")
    click.echo("the secret is shown only now: keep it (grant access with `lakeloop user grant`)")


@user.command("list")
@_CREDENTIALS
@_JSON
def user_list(credentials_path: str | None, as_json: bool) -> None:
    """List principals with their access keys and grants (never secrets)."""
    from lakeloop.gateway._credentials import Credentials

    rows = Credentials(credentials_path).principals()
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for r in rows:
        grants = ", ".join(f"{ns}:{role}" for ns, role in sorted(r["grants"].items())) or "-"
        click.echo(f"{r['name']}\t{','.join(r['access_keys'])}\t{grants}")


@user.command("grant")
@click.argument("name")
@click.argument("namespace")
@click.argument("role", type=click.Choice(["read", "write", "admin"]))
@_CREDENTIALS
@_JSON
def user_grant(
    name: str, namespace: str, role: str, credentials_path: str | None, as_json: bool
) -> None:
    """Give NAME ROLE on NAMESPACE ('*' for every namespace); write implies read.

    NAMESPACE may also be '@models' (the model registry) or '@runs' (training runs)."""
    from lakeloop.gateway._credentials import Credentials

    Credentials(credentials_path).grant(name, namespace, role)
    if as_json:
        click.echo(json.dumps({"name": name, "namespace": namespace, "role": role}))
    else:
        click.echo(f"granted {role} on {namespace} to {name}")


@user.command("revoke")
@click.argument("name")
@click.argument("namespace")
@_CREDENTIALS
@_JSON
def user_revoke(name: str, namespace: str, credentials_path: str | None, as_json: bool) -> None:
    """Remove NAME's grant on NAMESPACE."""
    from lakeloop.gateway._credentials import Credentials

    had = Credentials(credentials_path).revoke(name, namespace)
    if as_json:
        click.echo(json.dumps({"name": name, "namespace": namespace, "revoked": had}))
    else:
        click.echo(f"revoked {name}'s grant on {namespace}" if had else "there was no such grant")


@user.command("new-secret")
@click.argument("name")
@_CREDENTIALS
@_JSON
def user_new_secret(name: str, credentials_path: str | None, as_json: bool) -> None:
    """Give NAME's access key a new secret, shown this once; the old secret stops working,
    and web UI sessions opened with it end (a running gateway sees it within 1 s)."""
    from lakeloop.gateway._credentials import Credentials

    keys = Credentials(credentials_path).new_secret(name)
    if as_json:
        click.echo(json.dumps({"name": name, "keys": keys}))
        return
    for access, secret in keys.items():
        click.echo(f"access key: {access}")
        click.echo(f"secret key: {secret}")
    click.echo("the secret is shown only now: keep it")


@user.command("delete")
@click.argument("name")
@_CREDENTIALS
@_JSON
def user_delete(name: str, credentials_path: str | None, as_json: bool) -> None:
    """Delete principal NAME with its keys and grants (a running gateway sees it within 1 s)."""
    from lakeloop.gateway._credentials import Credentials

    Credentials(credentials_path).delete(name)
    click.echo(json.dumps({"name": name, "deleted": True}) if as_json else f"deleted user {name}")
