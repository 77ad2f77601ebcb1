"""kill -9 at random moments: a child process writes (puts of every size, deletes, bulk
loads, compactions, from three threads, with the background compactor on) and logs each
acknowledged operation; the parent SIGKILLs it, reopens the lake and checks that every
acknowledged write reads back (the last one of each key), every acknowledged delete
stays deleted, and fsck is clean. The same lake goes through every kill.

``bench/crash.py --many N`` runs the same loop N times.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from _crashloop import run
from _lakemodel import summary

KILLS = int(os.environ.get("LAKELOOP_CRASH_KILLS", "10"))


def test_sigkill_loses_nothing_acknowledged(tmp_path: Path) -> None:
    result = run(tmp_path, KILLS, seed=11, min_sleep=0.05, max_sleep=1.5)
    assert not result.failures, result.line() + summary(result.failures, 3)
    assert result.kills == KILLS
    # the child did real work between kills, and some kills hit an operation in flight
    assert result.acknowledged > KILLS * 5, result.line()


@pytest.mark.slow
def test_sigkill_during_startup_and_recovery(tmp_path: Path) -> None:
    """Kills that land early: while the child opens the lake and recovers from the
    previous kill, or in its very first writes."""
    result = run(tmp_path, 12, seed=12, min_sleep=0.1, max_sleep=0.7, wait_ready=False)
    assert not result.failures, result.line() + summary(result.failures, 3)
