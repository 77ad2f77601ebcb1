"""What every scenario's ``run.py`` does: ingest, a first gate run, a broken change, a second.

The project is copied to a temporary folder for the two runs, so the example's folder and
its ``lakeloop.lock`` stay as they are. ``main`` exits 0 when the first model was promoted
and the broken change blocked.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lakeloop import Lake
from lakeloop.loop import run_ci


@dataclass(frozen=True)
class Scenario:
    here: Path  # the example's folder (lakeloop.toml, pipeline.py)
    model: str  # the model name in its lakeloop.toml
    ingest: Callable[[Lake, int | None], Any]  # (lake, limit) -> the snapshot taken
    what: str  # what one ingested object is, e.g. "reviews as text objects"
    limit_flag: str  # the option that takes fewer of them, e.g. "--limit"
    limit_help: str  # what it counts
    broken: tuple[str, str]  # (text in pipeline.py, its broken replacement)
    broken_title: str  # the second run's heading


def gate_run(project: Path, lake: Path) -> tuple[int, str]:
    result = run_ci(project, lake=str(lake), force=True, log=lambda line: print("  " + line))
    print(result.render("md"))
    return result.exit_code, result.outcome


def main(scenario: Scenario, doc: str, argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--lake", default=str(scenario.here / "lake"), help="made afresh")
    parser.add_argument(
        scenario.limit_flag, dest="limit", type=int, default=None, help=scenario.limit_help
    )
    args = parser.parse_args(argv)
    lake = Path(args.lake).resolve()
    shutil.rmtree(lake, ignore_errors=True)
    with Lake.open(lake, create=True) as lk:
        snap = scenario.ingest(lk, args.limit)
    print(f"ingested {snap.count:,} {scenario.what}: {snap.ref} {snap.splits}")
    with tempfile.TemporaryDirectory(prefix=f"lakeloop-{scenario.here.name}-") as tmp:
        project = Path(tmp)
        for name in ("lakeloop.toml", "pipeline.py"):
            shutil.copy(scenario.here / name, project / name)
        print("\n## 1. the first model (decided by the acceptance claim)")
        first = gate_run(project, lake)
        pipeline = project / "pipeline.py"
        text = pipeline.read_text()
        if scenario.broken[0] not in text:
            raise SystemExit(f"pipeline.py no longer contains {scenario.broken[0]!r}")
        pipeline.write_text(text.replace(*scenario.broken))
        print(f"\n## 2. {scenario.broken_title}")
        second = gate_run(project, lake)
    print(
        f"\nfirst run: {first[1]} (exit {first[0]}); broken change: {second[1]} (exit {second[0]})"
    )
    print(f"look further: lakeloop --lake {lake} models show {scenario.model}")
    return 0 if (first[1], second[1]) == ("promote", "block") else 1
