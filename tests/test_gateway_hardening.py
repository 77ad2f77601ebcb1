"""What the gateway refuses before it reads, and what it answers to callers without a grant.

Against a real server (uvicorn on a loopback port): a refused upload is answered while
its body has not been sent at all (a server that waited for the body would never
answer), a batch read over its limit is refused before the item that passes it is read
(the test damages that item's bytes: reading them would fail otherwise), and a dataset
the caller may not read answers exactly like one that does not exist.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import pytest

from lakeloop import _sigv4 as sigv4
from lakeloop.errors import ChecksumError, InvalidInput, StoreError
from lakeloop.store import Lake

TIGHT = {
    "blob_threshold": "16KiB",
    "gateway_read_batch_max_bytes": "64KiB",
    "max_key_bytes": 64,
}


@pytest.fixture(scope="module")
def tight(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A gateway with small limits (keys, batch reads, blobs), so tests stay small."""
    from _gateway import start

    gw, stop = start(tmp_path_factory.mktemp("tight"), TIGHT)
    yield gw
    stop()


def request(
    gateway: Any,
    method: str,
    path: str,
    body: bytes = b"",
    *,
    key: Any = None,
    query: list[tuple[str, str]] | None = None,
    headers: dict[str, str] | None = None,
    declared: int | None = None,
) -> tuple[int, dict[str, str], bytes]:
    """One signed request -> (status, headers, body). With *declared*, only the headers
    are sent, announcing a body of that many bytes that never comes: an answer proves
    the server decided without reading it (the 30 s timeout is only a safety net)."""
    key = key or gateway.admin
    parts = urlsplit(gateway.url)
    length = len(body) if declared is None else declared
    hs = {"host": parts.netloc, "content-length": str(length), **(headers or {})}
    hs = sigv4.sign_headers(
        method,
        path,
        query or [],
        hs,
        access_key=key.access,
        secret_key=key.secret,
        amz_date=time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()),
        payload_hash=sigv4.UNSIGNED if declared is not None else hashlib.sha256(body).hexdigest(),
    )
    target = quote(path, safe="/~") + ("?" + sigv4.canonical_query(query) if query else "")
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        if declared is None:
            conn.request(method, target, body=body, headers=hs)
        else:
            conn.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
            for k, v in hs.items():
                conn.putheader(k, v)
            conn.endheaders()
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def _error_code(body: bytes) -> str:
    if body.startswith(b"{"):
        return str(json.loads(body)["error"]["code"])
    return body.split(b"<Code>")[1].split(b"</Code>")[0].decode()


# ------------------------------------------------------------------ uploads: target first
def test_a_bad_key_is_refused_before_the_body_is_read(tight: Any) -> None:
    b = tight.bucket()
    long_key = "k" * 100  # over this lake's max_key_bytes (64), under S3's 1024
    status, _, body = request(tight, "PUT", f"/{b}/{long_key}", declared=512 << 10)
    assert (status, _error_code(body)) == (400, "KeyTooLongError")
    # metadata over max_metadata_bytes: refused as early
    big_meta = {"x-amz-meta-note": "n" * 9000}
    status, _, body = request(tight, "PUT", f"/{b}/k", headers=big_meta, declared=512 << 10)
    assert (status, _error_code(body)) == (400, "MetadataTooLarge")
    # a multipart upload to such a key is refused when it starts, not after its parts
    status, _, body = request(tight, "POST", f"/{b}/{long_key}", query=[("uploads", "")])
    assert (status, _error_code(body)) == (400, "KeyTooLongError")
    assert list(tight.lake.namespace(b).list()) == []
    # the same key within the limit is stored as usual
    status, _, _ = request(tight, "PUT", f"/{b}/{'k' * 64}", b"v" * 1000)
    assert status == 200 and tight.lake.namespace(b).get("k" * 64) == b"v" * 1000


def test_check_write_refuses_what_put_refuses_and_writes_nothing(tight: Any) -> None:
    """The gateway's early check is the store's own: the same refusals, nothing stored."""
    ns = tight.lake.namespace(tight.bucket())
    cases: list[tuple[str, str | None, dict[str, str] | None]] = [
        ("k" * 65, None, None),  # over this lake's max_key_bytes (64)
        ("", None, None),
        ("bad-\udc80", None, None),  # not UTF-8
        ("k", None, {"note": "n" * 9000}),  # over max_metadata_bytes
        ("k", 7, None),  # type: ignore[list-item]  # content type not a str
    ]
    last = ns.last_seq
    for key, ct, meta in cases:
        with pytest.raises(InvalidInput) as early:
            ns.check_write(key, ct, meta)
        with pytest.raises(InvalidInput) as late:
            ns.put(key, b"v", content_type=ct, metadata=meta)
        assert (type(early.value), early.value.message) == (type(late.value), late.value.message)
    ns.check_write("k" * 64, "text/plain", {"note": "n" * 100})  # fits: no error
    assert ns.last_seq == last and list(ns.list()) == []


