"""The store's public API: the names other parts and users rely on."""

from __future__ import annotations

import hashlib
import io
import os
import threading
from pathlib import Path

import pytest

from lakeloop import Lake
from lakeloop.errors import (
    AlreadyExists,
    InvalidInput,
    InvalidKey,
    InvalidName,
    InvalidSetting,
    NotFound,
    QuotaExceeded,
)


def test_put_get_stat_roundtrip(lake: Lake) -> None:
    ns = lake.create_namespace("photos")
    info = ns.put("cats/1.jpg", b"meow", content_type="image/jpeg", metadata={"who": "tom"})
    assert info.key == "cats/1.jpg"
    assert info.size == 4
    assert info.etag == hashlib.md5(b"meow").hexdigest()
    assert ns.get("cats/1.jpg") == b"meow"
    st = ns.stat("cats/1.jpg")
    assert (st.size, st.content_type, st.metadata, st.version) == (
        4,
        "image/jpeg",
        {"who": "tom"},
        info.version,
    )
    assert st.etag == info.etag == st.checksum


def test_etag_is_md5_of_content(lake: Lake) -> None:

    ns = lake.create_namespace("photos")
    data = os.urandom(1000)
    assert ns.put("k", data).etag == hashlib.md5(data).hexdigest()
    supplied = hashlib.md5(data).hexdigest()
    assert ns.put("k2", data, md5=supplied).etag == supplied


def test_overwrite_gives_new_version(lake: Lake) -> None:
    ns = lake.create_namespace("photos")
    v1 = ns.put("k", b"one").version
    v2 = ns.put("k", b"two").version
    assert v2 > v1
    assert ns.get("k") == b"two"
    with pytest.raises(NotFound):
        ns.get("k", version=v1)  # not pinned: gone


def test_delete_and_missing_ok(lake: Lake) -> None:
    ns = lake.create_namespace("photos")
    ns.put("k", b"x")
    ns.delete("k")
    with pytest.raises(NotFound) as err:
        ns.get("k")
    assert "photos/k" in str(err.value)
    with pytest.raises(NotFound):
        ns.delete("k")
    ns.delete("k", missing_ok=True)
    assert not ns.exists("k")


@pytest.mark.parametrize(
    ("start", "end"),
    [(0, None), (2, 5), (-3, None), (0, 0), (5, 2), (100, 200), (-100, 3), (3, -1)],
)
def test_get_range_is_a_slice(lake: Lake, start: int, end: int | None) -> None:
    ns = lake.create_namespace("photos")
    data = bytes(range(10))
    ns.put("k", data)
    assert ns.get_range("k", start, end) == data[start:end]


def test_blob_roundtrip_and_ranges(small_lake: Lake) -> None:
    ns = small_lake.create_namespace("photos")
    data = os.urandom(100_000)  # above the 16 KiB threshold: a blob, 4 KiB chunks
    info = ns.put("big", data)
    assert info.size == len(data)
    assert ns.get("big") == data
    for start, end in [(0, 10), (4095, 4097), (50_000, None), (-10, None), (99_999, 100_000)]:
        assert ns.get_range("big", start, end) == data[start:end]
    with ns.open("big") as f:
        f.seek(12_345)
        assert f.read(10_000) == data[12_345:22_345]
        f.seek(-5, io.SEEK_END)
        assert f.read() == data[-5:]
    assert len(os.listdir(Path(ns.root) / "blobs")) == 1
    ns.delete("big")
    assert os.listdir(Path(ns.root) / "blobs") == []  # the blob file goes with its object


def test_put_stream_never_needs_size(small_lake: Lake) -> None:
    ns = small_lake.create_namespace("photos")
    data = os.urandom(70_000)
    info = ns.put_stream("s", io.BytesIO(data))
    assert info.size == 70_000 and ns.get("s") == data
    small = ns.put_stream("t", io.BytesIO(b"tiny"))
    assert small.size == 4 and ns.get("t") == b"tiny"
    with pytest.raises(InvalidInput):
        ns.put_stream("u", io.BytesIO(data), size=10)
    assert not ns.exists("u")
    assert len(os.listdir(Path(ns.root) / "blobs")) == 1  # the refused stream left nothing


