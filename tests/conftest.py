from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from lakeloop import Lake


@pytest.fixture
def lake(tmp_path: Path) -> Iterator[Lake]:
    with Lake.open(tmp_path / "lake", create=True, background=False) as lk:
        yield lk


@pytest.fixture
def small_lake(tmp_path: Path) -> Iterator[Lake]:
    """Tiny volumes and blob threshold, so rolls, blobs and compaction happen quickly."""
    settings = {"volume_size": "64KiB", "blob_threshold": "16KiB", "blob_chunk_size": "4KiB"}
    with Lake.open(tmp_path / "lake", create=True, settings=settings, background=False) as lk:
        yield lk


@pytest.fixture(scope="session")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """A real gateway (uvicorn on a free loopback port) over a fresh lake; see _gateway.py."""
    from _gateway import start

    gw, stop = start(tmp_path_factory.mktemp("gateway"), {"blob_threshold": "256KiB"})
    yield gw
    stop()
