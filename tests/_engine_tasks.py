"""Module-level task functions for the trial-engine conformance suite."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any


def square(x: int) -> int:
    return x * x


def task(spec: dict[str, Any]) -> Any:
    """``{"kind": ..., ...}``: ok, raise, exit (the process dies), sleep, rendezvous."""
    kind = spec["kind"]
    if kind == "raise":
        raise ValueError(f"boom {spec.get('n')}")
    if kind == "exit":
        os._exit(3)
    if kind == "sleep":
        time.sleep(spec["seconds"])
        return "slept"
    if kind == "rendezvous":
        # proves two tasks run at once: each announces itself and waits for the other
        folder = Path(spec["folder"])
        (folder / spec["me"]).touch()
        deadline = time.monotonic() + 60
        while not (folder / spec["other"]).exists():
            if time.monotonic() > deadline:
                raise TimeoutError("the other task never ran alongside")
            time.sleep(0.02)
        return os.getpid()
    return spec.get("n", 0) * 10
