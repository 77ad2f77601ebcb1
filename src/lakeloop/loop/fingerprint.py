"""The code fingerprint: which code a model was built from, and whether it changed.

A fingerprint is the git commit (``HEAD``) plus a hash of the uncommitted changes to the
code files a project lists. Two fingerprints mean "the same code" when their
``content`` is equal: a hash of every listed file's path and bytes as it is on disk, so
a commit that touches only other files (a README, the lock file) or that commits exactly
what was already there changes nothing, while any edit to a listed file does. Outside
git (a tarball, a CI cache) the commit and the change hash are None and the content hash
alone identifies the code.

>>> fp = code_fingerprint(["pipeline.py"], root=".")        # doctest: +SKIP
>>> str(fp)                                                  # doctest: +SKIP
'git:3f2a9c1d0b7e+5c41e0d2a9b3'
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lakeloop.errors import InvalidProject

__all__ = ["CodeFingerprint", "code_fingerprint"]

_SKIP_DIRS = {"__pycache__", ".git", ".venv", "node_modules"}
_SKIP_SUFFIXES = (".pyc", ".pyo")


@dataclass(frozen=True)
class CodeFingerprint:
    """``commit``: HEAD when inside git (None outside git or before the first commit).
    ``dirty``: a hash of the uncommitted changes to the listed files (None when clean or
    outside git). ``content``: a hash of the listed files' paths and bytes, what equality
    of code means. ``files``: the files that were hashed, relative to the root."""

    commit: str | None
    dirty: str | None
    content: str
    files: tuple[str, ...]

    def __str__(self) -> str:
        if self.commit is None and self.dirty is None:
            return f"files:{self.content[:16]}"
        text = f"git:{(self.commit or 'none')[:12]}"
        return text + (f"+{self.dirty[:12]}" if self.dirty else "")

    def same_code(self, other: CodeFingerprint | str | None) -> bool:
        """True when ``other`` (a fingerprint, or a content hash from a lock file) names the
        same code."""
        if other is None:
            return False
        content = other.content if isinstance(other, CodeFingerprint) else other
        return content == self.content

    def to_dict(self) -> dict[str, Any]:
        return {
            "commit": self.commit,
            "dirty": self.dirty,
            "content": self.content,
            "files": list(self.files),
        }


def _git(root: Path, *args: str) -> subprocess.CompletedProcess[bytes] | None:
    try:
        return subprocess.run(
            ["git", "-C", str(root), *args],
            capture_output=True,
            check=False,
            env={**os.environ, "GIT_OPTIONAL_LOCKS": "0", "LC_ALL": "C"},
        )
    except OSError:  # git is not installed
        return None


def _file_digest(path: Path) -> str:
    if not path.is_file():
        return "deleted"
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _hash_entries(entries: Iterable[tuple[str, str]]) -> str:
    digest = hashlib.sha256()
    for name, value in sorted(entries):
        digest.update(name.encode() + b"\0" + value.encode() + b"\n")
    return digest.hexdigest()


def _walk(root: Path, paths: Sequence[str]) -> list[str]:
    found: set[str] = set()
    for rel in paths:
        target = root / rel
        if target.is_file():
            found.add(Path(os.path.relpath(target, root)).as_posix())
            continue
        for folder, dirs, files in os.walk(target):
            dirs[:] = [d for d in dirs if d not in _SKIP_DIRS and not d.startswith(".")]
            for name in files:
                if not name.endswith(_SKIP_SUFFIXES):
                    found.add(Path(os.path.relpath(Path(folder) / name, root)).as_posix())
    return sorted(found)


def _split(output: bytes) -> list[str]:
    return [p.decode("utf-8", "surrogateescape") for p in output.split(b"\0") if p]


def code_fingerprint(
    paths: Sequence[str | os.PathLike[str]], root: str | os.PathLike[str] = "."
) -> CodeFingerprint:
    """Fingerprint the code files and folders ``paths`` (relative to ``root``).

    Inside a git work tree the files are those git tracks or would track (untracked files
    not ignored by .gitignore); outside git, or in a folder the enclosing repository
    ignores, every file under the paths except hidden folders, caches and compiled
    Python. A path that does not exist is an error.
    """
    base = Path(root).resolve()
    rel_paths = []
    for p in paths:
        full = (base / p).resolve()
        if not full.exists():
            raise InvalidProject(
                "code path does not exist",
                op="fingerprint code",
                target=str(p),
                hint="list existing files or folders under 'code' in lakeloop.toml",
            )
        rel_paths.append(os.path.relpath(full, base))
    if not rel_paths:
        raise InvalidProject(
            "no code paths to fingerprint", op="fingerprint code", target=str(base)
        )
    inside = _git(base, "rev-parse", "--is-inside-work-tree")
    # A project folder that the enclosing repository ignores is not part of it: git would
    # list none of its files, and every change to them would go unseen.
    ignored = _git(base, "check-ignore", "-q", ".")
    if (
        inside is None
        or inside.returncode != 0
        or inside.stdout.strip() != b"true"
        or (ignored is not None and ignored.returncode == 0)
    ):
        files = _walk(base, rel_paths)
        content = _hash_entries((f, _file_digest(base / f)) for f in files)
        return CodeFingerprint(None, None, content, tuple(files))
    listed = _git(
        base, "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", *rel_paths
    )
    assert listed is not None
    files = sorted(set(_split(listed.stdout)))
    digests = {f: _file_digest(base / f) for f in files}
    content = _hash_entries(digests.items())
    head = _git(base, "rev-parse", "--verify", "-q", "HEAD")
    commit = head.stdout.decode().strip() if head is not None and head.returncode == 0 else None
    status = _git(base, "status", "--porcelain", "-z", "--untracked-files=all", "--", *rel_paths)
    assert status is not None
    changed = set()
    entries = _split(status.stdout)
    i = 0
    while i < len(entries):
        code, name = entries[i][:2], entries[i][3:]
        changed.add(name)
        if code[0] in "RC":  # renames and copies are followed by the old path
            i += 1
            changed.add(entries[i])
        i += 1
    # porcelain paths are relative to the repository's top; make them relative to base
    top = _git(base, "rev-parse", "--show-toplevel")
    assert top is not None
    top_dir = Path(top.stdout.decode().strip()).resolve()
    rel_changed = sorted(os.path.relpath(top_dir / c, base) for c in changed)
    dirty = _hash_entries((c, _file_digest(base / c)) for c in rel_changed) if rel_changed else None
    return CodeFingerprint(commit, dirty, content, tuple(files))
