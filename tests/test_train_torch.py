"""The PyTorch reader: the same contents, shuffling and sharding as the other readers, and
DataLoader workers split the shard by volume. Skipped where PyTorch is not installed
(lakeloop does not install it)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from _traindata import make_digits
from lakeloop import Lake
from lakeloop.catalog import Catalog
from lakeloop.train.data import decode_image, label_ids, torch_dataset

torch = pytest.importorskip("torch")


@pytest.fixture
def lake(tmp_path: Path) -> Iterator[Lake]:
    settings = {"volume_size": "2KiB"}  # a few images per volume: many volumes
    with Lake.open(tmp_path / "lake", create=True, settings=settings, background=False) as lk:
        yield lk


def _expected(lake: Lake, split: str = "train") -> Counter[tuple[bytes, int]]:
    snap = Catalog(lake).resolve("digits@latest")
    ids = label_ids(snap)
    return Counter((snap.read(e), ids[e.label or ""]) for e in snap.entries(split))


def _pairs(batches: object) -> Counter[tuple[bytes, int]]:
    out: Counter[tuple[bytes, int]] = Counter()
    for x, y in batches:  # type: ignore[attr-defined]
        out.update(zip(x, y.tolist(), strict=True))
    return out


def test_bytes_and_shards_equal_the_snapshot(lake: Lake) -> None:
    make_digits(lake)
    merged: Counter[tuple[bytes, int]] = Counter()
    for i in range(3):
        merged.update(_pairs(torch_dataset(lake, "digits@latest", batch_size=8, shard=(i, 3))))
    assert merged == _expected(lake)


def test_decoded_tensors_and_epochs(lake: Lake) -> None:
    make_digits(lake)
    ds = torch_dataset(
        lake, "digits@latest", decode=decode_image, batch_size=16, shuffle_buffer=10, seed=1
    )
    epochs = []
    for _ in range(2):  # iterating again is the next epoch, shuffled anew
        ys = []
        for x, y in ds:
            assert x.dtype == torch.uint8 and tuple(x.shape[1:]) == (8, 8)
            assert y.dtype == torch.int64
            ys += y.tolist()
        epochs.append(ys)
        assert Counter(ys) == Counter(y for _, y in _expected(lake).elements())
    assert epochs[0] != epochs[1]


@pytest.mark.parametrize("workers", [2, 3])
def test_dataloader_workers_read_disjoint_whole_volumes(lake: Lake, workers: int) -> None:
    make_digits(lake)
    ds = torch_dataset(lake, "digits@latest", batch_size=8, shuffle_buffer=5)
    loader = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=workers)
    assert _pairs(loader) == _expected(lake)  # every example exactly once across workers
