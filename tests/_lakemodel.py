"""What a client of the store was told, and a check of a reopened lake against it.

Shared by the power-cut, crash and fault tests (and by the child process of the crash
test, which imports it by path). An operation is *begun* before the store is called
and *acknowledged* once the store returned; after a crash each key must hold its last
acknowledged state, or the state of an operation that was begun after it and never
acknowledged (the crash may have come just before or just after it took effect).
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

DELETED = "-"  # the state of a deleted (or never written) key


def digest(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def make_data(rng: random.Random, size: int) -> bytes:
    """Random bytes, half of the time compressible (so compaction compresses some)."""
    if size == 0:
        return b""
    if rng.random() < 0.5:
        return rng.randbytes(size)
    word = rng.randbytes(rng.randint(4, 24))
    return (word * (size // len(word) + 1))[:size]


@dataclass
class Model:
    acked: dict[str, str] = field(default_factory=dict)  # key -> md5 hex or DELETED
    inflight: dict[str, set[str]] = field(default_factory=dict)
    acks: int = 0

    def begin(self, key: str, state: str) -> None:
        self.inflight.setdefault(key, set()).add(state)

    def ack(self, key: str, state: str) -> None:
        self.acked[key] = state
        self.inflight.pop(key, None)
        self.acks += 1

    def allowed(self, key: str) -> set[str]:
        return {self.acked.get(key, DELETED)} | self.inflight.get(key, set())

    def keys(self) -> set[str]:
        return set(self.acked) | set(self.inflight)

    def live_keys(self) -> list[str]:
        return sorted(k for k, v in self.acked.items() if v != DELETED and k not in self.inflight)

    # The crash test's child writes its log as JSON lines: {"b"|"a": [[key, state], ...]}.
    def apply_log_line(self, line: str) -> None:
        entry = json.loads(line)
        if "b" in entry:
            for key, state in entry["b"]:
                self.begin(key, state)
        else:
            for key, state in entry["a"]:
                self.ack(key, state)


def read_state(ns: Any, key: str) -> str:
    """The key's state as the store returns it (raises what the store raises on damage)."""
    from lakeloop.errors import NotFound

    try:
        return digest(ns.get(key))
    except NotFound:
        return DELETED


def verify(ns: Any, model: Model, *, limit: int = 20) -> list[str]:
    """Every problem found: a key in a state nobody was told of, an unreadable key, or a
    listed key the model never wrote."""
    from lakeloop.errors import LakeloopError

    problems: list[str] = []
    checked = 0
    for key in sorted(model.keys()):
        allowed = model.allowed(key)
        try:
            got = read_state(ns, key)
        except LakeloopError as exc:
            problems.append(f"{key}: unreadable: {exc}")
            continue
        checked += 1
        if got not in allowed:
            want = model.acked.get(key, DELETED)
            if got == DELETED:
                problems.append(f"{key}: acknowledged write lost (want {want})")
            elif want == DELETED:
                problems.append(f"{key}: acknowledged delete undone (got {got})")
            else:
                problems.append(f"{key}: holds {got}, want one of {sorted(allowed)}")
        if len(problems) >= limit:
            break
    known = model.keys()
    try:
        for info in ns.list():
            if info.key not in known:
                problems.append(f"{info.key}: listed but never written")
    except LakeloopError as exc:
        problems.append(f"list failed: {exc}")
    return problems


def fsck_problems(report: Any) -> list[dict[str, Any]]:
    """What fsck found that is damage: not repaired, and not crash residue (an orphan blob
    of a put killed before its commit holds no acknowledged data)."""
    return [p for p in report.problems if not (p.get("repaired") or p.get("residue"))]


def summary(items: Iterable[Any], limit: int = 8) -> str:
    items = list(items)
    text = "\n  ".join(str(i) for i in items[:limit])
    more = f"\n  ... and {len(items) - limit} more" if len(items) > limit else ""
    return "\n  " + text + more
