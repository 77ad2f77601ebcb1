"""Readers: exactly the snapshot's contents, every example once per epoch, shards by volume."""

from __future__ import annotations

import hashlib
import itertools
import random
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from _traindata import digit_image, make_digits
from lakeloop import Lake
from lakeloop.catalog import Catalog
from lakeloop.errors import ChecksumError, InvalidInput
from lakeloop.store import _record as rec
from lakeloop.train.data import (
    SnapshotReader,
    arrays,
    batches,
    decode_csv,
    decode_image,
    decode_json,
    label_ids,
)


@pytest.fixture
def lake(tmp_path: Path) -> Iterator[Lake]:
    settings = {"volume_size": "2KiB"}  # a few images per volume: many volumes
    with Lake.open(tmp_path / "lake", create=True, settings=settings, background=False) as lk:
        yield lk


def _expected(lake: Lake, split: str) -> Counter[tuple[bytes, int]]:
    snap = Catalog(lake).resolve("digits@latest")
    ids = label_ids(snap)
    return Counter((snap.read(e), ids[e.label or ""]) for e in snap.entries(split))


def _seen(lake: Lake, split: str, **kw: object) -> list[tuple[bytes, int]]:
    out = []
    for x, y in batches(lake, "digits@latest", split, **kw):  # type: ignore[arg-type]
        out.extend(zip(x.tolist(), y.tolist(), strict=True))
    return out


def test_reader_returns_exactly_the_snapshot(lake: Lake) -> None:
    snap = make_digits(lake)
    assert label_ids(snap) == {"cat": 0, "dog": 1, "emu": 2}
    for split in ("train", "eval"):
        seen = _seen(lake, split, batch_size=7)
        assert Counter(seen) == _expected(lake, split)  # pinned old versions, right labels
        assert len(seen) == len(snap.entries(split))
        assert b"overwritten after the snapshot" not in {x for x, _ in seen}


def test_physical_order_without_shuffle(lake: Lake) -> None:
    make_digits(lake)
    reader = SnapshotReader(lake, "digits@latest", "train")
    order = [e.version for e, _ in reader.examples()]
    where = {v: (vol, off) for v, vol, off in lake.namespace("imgs").locate(order)}
    vols = [where[v][0] for v in order]
    assert vols == sorted(vols) and len(reader.volumes) > 3  # volume after volume
    for vol in set(vols):
        offsets = [where[v][1] for v in order if where[v][0] == vol]
        # file order; versions overwritten since the snapshot come after, in file order too
        descents = sum(1 for a, b in itertools.pairwise(offsets) if b < a)
        assert descents <= 1


def test_shuffle_covers_every_example_once_per_epoch(lake: Lake) -> None:
    make_digits(lake)
    expected = _expected(lake, "train")
    plain = _seen(lake, "train", batch_size=16)
    one = _seen(lake, "train", batch_size=16, shuffle_buffer=20, seed=3, epoch=0)
    two = _seen(lake, "train", batch_size=16, shuffle_buffer=20, seed=3, epoch=1)
    again = _seen(lake, "train", batch_size=16, shuffle_buffer=20, seed=3, epoch=0)
    assert Counter(one) == Counter(two) == expected
    assert one != plain and one != two and one == again  # seeded: reproducible


@pytest.mark.parametrize("n", [1, 2, 3, 5])
def test_shards_are_disjoint_complete_and_whole_volumes(lake: Lake, n: int) -> None:
    make_digits(lake)
    shards = [_seen(lake, "train", batch_size=8, shard=(i, n)) for i in range(n)]
    merged: Counter[tuple[bytes, int]] = Counter()
    for s in shards:
        merged.update(s)
    assert merged == _expected(lake, "train")
    assert sum(len(s) for s in shards) == sum(merged.values())  # no example twice
    vols = [set(SnapshotReader(lake, "digits@latest", shard=(i, n)).volumes) for i in range(n)]
    for i in range(n):
        for j in range(i + 1, n):
            assert not vols[i] & vols[j]


def test_decoded_batches_and_arrays(lake: Lake) -> None:
    make_digits(lake, n=30)
    x, y = next(iter(batches(lake, "digits@1", "train", decode=decode_image, batch_size=64)))
    assert x.dtype == np.uint8 and x.shape[1:] == (8, 8) and y.dtype == np.int64
    for img, label in zip(x, y, strict=True):
        assert (img[1:, label] == 220).all()
    ax, ay = arrays(lake, "digits@1", "train", decode=decode_image)
    assert sorted(map(bytes, ax)) == sorted(map(bytes, x)) and Counter(ay) == Counter(y)
    idx = int(ax[0][0, 0]) + 256 * int(ax[0][0, 1])
    assert (ax[0] == digit_image(int(ay[0]), idx)).all()
    last = list(batches(lake, "digits@1", "train", batch_size=7, drop_remainder=True))
    assert all(len(b[0]) == 7 for b in last)