def test_open_is_seekable(lake: Lake) -> None:
    ns = lake.create_namespace("photos")
    ns.put("k", b"0123456789")
    with ns.open("k") as f:
        assert f.seekable()
        f.seek(4)
        assert f.read(3) == b"456"


def test_list_order_prefix_start_after_limit(lake: Lake) -> None:
    ns = lake.create_namespace("photos")
    keys = ["b/2", "a/1", "b/1", "c", "b/10", "ä", "b/\u00ff"]
    for k in keys:
        ns.put(k, k.encode())
    assert [i.key for i in ns.list()] == sorted(keys, key=lambda k: k.encode())
    assert [i.key for i in ns.list(prefix="b/")] == ["b/1", "b/10", "b/2", "b/\u00ff"]
    assert [i.key for i in ns.list(prefix="b/", start_after="b/10")] == ["b/2", "b/\u00ff"]
    assert [i.key for i in ns.list(limit=2)] == ["a/1", "b/1"]


def test_list_pages_through_many(lake: Lake) -> None:
    ns = lake.create_namespace("photos")
    n = ns.put_many((f"k{i:05d}", b"v") for i in range(2500))
    assert n == 2500
    listed = [i.key for i in ns.list()]
    assert listed == [f"k{i:05d}" for i in range(2500)]


@pytest.mark.parametrize("key", ["", "x" * 1025, 5, b"bytes", "\ud800"])
def test_bad_keys_change_nothing(lake: Lake, key: object) -> None:
    ns = lake.create_namespace("photos")
    before = ns.last_seq
    with pytest.raises(InvalidKey):
        ns.put(key, b"x")  # type: ignore[arg-type]
    assert ns.last_seq == before
    assert list(ns.list()) == []


def test_keys_are_not_paths(lake: Lake) -> None:
    ns = lake.create_namespace("photos")
    ns.put("../../etc/passwd", b"just a key")
    ns.put("/abs", b"also a key")
    assert ns.get("../../etc/passwd") == b"just a key"
    assert not (Path(lake.root).parent / "etc").exists()
    assert sorted(os.listdir(Path(ns.root) / "volumes")) == ["0000000001.vol"]


def test_bad_data_and_metadata(lake: Lake) -> None:
    ns = lake.create_namespace("photos")
    with pytest.raises(InvalidInput):
        ns.put("k", "text, not bytes")  # type: ignore[arg-type]
    with pytest.raises(InvalidInput):
        ns.put("k", b"x", metadata={"a": 1})  # type: ignore[dict-item]
    with pytest.raises(InvalidInput):
        ns.put("k", b"x", metadata={"a": "x" * 10_000})
    assert not ns.exists("k")


def test_namespace_names(lake: Lake) -> None:
    for bad in ["ab", "A-b", "-abc", "abc-", "a..b", "192.168.1.1", "_runs", "a_b", "x" * 64]:
        with pytest.raises(InvalidName):
            lake.create_namespace(bad)
    lake.create_namespace("ok.name-1")
    with pytest.raises(AlreadyExists):
        lake.create_namespace("ok.name-1")
    assert lake.create_namespace("ok.name-1", exist_ok=True).name == "ok.name-1"
    with pytest.raises(NotFound):
        lake.namespace("missing")
    internal = lake.internal_namespace("_runs")
    internal.put("r", b"1")
    assert lake.namespaces() == ["ok.name-1"]
    assert lake.namespaces(include_internal=True) == ["_runs", "ok.name-1"]


def test_put_many_is_all_or_nothing(lake: Lake) -> None:
    ns = lake.create_namespace("photos")
    ns.put("keep", b"1")
    items = [("a", b"1"), ("b", b"2"), ("", b"bad key")]
    with pytest.raises(InvalidKey):
        ns.put_many(items)
    assert [i.key for i in ns.list()] == ["keep"]
    vol = Path(ns.root) / "volumes" / "0000000001.vol"
    size = vol.stat().st_size
    ns.put("after", b"2")
    assert vol.stat().st_size > size and ns.get("after") == b"2"
    assert lake.fsck().ok


