"""Load scikit-learn's bundled hand-written digits into a lake and snapshot them.

    python examples/digits/prepare.py [LAKE] [--limit N]

Each 8x8 image becomes a PNG under ``<digit>/<index>.png`` in namespace ``digits-png``;
the snapshot ``digits@latest`` takes its labels from the folder names. The data (1,797
images) ships inside scikit-learn (BSD-3-Clause); it is the test part of the UCI "Optical
Recognition of Handwritten Digits" data set (E. Alpaydin, C. Kaynak; CC BY 4.0).
``make demo`` calls :func:`load` too.
"""

from __future__ import annotations

import argparse
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from lakeloop import Lake
from lakeloop.catalog import Catalog

NAMESPACE = "digits-png"
DATASET = "digits"


def load(
    lake: Lake,
    limit: int | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> Any:
    """Put the digits (the first *limit*) as PNGs into ``digits-png`` and snapshot them
    as dataset ``digits``; *on_progress(done, total)* follows the puts. The snapshot."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    # pixel values are 0..16; scale them to 0..255 grey levels
    images = (digits.images * (255 / 16)).round().astype(np.uint8)[:limit]
    ns = lake.create_namespace(NAMESPACE, exist_ok=True)
    items = []
    for i, (pixels, label) in enumerate(zip(images, digits.target, strict=False)):
        buf = io.BytesIO()
        Image.fromarray(pixels).save(buf, format="PNG")
        items.append((f"{label}/{i:05d}.png", buf.getvalue(), {"content_type": "image/png"}))
    for start in range(0, len(items), 256):
        ns.put_many(items[start : start + 256])
        if on_progress is not None:
            on_progress(min(start + 256, len(items)), len(items))
    return Catalog(lake).snapshot(f"{NAMESPACE}/", dataset=DATASET, labels="{label}/{name}")


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("lake", nargs="?", default=str(Path(__file__).with_name("lake")))
    parser.add_argument("--limit", type=int, default=None, help="only the first N images")
    args = parser.parse_args(argv)
    with Lake.open(args.lake, create=True) as lake:
        snap = load(lake, args.limit)
        print(f"{snap.ref}: {snap.count} images, splits {snap.splits}")
        return str(snap.ref)


if __name__ == "__main__":
    main()
