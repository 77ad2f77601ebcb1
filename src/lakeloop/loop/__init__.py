"""The loop: what drives one turn of snapshot -> train -> gate -> promote, and when.

``code_fingerprint`` says which code a model was built from; :func:`run_ci` is one turn
of the pipeline that ``lakeloop ci`` runs (fingerprints, unit tests, training, the gate on
one pinned evaluation snapshot, the decision stored, champion moved only on promote, the
lock written); :func:`gate_candidate` is its gate step alone. See docs/ci.md.

Continuous training (docs/loop.md): the :class:`Joiner` lands predictions joined with
their feedback as labelled examples in the lake; the :class:`Controller` (``lakeloop loop
run``) starts a journaled turn (:func:`run_turn`) when :func:`check_triggers` says one is
due; :func:`live_accuracy` and :func:`loop_status` read back what they recorded.
"""

from __future__ import annotations

from lakeloop.loop._joinstate import LiveAccuracy
from lakeloop.loop.ci import CiResult, gate_candidate, run_ci
from lakeloop.loop.controller import (
    Controller,
    Trigger,
    check_triggers,
    live_accuracy,
    loop_status,
    run_turn,
)
from lakeloop.loop.fingerprint import CodeFingerprint, code_fingerprint
from lakeloop.loop.joiner import Joiner
from lakeloop.loop.turns import Turn, TurnLog

__all__ = [
    "CiResult",
    "CodeFingerprint",
    "Controller",
    "Joiner",
    "LiveAccuracy",
    "Trigger",
    "Turn",
    "TurnLog",
    "check_triggers",
    "code_fingerprint",
    "gate_candidate",
    "live_accuracy",
    "loop_status",
    "run_ci",
    "run_turn",
]
