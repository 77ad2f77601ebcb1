"""The ``lakeloop`` command.

Every command takes the lake from ``--lake PATH`` or the environment variable
``LAKELOOP_LAKE`` (default: ``./lake``). Errors print one line and exit 2 (``--debug``
shows the traceback); exit 1 is kept for a negative verdict such as a failed fsck.
Heavy modules (the store, rich) are imported inside the commands, so ``lakeloop --help``
starts fast.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from lakeloop.cli._common import _console, _human, _info_doc, _split_target, _State

__all__ = ["cli", "main"]

# Command groups that live in their own modules, imported only when used so that
# ``lakeloop --help`` stays fast. Each later package adds one line here.
_LAZY_COMMANDS: dict[str, str] = {
    "ci": "lakeloop.cli.ci:ci",
    "dataset": "lakeloop.cli.catalog:dataset",
    "preview": "lakeloop.cli.catalog:preview",
    "search": "lakeloop.cli.catalog:search",
    "stream": "lakeloop.cli.stream:stream",
    "snapshot": "lakeloop.cli.catalog:snapshot",
    "stats": "lakeloop.cli.catalog:stats",
    "gate": "lakeloop.cli.gate:gate",
    "gateway": "lakeloop.cli.gateway:gateway",
    "user": "lakeloop.cli.users:user",
    "loop": "lakeloop.cli.loop:loop",
    "models": "lakeloop.cli.registry:models",
    "runs": "lakeloop.cli.train:runs",
    "serve": "lakeloop.cli.serve:serve",
    "tensorboard": "lakeloop.cli.train:tensorboard",
    "train": "lakeloop.cli.train:train",
    "ui": "lakeloop.cli.ui:ui",
}


class _LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *_LAZY_COMMANDS])

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in _LAZY_COMMANDS:
            import importlib

            module, _, attr = _LAZY_COMMANDS[name].partition(":")
            command: click.Command = getattr(importlib.import_module(module), attr)
            return command
        return super().get_command(ctx, name)


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--lake",
    "lake_path",
    envvar="LAKELOOP_LAKE",
    default="lake",
    show_default=True,
    help="The lake's folder (or set LAKELOOP_LAKE).",
)
@click.option("--debug", is_flag=True, help="Show tracebacks on errors.")
@click.version_option(package_name="lakeloop")
@click.pass_context
def cli(ctx: click.Context, lake_path: str, debug: bool) -> None:
    """lakeloop: a data lake for billions of small files, and the loop around it."""
    state = _State(lake_path, debug)
    ctx.obj = state
    ctx.call_on_close(state.close)


# ---------------------------------------------------------------------------- init/config
@cli.command()
@click.argument("path", required=False)
@click.option(
    "--set",
    "assignments",
    multiple=True,
    metavar="NAME=VALUE",
    help="A setting to write into lake.toml (repeatable).",
)
@click.pass_obj
def init(state: _State, path: str | None, assignments: tuple[str, ...]) -> None:
    """Create a lake (default: the --lake folder)."""
    from lakeloop.errors import AlreadyExists, InvalidSetting
    from lakeloop.store import Lake

    target = Path(path or state.lake_path)
    if (target / "lake.toml").exists():
        raise AlreadyExists("a lake is already here", op="init", target=str(target))
    values: dict[str, str] = {}
    for item in assignments:
        name, sep, value = item.partition("=")
        if not sep:
            raise InvalidSetting(f"expected NAME=VALUE, got {item!r}", op="init")
        values[name.strip()] = value.strip()
    Lake.open(target, create=True, settings=values, background=False).close()
    click.echo(f"created lake at {target}")


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def config(state: _State, as_json: bool) -> None:
    """Print every setting: its effective value, where it came from, and its help."""
    from lakeloop.settings import Settings

    lake_file = Path(state.lake_path) / "lake.toml"
    settings = Settings.load(lake_file)
    rows = [
        {"name": s.name, "value": v, "source": src, "env": s.env_var, "help": s.help}
        for s, v, src in settings.items()
    ]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    from rich.table import Table

    table = Table(title=f"settings of {lake_file}" if lake_file.exists() else "defaults")
    for col in ("setting", "value", "from", "help"):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(r["name"], str(r["value"]), r["source"], r["help"])
    _console().print(table)


# ---------------------------------------------------------------------------- namespaces
@cli.group()
def ns() -> None:
    """Create, list and inspect namespaces."""


@ns.command("create")
@click.argument("name")
@click.option("--exist-ok", is_flag=True, help="Succeed if it already exists.")
@click.pass_obj
def ns_create(state: _State, name: str, exist_ok: bool) -> None:
    """Create namespace NAME (S3 bucket-name rules)."""
    state.lake().create_namespace(name, exist_ok=exist_ok)
    click.echo(f"created namespace {name}")


@ns.command("list")
@click.option("--all", "include_internal", is_flag=True, help="Include lakeloop's own namespaces.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def ns_list(state: _State, include_internal: bool, as_json: bool) -> None:
    """List namespaces with their size."""
    lake = state.lake()
    rows: list[dict[str, Any]] = []
    for name in lake.namespaces(include_internal=include_internal):
        try:
            u = lake.namespace(name).usage()
            rows.append({"namespace": name, **u})
        except Exception as exc:  # one broken namespace must not hide the others
            rows.append({"namespace": name, "error": str(exc)})
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    from rich.table import Table

    table = Table()
    for col in ("namespace", "objects", "size", "on disk", "volumes"):
        table.add_column(col, justify="left" if col == "namespace" else "right")
    for r in rows:
        if "error" in r:
            table.add_row(r["namespace"], "[red]unavailable[/red]", r["error"][:60], "", "")
        else:
            table.add_row(
                r["namespace"],
                f"{r['objects']:,}",
                _human(r["bytes"]),
                _human(r["volume_bytes"] + r["blob_bytes"]),
                str(r["volumes"]),
            )
    _console().print(table)


@ns.command("stat")
@click.argument("name")
@click.pass_obj
def ns_stat(state: _State, name: str) -> None:
    """Show a namespace's usage, volumes and effective settings (JSON)."""
    n = state.lake().namespace(name)
    doc = {
        "namespace": name,
        "usage": n.usage(),
        "last_seq": n.last_seq,
        "pins": n.pins(),
        "volumes": [
            {
                "id": v.id,
                "state": v.state,
                "size": v.size,
                "live_bytes": v.live_bytes,
                "objects": v.live_count,
                "garbage_ratio": round(v.garbage_ratio, 3),
                "compressed": v.compressed,
            }
            for v in n.volumes()
        ],
        "settings": {
            k: n.setting(k)
            for k in (
                "volume_size",
                "sync",
                "blob_threshold",
                "quota_bytes",
                "quota_objects",
                "compression",
            )
        },
    }
    click.echo(json.dumps(doc, indent=2))


