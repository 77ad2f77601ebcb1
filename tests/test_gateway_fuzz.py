"""In-process tests of the S3 side (httpx's ASGI transport): Hypothesis-made requests with
odd keys, headers, ranges and XML bodies never get a 5xx and never leave a partial write."""

from __future__ import annotations

import base64
import hashlib
import zlib
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from _gateway import InProcess
from lakeloop.gateway._body import Body
from lakeloop.gateway._s3 import _parse_range


@pytest.fixture(scope="module")
def inproc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcess]:
    gw = InProcess(tmp_path_factory.mktemp("inproc"))
    yield gw
    gw.lake.close()


keys = st.one_of(
    st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=40),
    st.text(st.sampled_from("ab/é+ %?#=&"), min_size=1, max_size=20),
    st.integers(1000, 1100).map(lambda n: "k" * n),
)
header_text = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=40)


@st.composite
def put_requests(draw: Any) -> tuple[str, bytes, dict[str, str]]:
    key = draw(keys)
    body = draw(st.binary(max_size=3000))
    headers: dict[str, str] = {}
    md5 = draw(st.sampled_from(["none", "right", "wrong", "garbage"]))
    if md5 == "right":
        headers["content-md5"] = base64.b64encode(hashlib.md5(body).digest()).decode()
    elif md5 == "wrong":
        headers["content-md5"] = base64.b64encode(hashlib.md5(body + b"!").digest()).decode()
    elif md5 == "garbage":
        headers["content-md5"] = draw(header_text)
    crc = draw(st.sampled_from(["none", "right", "wrong"]))
    if crc != "none":
        value = zlib.crc32(body if crc == "right" else body + b"!")
        headers["x-amz-checksum-crc32"] = base64.b64encode(value.to_bytes(4, "big")).decode()
    if draw(st.booleans()):
        headers["content-type"] = draw(header_text)
    if draw(st.booleans()):
        headers["x-amz-meta-" + draw(st.sampled_from(["a", "b-c", "x"]))] = draw(header_text)
    return key, body, headers


@given(req=put_requests())
@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
def test_put_fuzz_no_5xx_no_partial_write(inproc: InProcess, req: Any) -> None:
    key, body, headers = req
    ns = inproc.lake.namespace(inproc.bucket)
    before = ns.get(key) if len(key.encode()) <= 1024 and ns.exists(key) else None
    resp = inproc.request("PUT", f"/{inproc.bucket}/{key}", body, headers)
    assert resp.status_code < 500, resp.text
    if resp.status_code == 200:
        assert ns.get(key) == body
        got = inproc.request("GET", f"/{inproc.bucket}/{key}")
        assert got.status_code == 200 and got.content == body
    elif len(key.encode()) <= 1024:
        now = ns.get(key) if ns.exists(key) else None
        assert now == before  # a refused put changed nothing
    else:
        assert b"KeyTooLongError" in resp.content


ranges = st.one_of(
    st.tuples(st.integers(-5, 40), st.integers(-5, 40)).map(lambda t: f"bytes={t[0]}-{t[1]}"),
    st.integers(-5, 40).map(lambda n: f"bytes={n}-"),
    st.integers(-5, 40).map(lambda n: f"bytes=-{n}"),
    header_text,
)


@given(spec=ranges)
@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
def test_range_fuzz(inproc: InProcess, spec: str) -> None:
    data = b"0123456789abcdefghij"
    inproc.lake.namespace(inproc.bucket).put("ranged", data)
    resp = inproc.request("GET", f"/{inproc.bucket}/ranged", headers={"range": spec})
    assert resp.status_code in (200, 206, 416), resp.text
    if resp.status_code == 200:
        assert resp.content == data
    elif resp.status_code == 206:
        first, last = resp.headers["content-range"].split()[1].split("/")[0].split("-")
        assert resp.content == data[int(first) : int(last) + 1]


xml_bodies = st.one_of(
    st.binary(max_size=200),
    st.lists(keys, max_size=5).map(
        lambda ks: (
            "<Delete>" + "".join(f"<Object><Key>{k}</Key></Object>" for k in ks) + "</Delete>"
        ).encode("utf-8", "surrogatepass")
    ),
    st.lists(st.tuples(st.integers(-2, 12000), header_text), max_size=4).map(
        lambda ps: (
            "<CompleteMultipartUpload>"
            + "".join(f"<Part><PartNumber>{n}</PartNumber><ETag>{e}</ETag></Part>" for n, e in ps)
            + "</CompleteMultipartUpload>"
        ).encode()
    ),
)


@given(body=xml_bodies, target=st.sampled_from(["delete", "complete"]))
@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
def test_xml_fuzz_no_5xx(inproc: InProcess, body: bytes, target: str) -> None:
    if target == "delete":
        resp = inproc.request("POST", f"/{inproc.bucket}", body, query=[("delete", "")])
    else:
        create = inproc.request("POST", f"/{inproc.bucket}/mp", query=[("uploads", "")])
        upload = create.text.split("<UploadId>")[1].split("<")[0]
        resp = inproc.request("POST", f"/{inproc.bucket}/mp", body, query=[("uploadId", upload)])
        assert not inproc.lake.namespace(inproc.bucket).exists("mp")
        inproc.request("DELETE", f"/{inproc.bucket}/mp", query=[("uploadId", upload)])
    assert resp.status_code < 500, resp.text