def test_row_decoders_and_bad_arguments(lake: Lake) -> None:
    assert decode_json(["b", "a"])(b'{"a": 1, "b": 2}').tolist() == [2.0, 1.0]
    assert decode_csv()(b"1,2,3\n").tolist() == [1.0, 2.0, 3.0]
    make_digits(lake, n=12)
    with pytest.raises(InvalidInput, match="shard"):
        SnapshotReader(lake, "digits@1", shard=(2, 2))
    with pytest.raises(InvalidInput, match="batch_size"):
        next(iter(batches(lake, "digits@1", batch_size=0)))


@pytest.mark.parametrize(("shard", "workers"), [((0, 1), 2), ((1, 2), 3), ((0, 3), 1)])
def test_subshards_split_a_shard_by_volume(
    lake: Lake, shard: tuple[int, int], workers: int
) -> None:
    # the split the PyTorch reader makes among DataLoader workers
    make_digits(lake)
    whole = SnapshotReader(lake, "digits@latest", "train", shard=shard)
    parts = [whole.subshard(w, workers) for w in range(workers)]
    assert sorted(v for p in parts for v in p.volumes) == whole.volumes
    assert sum(len(p) for p in parts) == len(whole)
    seen: Counter[int] = Counter()
    for p in parts:
        i, n = p.shard
        assert p.volumes == SnapshotReader(lake, "digits@latest", "train", shard=(i, n)).volumes
        seen.update(e.version for e, _ in p.examples())
    assert seen == Counter(e.version for e, _ in whole.examples())
    with pytest.raises(InvalidInput, match="subshard"):
        whole.subshard(workers, workers)


def test_torch_dataset_without_torch_says_how_to_get_it(lake: Lake) -> None:
    try:
        import torch  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("PyTorch is installed")
    from lakeloop.train.data import torch_dataset

    make_digits(lake, n=12)
    with pytest.raises(InvalidInput, match="needs PyTorch") as err:
        torch_dataset(lake, "digits@1")
    assert err.value.hint == "pip install torch"


# ---------------------------------------------------------------- the bulk path
def _reference(
    lake: Lake,
    split: str | None,
    shard: tuple[int, int] = (0, 1),
    buffer: int = 0,
    seed: int = 0,
    epoch: int = 0,
) -> list[tuple[str, bytes]]:
    """The reader's contract spelt out slowly: each example read alone by version (CRC and
    MD5 checked by the snapshot), volume after volume in file order, the shard's volumes
    taken every n-th, then the seeded volume order and shuffle buffer."""
    snap = Catalog(lake).resolve("digits@latest")
    by_version = {e.version: e for e in snap.entries(split)}
    located = lake.namespace(snap.namespace).locate(by_version)
    vols = sorted({vol for _, vol, _ in located})[shard[0] :: shard[1]]
    if buffer:
        random.Random(f"{seed}:{epoch}:volumes").shuffle(vols)
    stream = [
        (by_version[v].key, snap.read(by_version[v]))
        for vol in vols
        for v, where, _ in located
        if where == vol
    ]
    if buffer <= 1:
        return stream
    rng = random.Random(f"{seed}:{epoch}:buffer")
    out, buf = [], []
    for item in stream:
        if len(buf) < buffer:
            buf.append(item)
            continue
        j = rng.randrange(buffer)
        out.append(buf[j])
        buf[j] = item
    rng.shuffle(buf)
    return out + buf


def _read(lake: Lake, split: str | None, **kw: object) -> list[tuple[str, bytes]]:
    reader = SnapshotReader(lake, "digits@latest", split, **kw)  # type: ignore[arg-type]
    return [(e.key, data) for e, data in reader.examples(int(kw.get("seed", 0)))]


@pytest.mark.parametrize(
    ("shard", "buffer", "seed"), [((0, 1), 0, 0), ((0, 1), 16, 3), ((1, 3), 5, 1), ((0, 2), 1, 0)]
)
def test_bulk_reads_yield_exactly_what_reading_one_by_one_does(
    lake: Lake, shard: tuple[int, int], buffer: int, seed: int
) -> None:
    make_digits(lake, overwrite=0)
    for split in ("train", None):
        got = _read(lake, split, shard=shard, shuffle_buffer=buffer, seed=seed)
        assert got == _reference(lake, split, shard, buffer, seed, epoch=seed)  # same order
    # batches carry the same stream, with the labels of its keys
    ids = label_ids(Catalog(lake).resolve("digits@latest"))
    seen = _seen(lake, "train", batch_size=9, shard=shard, shuffle_buffer=buffer, seed=seed)
    ref = _reference(lake, "train", shard, buffer, seed)
    assert seen == [(data, ids[key.split("/")[0]]) for key, data in ref]


