"""``lakeloop models``: list, show and alias registered model versions."""

from __future__ import annotations

import json
import time
from typing import Any

import click

from lakeloop.cli._common import _console, _State


def _when(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))


@click.group()
def models() -> None:
    """Registered models: versions, lineage and aliases (champion, challenger, ...)."""


@models.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def models_list(state: _State, as_json: bool) -> None:
    """Every model with its latest version and its aliases."""
    from lakeloop.registry import Registry

    reg = Registry(state.lake())
    rows: list[dict[str, Any]] = []
    for name in reg.models():
        versions = reg.versions(name)
        rows.append(
            {
                "name": name,
                "versions": len(versions),
                "latest": versions[-1].version if versions else None,
                "aliases": reg.aliases(name),
            }
        )
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    from rich.table import Table

    table = Table()
    for col in ("model", "versions", "latest", "aliases"):
        table.add_column(col)
    for r in rows:
        aliases = ", ".join(f"{a}={v}" for a, v in sorted(r["aliases"].items()))
        table.add_row(r["name"], str(r["versions"]), str(r["latest"]), aliases)
    _console().print(table)


@models.command("show")
@click.argument("ref")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def models_show(state: _State, ref: str, as_json: bool) -> None:
    """A model's versions and alias history (REF = NAME), or one version (NAME@3,
    NAME@champion) with its lineage."""
    from lakeloop.registry import Registry, parse_model_ref

    reg = Registry(state.lake())
    if "@" in ref:
        doc: dict[str, Any] = reg.get(ref).to_dict()
    else:
        name, _ = parse_model_ref(ref)
        doc = {
            "name": name,
            "aliases": reg.aliases(name),
            "versions": [v.to_dict() for v in reg.versions(name)],
            "history": [m.to_dict() for m in reg.history(name)],
            "decisions": reg.decisions(name),
        }
        if not doc["versions"]:
            from lakeloop.errors import NotFound

            raise NotFound("no such model", op="models show", target=name)
    if as_json:
        click.echo(json.dumps(doc, indent=2))
        return
    if "version" in doc:
        lin = doc["lineage"]
        click.echo(f"{doc['ref']}  flavor={doc['flavor']}  aliases={','.join(doc['aliases'])}")
        click.echo(f"  created {_when(doc['created'])} by {doc['created_by']}")
        click.echo(f"  sha256 {doc['sha256']}  ({doc['size']:,} bytes)")
        for ds, sid in lin["snapshots"].items():
            click.echo(f"  data   {ds}@{sid}")
        if lin["code"]:
            code = lin["code"]
            click.echo(
                f"  code   content={str(code.get('content'))[:16]} "
                f"commit={str(code.get('commit'))[:12]} dirty={str(code.get('dirty'))[:12]}"
            )
        click.echo(f"  run    {lin['run_id']}")
        click.echo(f"  params {json.dumps(lin['params'], sort_keys=True)}")
        click.echo(f"  metrics {json.dumps(lin['metrics'], sort_keys=True)}")
        return
    from rich.table import Table

    table = Table(title=f"{doc['name']}")
    for col in ("version", "flavor", "created", "aliases", "metrics", "run"):
        table.add_column(col)
    for v in doc["versions"]:
        metrics = ", ".join(
            f"{k}={val:.4g}"
            for k, val in sorted(v["lineage"]["metrics"].items())
            if isinstance(val, int | float)
        )
        table.add_row(
            str(v["version"]),
            v["flavor"],
            _when(v["created"]),
            ",".join(v["aliases"]),
            metrics,
            str(v["lineage"]["run_id"] or ""),
        )
    _console().print(table)
    for m in doc["history"]:
        click.echo(
            f"{_when(m['when'])}  {m['alias']}: {m['from']} -> {m['to']}  [{m['kind']}] "
            f"by {m['who']}: {m['why']}"
        )
    for d in doc["decisions"]:
        snap = d.get("snapshot") or {}
        click.echo(
            f"decision {d['id']}  {_when(d.get('recorded', 0))}  {d.get('outcome')}: "
            f"{d.get('candidate')} vs {d.get('champion') or 'no champion'} "
            f"on {snap.get('dataset')}@{str(snap.get('id'))[:12]} (n={snap.get('n')})"
        )


@models.command("alias")
@click.argument("ref")
@click.argument("alias")
@click.option("--reason", default="", help="Why (stored with the move).")
@click.option("--force", is_flag=True, help="Move champion outside the gate (an override).")
@click.option("--remove", is_flag=True, help="Take the alias off instead (REF = NAME).")
@click.option("--json", "as_json", is_flag=True, help="Print the recorded move as JSON.")
@click.pass_obj
def models_alias(
    state: _State, ref: str, alias: str, reason: str, force: bool, remove: bool, as_json: bool
) -> None:
    """Point ALIAS at REF (NAME@VERSION). champion needs --force --reason (recorded as an
    override); the gate moves it otherwise."""
    from lakeloop.registry import Registry

    reg = Registry(state.lake())
    if remove:
        move = reg.remove_alias(ref.partition("@")[0], alias, reason=reason, force=force)
    else:
        move = reg.alias(ref, alias, reason=reason, force=force)
    if as_json:
        click.echo(json.dumps(move.to_dict(), indent=2))
    else:
        click.echo(f"{alias}: {move.previous} -> {move.version} [{move.kind}]")
