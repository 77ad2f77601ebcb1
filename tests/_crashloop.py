"""The parent side of the crash tests: run the child, SIGKILL it, check what survived.

Used by ``tests/test_crash.py`` (a few kills) and ``bench/crash.py --many N``. The same
lake goes through every kill, so each child also recovers from the previous kill.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _lakemodel import DELETED, Model, fsck_problems, read_state, summary, verify
from lakeloop import Lake

CHILD = Path(__file__).with_name("crash_child.py")

SETTINGS: dict[str, Any] = {
    "sync": "always",
    "volume_size": "256KiB",
    "blob_threshold": "32KiB",
    "blob_chunk_size": "8KiB",
    "compaction_free_margin": 0,
    # the child's background compactor wakes often and acts on low thresholds
    "compaction_interval": 0.3,
    "compaction_garbage_ratio": 0.3,
    "compaction_small_volumes": 3,
    "compaction_age": 1.0,
}


@dataclass
class Summary:
    kills: int = 0
    acknowledged: int = 0  # operations the children were told succeeded (log lines)
    checked: int = 0  # key checks after kills, all passing
    inflight_applied: int = 0  # operations under way at a kill that took effect
    inflight_dropped: int = 0  # ... and that did not
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def line(self) -> str:
        return (
            f"kills={self.kills} acknowledged_ops={self.acknowledged} "
            f"keys_verified={self.checked} inflight_applied={self.inflight_applied} "
            f"inflight_dropped={self.inflight_dropped} failures={len(self.failures)} "
            f"seconds={self.seconds:.1f}"
        )


class _Log:
    """Reads the ack log incrementally into a model; the parent appends resolutions."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.model = Model()

    def catch_up(self) -> int:
        """Apply the lines written since the last call; -> acknowledgements among them."""
        if not self.path.exists():
            return 0
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            raw = f.read()
        end = raw.rfind(b"\n") + 1  # a line cut by the kill has no newline: skip it
        acks = 0
        for line in raw[:end].decode().splitlines():
            self.model.apply_log_line(line)
            acks += line.startswith('{"a"')
        self.offset += end
        if end < len(raw):  # drop the torn line, so that later lines start clean
            with open(self.path, "r+b") as f:
                f.truncate(self.offset)
        return acks

    def resolve(self, ns: Any) -> tuple[int, int]:
        """Record what became of operations under way at the kill (as the parent saw
        them), so that later checks demand exactly that."""
        applied = dropped = 0
        pairs = []
        for key in sorted(self.model.inflight):
            before = self.model.acked.get(key, DELETED)
            now = read_state(ns, key)
            applied += now != before
            dropped += now == before
            pairs.append([key, now])
        if pairs:
            import json

            with open(self.path, "ab") as f:
                f.write((json.dumps({"a": pairs}, separators=(",", ":")) + "\n").encode())
            self.offset = self.path.stat().st_size
            for key, state in pairs:
                self.model.ack(key, state)
        return applied, dropped


def make_lake(path: Path, settings: dict[str, Any] | None = None) -> None:
    with Lake.open(path, create=True, settings=settings or SETTINGS, background=False) as lake:
        lake.create_namespace("photos")


def check(lake_path: Path, log: _Log) -> tuple[list[str], int]:
    """Reopen the lake and compare it with the log; -> (problems, keys checked)."""
    with Lake.open(lake_path, background=False) as lake:
        ns = lake.namespace("photos")
        problems = verify(ns, log.model)
        report = lake.fsck()
        problems += [f"fsck: {p}" for p in fsck_problems(report)]
        return problems, len(log.model.keys())


def run(
    root: Path,
    kills: int,
    *,
    seed: int = 0,
    min_sleep: float = 0.05,
    max_sleep: float = 1.5,
    threads: int = 3,
    wait_ready: bool = True,
    stop_on_failure: bool = True,
    progress: Any = None,
) -> Summary:
    started = time.monotonic()
    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    lake_path = root / "lake"
    if not lake_path.exists():
        make_lake(lake_path)
    log = _Log(root / "ack.log")
    out = Summary()
    for i in range(kills):
        child_seed = rng.randrange(1 << 30)
        with open(root / "child.err", "wb") as err:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    str(CHILD),
                    str(lake_path),
                    str(log.path),
                    str(child_seed),
                    str(threads),
                ],
                stdout=subprocess.PIPE,
                stderr=err,
            )
            assert proc.stdout is not None
            if wait_ready:  # imports done, lake open (and recovered): count from there
                proc.stdout.readline()
            time.sleep(rng.uniform(min_sleep, max_sleep))
            alive = proc.poll() is None
            if alive:
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            proc.stdout.close()
        if not alive:
            text = (root / "child.err").read_text(errors="replace")[-3000:]
            out.failures.append(
                f"kill {i}: the child died by itself (rc {proc.returncode}):\n{text}"
            )
            if stop_on_failure:
                break
            continue
        out.kills += 1
        out.acknowledged += log.catch_up()
        problems, checked = check(lake_path, log)
        if problems:
            out.failures.append(f"kill {i} (child seed {child_seed}):{summary(problems)}")
            if stop_on_failure:
                break
        else:
            out.checked += checked
        with Lake.open(lake_path, background=False) as lake:
            applied, dropped = log.resolve(lake.namespace("photos"))
        out.inflight_applied += applied
        out.inflight_dropped += dropped
        if progress is not None:
            progress(i, out)
    out.seconds = time.monotonic() - started
    return out
