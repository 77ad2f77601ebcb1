"""``lakeloop runs``, ``lakeloop tensorboard`` and ``lakeloop train``."""

from __future__ import annotations

import json
import time
from typing import Any

import click

from lakeloop.cli._common import _console, _State


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "" if v is None else json.dumps(v) if not isinstance(v, str) else v


@click.group()
def runs() -> None:
    """Training runs: params, per-epoch metrics, timings, lineage, artifacts."""


@runs.command("list")
@click.option("--study", help="Only the runs of one `lakeloop train` invocation.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def runs_list(state: _State, study: str | None, as_json: bool) -> None:
    """Every run, oldest first."""
    from lakeloop.train import Runs

    recs = Runs(state.lake()).list(study=study)
    if as_json:
        click.echo(json.dumps([r.to_dict() for r in recs], indent=2))
        return
    from rich.table import Table

    table = Table()
    for col in ("run", "status", "started", "model", "trial", "params", "metrics", "seconds"):
        table.add_column(col, overflow="fold")
    for r in recs:
        table.add_row(
            r.id,
            r.status,
            time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r.started)),
            r.model or "",
            "" if r.trial is None else str(r.trial) + ("" if r.fold is None else f"/{r.fold}"),
            ", ".join(f"{k}={_fmt(v)}" for k, v in sorted(r.params.items())),
            ", ".join(f"{k}={_fmt(v)}" for k, v in sorted(r.metrics.items())),
            _fmt(r.seconds),
        )
    _console().print(table)


@runs.command("show")
@click.argument("run_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (the default).")
@click.pass_obj
def runs_show(state: _State, run_id: str, as_json: bool) -> None:
    """Everything a run recorded (JSON)."""
    from lakeloop.train import Runs

    click.echo(json.dumps(Runs(state.lake()).get(run_id).to_dict(), indent=2))


@runs.command("compare")
@click.argument("run_ids", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def runs_compare(state: _State, run_ids: tuple[str, ...], as_json: bool) -> None:
    """Runs side by side: the params that differ and every final metric."""
    from lakeloop.train import Runs

    doc = Runs(state.lake()).compare(run_ids)
    if as_json:
        click.echo(json.dumps(doc, indent=2))
        return
    from rich.table import Table

    table = Table()
    for col in ("run", "status", *doc["params"], *doc["metrics"]):
        table.add_column(col)
    for row in doc["rows"]:
        table.add_row(
            row["id"],
            row["status"],
            *(_fmt(row["params"][k]) for k in doc["params"]),
            *(_fmt(row["metrics"][k]) for k in doc["metrics"]),
        )
    _console().print(table)


@click.command()
@click.argument("run_ids", nargs=-1)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to serve on.")
@click.option("--port", type=int, default=6006, show_default=True, help="0: a free port.")
@click.pass_obj
def tensorboard(state: _State, run_ids: tuple[str, ...], host: str, port: int) -> None:
    """Start TensorBoard on the event files of RUN_IDS (default: every run).

    The files are copied to a temporary folder, removed when TensorBoard stops.
    """
    import os
    import shutil
    import signal
    import socket
    import subprocess
    import sys
    import tempfile

    from lakeloop.train import Runs

    runs_ = Runs(state.lake())
    ids = list(run_ids) or [r.id for r in runs_.list()]
    tmp = tempfile.mkdtemp(prefix="lakeloop-tensorboard-")
    try:
        runs_.export_tensorboard(ids, tmp)
        if port == 0:
            with socket.socket() as s:
                s.bind((host, 0))
                port = s.getsockname()[1]
        click.echo(f"TensorBoard on http://{host}:{port}/ for {len(ids)} runs ({tmp})", err=True)
        cmd = [sys.executable, "-m", "tensorboard.main", "--logdir", tmp,
               "--host", host, "--port", str(port)]  # fmt: skip
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}

        def stop(signum: int, frame: Any) -> None:
            raise KeyboardInterrupt

        signal.signal(signal.SIGTERM, stop)  # stopping us stops TensorBoard too
        proc = subprocess.Popen(cmd, env=env)
        try:
            proc.wait()
        except KeyboardInterrupt:
            proc.terminate()
            proc.wait(timeout=30)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@click.command()
@click.option("--project", "project", default=None, help="lakeloop.toml or its folder.")
@click.option("--engine", default=None, help="local (default) or ray.")
@click.option("--workers", type=int, default=None, help="Trials at once.")
@click.option("--no-register", is_flag=True, help="Run the trials; register nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the study as JSON.")
@click.pass_context
def train(
    ctx: click.Context,
    project: str | None,
    engine: str | None,
    workers: int | None,
    no_register: bool,
    as_json: bool,
) -> None:
    """Run the project's trials in parallel and register the best model.

    Exit 1 when no trial succeeded.
    """
    import sys

    from lakeloop.train.study import TrialOutcome, train_project

    state: _State = ctx.obj
    parent = ctx.parent
    lake_given = parent is not None and parent.get_parameter_source("lake_path") not in (
        click.core.ParameterSource.DEFAULT,
        None,
    )

    def progress(t: TrialOutcome) -> None:
        label = f"trial {t.trial}" + ("" if t.fold is None else f" fold {t.fold}")
        if t.ok:
            shown = ", ".join(f"{k}={v:.4g}" for k, v in sorted(t.metrics.items()))
            click.echo(f"{label} {t.run_id}: {shown} ({t.seconds:.1f} s)", err=True)
        else:
            click.echo(f"{label} {t.run_id}: FAILED at {t.where or '?'}: {t.error}", err=True)

    result = train_project(
        project,
        lake=state.lake_path if lake_given else None,
        engine=engine,
        workers=workers,
        register=not no_register,
        on_trial=progress,
    )
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2))
    elif result.best_run is None:
        click.echo(f"study {result.study}: no trial succeeded", err=True)
    else:
        click.echo(
            f"study {result.study}: best {result.metric}={result.best_score:.4g} "
            f"params={json.dumps(result.best_params, sort_keys=True)} run {result.best_run}"
        )
        if result.version is not None:
            click.echo(f"registered {result.version.ref}")
    if result.best_run is None:
        sys.exit(1)
