"""Run the joiner until it has landed its first feedback batch, then hold it just before
the state transaction that records it (the lake has the examples, the state does not
know yet) until a file appears; then finish draining. Used by test_loop_joiner.py.

    python _joiner_pause_child.py REPO DIR    # writes DIR/paused, waits for DIR/go
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from lakeloop.loop import Joiner
from lakeloop.loop._joinstate import JoinState

WAIT = 120.0


def main() -> None:
    repo, folder = sys.argv[1], Path(sys.argv[2])
    with Joiner(repo) as joiner:
        got = {"feedback": False, "paused": False}
        real_consume = joiner.feedback.consume

        def consume(*args: Any, **kw: Any) -> Any:
            msgs = real_consume(*args, **kw)
            got["feedback"] = got["feedback"] or bool(msgs)
            return msgs

        joiner.feedback.consume = consume  # type: ignore[method-assign]
        real_begin = JoinState.begin

        def begin(self: JoinState) -> None:
            if got["feedback"] and not got["paused"]:
                got["paused"] = True
                (folder / "paused").write_text("")
                deadline = time.monotonic() + WAIT
                while not (folder / "go").exists():
                    if time.monotonic() > deadline:
                        raise SystemExit("no go file")
                    time.sleep(0.02)
            real_begin(self)

        JoinState.begin = begin  # type: ignore[method-assign]
        print(joiner.drain())


if __name__ == "__main__":
    main()