def test_pinned_versions_come_in_file_order_with_the_rest(lake: Lake) -> None:
    make_digits(lake, overwrite=25)  # a quarter of the snapshot is no longer current
    assert _read(lake, "train") == _reference(lake, "train")


def _record_of(lake: Lake, key: str) -> tuple[str, int, rec.Record]:
    ns = lake.namespace("imgs")
    entry = next(e for e in Catalog(lake).resolve("digits@latest").entries() if e.key == key)
    [(_, vol, off, length)] = ns.extents([entry.version])
    path = next(v.path for v in ns.volumes() if v.id == vol)
    with open(path, "rb") as f:
        f.seek(off)
        return path, off, rec.parse_record(f.read(length), off)


def test_a_damaged_record_is_an_error(lake: Lake) -> None:
    make_digits(lake, overwrite=0)
    key = "dog/00043.png"
    path, off, r = _record_of(lake, key)
    with open(path, "r+b") as f:  # one flipped bit in the image bytes
        f.seek(off + r.length - 1 - ((-(64 + len(r.key) + len(r.meta) + len(r.data))) & 7))
        byte = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([byte[0] ^ 0x10]))
    with pytest.raises(ChecksumError) as err:
        _seen(lake, None, batch_size=8)
    assert key in str(err.value)


def test_a_whole_record_with_other_bytes_is_an_error(lake: Lake) -> None:
    # a well-formed record (right version, right key, valid CRC) holding bytes that are
    # not the ones the snapshot recorded: only the MD5 comparison can catch it
    make_digits(lake, overwrite=0)
    key = "emu/00050.png"
    path, off, r = _record_of(lake, key)
    other = bytes(reversed(r.data))
    forged = rec.encode_record(
        seq=r.seq, key=r.key, data=other, meta=r.meta, flags=r.flags, ts_ns=r.ts_ns,
        md5=hashlib.md5(other).digest(),
    )  # fmt: skip
    assert len(forged) == r.length and other != r.data
    with open(path, "r+b") as f:
        f.seek(off)
        f.write(forged)
    with pytest.raises(ChecksumError, match="differs from the snapshot") as err:
        _seen(lake, None, batch_size=8, shuffle_buffer=10)
    assert key in str(err.value)


def test_records_moved_or_compressed_by_compaction_are_still_read(tmp_path: Path) -> None:
    settings = {"volume_size": "2KiB", "compression": "zstd", "compression_min_saving": 0.01}
    with Lake.open(tmp_path / "lake", create=True, settings=settings, background=False) as lake:
        ns = lake.create_namespace("imgs")
        rows = [(f"cat/{i:03d}.json", b'{"x": %d, "pad": "%s"}' % (i, b"ab" * 60), {})
                for i in range(40)]  # fmt: skip
        for start in range(0, 40, 8):
            ns.put_many(rows[start : start + 8])
        Catalog(lake).snapshot("imgs/", dataset="digits", labels="{label}/{name}")
        before = SnapshotReader(lake, "digits@latest", None)  # planned, then compacted
        expected = [(k, d) for k, d, _ in rows]
        for key, _, _ in rows[:5]:
            ns.put(key, b"overwritten")
        report = ns.compact()
        assert report.volumes_in and report.compression_ratio > 1.1
        assert sorted((e.key, d) for e, d in before.examples()) == expected  # by version
        after = SnapshotReader(lake, "digits@latest", None)  # a fresh plan: new volumes
        live = {v.id for v in ns.volumes()}
        assert set(after.volumes) <= live and not set(after.volumes) & set(report.volumes_in)
        assert sorted((e.key, d) for e, d in after.examples()) == expected
        assert [(e.key, d) for e, d in after.examples()] == _reference(lake, None)


def test_where_and_shards_from_one_plan(lake: Lake) -> None:
    make_digits(lake, overwrite=0)
    dogs = [(k, d) for k, d in _reference(lake, "train") if k.startswith("dog/")]
    for n in (1, 2):
        got = []
        for i in range(n):
            r = SnapshotReader(lake, "digits@latest", "train", shard=(i, n),
                               where=lambda e: e.label == "dog")  # fmt: skip
            got += [(e.key, d) for e, d in r.examples()]
        assert sorted(got) == sorted(dogs)
    whole = SnapshotReader(lake, "digits@latest", "train")  # the cached plan is untouched
    assert [(e.key, d) for e, d in whole.examples()] == _reference(lake, "train")
