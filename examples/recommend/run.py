"""The recommendation scenario in one command: ingest, train, gate, then a broken change.

    python examples/recommend/run.py [--lake PATH] [--users N]

1. MovieLens ratings go into a fresh lake as one JSON object each (prepare.py) and are
   snapshotted (``movielens@...``, a fifth of them held out for evaluation).
2. ``lakeloop ci``'s pipeline runs on this project: Keras matrix-factorisation trials
   train in parallel on the snapshot, the best is registered, and, being the first, is
   promoted only if its NDCG@10 is *shown* to beat the project's claim (a one-sided 95 %
   bootstrap bound over users).
3. A code change with a bug (a sign error: the model learns minus the grade, so it
   ranks the least liked movies first) is trained and gated against the champion on the
   same evaluation snapshot; the gate blocks it on NDCG@10 and recall@10, and the
   champion stays.

The steps are ../scenario.py's: the project is copied to a temporary folder for the two
runs, so this folder and its ``lakeloop.lock`` stay as they are. Exits 0 when both
decisions came out as expected.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

import prepare  # noqa: E402
from scenario import Scenario, main  # noqa: E402

SCENARIO = Scenario(
    here=HERE,
    model="movielens-mf",
    ingest=prepare.load,
    what="ratings as JSON objects",
    limit_flag="--users",
    limit_help="only the first N users",
    broken=("GRADE_SIGN = 1.0", "GRADE_SIGN = -1.0"),
    broken_title="a change with a sign error in the training target",
)

if __name__ == "__main__":
    raise SystemExit(main(SCENARIO, __doc__ or ""))