def test_quota(tmp_path: Path) -> None:
    settings = {"namespaces": {"small": {"quota_bytes": 100, "quota_objects": 3}}}
    with Lake.open(tmp_path / "l", create=True, settings=settings, background=False) as lake:
        small = lake.create_namespace("small")
        other = lake.create_namespace("other")
        small.put("a", b"x" * 60)
        with pytest.raises(QuotaExceeded):
            small.put("b", b"x" * 50)
        assert not small.exists("b")
        small.put("a", b"x" * 90)  # an overwrite counts its replacement only
        small.put("b", b"x" * 10)
        with pytest.raises(QuotaExceeded):
            small.put_many([("c", b"1"), ("d", b"2")])
        assert sorted(i.key for i in small.list()) == ["a", "b"]
        other.put("big", b"x" * 1000)  # quota is per namespace
        small.delete("a")
        small.put("c", b"x" * 80)


def test_settings_validation(tmp_path: Path) -> None:
    with pytest.raises(InvalidSetting):
        Lake.open(tmp_path / "a", create=True, settings={"volume_size": "lots"})
    with pytest.raises(InvalidSetting):
        Lake.open(tmp_path / "b", create=True, settings={"no_such_setting": 1})
    with pytest.raises(InvalidSetting):
        Lake.open(tmp_path / "c", create=True, settings={"sync": "sometimes"})
    assert not (tmp_path / "a").exists()


def test_open_missing_lake(tmp_path: Path) -> None:
    with pytest.raises(NotFound) as err:
        Lake.open(tmp_path / "nope")
    assert "lakeloop init" in str(err.value)


def test_reopen_keeps_everything(tmp_path: Path) -> None:
    with Lake.open(tmp_path / "l", create=True, background=False) as lake:
        ns = lake.create_namespace("photos")
        ns.put("a", b"1", metadata={"m": "v"})
        ns.put("b", b"2")
        ns.delete("b")
    with Lake.open(tmp_path / "l", background=False) as lake:
        ns = lake.namespace("photos")
        assert ns.get("a") == b"1" and ns.stat("a").metadata == {"m": "v"}
        assert not ns.exists("b")
        assert ns.put("c", b"3").version == 4


def test_change_feed(lake: Lake) -> None:
    ns = lake.create_namespace("photos")
    ns.put("a", b"1")
    ns.put("b", b"2")
    mark = ns.last_seq
    ns.put("a", b"1'")
    ns.delete("b")
    ns.put("c", b"3")
    changes = list(ns.changes(since=mark))
    assert [(c.key, c.op) for c in changes] == [("a", "put"), ("b", "delete"), ("c", "put")]
    assert [c.seq for c in changes] == sorted(c.seq for c in changes)
    assert all(c.seq > mark for c in changes)
    ns.put("b", b"again")  # re-created: the feed shows the put, not the old delete
    assert [(c.key, c.op) for c in ns.changes(since=mark)] == [
        ("a", "put"),
        ("c", "put"),
        ("b", "put"),
    ]
    assert len(list(ns.changes(since=0, limit=2))) == 2


def test_pins_keep_versions_through_overwrite_delete_and_compaction(small_lake: Lake) -> None:
    ns = small_lake.create_namespace("photos")
    v_a = ns.put("a", b"first a").version
    v_b = ns.put("b", b"first b").version
    v_big = ns.put("big", os.urandom(40_000)).version
    big = ns.get("big")
    ns.pin("snapshot-1", [v_a, v_b, v_big])
    ns.put("a", b"second a")
    ns.delete("b")
    ns.delete("big")
    for i in range(200):
        ns.put(f"filler/{i}", os.urandom(500))
    ns.compact()
    assert ns.get("a") == b"second a"
    assert ns.get("a", version=v_a) == b"first a"
    assert ns.get("b", version=v_b) == b"first b"
    assert ns.get("big", version=v_big) == big
    assert ns.stat("a", version=v_a).version == v_a
    assert ns.pins() == {"snapshot-1": 3}
    assert small_lake.fsck().ok
    ns.unpin("snapshot-1")
    with pytest.raises(NotFound):
        ns.get("a", version=v_a)
    assert os.listdir(Path(ns.root) / "blobs") == []
    ns.compact()
    assert small_lake.fsck().ok
    with pytest.raises(NotFound):
        ns.pin("x", [999_999])