def test_registry_and_run_uploads_check_their_target_before_the_body(gateway: Any) -> None:
    ci = gateway.user(f"ci-{os.urandom(4).hex()}", {"@models": "write", "@runs": "write"})
    reader = gateway.user(f"ro-{os.urandom(4).hex()}", {"@models": "read", "@runs": "read"})
    ten_mib = 10 << 20
    for path, query in [
        ("/api/v1/models/-bad/versions", None),  # not a model name
        ("/api/v1/runs/ok-run/files", [("path", "../../etc/x")]),  # not a run file
        ("/api/v1/runs/ok-run/files", [("path", "notes.txt")]),
        ("/api/v1/runs/.hidden/files", [("path", "model.bin")]),  # not a run id
    ]:
        status, _, body = request(gateway, "POST" if "models" in path else "PUT", path,
                                  key=ci, query=query, declared=ten_mib)  # fmt: skip
        assert (status, _error_code(body)) == (400, "InvalidInput"), (path, query)
    # no grant: refused as early
    for method, path, query in [
        ("POST", "/api/v1/models/m1/versions", None),
        ("PUT", "/api/v1/runs/r1/files", [("path", "model.bin")]),
    ]:
        status, _, body = request(gateway, method, path, key=reader, query=query, declared=ten_mib)
        assert (status, _error_code(body)) == (403, "AccessDenied"), path


# ------------------------------------------------------------------ reads: size first
def _batch(gateway: Any, bucket: str, items: list[list[Any]]) -> tuple[int, bytes]:
    body = json.dumps({"items": items}).encode()
    status, _, data = request(gateway, "POST", f"/api/v1/namespaces/{bucket}/read", body)
    return status, data


def _unpack(data: bytes) -> list[bytes]:
    (n,) = struct.unpack_from(">I", data)
    sizes = struct.unpack_from(f">{n}Q", data, 4)
    out, at = [], 4 + 8 * n
    for size in sizes:
        out.append(data[at : at + size])
        at += size
    return out


def test_a_batch_read_over_its_limit_is_refused_before_the_item_is_read(tight: Any) -> None:
    b = tight.bucket()
    ns = tight.lake.namespace(b)
    small = [ns.put(f"s{i}", os.urandom(10_000)) for i in range(3)]
    big = ns.put("big", os.urandom(80_000))  # a blob, over the 64 KiB a batch may return
    status, data = _batch(tight, b, [[i.key, i.version] for i in small])
    assert status == 200 and _unpack(data) == [ns.get(i.key) for i in small]
    # damage the blob's last bytes: a server that read it before checking would fail on it
    (blob,) = [Path(d) / n for d, _, names in os.walk(Path(ns.root) / "blobs") for n in names]
    with open(blob, "r+b") as f:
        f.seek(-1000, os.SEEK_END)
        f.write(bytes(1000))
    with pytest.raises(ChecksumError):
        ns.get("big")
    status, data = _batch(tight, b, [[small[0].key, small[0].version], ["big", big.version]])
    assert (status, _error_code(data)) == (413, "TooLarge"), data
    assert b"65,536" in data  # the message gives the limit
    # several items that fit one by one but not together are refused the same way
    many = [ns.put(f"m{i}", os.urandom(30_000)) for i in range(3)]
    status, data = _batch(tight, b, [[i.key, i.version] for i in many])
    assert (status, _error_code(data)) == (413, "TooLarge")
    status, data = _batch(tight, b, [[i.key, i.version] for i in many[:2]])
    assert status == 200 and _unpack(data) == [ns.get(i.key) for i in many[:2]]


def test_a_batch_read_answer_is_exact_across_its_pieces(gateway: Any) -> None:
    """The answer goes out in 1 MiB pieces from the items as read: empty items, blobs
    and objects from volumes come back whole, in the order asked, with exact lengths."""
    b = gateway.bucket()
    ns = gateway.lake.namespace(b)
    objs = [ns.put("empty", b"")]
    objs += [ns.put(f"v{i}", os.urandom(200_000 + i)) for i in range(5)]  # in a volume
    objs.insert(3, ns.put("blob", os.urandom(300_001)))  # over this lake's 256 KiB
    items = [[o.key, o.version] for o in reversed(objs)]
    status, data = _batch(gateway, b, items)
    assert status == 200 and len(data) > 1 << 20
    assert _unpack(data) == [ns.get(k, version=v) for k, v in items]
    assert len(data) == 4 + 8 * len(items) + sum(o.size for o in objs)


def test_numbers_beyond_64_bits_are_refused_not_a_500(tight: Any) -> None:
    """The index and the catalog are SQLite: a version or size past 64 bits is a 400."""
    b = tight.bucket()
    huge = 10**30
    for path, doc in [
        (f"/api/v1/namespaces/{b}/read", {"items": [["k", huge]]}),
        (f"/api/v1/namespaces/{b}/locate", {"versions": [huge]}),
    ]:
        status, _, body = request(tight, "POST", path, json.dumps(doc).encode())
        assert (status, _error_code(body)) == (400, "InvalidInput"), path
    status, _, body = request(tight, "GET", "/api/v1/search", query=[("min_size", str(huge))])
    assert (status, _error_code(body)) == (400, "InvalidInput")
    status, _, _ = request(tight, "GET", "/api/v1/search", query=[("min_size", str(1 << 62))])
    assert status == 200


