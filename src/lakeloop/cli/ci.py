"""``lakeloop ci``: one turn of the pipeline for the project, with an exit status for CI.

Exit 0 when it passed (promoted, held, or nothing changed), 1 when it is blocked (the
gate blocked, the unit tests failed, no trial trained, a first run's acceptance claim was
not shown), 2 on an error. The logic is :func:`lakeloop.loop.run_ci`; see docs/ci.md.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click


@click.command()
@click.option("--project", default=None, help="lakeloop.toml or its folder (default: git root).")
@click.option(
    "--lake",
    "ci_lake",
    default=None,
    help="The lake (a folder); before LAKELOOP_LAKE and the project file.",
)
@click.option(
    "--report",
    type=click.Choice(["md", "json", "html"]),
    default="md",
    show_default=True,
    help="Markdown (pull-request comments), JSON, or HTML with the plot of each version.",
)
@click.option("--out", default=None, help="Write the report to this file instead of stdout.")
@click.option("--commit", is_flag=True, help="git-commit the new lakeloop.lock.")
@click.option("--force-run", is_flag=True, help="Run even when the lock says nothing changed.")
@click.option(
    "--candidate",
    default=None,
    metavar="NAME@VERSION",
    help="Gate this registered version instead of training one.",
)
@click.option(
    "--no-promote",
    is_flag=True,
    help="Decide and store the decision, but move no alias and write no lock (pull requests).",
)
@click.option("--engine", default=None, help="Trial engine: local (default), ray or spark.")
@click.option("--workers", type=int, default=None, help="Trials at once.")
@click.pass_context
def ci(
    ctx: click.Context,
    project: str | None,
    ci_lake: str | None,
    report: str,
    out: str | None,
    commit: bool,
    force_run: bool,
    candidate: str | None,
    no_promote: bool,
    engine: str | None,
    workers: int | None,
) -> None:
    """Fingerprint code and data; when either changed: test, train, gate, promote, lock.

    Exit 0 = passed, 1 = blocked, 2 = error.
    """
    from lakeloop.loop import run_ci

    lake = ci_lake
    parent = ctx.parent
    if lake is None and parent is not None:
        # the global --lake counts when given (its default, ./lake, does not)
        source = parent.get_parameter_source("lake_path")
        if source not in (click.core.ParameterSource.DEFAULT, None):
            lake = ctx.obj.lake_path

    def log(line: str) -> None:
        click.echo(f"lakeloop ci: {line}", err=True)

    result = run_ci(
        project,
        lake=lake,
        force=force_run,
        commit=commit,
        candidate=candidate,
        promote=not no_promote,
        engine=engine,
        workers=workers,
        log=log,
    )
    text = result.render(report)
    if out:
        Path(out).write_text(text, encoding="utf-8")
        log(f"report written to {out}")
    else:
        click.echo(text, nl=False)
    log(f"{result.outcome} ({'passed' if result.passed else 'blocked'})")
    sys.exit(result.exit_code)