@given(size=st.integers(0, 40), start=st.integers(-50, 50), end=st.integers(-50, 50) | st.none())
def test_parse_range_matches_slices(size: int, start: int, end: int | None) -> None:
    spec = f"bytes={start}-" + ("" if end is None else str(end))
    data = bytes(range(size))
    try:
        picked = _parse_range(spec, size)
    except Exception:  # InvalidRange: only when the start is past the end of the object
        assert start >= size and start >= 0
        return
    if picked is None:
        # served whole: a malformed spec, or an empty object (the gateway never asks then)
        assert start < 0 or (end is not None and end < start) or size == 0
        return
    lo, hi = picked
    expected = data[start : (end + 1 if end is not None else None)]
    assert data[lo:hi] == expected


@given(data=st.binary(max_size=5000), chunk=st.integers(1, 700), cuts=st.lists(st.integers(1, 200)))
def test_aws_chunked_decoding_any_split(data: bytes, chunk: int, cuts: list[int]) -> None:
    """Decoding does not depend on how the transport splits the encoded body."""
    pieces = [data[i : i + chunk] for i in range(0, len(data), chunk)] + [b""]
    encoded = b"".join(f"{len(p):x}\r\n".encode() + p + (b"\r\n" if p else b"") for p in pieces)
    crc = base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()
    encoded += f"x-amz-checksum-crc32:{crc}\r\n\r\n".encode()
    from lakeloop.gateway._auth import Auth
    from lakeloop.gateway._credentials import Principal

    auth = Auth(Principal("p"), b"", "", "", "", "STREAMING-UNSIGNED-PAYLOAD-TRAILER")
    body = Body(
        {"x-amz-decoded-content-length": str(len(data)), "x-amz-trailer": "x-amz-checksum-crc32"},
        auth,
        1 << 20,
    )
    out, pos = b"", 0
    for cut in cuts:
        out += body.feed(encoded[pos : pos + cut])
        pos += cut
    out += body.feed(encoded[pos:])
    body.finish()
    assert out == data


_QUERY_NAMES = [
    "uploads",
    "uploadId",
    "partNumber",
    "delete",
    "list-type",
    "max-keys",
    "continuation-token",
    "start-after",
    "encoding-type",
    "delimiter",
    "prefix",
    "marker",
    "acl",
    "tagging",
    "versionId",
    "location",
    "part-number-marker",
    "max-parts",
    "response-content-type",
]
_HEADER_NAMES = [
    "x-amz-content-sha256",
    "x-amz-decoded-content-length",
    "content-encoding",
    "x-amz-trailer",
    "x-amz-copy-source",
    "x-amz-metadata-directive",
    "if-match",
    "if-none-match",
    "if-modified-since",
    "if-unmodified-since",
    "range",
    "content-md5",
    "x-amz-checksum-sha256",
    "x-amz-checksum-crc32c",
    "x-amz-checksum-crc64nvme",
    "x-amz-checksum-algorithm",
    "transfer-encoding",
]
_SHA_VALUES = st.sampled_from(
    [
        "UNSIGNED-PAYLOAD",
        "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
        "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
        "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER",
        "0" * 64,
        "nonsense",
    ]
)


@st.composite
def any_requests(draw: Any) -> tuple[str, str, bytes, dict[str, str], list[tuple[str, str]], str]:
    method = draw(st.sampled_from(["GET", "PUT", "POST", "DELETE", "HEAD"]))
    key = draw(st.one_of(st.just(""), keys))
    path = "/fuzz" + (f"/{key}" if key else draw(st.sampled_from(["", "/"])))
    query = draw(
        st.lists(
            st.tuples(st.sampled_from(_QUERY_NAMES), header_text),
            max_size=3,
            unique_by=lambda t: t[0],
        )
    )
    headers = draw(st.dictionaries(st.sampled_from(_HEADER_NAMES), header_text, max_size=4))
    headers.pop("x-amz-content-sha256", None)
    headers.pop("transfer-encoding", None)
    payload = draw(st.one_of(st.none(), _SHA_VALUES))
    body = draw(st.binary(max_size=300))
    return method, path, body, headers, query, payload or ""


@given(req=any_requests())
@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
def test_any_request_no_5xx_no_partial_write(inproc: InProcess, req: Any) -> None:
    method, path, body, headers, query, payload = req
    ns = inproc.lake.create_namespace(inproc.bucket, exist_ok=True)  # a DELETE may drop it
    before = {i.key: i.etag for i in ns.list()}
    if payload:
        headers["x-amz-content-sha256-override"] = payload
    resp = inproc.request(method, path, body, headers, query)
    event(f"{method} {resp.status_code}")
    # 501 NotImplemented (S3 XML) is the answer for what lakeloop does not do; no other 5xx
    assert resp.status_code < 500 or (
        resp.status_code == 501 and (method == "HEAD" or b"NotImplemented" in resp.content)
    ), resp.text
    if not inproc.lake.has_namespace(inproc.bucket):
        assert resp.status_code < 300 and before == {}  # only an empty bucket is deleted
        return
    after = {i.key: i.etag for i in ns.list()}
    if resp.status_code >= 300:
        assert after == before  # a refused request changed nothing