# ---------------------------------------------------------------------------- objects
def _walk(paths: tuple[str, ...]) -> Iterator[tuple[Path, str]]:
    """(file, relative key part) for every regular file under *paths*, sorted."""
    for p in paths:
        path = Path(p)
        if path.is_dir():
            for root, dirs, files in os.walk(path):
                dirs.sort()
                for f in sorted(files):
                    full = Path(root) / f
                    if full.is_file():
                        yield full, full.relative_to(path).as_posix()
        elif path.is_file():
            yield path, path.name
        else:
            from lakeloop.errors import NotFound

            raise NotFound("no such file or directory", op="put", target=str(path))


@cli.command()
@click.argument("paths", nargs=-1, required=True)
@click.argument("target")
@click.option("--content-type", help="Content type for every object (default: guessed).")
@click.option("--batch", default=2000, show_default=True, help="Files per durable batch.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@click.pass_obj
def put(
    state: _State,
    paths: tuple[str, ...],
    target: str,
    content_type: str | None,
    batch: int,
    quiet: bool,
) -> None:
    """Store files (directories recursively) into TARGET = NS[/PREFIX].

    A single file with TARGET = NS/KEY is stored under KEY; otherwise each file is
    stored under PREFIX/relative/path. Small files are written in durable batches.
    """
    import mimetypes

    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    name, prefix = _split_target(target)
    ns = state.lake().namespace(name)
    files = list(_walk(paths))
    single_key = (
        len(paths) == 1 and Path(paths[0]).is_file() and prefix and not prefix.endswith("/")
    )
    if prefix and not prefix.endswith("/") and not single_key:
        prefix += "/"
    threshold = ns.setting("blob_threshold")
    total_bytes = sum(f.stat().st_size for f, _ in files)
    count = 0
    with Progress(
        TextColumn("[bold]put[/bold] {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        disable=quiet,
        console=_console(stderr=True),
    ) as progress:
        task = progress.add_task(name, total=len(files))
        chunk: list[tuple[str, bytes, dict[str, Any]]] = []

        def flush() -> None:
            nonlocal chunk
            if chunk:
                ns.put_many(chunk)
                progress.advance(task, len(chunk))
                chunk = []

        for path, rel in files:
            key = prefix if single_key else prefix + rel
            ctype = content_type or mimetypes.guess_type(path.name)[0]
            size = path.stat().st_size
            if size > threshold:
                flush()
                with open(path, "rb") as f:
                    ns.put_stream(key, f, size=size, content_type=ctype)
                progress.advance(task, 1)
            else:
                chunk.append((key, path.read_bytes(), {"content_type": ctype}))
                if len(chunk) >= batch:
                    flush()
            count += 1
        flush()
    click.echo(f"stored {count:,} objects ({_human(total_bytes)}) in {name}")


@cli.command()
@click.argument("target")
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False), help="Write to FILE (default: stdout)."
)
@click.option("--version", "version", type=int, help="Read this exact version.")
@click.pass_obj
def get(state: _State, target: str, output: str | None, version: int | None) -> None:
    """Write object NS/KEY to stdout or a file (streamed, checksum verified)."""
    import shutil

    name, key = _split_target(target)
    ns = state.lake().namespace(name)
    with ns.open(key, version=version) as src:
        if output:
            tmp = output + ".part"
            with open(tmp, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
            os.replace(tmp, output)
        else:
            shutil.copyfileobj(src, sys.stdout.buffer, 1 << 20)
            sys.stdout.buffer.flush()


@cli.command()
@click.argument("target", required=False)
@click.option("--limit", type=int, help="At most N entries.")
@click.option("--start-after", help="Only keys after this one.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.pass_obj
def ls(
    state: _State, target: str | None, limit: int | None, start_after: str | None, as_json: bool
) -> None:
    """List objects under NS[/PREFIX] in key order (no TARGET: list namespaces)."""
    lake = state.lake()
    if not target:
        for name in lake.namespaces():
            click.echo(name + "/")
        return
    name, prefix = _split_target(target)
    ns = lake.namespace(name)
    n = 0
    for info in ns.list(prefix=prefix, start_after=start_after, limit=limit):
        n += 1
        if as_json:
            click.echo(json.dumps(_info_doc(info)))
        else:
            import time

            stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info.mtime))
            click.echo(f"{stamp}  {info.size:>12,}  {info.key}")
    if limit is not None and n == limit and not as_json:
        click.echo(f"(stopped at --limit {limit})", err=True)


