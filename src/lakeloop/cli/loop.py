"""``lakeloop loop``: the continuous-training controller (``run``), its record
(``status``) and the feedback joiner on its own (``join``). See docs/loop.md."""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import click


@click.group()
def loop() -> None:
    """Continuous training: join feedback, retrain when due, gate, promote."""


def _lake_option(ctx: click.Context, given: str | None) -> str | None:
    """``--lake`` of the subcommand, else the global one when it was given."""
    if given is not None:
        return given
    root = ctx.find_root()
    source = root.get_parameter_source("lake_path")
    if source not in (click.core.ParameterSource.DEFAULT, None):
        return str(root.obj.lake_path)
    return None


_project = click.option(
    "--project", default=None, help="lakeloop.toml or its folder (default: git root)."
)
_lake = click.option(
    "--lake",
    "loop_lake",
    default=None,
    help="The lake folder; before LAKELOOP_LAKE and the project.",
)


@loop.command("run")
@_project
@_lake
@click.option("--once", is_flag=True, help="One check (and at most one turn), then exit.")
@click.option("--force", is_flag=True, help="Run a turn now, due or not (train even if unchanged).")
@click.option("--max-turns", type=int, default=None, help="Exit after this many turns.")
@click.option("--no-join", is_flag=True, help="Do not run the feedback joiner.")
@click.option("--engine", default=None, help="Trial engine: local (default), ray or spark.")
@click.option("--workers", type=int, default=None, help="Trials at once.")
@click.pass_context
def run(
    ctx: click.Context,
    project: str | None,
    loop_lake: str | None,
    once: bool,
    force: bool,
    max_turns: int | None,
    no_join: bool,
    engine: str | None,
    workers: int | None,
) -> None:
    """Join feedback and run a turn whenever one is due (Ctrl-C stops it).

    With --once: exit 0 when the turn (if any) passed, 1 when it was blocked or failed.
    """
    from lakeloop.loop.controller import Controller

    def log(line: str) -> None:
        click.echo(f"lakeloop loop: {line}", err=True)

    turns = []
    with Controller(
        project,
        lake=_lake_option(ctx, loop_lake),
        engine=engine,
        workers=workers,
        join=not no_join,
        log=log,
    ) as controller:
        try:
            turns = controller.run(once=once, force=force, max_turns=max_turns)
        except KeyboardInterrupt:
            log("stopped")
            turns = controller.turns
    for turn in turns:
        click.echo(_turn_line(turn.to_dict()))
    if once and turns:
        bad = {"block", "tests-failed", "train-failed"}
        last = turns[-1]
        sys.exit(1 if last.status != "done" or last.outcome in bad else 0)


def _turn_line(t: dict[str, Any]) -> str:
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t["started"]))
    secs = f"{t['seconds']:.1f}s" if t.get("seconds") is not None else "-"
    what = t.get("outcome") or t["status"]
    return (
        f"{when}  {t['id']}  {t['trigger']:<9} {what:<12} "
        f"{t.get('candidate') or '-':<16} champion {t.get('champion_before') or '-'} -> "
        f"{t.get('champion_after') or '-'}  {secs}"
    )


@loop.command("status")
@_project
@_lake
@click.option("--limit", type=int, default=10, show_default=True, help="Turns shown.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def status(
    ctx: click.Context, project: str | None, loop_lake: str | None, limit: int, as_json: bool
) -> None:
    """Recent turns, the turn in progress, joiner counters and live accuracy."""
    from lakeloop.loop.controller import _lake_folder, loop_status
    from lakeloop.project import load_project
    from lakeloop.store import Lake

    proj = load_project(project)
    folder = _lake_folder(proj, _lake_option(ctx, loop_lake))
    with Lake.open(folder, background=False) as lk:
        doc = loop_status(lk, proj.model, limit=limit)
    if as_json:
        click.echo(json.dumps(doc, indent=2))
        return
    from rich.table import Table

    from lakeloop.cli._common import _console

    console = _console()
    pid = doc["controller_pid"]
    console.print(
        f"model [bold]{doc['model']}[/bold], champion {doc['champion'] or 'none'}"
        + (
            f" (accuracy at the gate {doc['champion_gate_accuracy']:.3f})"
            if doc["champion_gate_accuracy"] is not None
            else ""
        )
        + f"; controller {'running, pid ' + str(pid) if pid else 'not running'}"
    )
    if doc["in_progress"]:
        t = doc["in_progress"]
        console.print(f"turn in progress: {t['id']} ({t['trigger']}), step {t['step']}")
    table = Table(title="recent turns")
    for col in ("started", "trigger", "outcome", "candidate", "champion", "snapshot", "seconds"):
        table.add_column(col)
    for t in doc["turns"]:
        table.add_row(
            time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t["started"])),
            t["trigger"],
            t.get("outcome") or t["status"],
            t.get("candidate") or "-",
            f"{t.get('champion_before') or '-'} -> {t.get('champion_after') or '-'}",
            (t.get("snapshot") or "-")[:12],
            "-" if t.get("seconds") is None else f"{t['seconds']:.1f}",
        )
    console.print(table)
    j = doc["joiner"]
    if j:
        console.print(
            "joiner: " + ", ".join(f"{k} {v:,}" for k, v in j.items() if k != "other_model" or v)
        )
    else:
        console.print("joiner: never ran for this model")
    if doc["live_accuracy"]:
        acc = Table(title="live accuracy (joined feedback)")
        for col in ("version", "labelled", "accuracy", "95 % interval"):
            acc.add_column(col, justify="right")
        for a in doc["live_accuracy"]:
            acc.add_row(
                f"{doc['model']}@{a['version']}" + (" (shadow)" if a["shadow"] else ""),
                f"{a['n']:,}",
                f"{a['accuracy']:.3f}",
                f"[{a['lower']:.3f}, {a['upper']:.3f}]",
            )
        console.print(acc)


@loop.command("join")
@_project
@_lake
@click.option("--follow", is_flag=True, help="Keep joining (every loop_poll seconds).")
@click.pass_context
def join(ctx: click.Context, project: str | None, loop_lake: str | None, follow: bool) -> None:
    """Join predictions and feedback into labelled examples in the lake (no training)."""
    from lakeloop.loop.controller import _lake_folder
    from lakeloop.loop.joiner import Joiner
    from lakeloop.project import load_project
    from lakeloop.store import Lake

    proj = load_project(project)
    folder = _lake_folder(proj, _lake_option(ctx, loop_lake))
    with Lake.open(folder, background=False) as lk:
        poll = float(lk.settings["loop_poll"])
    while True:
        with Joiner(proj, lake=folder) as joiner:
            done = joiner.drain()
        click.echo(json.dumps(done))
        if not follow:
            return
        time.sleep(poll)
