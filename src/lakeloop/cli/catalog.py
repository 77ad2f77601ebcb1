"""``lakeloop search|preview|stats|snapshot|dataset``: the catalog from the command line."""

from __future__ import annotations

import base64
import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from lakeloop.cli._common import _console, _human, _State
from lakeloop.errors import InvalidInput

if TYPE_CHECKING:
    from lakeloop.catalog import Catalog


def _catalog(state: _State) -> Catalog:
    from lakeloop.catalog import Catalog

    return Catalog(state.lake())


def _when(value: str | None, name: str) -> float | None:
    """Epoch seconds from a number, an ISO date/time, or ``-2d`` / ``-3h`` (ago)."""
    if value is None:
        return None
    v = value.strip()
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if len(v) > 2 and v[0] == "-" and v[-1] in units and v[1:-1].replace(".", "").isdigit():
        return time.time() - float(v[1:-1]) * units[v[-1]]
    try:
        return float(v)
    except ValueError:
        pass
    try:
        dt = datetime.fromisoformat(v)
    except ValueError:
        raise InvalidInput(
            f"bad time for --{name}: {value!r}",
            hint="epoch seconds, an ISO date (2026-11-27T10:00) or an age like -2d, -3h",
        ) from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def _size(value: str | None) -> int | None:
    if value is None:
        return None
    from lakeloop.settings import parse_size

    try:
        return parse_size(value)
    except ValueError as exc:
        raise InvalidInput(str(exc)) from None