@cli.command()
@click.argument("targets", nargs=-1, required=True)
@click.option("--missing-ok", is_flag=True, help="Do not fail on a missing object.")
@click.option("-r", "--recursive", is_flag=True, help="Delete every object under NS/PREFIX.")
@click.pass_obj
def rm(state: _State, targets: tuple[str, ...], missing_ok: bool, recursive: bool) -> None:
    """Delete objects NS/KEY (or everything under NS/PREFIX with -r)."""
    lake = state.lake()
    deleted = 0
    for target in targets:
        name, key = _split_target(target)
        ns = lake.namespace(name)
        if recursive:
            keys = [i.key for i in ns.list(prefix=key)]
            for k in keys:
                ns.delete(k, missing_ok=True)
            deleted += len(keys)
        else:
            ns.delete(key, missing_ok=missing_ok)
            deleted += 1
    click.echo(f"deleted {deleted:,} objects")


@cli.command()
@click.argument("target")
@click.option("--version", "version", type=int, help="An exact version.")
@click.pass_obj
def stat(state: _State, target: str, version: int | None) -> None:
    """Show an object's metadata (JSON)."""
    name, key = _split_target(target)
    info = state.lake().namespace(name).stat(key, version=version)
    click.echo(json.dumps({"namespace": info.namespace, **_info_doc(info)}, indent=2))


