"""The catalog: search, previews, statistics, and immutable dataset snapshots.

Public surface::

    cat = Catalog(lake)
    cat.search("cat", content_type="image/*", min_size=1024, limit=20) -> SearchResult
    cat.preview("photos/cats/1.png") -> Preview
    cat.stats("photos/cats/") / cat.stats("cats@latest", columns=True) -> dict
    cat.snapshot("photos/cats/", dataset="cats", labels="{label}/{name}") -> Snapshot
    cat.dataset("cats").snapshots() / .latest / .diff("1", "latest") / .drop("1")
    cat.resolve("cats@latest") -> Snapshot; snap.entries(split="train"); snap.read(entry)

See docs/catalog.md.
"""

from lakeloop.catalog._catalog import Catalog, Dataset, SearchResult
from lakeloop.catalog._preview import Limits, Preview, Previewer, sniff
from lakeloop.catalog._search import Query
from lakeloop.catalog._snapshot import Diff, Entry, Snapshot, parse_ref, split_of

__all__ = [
    "Catalog",
    "Dataset",
    "Diff",
    "Entry",
    "Limits",
    "Preview",
    "Previewer",
    "Query",
    "SearchResult",
    "Snapshot",
    "parse_ref",
    "sniff",
    "split_of",
]
