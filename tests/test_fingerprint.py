"""The code fingerprint, against real git repositories in temporary folders."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from lakeloop.errors import InvalidProject
from lakeloop.loop import CodeFingerprint, code_fingerprint

GIT_ENV = {
    **os.environ,
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@example.com",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@example.com",
    "GIT_CONFIG_GLOBAL": os.devnull,
}


def git(repo: Path, *args: str) -> str:
    out = subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, env=GIT_ENV
    )
    return out.stdout.decode().strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    git(tmp_path, "init", "-q", "-b", "main")
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "model.py").write_text("LAYERS = 2\n")
    (tmp_path / "pipeline.py").write_text("from src.model import LAYERS\n")
    (tmp_path / "README.md").write_text("hello\n")
    (tmp_path / ".gitignore").write_text("*.log\n")
    git(tmp_path, "add", ".")
    git(tmp_path, "commit", "-q", "-m", "first")
    return tmp_path


def test_clean_repo(repo: Path) -> None:
    fp = code_fingerprint(["pipeline.py", "src"], root=repo)
    assert fp.commit == git(repo, "rev-parse", "HEAD") and fp.dirty is None
    assert fp.files == ("pipeline.py", "src/model.py")
    assert str(fp) == f"git:{fp.commit[:12]}"
    assert code_fingerprint(["pipeline.py", "src"], root=repo) == fp  # deterministic


def test_uncommitted_change_to_a_code_file(repo: Path) -> None:
    before = code_fingerprint(["pipeline.py", "src"], root=repo)
    (repo / "src" / "model.py").write_text("LAYERS = 3\n")
    after = code_fingerprint(["pipeline.py", "src"], root=repo)
    assert after.commit == before.commit and after.dirty is not None
    assert not after.same_code(before) and "+" in str(after)
    (repo / "src" / "model.py").write_text("LAYERS = 4\n")
    again = code_fingerprint(["pipeline.py", "src"], root=repo)
    assert again.dirty != after.dirty and again.content != after.content
    (repo / "src" / "model.py").write_text("LAYERS = 2\n")  # back to the committed text
    assert code_fingerprint(["pipeline.py", "src"], root=repo) == before


def test_untracked_and_ignored_and_deleted_files(repo: Path) -> None:
    before = code_fingerprint(["src"], root=repo)
    (repo / "src" / "debug.log").write_text("ignored\n")
    assert code_fingerprint(["src"], root=repo) == before
    (repo / "src" / "extra.py").write_text("X = 1\n")
    new = code_fingerprint(["src"], root=repo)
    assert "src/extra.py" in new.files and new.dirty is not None and not new.same_code(before)
    (repo / "src" / "extra.py").unlink()
    (repo / "src" / "model.py").unlink()
    gone = code_fingerprint(["src"], root=repo)
    assert gone.dirty is not None and not gone.same_code(before)


def test_other_files_and_commits_of_the_same_code_do_not_count(repo: Path) -> None:
    before = code_fingerprint(["pipeline.py", "src"], root=repo)
    (repo / "README.md").write_text("changed\n")
    assert code_fingerprint(["pipeline.py", "src"], root=repo) == before
    git(repo, "commit", "-q", "-am", "docs")
    after = code_fingerprint(["pipeline.py", "src"], root=repo)
    assert after.commit != before.commit and after.same_code(before) and after.dirty is None
    assert after.same_code(before.content)  # as stored in a lock file
    assert not after.same_code(None)
    # a committed edit is a new commit and new content, and clean
    (repo / "src" / "model.py").write_text("LAYERS = 5\n")
    git(repo, "commit", "-q", "-am", "deeper")
    edited = code_fingerprint(["pipeline.py", "src"], root=repo)
    assert edited.dirty is None and not edited.same_code(before)


def test_project_in_a_subfolder_of_the_repository(repo: Path) -> None:
    sub = repo / "proj"
    sub.mkdir()
    (sub / "train.py").write_text("A = 1\n")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "sub")
    fp = code_fingerprint(["train.py"], root=sub)
    assert fp.files == ("train.py",) and fp.dirty is None
    (sub / "train.py").write_text("A = 2\n")
    assert code_fingerprint(["train.py"], root=sub).dirty is not None


def test_project_in_a_folder_the_repository_ignores(repo: Path) -> None:
    # e.g. the demo's project beside its lake inside a clone: git lists none of its files,
    # so it is fingerprinted as files, and a change to them is seen
    (repo / ".gitignore").write_text("*.log\n/scratch/\n")
    sub = repo / "scratch"
    sub.mkdir()
    (sub / "pipeline.py").write_text("EPOCHS = 20\n")
    fp = code_fingerprint(["pipeline.py"], root=sub)
    assert fp.commit is None and fp.files == ("pipeline.py",)
    (sub / "pipeline.py").write_text("EPOCHS = 1\n")
    assert not code_fingerprint(["pipeline.py"], root=sub).same_code(fp)


def test_repository_without_commits(tmp_path: Path) -> None:
    git(tmp_path, "init", "-q")
    (tmp_path / "p.py").write_text("x\n")
    fp = code_fingerprint(["p.py"], root=tmp_path)
    assert fp.commit is None and fp.dirty is not None and str(fp).startswith("git:none+")


def test_outside_git(tmp_path: Path) -> None:
    (tmp_path / "src" / "__pycache__").mkdir(parents=True)
    (tmp_path / "src" / "a.py").write_text("A\n")
    (tmp_path / "src" / "__pycache__" / "a.cpython-311.pyc").write_bytes(b"\0")
    (tmp_path / "src" / "b.pyc").write_bytes(b"\0")
    fp = code_fingerprint(["src"], root=tmp_path)
    assert fp.commit is None and fp.dirty is None and fp.files == ("src/a.py",)
    assert str(fp).startswith("files:")
    assert fp.to_dict()["files"] == ["src/a.py"]
    (tmp_path / "src" / "a.py").write_text("B\n")
    assert not code_fingerprint(["src"], root=tmp_path).same_code(fp)
    assert isinstance(fp, CodeFingerprint)


def test_missing_paths_are_errors(tmp_path: Path) -> None:
    with pytest.raises(InvalidProject, match="does not exist"):
        code_fingerprint(["nope.py"], root=tmp_path)
    with pytest.raises(InvalidProject, match="no code paths"):
        code_fingerprint([], root=tmp_path)
