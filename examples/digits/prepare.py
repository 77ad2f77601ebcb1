"""Load scikit-learn's bundled hand-written digits into a lake and snapshot them.

    python examples/digits/prepare.py [LAKE] [--limit N]

Each 8x8 image becomes a PNG under ``<digit>/<index>.png`` in namespace ``digits-png``;
the snapshot ``digits@latest`` takes its labels from the folder names. The data (1,797
images) ships inside scikit-learn (BSD-3-Clause); it is the test part of the UCI "Optical
Recognition of Handwritten Digits" data set (E. Alpaydin, C. Kaynak; CC BY 4.0).
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import numpy as np
from PIL import Image

from lakeloop import Lake
from lakeloop.catalog import Catalog


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("lake", nargs="?", default=str(Path(__file__).with_name("lake")))
    parser.add_argument("--limit", type=int, default=None, help="only the first N images")
    args = parser.parse_args(argv)

    from sklearn.datasets import load_digits

    digits = load_digits()
    # pixel values are 0..16; scale them to 0..255 grey levels
    images = (digits.images * (255 / 16)).round().astype(np.uint8)[: args.limit]
    with Lake.open(args.lake, create=True) as lake:
        ns = lake.create_namespace("digits-png", exist_ok=True)
        items = []
        for i, (pixels, label) in enumerate(zip(images, digits.target, strict=False)):
            buf = io.BytesIO()
            Image.fromarray(pixels).save(buf, format="PNG")
            items.append((f"{label}/{i:05d}.png", buf.getvalue(), {"content_type": "image/png"}))
        ns.put_many(items)
        snap = Catalog(lake).snapshot("digits-png/", dataset="digits", labels="{label}/{name}")
        print(f"{snap.ref}: {snap.count} images, splits {snap.splits}")
        return snap.ref


if __name__ == "__main__":
    main()
