"""Property tests wherever bytes cross a boundary: records, keys, ranges, reopen, compaction."""

from __future__ import annotations

import tempfile

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lakeloop import Lake
from lakeloop.store import _record as rec

keys = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=60
).filter(lambda k: 0 < len(k.encode()) <= 1024)
blobs = st.binary(max_size=3000)
metadata = st.dictionaries(st.text(max_size=10), st.text(max_size=20), max_size=3)
content_types = st.none() | st.sampled_from(["text/plain", "image/png", "application/json"])

_SETTINGS = {"volume_size": "16KiB", "blob_threshold": "2KiB", "blob_chunk_size": "512B"}


@given(
    seq=st.integers(0, 2**63),
    key=st.binary(min_size=0, max_size=300),
    data=st.binary(max_size=2000),
    meta=st.binary(max_size=100),
    flags=st.integers(0, 15),
)
def test_record_roundtrip(seq: int, key: bytes, data: bytes, meta: bytes, flags: int) -> None:
    raw = rec.encode_record(seq=seq, key=key, data=data, meta=meta, flags=flags, ts_ns=7)
    assert len(raw) % 8 == 0
    assert len(raw) == rec.record_length(len(key), len(meta), len(data))
    r = rec.parse_record(raw)
    assert (r.seq, r.key, r.data, r.meta, r.flags, r.ts_ns) == (seq, key, data, meta, flags, 7)


@given(data=st.binary(min_size=1, max_size=500), flip=st.integers(0, 10_000))
def test_any_flipped_bit_is_caught(data: bytes, flip: int) -> None:
    raw = bytearray(rec.encode_record(seq=1, key=b"k", data=data, ts_ns=1))
    body_end = rec.HEADER_SIZE + 1 + len(data)  # padding is not covered, by design
    pos = flip % body_end
    raw[pos] ^= 1 << (flip % 8)
    try:
        r = rec.parse_record(bytes(raw))
    except rec.RecordError:
        return
    raise AssertionError(f"corruption at byte {pos} went unnoticed: {r}")


@given(
    items=st.lists(
        st.tuples(st.binary(min_size=1, max_size=20), st.binary(max_size=300)), max_size=30
    ),
    garbage_at=st.integers(0, 29),
    garbage=st.binary(min_size=1, max_size=64),
)
def test_scan_resyncs_after_damage(
    items: list[tuple[bytes, bytes]], garbage_at: int, garbage: bytes
) -> None:
    parts = [rec.encode_volume_header(1, 0)]
    for i, (k, v) in enumerate(items):
        if i == garbage_at:
            parts.append(garbage + b"\0" * ((-len(garbage)) % 8))
        parts.append(rec.encode_record(seq=i + 1, key=k, data=v, ts_ns=1))
    with tempfile.TemporaryFile() as f:
        f.write(b"".join(parts))
        f.flush()
        got = [r for r in rec.scan_volume(f.fileno()) if isinstance(r, rec.Record)]
    # the damage hides nothing and invents nothing
    assert [(r.key, r.data) for r in got] == items


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    ops=st.lists(
        st.tuples(
            st.sampled_from(["put", "put", "put", "delete"]), keys, blobs, metadata, content_types
        ),
        min_size=1,
        max_size=25,
    ),
    big=st.binary(min_size=2049, max_size=6000),
)
def test_store_roundtrip_across_reopen_and_compaction(
    tmp_path_factory: pytest.TempPathFactory,
    ops: list[tuple[str, str, bytes, dict[str, str], str | None]],
    big: bytes,
) -> None:
    root = tmp_path_factory.mktemp("prop")
    model: dict[str, tuple[bytes, dict[str, str], str | None]] = {}
    with Lake.open(root / "lake", create=True, settings=_SETTINGS, background=False) as lake:
        ns = lake.create_namespace("prop")
        ns.put("the-blob", big)
        model["the-blob"] = (big, {}, None)
        for op, key, data, meta, ctype in ops:
            if op == "put":
                ns.put(key, data, metadata=meta, content_type=ctype)
                model[key] = (data, meta, ctype)
            else:
                ns.delete(key, missing_ok=True)
                model.pop(key, None)

        def check(n: object) -> None:
            listed = [i.key for i in n.list()]  # type: ignore[attr-defined]
            assert listed == sorted(model, key=lambda k: k.encode())
            for key, (data, meta, ctype) in model.items():
                assert n.get(key) == data  # type: ignore[attr-defined]
                info = n.stat(key)  # type: ignore[attr-defined]
                assert (info.size, info.metadata, info.content_type) == (len(data), meta, ctype)
                if data:
                    a, b = len(data) // 3, -(len(data) // 4) or None
                    assert n.get_range(key, a, b) == data[a:b]  # type: ignore[attr-defined]

        check(ns)
        ns.compact()
        check(ns)
    with Lake.open(root / "lake", background=False) as lake:
        ns = lake.namespace("prop")
        check(ns)
        assert lake.fsck().ok
        lake.fsck(rebuild_index=True)
        check(lake.namespace("prop"))


@pytest.fixture(scope="module")
def range_ns(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    root = tmp_path_factory.mktemp("ranges")
    with Lake.open(root / "lake", create=True, settings=_SETTINGS, background=False) as lake:
        yield lake.create_namespace("ranges")


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    size=st.integers(0, 5000),
    start=st.integers(-6000, 6000),
    end=st.none() | st.integers(-6000, 6000),
)
def test_range_reads_equal_slices(range_ns, size: int, start: int, end: int | None) -> None:  # type: ignore[no-untyped-def]
    data = bytes((i * 7) % 251 for i in range(size))
    key = f"r{size}"
    if not range_ns.exists(key):
        range_ns.put(key, data)  # above 2 KiB: a blob, read chunk by chunk
    assert range_ns.get_range(key, start, end) == data[start:end]
