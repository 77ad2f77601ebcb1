"""The recommendation scenario in one command: ingest, train, gate, then a broken change.

    python examples/recommend/run.py [--lake PATH] [--users N]

1. MovieLens ratings go into a fresh lake as one JSON object each (prepare.py) and are
   snapshotted (``movielens@...``, a fifth of them held out for evaluation).
2. ``lakeloop ci``'s pipeline runs on this project: Keras matrix-factorisation trials
   train in parallel on the snapshot, the best is registered, and, being the first, is
   promoted only if its NDCG@10 is *shown* to beat the project's claim (a one-sided 95 %
   bootstrap bound over users).
3. A code change with a bug (a sign error: the model learns minus the grade, so it
   ranks the least liked movies first) is trained and gated against the champion on the same evaluation snapshot; the gate
   blocks it on NDCG@10 and recall@10, and the champion stays.

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

BROKEN = ("GRADE_SIGN = 1.0", "GRADE_SIGN = -1.0")


def gate_run(project: Path, lake: Path) -> tuple[int, str]:
    result = run_ci(project, lake=str(lake), force=True, log=lambda line: print("  " + line))
    print(result.render("md"))
    return result.exit_code, result.outcome


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lake", default=str(HERE / "lake"), help="made afresh")
    parser.add_argument("--users", type=int, default=None, help="only the first N users")
    args = parser.parse_args(argv)
    lake = Path(args.lake).resolve()
    shutil.rmtree(lake, ignore_errors=True)
    with Lake.open(lake, create=True) as lk:
        snap = prepare.load(lk, args.users)
    print(f"ingested {snap.count:,} ratings as JSON objects: {snap.ref} {snap.splits}")
    with tempfile.TemporaryDirectory(prefix="lakeloop-recommend-") as tmp:
        project = Path(tmp)
        for name in ("lakeloop.toml", "pipeline.py"):
            shutil.copy(HERE / name, project / name)
        print("\n## 1. the first model (decided by the acceptance claim)")
        first = gate_run(project, lake)
        pipeline = project / "pipeline.py"
        pipeline.write_text(pipeline.read_text().replace(*BROKEN))
        print("\n## 2. a change with a sign error in the training target")
        second = gate_run(project, lake)
    print(
        f"\nfirst run: {first[1]} (exit {first[0]}); broken change: {second[1]} (exit {second[0]})"
    )
    print(f"look further: lakeloop --lake {lake} models show movielens-mf")
    return 0 if (first[1], second[1]) == ("promote", "block") else 1


if __name__ == "__main__":
    raise SystemExit(main())
