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
    model="review-grader",
    ingest=prepare.load,
    what="reviews as text objects",
    limit_flag="--limit",
    limit_help="only the first N reviews",
    broken=("LENGTH = 200", "LENGTH = 3"),
    broken_title="a change that reads only the first 3 words of each review",
)

if __name__ == "__main__":
    raise SystemExit(main(SCENARIO, __doc__ or ""))