# ---------------------------------------------------------------------------- maintenance
@cli.command()
@click.argument("names", nargs=-1)
@click.option("--if-needed", is_flag=True, help="Only act where a threshold is crossed.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def compact(state: _State, names: tuple[str, ...], if_needed: bool, as_json: bool) -> None:
    """Reclaim garbage and compress volumes of NAMES (default: every namespace)."""
    lake = state.lake()
    reports = []
    for name in names or tuple(lake.namespaces(include_internal=True)):
        reports.append(lake.namespace(name).compact(force=not if_needed).as_dict())
    if as_json:
        click.echo(json.dumps(reports, indent=2))
        return
    for r in reports:
        if r["skipped"]:
            click.echo(f"{r['namespace']}: nothing to do ({r['skipped']})")
        else:
            click.echo(
                f"{r['namespace']}: {len(r['volumes_in'])} volumes -> {len(r['volumes_out'])}, "
                f"{_human(r['bytes_before'])} -> {_human(r['bytes_after'])} "
                f"(reclaimed {_human(r['reclaimed_bytes'])}), {r['records_copied']:,} records "
                f"copied, {r['records_dropped']:,} dropped, compression "
                f"{r['compression_ratio']:.2f}x, {r['seconds']:.2f}s [{r['reason']}]"
            )


@cli.command()
@click.argument("names", nargs=-1)
@click.option("--repair", is_flag=True, help="Fix what can be fixed (see the docs).")
@click.option("--rebuild-index", is_flag=True, help="Rebuild each index from the volumes alone.")
@click.option("--quick", is_flag=True, help="Skip reading every record and blob.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def fsck(
    state: _State,
    names: tuple[str, ...],
    repair: bool,
    rebuild_index: bool,
    quick: bool,
    as_json: bool,
) -> None:
    """Verify every record, index row and blob. Exit 1 if a problem remains."""
    report = state.lake().fsck(
        repair=repair,
        rebuild_index=rebuild_index,
        namespaces=list(names) or None,
        deep=not quick,
    )
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2))
    else:
        for p in report.problems:
            where = " ".join(f"{k}={p[k]}" for k in ("volume", "offset", "key", "path") if k in p)
            mark = "repaired" if p.get("repaired") else "residue" if p.get("residue") else "PROBLEM"
            click.echo(f"{mark}: {p['namespace']}: {p['kind']} {where} {p.get('detail', '')}")
        for r in report.repairs:
            click.echo(f"repair: {r}")
        verdict = "ok" if report.ok else "FAILED"
        click.echo(
            f"fsck {verdict}: {len(report.namespaces)} namespaces, {report.objects:,} objects, "
            f"{report.records:,} records in {report.volumes} volumes, {report.blobs} blobs "
            f"checked in {report.seconds:.2f}s"
        )
    if not report.ok:
        sys.exit(1)


@cli.command()
@click.argument("names", nargs=-1)
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def du(state: _State, names: tuple[str, ...], as_json: bool) -> None:
    """Disk usage per namespace: logical bytes, bytes on disk, garbage."""
    lake = state.lake()
    rows: list[dict[str, Any]] = []
    for name in names or tuple(lake.namespaces(include_internal=True)):
        rows.append({"namespace": name, **lake.namespace(name).usage()})
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    from rich.table import Table

    table = Table()
    for col in ("namespace", "objects", "logical", "volumes", "blobs", "garbage"):
        table.add_column(col, justify="left" if col == "namespace" else "right")
    for r in rows:
        table.add_row(
            r["namespace"],
            f"{r['objects']:,}",
            _human(r["bytes"]),
            f"{_human(r['volume_bytes'])} in {r['volumes']}",
            f"{_human(r['blob_bytes'])} in {r['blobs']}",
            _human(r["garbage_bytes"]),
        )
    _console().print(table)


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI, turning lakeloop errors into one line and exit 2."""
    from lakeloop.errors import LakeloopError

    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
    try:
        cli.main(args=argv, prog_name="lakeloop", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(2)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(2)
    except LakeloopError as exc:
        if debug:
            raise
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except OSError as exc:
        if debug:
            raise
        click.echo(f"error: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), err=True)
        sys.exit(2)
