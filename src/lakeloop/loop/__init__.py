"""The loop: what drives one turn of snapshot -> train -> gate -> promote.

``code_fingerprint`` says which code a model was built from; :func:`run_ci` is one turn
of the pipeline that ``lakeloop ci`` runs (fingerprints, unit tests, training, the gate on
one pinned evaluation snapshot, the decision stored, champion moved only on promote, the
lock written); :func:`gate_candidate` is its gate step alone. See docs/ci.md.
"""

from __future__ import annotations

from lakeloop.loop.ci import CiResult, gate_candidate, run_ci
from lakeloop.loop.fingerprint import CodeFingerprint, code_fingerprint

__all__ = ["CiResult", "CodeFingerprint", "code_fingerprint", "gate_candidate", "run_ci"]
