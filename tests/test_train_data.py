"""Readers: exactly the snapshot's contents, every example once per epoch, shards by volume."""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from _traindata import digit_image, make_digits
from lakeloop import Lake
from lakeloop.catalog import Catalog
from lakeloop.errors import InvalidInput
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