def test_scan_is_physical_order_and_shards_by_volume(small_lake: Lake) -> None:
    ns = small_lake.create_namespace("photos")
    expected = {}
    for i in range(300):
        data = os.urandom(200 + i)
        ns.put(f"k{i:04d}", data)
        expected[f"k{i:04d}"] = data
    ns.put("big", os.urandom(20_000))
    expected["big"] = ns.get("big")
    vols = ns.volumes()
    assert len(vols) >= 2
    seen = {info.key: data for info, data in ns.scan()}
    assert seen == expected
    shards = [dict((i.key, d) for i, d in ns.scan(volumes=[v.id])) for v in vols]
    assert sum(len(s) for s in shards) == len(expected)
    assert {k for s in shards for k in s} == set(expected)
    assert {i.key for i, _ in ns.scan(prefix="k02")} == {f"k02{j:02d}" for j in range(100)}


def test_concurrent_threads_share_fsyncs(lake: Lake) -> None:
    ns = lake.create_namespace("photos")
    expected: dict[str, bytes] = {}
    lock = threading.Lock()
    errors: list[BaseException] = []

    def writer(t: int) -> None:
        try:
            for i in range(100):
                data = os.urandom(64)
                ns.put(f"{t}/{i}", data)
                with lock:
                    expected[f"{t}/{i}"] = data
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert {i.key for i in ns.list()} == set(expected)
    assert all(ns.get(k) == v for k, v in expected.items())
    # 800 durable puts needed far fewer than 800 group commits
    assert ns.last_seq == 800
    assert lake.fsck().ok


def test_usage_and_volumes(small_lake: Lake) -> None:
    ns = small_lake.create_namespace("photos")
    for i in range(100):
        ns.put(f"k{i}", os.urandom(1000))
    u = ns.usage()
    assert u["objects"] == 100 and u["bytes"] == 100_000
    assert u["volumes"] == len(ns.volumes()) >= 2
    assert sum(v.live_count for v in ns.volumes()) == 100
    assert all(0 <= v.garbage_ratio <= 1 for v in ns.volumes())


def test_closed_lake_refuses(tmp_path: Path) -> None:
    lake = Lake.open(tmp_path / "l", create=True, background=False)
    ns = lake.create_namespace("photos")
    lake.close()
    with pytest.raises(Exception, match="closed"):
        ns.put("k", b"x")
    with pytest.raises(Exception, match="closed"):
        lake.namespace("photos")


def test_cached_locations_never_serve_stale_bytes(tmp_path: Path) -> None:
    """Two handles on one lake (as two processes would have): the reader's location cache
    must notice every write made through the other handle."""
    with Lake.open(tmp_path / "l", create=True, background=False) as a:
        a.create_namespace("photos").put("k", b"v1")
        with Lake.open(tmp_path / "l", background=False) as b:
            reader, writer = a.namespace("photos"), b.namespace("photos")
            for _ in range(3):
                assert reader.get("k") == b"v1"  # cached now
            writer.put("k", b"v2")
            assert reader.get("k") == b"v2"
            writer.delete("k")
            with pytest.raises(NotFound):
                reader.get("k")
            writer.put("k", b"v3")
            writer.compact()  # moves it to another volume
            assert reader.get("k") == b"v3"


def test_sync_batch_is_flushed_in_the_background(tmp_path: Path) -> None:
    import time

    settings = {"sync": "batch", "sync_interval": 0.05}
    with Lake.open(tmp_path / "l", create=True, settings=settings) as lake:
        ns = lake.create_namespace("photos")
        ns.put("a", b"1")
        ns.put("b", b"2")  # within the interval: written, not yet fsynced
        deadline = time.monotonic() + 10
        while ns._dirty and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not ns._dirty, "the maintenance thread did not fsync the batch"
        assert ns.get("b") == b"2"


