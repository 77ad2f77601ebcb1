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


@pytest.fixture(scope="session")
def ui_lake(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """The web UI's lake (see _uilake.py), with alice granted ``photos``, bob ``secret`` and
    admin everything, in a credentials file of its own."""
    from _uilake import build_ui_lake
    from lakeloop.gateway import Credentials

    root = tmp_path_factory.mktemp("ui")
    facts: dict[str, object] = dict(build_ui_lake(root / "lake"))
    creds = Credentials(root / "credentials.json")
    for name, ns, role in (
        ("alice", "photos", "read"),
        ("bob", "secret", "read"),
        ("admin", "*", "admin"),
    ):
        facts[name] = creds.create(name)
        creds.grant(name, ns, role)
        if ns != "*":  # runs and models need their own grants, besides their datasets'
            creds.grant(name, "@models", "read")
            creds.grant(name, "@runs", "read")
    facts["lake"] = root / "lake"
    facts["credentials"] = creds.path
    return facts


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real redis-server on a free loopback port (fsync per write); -> its URL."""
    from _streams import start_redis

    url, stop = start_redis(tmp_path_factory.mktemp("redis"))
    yield url
    stop()


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real nats-server with JetStream on a free loopback port; -> its URL."""
    from _streams import start_nats

    url, stop = start_nats(tmp_path_factory.mktemp("nats"))
    yield url
    stop()
