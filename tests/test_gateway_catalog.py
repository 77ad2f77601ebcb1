"""The catalog over HTTP: search, previews, stats and snapshots on the gateway's JSON API,
following writes made through S3, and never showing a namespace the caller cannot read."""

from __future__ import annotations

import io
from typing import Any

import pytest
from PIL import Image

from lakeloop import Lake
from lakeloop.catalog import Catalog
from lakeloop.errors import AccessDenied, InvalidInput, NotFound


def _remote(gateway: Any, key: Any) -> Any:
    return Lake.open(gateway.url, access_key=key.access, secret_key=key.secret)


def _png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 10, 10)).save(buf, "PNG")
    return buf.getvalue()


def test_search_over_http_follows_s3_writes_and_grants(gateway: Any) -> None:
    mine, theirs = gateway.bucket("cat"), gateway.bucket("cat")
    s3 = gateway.boto3()
    for i in range(12):
        s3.put_object(
            Bucket=mine,
            Key=f"zebra-{i:02d}.png",
            Body=_png(),
            ContentType="image/png",
            Metadata={"label": "zebra", "tags": "striped"},
        )
    s3.put_object(Bucket=theirs, Key="zebra-secret.png", Body=_png(), ContentType="image/png")
    reader = gateway.user(f"reader-{mine}", {mine: "read"})
    with _remote(gateway, reader) as remote:
        page = remote.api("GET", "/search", {"q": "zebra", "limit": 5})
        assert page["total"] == 12 and not page["total_capped"]
        assert {i["namespace"] for i in page["items"]} == {mine}
        assert len(page["items"]) == 5 and page["next_cursor"]
        keys = [i["key"] for i in page["items"]]
        while page["next_cursor"]:
            page = remote.api(
                "GET", "/search", {"q": "zebra", "limit": 5, "cursor": page["next_cursor"]}
            )
            keys += [i["key"] for i in page["items"]]
        assert keys == [f"zebra-{i:02d}.png" for i in range(12)]
        # asking for the other namespace by name changes nothing
        other = remote.api("GET", "/search", {"q": "secret", "ns": theirs})
        assert other["total"] == 0 and other["items"] == []
        tagged = remote.api("GET", "/search", {"tag": "striped", "type": "image/*"})
        assert tagged["total"] == 12
        meta = remote.api("GET", "/search", {"meta": "label=zebra", "min_size": 1})
        assert meta["total"] == 12
        # a delete through S3 shows at once
        gateway.boto3().delete_object(Bucket=mine, Key="zebra-00.png")
        assert remote.api("GET", "/search", {"q": "zebra"})["total"] == 11
        # the same answer as the Python API on the lake itself
        local = Catalog(gateway.lake).search("zebra", namespaces=[mine])
        assert local.total == 11
        with pytest.raises(InvalidInput):
            remote.api("GET", "/search", {"sort": "colour"})
        with pytest.raises(InvalidInput):
            remote.api("GET", "/search", {"meta": "nonsense"})
        for name in ("q", "key"):  # a NUL ends SQLite's full-text string: a 400, not a 500
            with pytest.raises(InvalidInput, match="NUL"):
                remote.api("GET", "/search", {name: "zeb\x00ra"})


def test_preview_and_stats_over_http(gateway: Any) -> None:
    b, other = gateway.bucket("prev"), gateway.bucket("prev")
    s3 = gateway.boto3()
    s3.put_object(Bucket=b, Key="img/a.png", Body=_png(), ContentType="image/png")
    s3.put_object(Bucket=b, Key="t.csv", Body=b"a,b\n1,x\n2,y\n", ContentType="text/csv")
    s3.put_object(Bucket=other, Key="t.csv", Body=b"a\n1\n", ContentType="text/csv")
    reader = gateway.user(f"reader-{b}", {b: "read"})
    with _remote(gateway, reader) as remote:
        p = remote.api("GET", f"/namespaces/{b}/preview", {"key": "img/a.png"})
        assert p["kind"] == "image" and (p["data"]["width"], p["data"]["height"]) == (64, 48)
        t = remote.api("GET", f"/namespaces/{b}/preview", {"key": "t.csv"})
        assert [c["name"] for c in t["data"]["columns"]] == ["a", "b"]
        s = remote.api("GET", f"/namespaces/{b}/stats", {"columns": "true"})
        assert s["count"] == 2 and s["table"]["rows"] == 2
        with pytest.raises(AccessDenied):
            remote.api("GET", f"/namespaces/{other}/preview", {"key": "t.csv"})
        with pytest.raises(AccessDenied):
            remote.api("GET", f"/namespaces/{other}/stats")
        with pytest.raises(NotFound):
            remote.api("GET", f"/namespaces/{b}/preview", {"key": "nope"})


