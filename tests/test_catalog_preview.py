"""Previews for each kind, broken files included, and column statistics."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from lakeloop import Lake
from lakeloop.catalog import Catalog, sniff


def _png(w: int = 300, h: int = 200, mode: str = "RGB") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, (w, h), 128 if mode == "L" else (10, 200, 30)).save(buf, "PNG")
    return buf.getvalue()


def _parquet(rows: int, row_group: int) -> bytes:
    table = pa.table(
        {
            "id": pa.array(range(rows), pa.int64()),
            "name": [f"name-{i % 97}" for i in range(rows)],
            "score": [None if i % 10 == 0 else i / 3 for i in range(rows)],
        }
    )
    buf = io.BytesIO()
    pq.write_table(table, buf, row_group_size=row_group, compression="none")
    return buf.getvalue()


@pytest.fixture
def cat(lake: Lake) -> Catalog:
    return Catalog(lake)


def test_image_preview_has_dimensions_and_a_thumbnail(lake: Lake, cat: Catalog) -> None:
    lake.create_namespace("pics").put("a.png", _png(), content_type="image/png")
    p = cat.preview("pics/a.png")
    assert (p.kind, p.data["width"], p.data["height"], p.data["mode"]) == ("image", 300, 200, "RGB")
    thumb = Image.open(io.BytesIO(base64.b64decode(p.data["thumbnail_png"])))
    assert max(thumb.size) == 128 and thumb.format == "PNG"
    assert p.error is None


def test_truncated_png_gets_a_clear_error_not_a_crash(lake: Lake, cat: Catalog) -> None:
    data = _png()
    lake.create_namespace("pics").put("bad.png", data[: len(data) // 2], content_type="image/png")
    p = cat.preview("pics/bad.png")
    assert p.kind == "image" and p.error and "image" in p.error
    assert p.data["hex_head"].startswith("89 50 4e 47")


def test_sniffing_overrides_a_generic_type(lake: Lake, cat: Catalog) -> None:
    ns = lake.create_namespace("pics")
    ns.put("blob", _png(), content_type="application/octet-stream")
    assert cat.preview("pics/blob").kind == "image"
    assert sniff(b"PAR1....") == "application/vnd.apache.parquet"
    assert sniff(b"hello", "x.csv") == "text/csv"
    assert sniff(b"\x00\x01\x02") is None


def test_csv_and_tsv_schema_rows_and_ragged_lines(lake: Lake, cat: Catalog) -> None:
    ns = lake.create_namespace("tables")
    ns.put("a.csv", b"id,score,name\n1,2.5,x\n2,,y\n3,4,z,extra\n", content_type="text/csv")
    ns.put("b.tsv", b"a\tb\n1\ttrue\n", content_type="text/tab-separated-values")
    p = cat.preview("tables/a.csv")
    assert p.kind == "table" and p.error is None
    assert [(c["name"], c["type"]) for c in p.data["columns"]] == [
        ("id", "int"),
        ("score", "float"),
        ("name", "string"),
    ]
    assert p.data["rows"][0] == ["1", "2.5", "x"]
    assert "row 3 has 4 fields" in p.data["warnings"][0]
    q = cat.preview("tables/b.tsv")
    assert [(c["name"], c["type"]) for c in q.data["columns"]] == [("a", "int"), ("b", "bool")]


def test_row_column_and_byte_limits_say_they_truncated(tmp_path: Path) -> None:
    settings = {"preview_rows": 3, "preview_columns": 2, "preview_max_bytes": 200}
    with Lake.open(tmp_path / "l", create=True, settings=settings, background=False) as lake:
        ns = lake.create_namespace("tables")
        body = "a,b,c\n" + "".join(f"{i},{i},{i}\n" for i in range(100))
        ns.put("big.csv", body.encode(), content_type="text/csv")
        p = Catalog(lake).preview("tables/big.csv")
        assert set(p.truncated) == {"rows", "columns", "max_bytes"}
        assert len(p.data["rows"]) == 3 and len(p.data["columns"]) == 2
        assert p.bytes_read <= 4096 + 201


def test_parquet_preview_reads_footer_and_first_row_group_only(lake: Lake, cat: Catalog) -> None:
    data = _parquet(200_000, 10_000)
    lake.create_namespace("tables").put("t.parquet", data)
    p = cat.preview("tables/t.parquet")
    assert p.kind == "table" and p.error is None, p.error
    assert p.data["num_rows"] == 200_000 and p.data["num_row_groups"] == 20
    assert [c["name"] for c in p.data["columns"]] == ["id", "name", "score"]
    assert p.data["rows"][1] == [1, "name-1", 1 / 3]
    assert "rows" in p.truncated
    # a row group is ~1/20 of the file: the preview must not have read the whole file
    assert p.bytes_read < len(data) / 4, (p.bytes_read, len(data))


def test_invalid_parquet_is_reported(lake: Lake, cat: Catalog) -> None:
    good = _parquet(100, 50)
    ns = lake.create_namespace("tables")
    ns.put("bad.parquet", good[:-20] + b"\x00" * 16 + b"PAR1")
    ns.put("junk.parquet", b"PAR1 not really")
    for key in ("bad.parquet", "junk.parquet"):
        p = cat.preview(f"tables/{key}")
        assert p.kind == "table" and p.error and "Parquet" in p.error


def test_json_jsonl_text_and_binary(lake: Lake, cat: Catalog) -> None:
    ns = lake.create_namespace("misc")
    ns.put("d.json", json.dumps({"a": [1, 2], "b": "x" * 3000}).encode())
    ns.put("broken.json", b'{"a": ', content_type="application/json")
    ns.put("e.jsonl", b'{"a": 1, "b": "x"}\nnot json\n{"a": 2, "c": null}\n')
    ns.put("t.txt", ("héllo " * 500).encode(), content_type="text/plain")
    ns.put("b.bin", bytes(range(256)))
    p = cat.preview("misc/d.json")
    assert p.kind == "json" and p.data["type"] == "object" and "text_bytes" in p.truncated
    b = cat.preview("misc/broken.json")
    assert b.error and "not valid JSON" in b.error
    j = cat.preview("misc/e.jsonl")
    assert j.kind == "table" and [c["name"] for c in j.data["columns"]] == ["a", "b", "c"]
    assert j.data["rows"] == [[1, "x", None], [2, None, None]]
    assert "line 2" in j.data["warnings"][0]
    t = cat.preview("misc/t.txt")
    assert t.kind == "text" and len(t.data["text"].encode()) <= 1024 and "text_bytes" in t.truncated
    x = cat.preview("misc/b.bin")
    assert x.kind == "binary" and x.data["hex_head"].startswith("00 01 02")
    assert x.data["type_guess"] == "application/octet-stream"


def test_preview_of_a_blob_streams(small_lake: Lake) -> None:
    ns = small_lake.create_namespace("big")
    data = _parquet(50_000, 5_000)
    assert len(data) > 16 * 1024  # stored as a blob in this lake
    ns.put("t.parquet", data)
    p = Catalog(small_lake).preview("big/t.parquet")
    assert p.error is None and p.bytes_read < len(data)


def test_column_statistics_merge_across_tables_and_are_cached(lake: Lake, cat: Catalog) -> None:
    ns = lake.create_namespace("tables")
    ns.put("p/a.parquet", _parquet(5000, 1000))
    ns.put("p/b.csv", b"id,name,score\n-5,zzz,1.5\n7,,2\n", content_type="text/csv")
    ns.put("p/c.csv", b"id,name\n1,2,3\n", content_type="text/csv")  # ragged: skipped
    s = cat.stats("tables/p/", columns=True)
    t = s["table"]
    assert t["tables"] == 2 and t["rows"] == 5002
    assert t["columns"]["id"]["min"] == -5 and t["columns"]["id"]["max"] == 4999
    assert t["columns"]["score"]["nulls"] == 500
    assert abs(t["columns"]["id"]["distinct_approx"] - 5002) / 5002 < 0.05
    assert abs(t["columns"]["name"]["distinct_approx"] - 98) <= 3
    assert [sk["key"] for sk in t["skipped"]] == ["p/c.csv"]
    assert t["computed_now"] == 3
    again = cat.stats("tables/p/", columns=True)["table"]
    assert again["computed_now"] == 1  # only the unreadable one is tried again
    assert again["columns"] == t["columns"]
    assert s["count"] == 3 and s["content_types"]["text/csv"] == 2


def test_prefix_statistics_come_from_the_index(lake: Lake, cat: Catalog) -> None:
    ns = lake.create_namespace("pets")
    for i in range(30):
        label = ("cat", "dog", "fox")[i % 3]
        ns.put(f"a/{i}.bin", bytes(i * 10), metadata={"label": label}, content_type="x/y")
    ns.put("b/other.bin", bytes(5000), metadata={"label": "owl"})
    s = cat.stats("pets/a/")
    assert s["count"] == 30 and s["bytes"] == sum(i * 10 for i in range(30))
    assert s["labels"] == {"cat": 10, "dog": 10, "fox": 10}
    assert s["content_types"] == {"x/y": 30}
    assert sum(s["size_log2"].values()) == 30 and s["size_log2"][0] == 1  # size 0
    whole = cat.stats("pets")
    assert whole["count"] == 31 and whole["labels"]["owl"] == 1
    assert "labels" not in cat.stats("pets/b/x")
