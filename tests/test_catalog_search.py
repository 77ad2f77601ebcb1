"""Search: the catalog's answers equal a brute-force scan of the store, for random data."""

from __future__ import annotations

import fnmatch
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lakeloop import Lake
from lakeloop.catalog import Catalog, Query
from lakeloop.errors import InvalidInput, NotFound

ALPHA = "abcAB/._-1"
TYPES = ["image/png", "image/jpeg", "text/csv", "application/json", None]
META_VALUES = ["red", "green", "Blue sky", "redgreen"]

keys = st.text(alphabet=ALPHA, min_size=1, max_size=12)
objects = st.lists(
    st.tuples(
        st.sampled_from(["ns1", "ns2"]),
        keys,
        st.integers(0, 3000),
        st.sampled_from(TYPES),
        st.dictionaries(
            st.sampled_from(["color", "tags", "k"]),
            st.sampled_from([*META_VALUES, "x,y", "y"]),
            max_size=2,
        ),
    ),
    min_size=1,
    max_size=40,
)
words = st.text(alphabet="abcABre/.g", min_size=1, max_size=5)
queries = st.fixed_dictionaries(
    {},
    optional={
        "text": st.lists(words, min_size=1, max_size=2).map(" ".join),
        "key": words,
        "glob": st.sampled_from(["*", "a*", "*.b*", "?b*", "*[ab]/*", "n*", "*1", "A?*"]),
        "prefix": st.text(alphabet=ALPHA, max_size=3),
        "content_type": st.sampled_from(
            ["image/png", "image/*", "text/csv", "application/octet-stream"]
        ),
        "min_size": st.integers(0, 3000),
        "max_size": st.integers(0, 3000),
        "metadata": st.dictionaries(
            st.sampled_from(["color", "k"]), st.sampled_from(["red", "*", "y"]), max_size=1
        ),
        "tags": st.lists(st.sampled_from(["x", "y", "red"]), max_size=1),
    },
)


def _text_of(meta: dict[str, str]) -> str:
    return " ".join(v for v in meta.values() if len(v) <= 512)


def brute(lake: Lake, names: list[str], q: dict[str, Any]) -> list[tuple[str, str]]:
    """What a full scan says matches, in (key, namespace) order."""
    out = []
    for name in names:
        for info in lake.namespace(name).list():
            key, meta = info.key, info.metadata
            ctype = info.content_type or "application/octet-stream"
            text = _text_of(meta)
            if "text" in q and not all(
                w.lower() in key.lower() or w.lower() in text.lower() for w in q["text"].split()
            ):
                continue
            if "key" in q and q["key"].lower() not in key.lower():
                continue
            if "glob" in q and not fnmatch.fnmatchcase(key, q["glob"]):
                continue
            if q.get("prefix") and not key.startswith(q["prefix"]):
                continue
            if "content_type" in q:
                want = q["content_type"]
                if want.endswith("/*"):
                    if not ctype.startswith(want[:-1]):
                        continue
                elif ctype != want:
                    continue
            if "min_size" in q and info.size < q["min_size"]:
                continue
            if "max_size" in q and info.size > q["max_size"]:
                continue
            ok = True
            for m, v in q.get("metadata", {}).items():
                if m not in meta or (v != "*" and meta[m] != v):
                    ok = False
            tags = [t.strip() for t in meta.get("tags", "").split(",") if t.strip()]
            if any(t not in tags for t in q.get("tags", [])):
                ok = False
            if ok:
                out.append((key, name))
    return sorted(out, key=lambda kn: (kn[0].encode(), kn[1]))


