"""The review-grading scenario in one command: ingest, train, gate, then a broken change.

    python examples/reviews/run.py [--lake PATH] [--limit N]

1. 5,000 real reviews go into a fresh lake as one text object each (prepare.py) and
   are snapshotted (``reviews@...``, a fifth of them held out for evaluation).
2. ``lakeloop ci``'s pipeline runs on this project: Keras text-model trials train in
   parallel on the snapshot, the best is registered, and, being the first, is promoted
   only if its accuracy is *shown* (one-sided 95 % Clopper-Pearson bound) to beat the
   project's claim.
3. A code change with a bug (the model reads only the first 3 words of each review) is
   trained and gated against the champion on the same evaluation snapshot; the gate
   blocks it on accuracy (exact McNemar) and AUC (paired bootstrap); the champion stays.

The project is copied to a temporary folder for the two runs, so this folder and its
``lakeloop.lock`` are left as they are. Exits 0 when both decisions came out as
expected.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import prepare  # noqa: E402

from lakeloop import Lake  # noqa: E402
from lakeloop.loop import run_ci  # noqa: E402

BROKEN = ("LENGTH = 200", "LENGTH = 3")


def gate_run(project: Path, lake: Path) -> tuple[int, str]:
    result = run_ci(project, lake=str(lake), force=True, log=lambda line: print("  " + line))
    print(result.render("md"))
    return result.exit_code, result.outcome


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lake", default=str(HERE / "lake"), help="made afresh")
    parser.add_argument("--limit", type=int, default=None, help="only the first N reviews")
    args = parser.parse_args(argv)
    lake = Path(args.lake).resolve()
    shutil.rmtree(lake, ignore_errors=True)
    with Lake.open(lake, create=True) as lk:
        snap = prepare.load(lk, args.limit)
    print(f"ingested {snap.count:,} reviews as text objects: {snap.ref} {snap.splits}")
    with tempfile.TemporaryDirectory(prefix="lakeloop-reviews-") as tmp:
        project = Path(tmp)
        for name in ("lakeloop.toml", "pipeline.py"):
            shutil.copy(HERE / name, project / name)
        print("\n## 1. the first model (decided by the acceptance claim)")
        first = gate_run(project, lake)
        pipeline = project / "pipeline.py"
        pipeline.write_text(pipeline.read_text().replace(*BROKEN))
        print("\n## 2. a change that reads only the first 3 words of each review")
        second = gate_run(project, lake)
    print(
        f"\nfirst run: {first[1]} (exit {first[0]}); broken change: {second[1]} (exit {second[0]})"
    )
    print(f"look further: lakeloop --lake {lake} models show review-grader")
    return 0 if (first[1], second[1]) == ("promote", "block") else 1


if __name__ == "__main__":
    raise SystemExit(main())
