"""One suite, two lakes: a local ``Lake`` and a remote one behind the gateway behave alike."""

from __future__ import annotations

import hashlib
import io
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lakeloop import Lake
from lakeloop.errors import AlreadyExists, InvalidInput, InvalidKey, NotFound


@pytest.fixture(params=["local", "remote"])
def any_lake(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    if request.param == "local":
        with Lake.open(
            tmp_path / "lake", create=True, settings={"blob_threshold": "256KiB"}, background=False
        ) as lake:
            yield lake
    else:
        gw = request.getfixturevalue("gateway")
        with Lake.open(gw.url, access_key=gw.admin.access, secret_key=gw.admin.secret) as lake:
            yield lake


def _name() -> str:
    return f"conf-{uuid.uuid4().hex[:12]}"


def test_namespaces(any_lake: Any) -> None:
    name = _name()
    ns = any_lake.create_namespace(name)
    assert ns.name == name
    assert name in any_lake.namespaces()
    with pytest.raises(AlreadyExists):
        any_lake.create_namespace(name)
    assert any_lake.create_namespace(name, exist_ok=True).name == name
    assert any_lake.namespace(name).name == name
    with pytest.raises(NotFound):
        any_lake.namespace(_name())


def test_put_get_stat_exists(any_lake: Any) -> None:
    ns = any_lake.create_namespace(_name())
    info = ns.put("a/b.txt", b"hello", content_type="text/plain", metadata={"k": "v"})
    assert info.etag == hashlib.md5(b"hello").hexdigest() and info.size == 5
    assert ns.get("a/b.txt") == b"hello"
    st = ns.stat("a/b.txt")
    assert (st.key, st.size, st.etag) == ("a/b.txt", 5, info.etag)
    assert st.content_type == "text/plain" and st.metadata == {"k": "v"}
    assert ns.exists("a/b.txt") and not ns.exists("a/none")
    ns.put("a/b.txt", b"second")
    assert ns.get("a/b.txt") == b"second"
    with pytest.raises(NotFound):
        ns.get("missing")
    with pytest.raises(KeyError):  # NotFound is a KeyError on both sides
        ns.stat("missing")


@pytest.mark.parametrize(
    ("start", "end"), [(0, None), (1, 3), (-3, None), (2, 2), (5, 100), (100, 200), (0, -1)]
)
def test_get_range(any_lake: Any, start: int, end: int | None) -> None:
    ns = any_lake.create_namespace(_name())
    data = b"0123456789"
    ns.put("r", data)
    assert ns.get_range("r", start, end) == data[start:end]


def test_open_streams_and_seeks(any_lake: Any) -> None:
    ns = any_lake.create_namespace(_name())
    data = bytes(range(256)) * 2048  # 512 KiB: a blob on both sides
    ns.put("big", data)
    with ns.open("big") as f:
        assert f.read(10) == data[:10]
        f.seek(300_000)
        assert f.read(1000) == data[300_000:301_000]
        f.seek(0)
        assert f.read() == data


def test_put_stream(any_lake: Any) -> None:
    ns = any_lake.create_namespace(_name())
    data = b"s" * (300 << 10)
    info = ns.put_stream("stream", io.BytesIO(data), size=len(data))
    assert info.size == len(data) and ns.get("stream") == data
    with pytest.raises(InvalidInput):
        ns.put_stream("short", io.BytesIO(b"abc"), size=10)
    assert not ns.exists("short")


def test_delete(any_lake: Any) -> None:
    ns = any_lake.create_namespace(_name())
    ns.put("d", b"x")
    ns.delete("d")
    assert not ns.exists("d")
    with pytest.raises(NotFound):
        ns.delete("d")
    ns.delete("d", missing_ok=True)


def test_list(any_lake: Any) -> None:
    ns = any_lake.create_namespace(_name())
    keys = ["b/2", "a/1", "a/2", "c", "a/3/x", "é"]
    for k in keys:
        ns.put(k, k.encode())
    assert [i.key for i in ns.list()] == sorted(keys, key=str.encode)
    assert [i.key for i in ns.list("a/")] == ["a/1", "a/2", "a/3/x"]
    assert [i.key for i in ns.list(start_after="a/2")] == ["a/3/x", "b/2", "c", "é"]
    assert [i.key for i in ns.list(limit=2)] == ["a/1", "a/2"]
    sizes = {i.key: (i.size, i.etag) for i in ns.list()}
    assert sizes["c"] == (1, hashlib.md5(b"c").hexdigest())


def test_bad_keys(any_lake: Any) -> None:
    ns = any_lake.create_namespace(_name())
    for bad in ("", "k" * 1025):
        with pytest.raises(InvalidKey):
            ns.put(bad, b"x")
    assert list(ns.list()) == []


# ---------------------------------------------------------------------------- remote only
def test_remote_keys_from_environment(gateway: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from lakeloop.errors import AccessDenied

    monkeypatch.setenv("LAKELOOP_ACCESS_KEY", gateway.admin.access)
    monkeypatch.setenv("LAKELOOP_SECRET_KEY", gateway.admin.secret)
    with Lake.open(gateway.url) as lake:
        assert isinstance(lake.namespaces(), list)
    monkeypatch.setenv("LAKELOOP_SECRET_KEY", "wrong")
    with Lake.open(gateway.url) as lake, pytest.raises(AccessDenied):
        lake.namespaces()
    monkeypatch.delenv("LAKELOOP_ACCESS_KEY")
    monkeypatch.delenv("AWS_ACCESS_KEY_ID", raising=False)
    with pytest.raises(AccessDenied):
        Lake.open(gateway.url)


def test_remote_put_stream_goes_multipart(gateway: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from lakeloop.store import _remote

    monkeypatch.setattr(_remote, "_SINGLE_PUT", 1 << 20)
    monkeypatch.setattr(_remote, "_PART", 5 << 20)
    data = bytes(range(256)) * (44 * 1024)  # 11 MiB: parts of 5, 5 and 1 MiB
    with Lake.open(
        gateway.url, access_key=gateway.admin.access, secret_key=gateway.admin.secret
    ) as lake:
        ns = lake.create_namespace(_name())
        info = ns.put_stream("big", io.BytesIO(data), size=len(data), metadata={"a": "b"})
        assert info.etag.endswith("-3") and info.size == len(data)
        assert ns.get("big") == data and ns.stat("big").metadata == {"a": "b"}
        with pytest.raises(InvalidInput):
            ns.put_stream("wrong-size", io.BytesIO(data), size=len(data) + 1)
        assert not ns.exists("wrong-size")