def all_pages(cat: Catalog, q: dict[str, Any], **kw: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = cat.search(**q, cursor=cursor, **kw)
        items += page.items
        cursor = page.next_cursor
        if cursor is None:
            return items


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    objs=objects,
    qs=st.lists(queries, min_size=1, max_size=4),
    deletes=st.integers(0, 5),
    selective=st.sampled_from([0, 3, 100_000]),
)
def test_search_matches_brute_force(
    objs: list[Any], qs: list[dict[str, Any]], deletes: int, selective: int
) -> None:
    """Both query plans (id sets for selective filters, row checks for the rest) agree
    with a scan; ``selective`` moves the threshold between them."""
    import lakeloop.catalog._search as search_module

    search_module._SELECTIVE = (selective, selective)
    try:
        with (
            tempfile.TemporaryDirectory() as tmp,
            Lake.open(Path(tmp) / "lake", create=True, background=False) as lake,
        ):
            for name in ("ns1", "ns2"):
                lake.create_namespace(name)
            cat = Catalog(lake)
            half = len(objs) // 2
            for name, key, size, ctype, meta in objs[:half]:
                lake.namespace(name).put(key, b"x" * size, content_type=ctype, metadata=meta)
            cat.refresh()  # index some, then change more: the catalog must follow
            for name, key, size, ctype, meta in objs[half:]:
                lake.namespace(name).put(key, b"y" * size, content_type=ctype, metadata=meta)
            for name, key, *_ in objs[:deletes]:
                lake.namespace(name).delete(key, missing_ok=True)
            for q in qs:
                if q.get("text", "x").strip() == "":
                    q.pop("text")
                expect = brute(lake, ["ns1", "ns2"], q)
                got = all_pages(cat, q, limit=7)
                assert [(i["key"], i["namespace"]) for i in got] == expect, q
                page = cat.search(**q, limit=3)
                assert page.total == len(expect)
                assert not page.total_capped
            cat.close()
    finally:
        search_module._SELECTIVE = (2000, 50_000)


def test_sort_by_size_and_mtime_pages_through_every_match(lake: Lake) -> None:
    a, b = lake.create_namespace("aaa"), lake.create_namespace("bbb")
    for i in range(30):
        (a if i % 2 else b).put(f"k{i:02d}", b"z" * (i % 7), content_type="text/plain")
    cat = Catalog(lake)
    for sort in ("size", "mtime", "key"):
        for desc in (False, True):
            got = all_pages(cat, {}, sort=sort, descending=desc, limit=4)
            assert len(got) == 30
            assert len({(g["namespace"], g["key"]) for g in got}) == 30
            vals = [(g[sort], g["namespace"], g["key"]) for g in got]
            assert vals == sorted(vals, reverse=desc)


def test_count_is_capped_and_says_so(tmp_path: Path) -> None:
    with Lake.open(
        tmp_path / "lake", create=True, settings={"search_count_cap": 10}, background=False
    ) as lake:
        ns = lake.create_namespace("aaa")
        ns.put_many((f"k{i}", b"v") for i in range(25))
        page = Catalog(lake).search(limit=5)
        assert page.total == 10 and page.total_capped
        assert len(page.items) == 5 and page.next_cursor


def test_time_range(lake: Lake) -> None:
    ns = lake.create_namespace("aaa")
    ns.put("old", b"1")
    cut = ns.stat("old").mtime + 1e-6
    ns.put("new", b"2")
    cat = Catalog(lake)
    assert [i["key"] for i in cat.search(after=cut).items] == ["new"]
    assert [i["key"] for i in cat.search(before=cut).items] == ["old"]


def test_search_only_covers_namespaces_it_is_given(lake: Lake) -> None:
    lake.create_namespace("public").put("cat.png", b"1")
    lake.create_namespace("secret").put("cat.png", b"2")
    lake.internal_namespace("_private").put("cat.png", b"3")
    cat = Catalog(lake)
    assert {i["namespace"] for i in cat.search("cat").items} == {"public", "secret"}
    page = cat.search("cat", namespaces=["public"])
    assert [i["namespace"] for i in page.items] == ["public"] and page.total == 1
    assert cat.search("cat", namespaces=[]).items == []
    with pytest.raises(InvalidInput):
        cat.search("cat", namespaces=["_private"])
    # a cursor cannot widen the search to another namespace
    first = cat.search(namespaces=["public"], limit=1)
    assert first.next_cursor is None