def test_locate_gives_exact_versions_in_physical_order(small_lake: Lake) -> None:
    ns = small_lake.create_namespace("loc")
    first = [ns.put(f"k{i:03d}", bytes([i % 251]) * 3000).version for i in range(60)]
    ns.pin("test", first[:10])
    for i in range(10):
        ns.put(f"k{i:03d}", b"newer")  # overwrite: the pinned versions stay readable
    got = ns.locate(reversed(first))
    assert sorted(v for v, _, _ in got) == sorted(first)
    assert got == sorted(got, key=lambda t: (t[1], t[2]))
    assert len({vol for _, vol, _ in got}) > 1  # small volumes: several
    with pytest.raises(NotFound):
        ns.locate([10**9])


def test_a_lookup_made_during_another_writers_commit_is_not_cached(tmp_path: Path) -> None:
    """Thread A looks a key up while another process (here: another handle) is committing a
    new version of it; by the time A caches what it found, the writer has let go and thread
    B has moved the location cache on to the new counter. A's stale location must not land
    in the cache, or every later read returns the old object."""
    with Lake.open(tmp_path / "l", create=True, background=False) as lake:
        lake.create_namespace("hotns").put("hot", b"old")
    with (
        Lake.open(tmp_path / "l", background=False) as reader,
        Lake.open(tmp_path / "l", background=False) as writer,
    ):
        ns = reader.namespace("hotns")
        real_locate = ns._index.locate
        calls = 0

        def locate_then_the_writer_commits(kb: bytes) -> object:
            nonlocal calls
            calls += 1
            found = real_locate(kb)  # the old location
            if calls == 1:
                writer.namespace("hotns").put("hot", b"new")  # commits and lets go
                other = threading.Thread(target=lambda: ns.get("hot"))  # thread B
                other.start()
                other.join()
            return found

        ns._index.locate = locate_then_the_writer_commits  # type: ignore[method-assign]
        assert ns.get("hot") == b"old"  # A: looked up before the commit
        assert calls == 2  # B looked it up again (its counter was newer)
        assert ns.get("hot") == b"new"
        assert ns.get("hot") == b"new"


@pytest.mark.parametrize("then", ["overwrite", "delete"])
@pytest.mark.parametrize("read", ["get", "get_range", "open"])
def test_a_blob_deleted_by_a_concurrent_overwrite_is_looked_up_again(
    tmp_path: Path, then: str, read: str
) -> None:
    """A writer deletes an overwritten object's blob file right after its commit; a reader
    that looked the old record up a moment before finds the file gone. That is the new
    version (or NotFound), not damage."""
    from lakeloop.errors import NotFound as Missing

    settings = {"blob_threshold": "64KiB"}
    old, new = os.urandom(100_000), os.urandom(90_000)
    with Lake.open(tmp_path / "l", create=True, settings=settings, background=False) as lake:
        lake.create_namespace("blobs").put("big", old)
    with (
        Lake.open(tmp_path / "l", background=False) as reader,
        Lake.open(tmp_path / "l", background=False) as writer,
    ):
        ns = reader.namespace("blobs")
        real_fetch = ns._fetch
        calls = 0

        def fetch_then_the_writer_commits(key: str, version: int | None, op: str) -> object:
            nonlocal calls
            calls += 1
            found = real_fetch(key, version, op)  # the old record, its blob still there
            if calls == 1:
                other = writer.namespace("blobs")
                other.put("big", new) if then == "overwrite" else other.delete("big")
            return found

        ns._fetch = fetch_then_the_writer_commits  # type: ignore[method-assign]
        reads = {
            "get": lambda: ns.get("big"),
            "get_range": lambda: ns.get_range("big", 0, 50_000),
            "open": lambda: ns.open("big").read(),
        }
        if then == "delete":
            with pytest.raises(Missing):
                reads[read]()
        else:
            assert reads[read]() == (new[:50_000] if read == "get_range" else new)
        assert calls >= 2
