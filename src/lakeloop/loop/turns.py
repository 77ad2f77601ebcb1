"""Loop turns as the lake records them, the journal of the turn in progress, and the lock
that lets one controller at a time drive a model.

Records live in the reserved namespace ``_loop``:

- ``turns/<model>/<id>.json`` — one finished turn (see :class:`Turn`);
- ``journal/<model>.json`` — the turn in progress, rewritten (durably) as each step
  begins, so a controller killed mid-turn leaves the step it was in. The next controller
  closes that turn as ``crashed`` — or, when the gate had already stored its decision
  (and maybe moved ``champion``) before the crash, with that decision's outcome — before
  it starts another. The champion only ever moves inside the gate
  (:meth:`lakeloop.registry.Registry.promote`), so a crash anywhere else leaves it
  where it was.

The lock is ``<lake>/loop/<model>/controller.lock``: an ``flock`` held while ``lakeloop
loop run`` runs, with the holder's pid inside. The kernel releases it when the holder
dies, whatever the signal; a pid left in a free lock file is a stale lock, reported as
recovered.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import secrets
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lakeloop.errors import LockTimeout, NotFound

if TYPE_CHECKING:
    from lakeloop.store import Lake, Namespace

__all__ = ["ControllerLock", "Turn", "TurnLog"]

INTERNAL_NS = "_loop"


@dataclass
class Turn:
    """One turn of the loop: why it started, what it made, what the gate decided.

    ``status``: ``running`` (only in the journal), ``done``, ``failed`` (an error stopped
    it; ``error`` says which) or ``crashed`` (its process died; closed by the next
    controller). ``outcome`` is :attr:`lakeloop.loop.CiResult.outcome` (``promote``,
    ``hold``, ``block``, ``unchanged``, ``tests-failed``, ``train-failed``) when the turn
    got that far. ``steps`` maps each step (``snapshot``, ``tests``, ``train``, ``gate``)
    to its seconds; ``step`` is the one in progress (the journal's last word).
    """

    id: str
    model: str
    trigger: str
    started: float
    reasons: list[str] = field(default_factory=list)
    status: str = "running"
    step: str | None = None
    steps: dict[str, float] = field(default_factory=dict)
    ended: float | None = None
    snapshot: str | None = None
    examples: int | None = None
    candidate: str | None = None
    champion_before: str | None = None
    champion_after: str | None = None
    outcome: str | None = None
    decision_id: str | None = None
    gate_reasons: list[str] = field(default_factory=list)
    joined: int = 0
    code: str | None = None
    pid: int = field(default_factory=os.getpid)
    error: str | None = None

    @property
    def seconds(self) -> float | None:
        return None if self.ended is None else self.ended - self.started

    def to_dict(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["seconds"] = self.seconds
        return doc

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Turn:
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in known})


def new_turn_id() -> str:
    """Sortable by start time: ``20261128T013012Z-3fa9c1``."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + secrets.token_hex(3)


class TurnLog:
    """The turns of one model in a lake: finished records and the journal."""

    def __init__(self, lake: Lake, model: str) -> None:
        self.lake = lake
        self.model = model

    @property
    def _ns(self) -> Namespace:
        return self.lake.internal_namespace(INTERNAL_NS)

    @property
    def _journal_key(self) -> str:
        return f"journal/{self.model}.json"

    def _put(self, key: str, doc: dict[str, Any]) -> None:
        self._ns.put(
            key, json.dumps(doc, indent=1, sort_keys=True).encode(), content_type="application/json"
        )

    def journal(self) -> Turn | None:
        """The turn in progress (or left by a controller that died), if any."""
        try:
            return Turn.from_dict(json.loads(self._ns.get(self._journal_key)))
        except NotFound:
            return None

    def get(self, turn_id: str) -> Turn | None:
        """The finished turn *turn_id*, or None."""
        try:
            raw = self._ns.get(f"turns/{self.model}/{turn_id}.json")
        except NotFound:
            return None
        return Turn.from_dict(json.loads(raw))

    def drop_journal(self) -> None:
        self._ns.delete(self._journal_key, missing_ok=True)

    def write_journal(self, turn: Turn) -> None:
        self._put(self._journal_key, turn.to_dict())

    def finish(self, turn: Turn) -> None:
        """Store the finished turn, then drop the journal (a crash between the two leaves
        both, and closing the journal again rewrites the same record)."""
        self._put(f"turns/{self.model}/{turn.id}.json", turn.to_dict())
        self._ns.delete(self._journal_key, missing_ok=True)

    def turns(self, limit: int | None = None) -> list[Turn]:
        """Finished turns, oldest first (the last *limit* of them)."""
        keys = [i.key for i in self._ns.list(prefix=f"turns/{self.model}/")]
        if limit is not None:
            keys = keys[-limit:] if limit else []
        return [Turn.from_dict(json.loads(self._ns.get(k))) for k in keys]

    def last(self) -> Turn | None:
        found = self.turns(limit=1)
        return found[0] if found else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class ControllerLock:
    """``with ControllerLock(path) as lock:`` — one controller per model and lake.

    Raises :class:`~lakeloop.errors.LockTimeout` naming the holder when another live
    process has it. ``lock.stale_pid`` is the pid of a holder that died with it.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd = -1
        self.stale_pid: int | None = None

    def __enter__(self) -> ControllerLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip()
            os.close(fd)
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise
            raise LockTimeout(
                f"another loop controller (pid {holder or '?'}) is running for this model",
                op="loop run",
                target=str(self.path),
                hint="stop it first; one controller drives a model at a time",
            ) from None
        left = os.pread(fd, 64, 0).decode(errors="replace").strip()
        if left.isdigit() and int(left) != os.getpid():
            # the flock was free, so its holder is gone (the kernel released it)
            self.stale_pid = int(left)
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        os.fsync(fd)
        self.fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        os.ftruncate(self.fd, 0)
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)
        self.fd = -1

    @staticmethod
    def holder(path: Path) -> int | None:
        """The pid of the live controller holding *path*, if any."""
        try:
            text = path.read_text().strip()
        except FileNotFoundError:
            return None
        return int(text) if text.isdigit() and _alive(int(text)) else None