def test_catalog_follows_compaction_rebuild_and_recreated_namespace(small_lake: Lake) -> None:
    ns = small_lake.create_namespace("aaa")
    for i in range(200):
        ns.put(f"k{i:03d}", bytes(500))
    cat = Catalog(small_lake)
    assert cat.search(prefix="k").total == 200
    for i in range(0, 200, 2):
        ns.delete(f"k{i:03d}")
    ns.compact()
    assert cat.search(prefix="k").total == 100
    cat.close()
    # a lost catalog file is rebuilt from the store
    (Path(small_lake.root) / "catalog" / "aaa.sqlite").unlink()
    cat = Catalog(small_lake)
    assert cat.search(prefix="k").total == 100
    cat.close()


def test_bad_queries_are_clear_errors(lake: Lake) -> None:
    lake.create_namespace("aaa").put("x", b"1")
    cat = Catalog(lake)
    for kwargs in (
        {"sort": "name"},
        {"limit": 0},
        {"limit": 10**6},
        {"min_size": -1},
        {"after": "yesterday"},
        {"metadata": {"a": 1}},
        {"colour": "red"},
        {"cursor": "not-a-cursor"},
        {"text": "a\x00b"},
        {"key": "abc\x00"},
        {"tags": ["t\x00"]},
    ):
        with pytest.raises(InvalidInput):
            cat.search(**kwargs)
    other = cat.search(sort="size", limit=1)
    with pytest.raises(InvalidInput):
        cat.search(
            sort="key",
            cursor=other.next_cursor or "eyJ4Ijo",
        )
    with pytest.raises(NotFound):
        cat.preview("nope/x")
    Query(text="ok").check()


def test_concurrent_searches_while_writing(tmp_path: Path) -> None:
    import threading

    # counts must finish on a loaded machine: no time budget here
    lake = Lake.open(
        tmp_path / "lake", create=True, settings={"search_count_time": 60}, background=False
    )
    ns = lake.create_namespace("aaa")
    ns.put_many((f"pre/{i:04d}", b"x") for i in range(500))
    cat = Catalog(lake)
    errors: list[BaseException] = []
    stop = threading.Event()

    def searcher() -> None:
        try:
            while not stop.is_set():
                page = cat.search(prefix="pre/", limit=10)
                assert page.total == 500 and len(page.items) == 10
                cat.search(key="new", limit=5)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=searcher) for _ in range(4)]
    for t in threads:
        t.start()
    for i in range(300):
        ns.put(f"new/{i:04d}", b"y")
    stop.set()
    for t in threads:
        t.join()
    assert errors == []
    assert cat.search(key="new").total == 300
    cat.close()
    lake.close()


def test_prefix_bounds_follow_utf8_order(lake: Lake) -> None:
    from lakeloop.catalog._search import prefix_upper

    assert prefix_upper("ab") == "ac" and prefix_upper("") is None
    assert prefix_upper("a\x7f") == "a\x80"  # one UTF-8 byte becomes two: still in order
    assert prefix_upper("\ud7ff") == "\ue000" and prefix_upper("x\U0010ffff") == "y"
    ns = lake.create_namespace("aaa")
    keys = ["a\x7f", "a\x7fz", "a\x80", "é/1", "é/2", "f"]
    for k in keys:
        ns.put(k, b"1")
    cat = Catalog(lake)
    assert [i["key"] for i in cat.search(prefix="a\x7f").items] == ["a\x7f", "a\x7fz"]
    assert [i["key"] for i in cat.search(prefix="é/").items] == ["é/1", "é/2"]
    assert [i["key"] for i in cat.search(glob="é*").items] == ["é/1", "é/2"]