def test_snapshots_over_http_need_write_to_make_and_read_to_see(gateway: Any) -> None:
    b = gateway.bucket("snap")
    s3 = gateway.boto3()
    for label in ("cat", "dog"):
        for i in range(3):
            s3.put_object(Bucket=b, Key=f"{label}/{i}.bin", Body=f"{label}{i}".encode())
    dataset = f"ds-{b}"
    reader = gateway.user(f"snapreader-{b}", {b: "read"})
    writer = gateway.user(f"snapwriter-{b}", {b: "write"})
    outsider = gateway.user(f"outsider-{b}", {})
    body = {"dataset": dataset, "prefix": "", "labels": "{label}/{name}"}
    with _remote(gateway, reader) as remote, pytest.raises(AccessDenied):
        remote.api("POST", f"/namespaces/{b}/snapshots", body=body)
    with _remote(gateway, writer) as remote:
        made = remote.api("POST", f"/namespaces/{b}/snapshots", body=body)
        assert made["created_now"] and made["count"] == 6
        assert made["labels"] == {"cat": 3, "dog": 3}
        again = remote.api("POST", f"/namespaces/{b}/snapshots", body=body)
        assert not again["created_now"] and again["id"] == made["id"]
        with pytest.raises(InvalidInput):
            remote.api("POST", f"/namespaces/{b}/snapshots", body={"prefix": "x"})
    s3.delete_object(Bucket=b, Key="cat/0.bin")
    with _remote(gateway, writer) as remote:
        remote.api("POST", f"/namespaces/{b}/snapshots", body={"dataset": dataset})
    with _remote(gateway, reader) as remote:
        names = [d["name"] for d in remote.api("GET", "/datasets")["datasets"]]
        assert dataset in names
        shown = remote.api("GET", f"/datasets/{dataset}/snapshots/1", {"limit": 4})
        assert shown["id"] == made["id"] and len(shown["entries"]) == 4
        assert shown["entries_total"] == 6
        diff = remote.api("GET", f"/datasets/{dataset}/diff", {"old": "1", "new": "latest"})
        assert diff["removed"] == ["cat/0.bin"]
        stats = remote.api("GET", f"/datasets/{dataset}/stats", {"ref": "1"})
        assert stats["labels"] == {"cat": 3, "dog": 3}
        assert len(remote.api("GET", f"/datasets/{dataset}")["snapshots"]) == 2
        with pytest.raises(AccessDenied):
            remote.api("DELETE", f"/datasets/{dataset}/snapshots/1")
    with _remote(gateway, outsider) as remote:
        assert dataset not in [d["name"] for d in remote.api("GET", "/datasets")["datasets"]]
        with pytest.raises(AccessDenied):
            remote.api("GET", f"/datasets/{dataset}")
    # the snapshot still reads its bytes, though cat/0.bin is gone from the bucket
    snap = Catalog(gateway.lake).resolve(f"{dataset}@1")
    assert {e.key: snap.read(e) for e in snap.entries()}["cat/0.bin"] == b"cat0"
    with _remote(gateway, writer) as remote:
        dropped = remote.api("DELETE", f"/datasets/{dataset}/snapshots/1")
        assert dropped["dropped"]["id"] == made["id"]
