"""A small labelled image dataset in a lake, for the training tests (generated, no files)."""

from __future__ import annotations

import io

import numpy as np

from lakeloop import Lake
from lakeloop.catalog import Catalog, Snapshot


def png(pixels: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def digit_image(label: int, i: int, size: int = 8) -> np.ndarray:
    """A size x size grey image whose bright column is the label (learnable) and whose
    corner holds the index (so every image is unique)."""
    rng = np.random.default_rng(i)
    img = rng.integers(0, 40, size=(size, size), dtype=np.uint8)
    img[:, label % size] = 220
    img[0, 0] = i % 256
    img[0, 1] = i // 256
    return img


def make_digits(
    lake: Lake, n: int = 120, classes: int = 3, *, overwrite: int = 10, name: str = "digits"
) -> Snapshot:
    """*n* PNGs under ``<label>/<i>.png`` in namespace ``imgs``, snapshotted as dataset
    *name*; then *overwrite* of them are overwritten, so the snapshot's versions are
    pinned older ones and not the current objects."""
    ns = lake.create_namespace("imgs", exist_ok=True)
    labels = ["cat", "dog", "emu", "fox", "gnu"][:classes]
    items = []
    for i in range(n):
        label = labels[i % classes]
        items.append((f"{label}/{i:05d}.png", png(digit_image(i % classes, i)), {}))
    for start in range(0, n, 8):  # small batches, so that small volumes roll between them
        ns.put_many(items[start : start + 8])
    snap = Catalog(lake).snapshot("imgs/", dataset=name, labels="{label}/{name}")
    for key, _, _ in items[:overwrite]:
        ns.put(key, b"overwritten after the snapshot")
    return snap
