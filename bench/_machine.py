"""The machine line every benchmark prints beside its table (one definition for all)."""

from __future__ import annotations

import os
import platform
from pathlib import Path


def machine(*extras: str) -> str:
    """CPU model, cores and Python version, then *extras* (library versions)."""
    cpu = platform.processor() or "cpu"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return ", ".join(
        [f"{cpu}", f"{os.cpu_count()} cores", f"Python {platform.python_version()}", *extras]
    )