def _pairs(values: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for v in values:
        name, eq, val = v.partition("=")
        if not eq or not name:
            raise InvalidInput(f"expected NAME=VALUE, got {v!r}", hint="NAME=* asks for any value")
        out[name] = val
    return out


@click.command()
@click.argument("text", required=False)
@click.option("--ns", "namespaces", multiple=True, help="Only these namespaces (repeatable).")
@click.option("--key", help="Substring of the key (case-insensitive).")
@click.option("--glob", help="Shell pattern over the whole key, e.g. 'cats/*.png'.")
@click.option("--prefix", help="Key prefix.")
@click.option("--type", "content_type", help="Content type, e.g. image/png or image/*.")
@click.option("--min-size", help="At least this size (4096, 10KiB, 1MB).")
@click.option("--max-size", help="At most this size.")
@click.option("--after", help="Modified at or after (epoch, ISO date, or -2d).")
@click.option("--before", help="Modified before.")
@click.option("--meta", multiple=True, help="User metadata NAME=VALUE (NAME=* for any).")
@click.option("--tag", "tags", multiple=True, help="A tag every result has.")
@click.option("--sort", type=click.Choice(["key", "size", "mtime"]), default="key")
@click.option("--desc", is_flag=True, help="Largest / newest / last first.")
@click.option("--limit", type=int, help="Results per page (default: search_limit).")
@click.option("--cursor", help="Continue from a previous page's next_cursor.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_obj
def search(
    state: _State,
    text: str | None,
    namespaces: tuple[str, ...],
    key: str | None,
    glob: str | None,
    prefix: str | None,
    content_type: str | None,
    min_size: str | None,
    max_size: str | None,
    after: str | None,
    before: str | None,
    meta: tuple[str, ...],
    tags: tuple[str, ...],
    sort: str,
    desc: bool,
    limit: int | None,
    cursor: str | None,
    as_json: bool,
) -> None:
    """Search objects across namespaces: full TEXT over keys and metadata, plus filters."""
    result = _catalog(state).search(
        text,
        namespaces=namespaces or None,
        key=key,
        glob=glob,
        prefix=prefix,
        content_type=content_type,
        min_size=_size(min_size),
        max_size=_size(max_size),
        after=_when(after, "after"),
        before=_when(before, "before"),
        metadata=_pairs(meta),
        tags=list(tags),
        sort=sort,
        descending=desc,
        limit=limit,
        cursor=cursor,
    )
    if as_json:
        click.echo(json.dumps(result.to_dict(), ensure_ascii=False))
        return
    from rich.table import Table

    table = Table(box=None)
    for col in ("namespace", "key", "size", "type", "modified"):
        table.add_column(col, justify="right" if col == "size" else "left")
    for item in result.items:
        table.add_row(
            item["namespace"],
            item["key"],
            _human(item["size"]),
            item["content_type"],
            datetime.fromtimestamp(item["mtime"], UTC).strftime("%Y-%m-%d %H:%M:%S"),
        )
    console = _console()
    console.print(table)
    total = f"{result.total}+" if result.total_capped else str(result.total)
    line = f"{len(result.items)} shown of {total} matches in {result.took_ms:.1f} ms"
    if result.lag:
        line += f" ({result.lag} recent changes not yet indexed)"
    console.print(line)
    if result.next_cursor:
        console.print(f"more: --cursor {result.next_cursor}")


@click.command()
@click.argument("target")
@click.option("--version", "version", type=int, help="An exact version.")
@click.option("--json", "as_json", is_flag=True, help="Print the preview as JSON.")
@click.option(
    "--thumbnail", type=click.Path(dir_okay=False), help="Write an image's thumbnail PNG here."
)
@click.pass_obj
def preview(
    state: _State, target: str, version: int | None, as_json: bool, thumbnail: str | None
) -> None:
    """Preview NS/KEY: image size and thumbnail, table schema and rows, text, or a hex head."""
    p = _catalog(state).preview(target, version=version)
    if thumbnail and "thumbnail_png" in p.data:
        Path(thumbnail).write_bytes(base64.b64decode(p.data["thumbnail_png"]))
    if as_json:
        click.echo(json.dumps(p.to_dict(), ensure_ascii=False, default=str))
        return
    console = _console()
    console.print(
        f"[bold]{p.namespace}/{p.key}[/bold]  {p.kind}  {p.content_type}  {_human(p.size)}"
        f"  (read {_human(p.bytes_read)})"
    )
    if p.error:
        console.print(f"[red]{p.error}[/red]")
    d = p.data
    if p.kind == "image" and "width" in d:
        console.print(f"{d['width']} x {d['height']} {d['mode']} {d.get('format') or ''}")
    if "columns" in d:
        from rich.table import Table

        if "num_rows" in d:
            console.print(f"{d['num_rows']} rows in {d['num_row_groups']} row groups")
        table = Table(box=None)
        for c in d["columns"]:
            table.add_column(f"{c['name']}\n[dim]{c['type']}[/dim]")
        for row in d.get("rows", []):
            table.add_row(*["" if v is None else str(v) for v in row[: len(d["columns"])]])
        console.print(table)
        for w in d.get("warnings", []):
            console.print(f"[yellow]{w}[/yellow]")
    if "text" in d:
        console.print(d["text"], markup=False)
    if "hex_head" in d:
        console.print(f"type guess: {d.get('type_guess', p.content_type)}")
        console.print(d["hex_head"], markup=False)
    if p.truncated:
        console.print(f"[dim]truncated by: {', '.join(p.truncated)}[/dim]")


@click.command()
@click.argument("target")
@click.option("--columns", is_flag=True, help="Also per-column statistics of tables.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def stats(state: _State, target: str, columns: bool, as_json: bool) -> None:
    """Statistics of NS[/PREFIX] or of a snapshot NAME@REF."""
    s = _catalog(state).stats(target, columns=columns)
    if as_json:
        click.echo(json.dumps(s, ensure_ascii=False, default=str))
        return
    console = _console()
    console.print(f"[bold]{s['target']}[/bold]: {s['count']} objects, {_human(s['bytes'])}")
    if s["size_log2"]:
        peak = max(s["size_log2"].values())
        for b, n in sorted(s["size_log2"].items(), key=lambda kv: int(kv[0])):
            bar = "#" * max(1, round(30 * n / peak))
            console.print(f"  {_human(2 ** int(b)):>10} .. {bar} {n}")
    for ct, n in list(s["content_types"].items())[:10]:
        console.print(f"  {ct}: {n}")
    if s.get("labels"):
        console.print("labels: " + ", ".join(f"{k}={v}" for k, v in s["labels"].items()))
    if s.get("splits"):
        console.print("splits: " + ", ".join(f"{k}={v}" for k, v in s["splits"].items()))
    if "table" in s:
        from rich.table import Table

        t = s["table"]
        console.print(f"{t['tables']} tables, {t['rows']} rows")
        table = Table(box=None)
        for col in ("column", "type", "nulls", "min", "max", "distinct≈"):
            table.add_column(col)
        for name, c in t["columns"].items():
            table.add_row(
                name, c["type"], str(c["nulls"]), str(c["min"]), str(c["max"]),
                str(c["distinct_approx"]),
            )  # fmt: skip
        console.print(table)
        for sk in t["skipped"]:
            console.print(f"[yellow]skipped {sk['key']}: {sk['reason']}[/yellow]")


def _snapshot_line(s: Any) -> str:
    when = datetime.fromtimestamp(s.created, UTC).strftime("%Y-%m-%d %H:%M:%S")
    labels = f", {len(s.labels)} labels" if s.labels else ""
    return (
        f"{s.dataset}@{s.number}  {s.id[:12]}  {when}  {s.count} objects  {_human(s.size)}"
        f"{labels}  train={s.splits.get('train', 0)} eval={s.splits.get('eval', 0)}"
    )


@click.group()
def snapshot() -> None:
    """Immutable snapshots of NS/PREFIX, kept in named datasets."""


@snapshot.command("create")
@click.argument("target")
@click.option("--dataset", required=True, help="The dataset this snapshot belongs to.")
@click.option("--labels", help="Labels from the key, e.g. '{label}/{name}' (after the prefix).")
@click.option("--labels-table", help="Labels from a key,label CSV or JSON object: NS/KEY.")
@click.option("--eval-fraction", type=float, help="Share of keys in the eval split (0.2).")
@click.option("--split-seed", help="Seed of the stable split hash.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def snapshot_create(
    state: _State,
    target: str,
    dataset: str,
    labels: str | None,
    labels_table: str | None,
    eval_fraction: float | None,
    split_seed: str | None,
    as_json: bool,
) -> None:
    """Snapshot NS/PREFIX as the next snapshot of a dataset (pins every object's version)."""
    cat = _catalog(state)
    name, _, prefix = target.partition("/")
    snap, created = cat.datasets.create(
        name,
        prefix,
        dataset,
        labels=labels,
        labels_table=labels_table,
        eval_fraction=eval_fraction,
        split_seed=split_seed,
    )
    if as_json:
        click.echo(json.dumps({**snap.to_dict(), "created_now": created}))
        return
    click.echo(("created " if created else "unchanged, latest is ") + _snapshot_line(snap))


@snapshot.command("list")
@click.argument("dataset")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def snapshot_list(state: _State, dataset: str, as_json: bool) -> None:
    """The snapshots of DATASET, oldest first."""
    snaps = _catalog(state).datasets.list(dataset)
    if as_json:
        click.echo(json.dumps([s.to_dict() for s in snaps]))
        return
    for s in snaps:
        click.echo(_snapshot_line(s))


@snapshot.command("drop")
@click.argument("ref")
@click.pass_obj
def snapshot_drop(state: _State, ref: str) -> None:
    """Drop one snapshot (NAME@REF) and release its pinned versions."""
    s = _catalog(state).datasets.drop(ref)
    click.echo(f"dropped {s.dataset}@{s.number} ({s.id[:12]})")


@click.group()
def dataset() -> None:
    """Datasets: named series of snapshots."""


@dataset.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def dataset_list(state: _State, as_json: bool) -> None:
    """Every dataset with its latest snapshot."""
    cat = _catalog(state)
    rows = []
    for name in cat.dataset_names():
        snaps = cat.datasets.list(name)
        rows.append((name, cat.datasets.definition(name), snaps))
    if as_json:
        click.echo(
            json.dumps(
                [
                    {
                        "name": n,
                        "definition": d,
                        "snapshots": len(s),
                        "latest": s[-1].to_dict() if s else None,
                    }
                    for n, d, s in rows
                ]
            )
        )
        return
    for name, d, snaps in rows:
        src = f"{d['namespace']}/{d['prefix']}"
        latest = _snapshot_line(snaps[-1]) if snaps else "(no snapshots)"
        click.echo(f"{name}  <- {src}  {len(snaps)} snapshots; latest: {latest}")


@dataset.command("show")
@click.argument("ref")
@click.option("--entries", "show_entries", type=int, default=10, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def dataset_show(state: _State, ref: str, show_entries: int, as_json: bool) -> None:
    """One snapshot (NAME, NAME@latest, NAME@<n>, NAME@<hash>) with its first entries."""
    cat = _catalog(state)
    s = cat.resolve(ref)
    entries = s.entries()
    if as_json:
        doc = s.to_dict()
        doc["definition"] = cat.datasets.definition(s.dataset)
        doc["entries"] = [e.__dict__ for e in entries[:show_entries]]
        click.echo(json.dumps(doc, ensure_ascii=False))
        return
    click.echo(_snapshot_line(s))
    click.echo(f"id {s.id}")
    for e in entries[:show_entries]:
        click.echo(f"  {e.key}  v{e.version}  {_human(e.size)}  {e.label or '-'}  {e.split}")
    if len(entries) > show_entries:
        click.echo(f"  ... {len(entries) - show_entries} more")


@dataset.command("diff")
@click.argument("old")
@click.argument("new", required=False)
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def dataset_diff(state: _State, old: str, new: str | None, as_json: bool) -> None:
    """Added, removed and changed keys between two snapshots (NEW defaults to latest)."""
    from lakeloop.catalog import parse_ref

    name, _ = parse_ref(old)
    d = _catalog(state).datasets.diff(old, new or f"{name}@latest")
    if as_json:
        click.echo(json.dumps(d.to_dict(), ensure_ascii=False))
        return
    click.echo(f"{d.old} -> {d.new}")
    for sign, keys in (("+", d.added), ("-", d.removed), ("~", d.changed)):
        for k in keys[:50]:
            click.echo(f"{sign} {k}")
        if len(keys) > 50:
            click.echo(f"{sign} ... {len(keys) - 50} more")
    click.echo(f"{len(d.added)} added, {len(d.removed)} removed, {len(d.changed)} changed")


@dataset.command("drop")
@click.argument("name")
@click.pass_obj
def dataset_drop(state: _State, name: str) -> None:
    """Drop a dataset and all its snapshots (their pins are released)."""
    n = _catalog(state).datasets.delete(name)
    click.echo(f"dropped dataset {name} ({n} snapshots)")


@dataset.command("gc")
@click.pass_obj
def dataset_gc(state: _State) -> None:
    """Release pins and manifests left by a snapshot that crashed half-way."""
    released = _catalog(state).gc()
    total = sum(released.values())
    click.echo(
        f"released {total} orphan snapshot pins"
        + (f" in {', '.join(released)}" if released else "")
    )
