"""The credentials file as a running gateway sees it: every rewrite is noticed."""

from __future__ import annotations

import os
from pathlib import Path

from lakeloop.gateway import Credentials


def test_two_quick_rewrites_are_both_seen(tmp_path: Path) -> None:
    """A new secret has the same length as the old one, and a rewrite may fall in the same
    mtime tick: the reader still notices it (the stamp carries the inode)."""
    path = tmp_path / "credentials.json"
    writer = Credentials(path)
    access, first = writer.create("alice")
    reader = Credentials(path)  # the running gateway's copy
    found = reader.lookup(access)
    assert found is not None and found[1] == first
    for _ in range(2):
        before = os.stat(path)
        new = writer.new_secret("alice")[access]
        # the same size and (as on a coarse-clock file system) the same mtime
        assert os.stat(path).st_size == before.st_size
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
        reader.refresh(every=0)
        found = reader.lookup(access)
        assert found is not None and found[1] == new, "the rewrite went unnoticed"


def test_save_leaves_only_the_file(tmp_path: Path) -> None:
    """A save writes through a temporary name and leaves nothing else, mode 0600."""
    path = tmp_path / "cfg" / "credentials.json"
    creds = Credentials(path)
    creds.create("bob")
    creds.grant("bob", "photos", "read")
    assert sorted(p.name for p in path.parent.iterdir()) == ["credentials.json"]
    assert path.stat().st_mode & 0o777 == 0o600
    assert Credentials(path).principal("bob").grants == {"photos": "read"}
