"""Run ``lakeloop ci`` with a barrier after its first decision is recorded: the process
writes DIR/ME and waits for DIR/OTHER before it promotes, so two such processes have
both scored their candidates against the same champion when either moves it. Used by
test_ci_race.py.

    python _ci_barrier_child.py DIR ME OTHER -- ci --lake LAKE --candidate digits@2
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from lakeloop.cli import main as cli_main
from lakeloop.registry import Registry

WAIT = 120.0


def main() -> None:
    folder, me, other = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
    argv = sys.argv[sys.argv.index("--") + 1 :]
    real = Registry.record_decision
    held = {"done": False}

    def record_then_wait(self: Registry, name: str, record: Any) -> Any:
        stored = real(self, name, record)
        if not held["done"]:
            held["done"] = True
            (folder / me).write_text("")
            deadline = time.monotonic() + WAIT
            while not (folder / other).exists():
                if time.monotonic() > deadline:
                    raise SystemExit(f"the other process never reached the barrier ({other})")
                time.sleep(0.02)
        return stored

    Registry.record_decision = record_then_wait  # type: ignore[method-assign]
    cli_main(argv)


if __name__ == "__main__":
    main()
