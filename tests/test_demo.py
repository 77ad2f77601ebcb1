"""`make demo` keeps working: the same module, on a small folder of real files."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_demo_runs_end_to_end(tmp_path: Path) -> None:
    src = Path(__file__).parent.parent / "src" / "lakeloop"  # real files of this project
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "lakeloop.demo",
            "--lake",
            str(tmp_path / "lake"),
            "--source",
            str(src),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={"COLUMNS": "120", "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "0 mismatches" in out and "fsck" in out and "ok:" in out
    assert "FAILED" not in out