def test_an_internal_object_is_streamed_whole(gateway: Any) -> None:
    """A run's artifact comes back in pieces (never held whole), with its exact length."""
    ci = gateway.user(f"runs-{os.urandom(4).hex()}", {"@runs": "write"})
    run = f"run-{os.urandom(4).hex()}"
    artifact = os.urandom(3 << 20)
    status, _, body = request(gateway, "PUT", f"/api/v1/runs/{run}/files", artifact, key=ci,
                              query=[("path", "model.bin")])  # fmt: skip
    assert status == 200, body
    key = f"runs/{run}/model.bin"
    status, headers, data = request(gateway, "GET", "/api/v1/internal/runs/object", key=ci,
                                    query=[("key", key)])  # fmt: skip
    assert status == 200 and headers["content-length"] == str(len(artifact))
    assert data == artifact
    status, _, body = request(gateway, "GET", "/api/v1/internal/runs/object", key=ci,
                              query=[("key", f"runs/{run}/none.bin")])  # fmt: skip
    assert (status, _error_code(body)) == (404, "NotFound")


def test_a_damaged_internal_object_is_never_taken_for_a_whole_one(gateway: Any) -> None:
    """The 200 and its length go out before a blob is read to its end: damage found at the
    end cuts the answer, and the remote lake raises StoreError instead of a short body."""
    ci = gateway.user(f"runs-{os.urandom(4).hex()}", {"@runs": "write"})
    run = f"run-{os.urandom(4).hex()}"
    blobs = Path(gateway.lake.internal_namespace("_runs").root) / "blobs"

    def blob_files() -> set[Path]:
        return {Path(d) / n for d, _, names in os.walk(blobs) for n in names}

    before = blob_files()
    status, _, body = request(gateway, "PUT", f"/api/v1/runs/{run}/files", os.urandom(3 << 20),
                              key=ci, query=[("path", "model.bin")])  # fmt: skip
    assert status == 200, body
    (blob,) = blob_files() - before
    with open(blob, "r+b") as f:  # the last chunk: found only after 2 MiB were sent
        f.seek(-1000, os.SEEK_END)
        f.write(bytes(1000))
    with Lake.open(gateway.url, access_key=ci.access, secret_key=ci.secret) as remote:
        with pytest.raises(StoreError, match="cut short"):
            remote.internal_namespace("_runs").get(f"runs/{run}/model.bin")
        # the connection it used is not left broken: the next call works
        assert remote.api("GET", "/whoami")["name"] == ci.name


# ------------------------------------------------------------------ no grant: one answer
def test_a_dataset_without_a_read_grant_answers_like_one_that_does_not_exist(
    gateway: Any,
) -> None:
    theirs, mine = gateway.bucket("hid"), gateway.bucket("own")
    gateway.lake.namespace(theirs).put("cat/0.bin", b"x")
    dataset = f"hidden-{theirs}"
    status, _, body = request(gateway, "POST", f"/api/v1/namespaces/{theirs}/snapshots",
                              json.dumps({"dataset": dataset}).encode())  # fmt: skip
    assert status == 200, body
    outsider = gateway.user(f"out-{mine}", {mine: "write", "@runs": "read"})
    missing = f"absent-{theirs}"

    def ask(name: str) -> list[tuple[int, str, str]]:
        answers = []
        for method, path, query in [
            ("GET", f"/api/v1/datasets/{name}", None),
            ("GET", f"/api/v1/datasets/{name}/snapshots/latest", None),
            ("GET", f"/api/v1/datasets/{name}/diff", None),
            ("GET", f"/api/v1/datasets/{name}/stats", None),
            ("DELETE", f"/api/v1/datasets/{name}/snapshots/1", None),
            ("GET", "/api/v1/internal/catalog/object", [("key", f"datasets/{name}.json")]),
        ]:
            status, _, body = request(gateway, method, path, key=outsider, query=query)
            message = json.loads(body)["error"]["message"].replace(name, "NAME")
            answers.append((status, _error_code(body), message))
        return answers

    hidden, absent = ask(dataset), ask(missing)
    assert hidden == absent
    assert {(s, c) for s, c, _ in hidden} == {(403, "AccessDenied")}
    assert all(theirs not in m for _, _, m in hidden)  # nor is its namespace named
    # a caller who could read any dataset learns that one does not exist
    status, _, body = request(gateway, "GET", f"/api/v1/datasets/{missing}")
    assert (status, _error_code(body)) == (404, "NotFound")
    # S3 answers alike too: AccessDenied for a bucket without a grant, there or not
    for path in (f"/{theirs}", f"/{theirs}/cat/0.bin", f"/{theirs}/nothing"):
        there = request(gateway, "GET", path, key=outsider)
        gone = request(gateway, "GET", path.replace(theirs, f"gone-{theirs}"), key=outsider)
        assert (there[0], _error_code(there[2])) == (gone[0], _error_code(gone[2]))
        assert (there[0], _error_code(there[2])) == (403, "AccessDenied")
