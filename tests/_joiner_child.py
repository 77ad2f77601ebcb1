"""Run the joiner once in a process that kills itself (SIGKILL) at a chosen point:
``before-ack`` (lake written, state committed, feedback not acknowledged) or
``before-commit`` (lake written, state not committed). Used by test_loop_joiner.py.

    python _joiner_child.py REPO POINT
"""

from __future__ import annotations

import os
import signal
import sys

from lakeloop.loop import Joiner
from lakeloop.loop._joinstate import JoinState


def main() -> None:
    repo, point = sys.argv[1], sys.argv[2]
    with Joiner(repo) as joiner:
        if point == "before-ack":
            real_ack = joiner.feedback.ack

            def ack(group: str, offsets: list[str]) -> int:
                os.kill(os.getpid(), signal.SIGKILL)
                return real_ack(group, offsets)

            joiner.feedback.ack = ack  # type: ignore[method-assign]
        elif point == "before-commit":
            commits = {"n": 0}
            real_commit = JoinState.commit

            def commit(self: JoinState) -> None:
                commits["n"] += 1
                if commits["n"] == 2:  # 1: the predictions; 2: the feedback's join
                    os.kill(os.getpid(), signal.SIGKILL)
                real_commit(self)

            JoinState.commit = commit  # type: ignore[method-assign]
        joiner.drain()
    raise SystemExit("the joiner was not killed")


if __name__ == "__main__":
    main()
