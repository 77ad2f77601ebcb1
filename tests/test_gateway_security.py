"""Every refusal the gateway owes: bad credentials, no grant, bad bodies. Nothing is stored."""

from __future__ import annotations

import base64
import hashlib
import http.client
import os
import socket
import time
import urllib.error
import urllib.request
import zlib
from typing import Any
from urllib.parse import quote, urlsplit

import pytest
from botocore.exceptions import ClientError

from lakeloop import _sigv4 as sigv4


def _code(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return str(exc.value.response["Error"]["Code"])


def raw(
    gateway: Any,
    method: str,
    path: str,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    *,
    key: Any = None,
    payload_hash: str | None = None,
    amz_date: str | None = None,
    query: list[tuple[str, str]] | None = None,
    sign: bool = True,
) -> tuple[int, bytes]:
    """One request signed by our own signer, sent with http.client: (status, body)."""
    key = key or gateway.admin
    parts = urlsplit(gateway.url)
    hs = {"host": parts.netloc, "content-length": str(len(body)), **(headers or {})}
    if sign:
        hs = sigv4.sign_headers(
            method,
            path,
            query or [],
            hs,
            access_key=key.access,
            secret_key=key.secret,
            amz_date=amz_date or time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()),
            payload_hash=payload_hash or hashlib.sha256(body).hexdigest(),
        )
    target = quote(path, safe="/~") + ("?" + sigv4.canonical_query(query) if query else "")
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    conn.request(method, target, body=body, headers=hs)
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp.status, data


def _refused(url: str) -> tuple[int, bytes]:
    """GET *url*, expecting an HTTP error: (status, body), the connection closed."""
    with pytest.raises(urllib.error.HTTPError) as exc:
        urllib.request.urlopen(url).close()
    with exc.value as err:
        return err.code, err.read()


def _nothing_stored(gateway: Any, bucket: str) -> None:
    assert list(gateway.lake.namespace(bucket).list()) == []


# ---------------------------------------------------------------------------- authentication
def test_wrong_secret_refused(gateway: Any) -> None:
    b = gateway.bucket()
    bad = type(gateway.admin)("admin", gateway.admin.access, "not-the-secret")
    with pytest.raises(ClientError) as exc:
        gateway.boto3(bad).put_object(Bucket=b, Key="k", Body=b"v")
    assert _code(exc) == "SignatureDoesNotMatch"
    _nothing_stored(gateway, b)


def test_unknown_access_key_refused(gateway: Any) -> None:
    b = gateway.bucket()
    bad = type(gateway.admin)("x", "LLUNKNOWNKEY0000", "whatever")
    with pytest.raises(ClientError) as exc:
        gateway.boto3(bad).list_objects_v2(Bucket=b)
    assert _code(exc) == "InvalidAccessKeyId"


def test_anonymous_refused(gateway: Any) -> None:
    b = gateway.bucket()
    gateway.boto3().put_object(Bucket=b, Key="k", Body=b"v")
    status, body = _refused(f"{gateway.url}/{b}/k")
    assert status == 403 and b"AccessDenied" in body


def test_expired_presign_refused(gateway: Any) -> None:
    b = gateway.bucket()
    s3 = gateway.boto3(signature_version="s3v4")
    s3.put_object(Bucket=b, Key="k", Body=b"v")
    url = s3.generate_presigned_url("get_object", Params={"Bucket": b, "Key": "k"}, ExpiresIn=1)
    time.sleep(2.1)
    status, body = _refused(url)
    assert status == 403 and b"expired" in body


def test_tampered_presign_refused(gateway: Any) -> None:
    b = gateway.bucket()
    s3 = gateway.boto3(signature_version="s3v4")
    s3.put_object(Bucket=b, Key="k", Body=b"v")
    s3.put_object(Bucket=b, Key="other", Body=b"secret")
    url = s3.generate_presigned_url("get_object", Params={"Bucket": b, "Key": "k"})
    for bad in (
        url.replace("/k?", "/other?"),
        url[:-4] + ("0000" if url[-4:] != "0000" else "1111"),
    ):
        status, body = _refused(bad)
        assert status == 403 and b"SignatureDoesNotMatch" in body


def test_tampered_body_refused(gateway: Any) -> None:
    b = gateway.bucket()
    signed_for = hashlib.sha256(b"original").hexdigest()
    status, body = raw(gateway, "PUT", f"/{b}/k", b"tampered", payload_hash=signed_for)
    assert status == 400 and b"XAmzContentSHA256Mismatch" in body
    _nothing_stored(gateway, b)


def test_clock_skew_refused(gateway: Any) -> None:
    b = gateway.bucket()
    old = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() - 3600))
    status, body = raw(gateway, "PUT", f"/{b}/k", b"v", amz_date=old)
    assert status == 403 and b"RequestTimeTooSkewed" in body
    _nothing_stored(gateway, b)


# ---------------------------------------------------------------------------- authorization
def test_cross_namespace_read_refused(gateway: Any) -> None:
    mine, theirs = gateway.bucket(), gateway.bucket()
    gateway.boto3().put_object(Bucket=theirs, Key="k", Body=b"private")
    reader = gateway.user("reader-x", {mine: "read"})
    s3 = gateway.boto3(reader)
    for call in (
        lambda: s3.get_object(Bucket=theirs, Key="k"),
        lambda: s3.head_object(Bucket=theirs, Key="k"),
        lambda: s3.list_objects_v2(Bucket=theirs),
    ):
        with pytest.raises(ClientError) as exc:
            call()
        assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


def test_cross_namespace_write_refused(gateway: Any) -> None:
    mine, theirs = gateway.bucket(), gateway.bucket()
    writer = gateway.user("writer-x", {mine: "write"})
    s3 = gateway.boto3(writer)
    s3.put_object(Bucket=mine, Key="ok", Body=b"v")
    with pytest.raises(ClientError) as exc:
        s3.put_object(Bucket=theirs, Key="k", Body=b"v")
    assert _code(exc) == "AccessDenied"
    with pytest.raises(ClientError) as exc:
        s3.copy_object(Bucket=mine, Key="stolen", CopySource={"Bucket": theirs, "Key": "k"})
    assert _code(exc) == "AccessDenied"
    with pytest.raises(ClientError) as exc:
        s3.create_multipart_upload(Bucket=theirs, Key="k")
    assert _code(exc) == "AccessDenied"
    with pytest.raises(ClientError) as exc:
        s3.delete_bucket(Bucket=mine)  # write is not admin
    assert _code(exc) == "AccessDenied"
    _nothing_stored(gateway, theirs)


def test_read_grant_cannot_write(gateway: Any) -> None:
    b = gateway.bucket()
    reader = gateway.user("reader-y", {b: "read"})
    with pytest.raises(ClientError) as exc:
        gateway.boto3(reader).put_object(Bucket=b, Key="k", Body=b"v")
    assert _code(exc) == "AccessDenied"
    _nothing_stored(gateway, b)


def test_listing_namespaces_shows_only_granted(gateway: Any) -> None:
    mine, other = gateway.bucket(), gateway.bucket()
    nobody = gateway.user("nobody-x")
    assert gateway.boto3(nobody).list_buckets()["Buckets"] == []
    someone = gateway.user("someone-x", {mine: "read"})
    names = [b["Name"] for b in gateway.boto3(someone).list_buckets()["Buckets"]]
    assert names == [mine] and other not in names


def test_reserved_namespaces_are_not_buckets(gateway: Any) -> None:
    status, body = raw(gateway, "GET", "/_uploads")
    assert status == 400 and b"InvalidBucketName" in body


def test_revoked_grant_refused(gateway: Any) -> None:
    b = gateway.bucket()
    user = gateway.user("revoked-x", {b: "write"})
    s3 = gateway.boto3(user)
    s3.put_object(Bucket=b, Key="k", Body=b"v")
    gateway.credentials.revoke("revoked-x", b)
    gateway.credentials.refresh(every=0)
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=b, Key="k")
    assert _code(exc) == "AccessDenied"


# ---------------------------------------------------------------------------- bad bodies
def test_short_body_stores_nothing(gateway: Any) -> None:
    b = gateway.bucket()
    parts = urlsplit(gateway.url)
    body = b"only-part"
    hs = sigv4.sign_headers(
        "PUT",
        f"/{b}/short",
        [],
        {"host": parts.netloc, "content-length": "100"},
        access_key=gateway.admin.access,
        secret_key=gateway.admin.secret,
        amz_date=time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()),
    )
    with socket.create_connection((parts.hostname, parts.port)) as s:
        head = f"PUT /{b}/short HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hs.items())
        s.sendall(head.encode() + b"\r\n" + body)
        s.shutdown(socket.SHUT_WR)
        s.settimeout(10)
        try:
            s.recv(1000)
        except OSError:
            pass
    time.sleep(0.2)
    _nothing_stored(gateway, b)
    assert gateway.boto3().list_buckets()  # still serving


def test_bad_content_md5_stores_nothing(gateway: Any) -> None:
    b = gateway.bucket()
    wrong = base64.b64encode(hashlib.md5(b"other").digest()).decode()
    status, body = raw(gateway, "PUT", f"/{b}/k", b"data", {"content-md5": wrong})
    assert status == 400 and b"BadDigest" in body
    status, body = raw(gateway, "PUT", f"/{b}/k", b"data", {"content-md5": "garbage"})
    assert status == 400 and b"InvalidDigest" in body
    _nothing_stored(gateway, b)


def test_bad_checksum_header_stores_nothing(gateway: Any) -> None:
    b = gateway.bucket()
    wrong = base64.b64encode(zlib.crc32(b"other").to_bytes(4, "big")).decode()
    status, body = raw(gateway, "PUT", f"/{b}/k", b"data", {"x-amz-checksum-crc32": wrong})
    assert status == 400 and b"BadDigest" in body
    _nothing_stored(gateway, b)


def _chunked(data: bytes, chunk: int, sigs: list[str] | None = None) -> bytes:
    out = b""
    pieces = [data[i : i + chunk] for i in range(0, len(data), chunk)] + [b""]
    for i, piece in enumerate(pieces):
        ext = f";chunk-signature={sigs[i]}" if sigs else ""
        out += f"{len(piece):x}{ext}\r\n".encode() + piece + (b"\r\n" if piece else b"")
    return out


def test_unsigned_payload_trailer_upload(gateway: Any) -> None:
    b = gateway.bucket()
    data = b"trailer checked " * 1000
    crc = base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()
    for value, status_expected in (("AAAAAA==", 400), (crc, 200)):
        body = _chunked(data, 4096) + f"x-amz-checksum-crc32:{value}\r\n\r\n".encode()
        headers = {
            "content-encoding": "aws-chunked",
            "x-amz-decoded-content-length": str(len(data)),
            "x-amz-trailer": "x-amz-checksum-crc32",
        }
        status, out = raw(
            gateway,
            "PUT",
            f"/{b}/t",
            body,
            headers,
            payload_hash="STREAMING-UNSIGNED-PAYLOAD-TRAILER",
        )
        assert status == status_expected, out
        if status != 200:
            _nothing_stored(gateway, b)
    assert gateway.lake.namespace(b).get("t") == data


def test_signed_chunked_upload(gateway: Any) -> None:
    b = gateway.bucket()
    data = bytes(range(256)) * 100
    parts = urlsplit(gateway.url)
    amz_date = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    payload = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
    pieces = [data[i : i + 8192] for i in range(0, len(data), 8192)] + [b""]
    encoded_len = sum(
        len(f"{len(p):x};chunk-signature={'0' * 64}\r\n") + len(p) + (2 if p else 0) for p in pieces
    )
    hs = sigv4.sign_headers(
        "PUT",
        f"/{b}/c",
        [],
        {
            "host": parts.netloc,
            "content-length": str(encoded_len),
            "content-encoding": "aws-chunked",
            "x-amz-decoded-content-length": str(len(data)),
        },
        access_key=gateway.admin.access,
        secret_key=gateway.admin.secret,
        amz_date=amz_date,
        payload_hash=payload,
    )
    seed = hs["authorization"].rsplit("Signature=", 1)[1]
    key = sigv4.signing_key(gateway.admin.secret, amz_date[:8], "us-east-1", "s3")
    scope = f"{amz_date[:8]}/us-east-1/s3/aws4_request"
    sigs, prev = [], seed
    for p in pieces:
        prev = sigv4.chunk_signature(key, amz_date, scope, prev, hashlib.sha256(p).hexdigest())
        sigs.append(prev)

    def send(sig_list: list[str], key_name: str) -> tuple[int, bytes]:
        body = _chunked(data, 8192, sig_list)
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        # the signature covers the path: sign again for another key name
        conn.request("PUT", f"/{b}/{key_name}", body=body, headers=hs)
        resp = conn.getresponse()
        out = resp.status, resp.read()
        conn.close()
        return out

    bad = list(sigs)
    bad[1] = "f" * 64
    status, out = send(bad, "c")
    assert status == 403 and b"SignatureDoesNotMatch" in out
    _nothing_stored(gateway, b)
    status, out = send(sigs, "c")
    assert status == 200, out
    assert gateway.lake.namespace(b).get("c") == data


def test_malformed_xml_refused(gateway: Any) -> None:
    b = gateway.bucket()
    for doc in (b"<Delete><Object><Key>k", b"not xml", b'<!DOCTYPE x [<!ENTITY a "b">]><Delete/>'):
        status, body = raw(gateway, "POST", f"/{b}", doc, query=[("delete", "")])
        assert status == 400 and b"MalformedXML" in body


def test_key_too_long_refused(gateway: Any) -> None:
    b = gateway.bucket()
    with pytest.raises(ClientError) as exc:
        gateway.boto3().put_object(Bucket=b, Key="k" * 1025, Body=b"v")
    assert _code(exc) == "KeyTooLongError"
    _nothing_stored(gateway, b)


def test_object_too_large_refused(gateway: Any) -> None:
    b = gateway.bucket()
    limit = gateway.lake.settings["gateway_max_object_size"]
    parts = urlsplit(gateway.url)
    hs = sigv4.sign_headers(
        "PUT",
        f"/{b}/huge",
        [],
        {"host": parts.netloc, "content-length": str(limit + 1)},
        access_key=gateway.admin.access,
        secret_key=gateway.admin.secret,
        amz_date=time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()),
    )
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    conn.putrequest("PUT", f"/{b}/huge", skip_host=True, skip_accept_encoding=True)
    for k, v in hs.items():
        conn.putheader(k, v)
    conn.endheaders()
    resp = conn.getresponse()
    assert resp.status == 400 and b"EntityTooLarge" in resp.read()
    conn.close()
    _nothing_stored(gateway, b)


def _blob_files(gateway: Any, bucket: str) -> list[str]:
    import os

    folder = gateway.lake.namespace(bucket).root + "/blobs"
    return os.listdir(folder) if os.path.isdir(folder) else []


def test_streamed_body_with_bad_md5_leaves_no_blob(gateway: Any) -> None:
    """Bodies above gateway_memory_body_limit stream into a blob; a failed check removes it."""
    b = gateway.bucket()
    data = os.urandom(2 << 20)
    assert len(data) > gateway.lake.settings["gateway_memory_body_limit"]
    wrong = base64.b64encode(hashlib.md5(b"other").digest()).decode()
    status, body = raw(gateway, "PUT", f"/{b}/big", data, {"content-md5": wrong})
    assert status == 400 and b"BadDigest" in body
    _nothing_stored(gateway, b)
    assert _blob_files(gateway, b) == []
    right = base64.b64encode(hashlib.md5(data).digest()).decode()
    status, body = raw(gateway, "PUT", f"/{b}/big", data, {"content-md5": right})
    assert status == 200, body
    assert gateway.lake.namespace(b).get("big") == data


def test_streamed_body_cut_short_leaves_no_blob(gateway: Any) -> None:
    b = gateway.bucket()
    parts = urlsplit(gateway.url)
    hs = sigv4.sign_headers(
        "PUT",
        f"/{b}/cut",
        [],
        {"host": parts.netloc, "content-length": str(4 << 20)},
        access_key=gateway.admin.access,
        secret_key=gateway.admin.secret,
        amz_date=time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()),
    )
    with socket.create_connection((parts.hostname, parts.port)) as s:
        head = f"PUT /{b}/cut HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hs.items())
        s.sendall(head.encode() + b"\r\n" + os.urandom(3 << 20))
    deadline = time.monotonic() + 10
    while _blob_files(gateway, b) and time.monotonic() < deadline:
        time.sleep(0.05)
    _nothing_stored(gateway, b)
    assert _blob_files(gateway, b) == []


def test_anonymous_access_only_where_granted(tmp_path: Any) -> None:
    """gateway_anonymous on: unsigned requests get the grants of 'anonymous', no more."""
    from _gateway import InProcess

    gw = InProcess(tmp_path, {"gateway_anonymous": True})
    gw.lake.create_namespace("public")
    gw.lake.namespace("public").put("readme.txt", b"open data")
    gw.lake.namespace(gw.bucket).put("secret.txt", b"closed")
    assert gw.request("GET", "/public/readme.txt", sign=False).status_code == 403  # no grant yet
    gw.creds.grant("anonymous", "public", "read")
    gw.creds.refresh(every=0)
    got = gw.request("GET", "/public/readme.txt", sign=False)
    assert got.status_code == 200 and got.content == b"open data"
    assert gw.request("GET", f"/{gw.bucket}/secret.txt", sign=False).status_code == 403
    assert gw.request("PUT", "/public/new", b"x", sign=False).status_code == 403
    assert not gw.lake.namespace("public").exists("new")
    gw.lake.close()


def test_anonymous_access_off_by_default(gateway: Any) -> None:
    gateway.credentials.grant("anonymous", "*", "read")  # a grant alone opens nothing
    gateway.credentials.refresh(every=0)
    try:
        b = gateway.bucket()
        gateway.boto3().put_object(Bucket=b, Key="k", Body=b"v")
        assert _refused(f"{gateway.url}/{b}/k")[0] == 403
    finally:
        gateway.credentials.revoke("anonymous", "*")
        gateway.credentials.refresh(every=0)


def test_signed_chunked_upload_with_signed_trailer(gateway: Any) -> None:
    b = gateway.bucket()
    data = b"signed trailer " * 700
    parts = urlsplit(gateway.url)
    amz_date = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    scope = f"{amz_date[:8]}/us-east-1/s3/aws4_request"
    key = sigv4.signing_key(gateway.admin.secret, amz_date[:8], "us-east-1", "s3")
    pieces = [data[i : i + 4096] for i in range(0, len(data), 4096)] + [b""]

    def body_for(checksum: str, *, resign: bool = True, seed: str = "") -> bytes:
        out, prev = b"", seed
        for p in pieces:
            prev = sigv4.chunk_signature(key, amz_date, scope, prev, hashlib.sha256(p).hexdigest())
            out += f"{len(p):x};chunk-signature={prev}\r\n".encode() + p + (b"\r\n" if p else b"")
        trailer = f"x-amz-checksum-crc32:{checksum}\n"
        signed_for = trailer if resign else f"x-amz-checksum-crc32:{good}\n"
        text = (
            f"AWS4-HMAC-SHA256-TRAILER\n{amz_date}\n{scope}\n{prev}\n"
            f"{hashlib.sha256(signed_for.encode()).hexdigest()}"
        )
        sig = sigv4.sign(key, text)
        return (
            out
            + trailer.replace("\n", "\r\n").encode()
            + f"x-amz-trailer-signature:{sig}\r\n\r\n".encode()
        )

    good = base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()
    bad = base64.b64encode((zlib.crc32(data) ^ 1).to_bytes(4, "big")).decode()
    length = len(body_for(good))
    hs = sigv4.sign_headers(
        "PUT",
        f"/{b}/t",
        [],
        {
            "host": parts.netloc,
            "content-length": str(length),
            "content-encoding": "aws-chunked",
            "x-amz-decoded-content-length": str(len(data)),
            "x-amz-trailer": "x-amz-checksum-crc32",
        },
        access_key=gateway.admin.access,
        secret_key=gateway.admin.secret,
        amz_date=amz_date,
        payload_hash="STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER",
    )
    seed = hs["authorization"].rsplit("Signature=", 1)[1]

    def send(body: bytes) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        conn.request("PUT", f"/{b}/t", body=body, headers=hs)
        resp = conn.getresponse()
        out = resp.status, resp.read()
        conn.close()
        return out

    status, out = send(body_for(bad, resign=False, seed=seed))  # trailer altered after signing
    assert status == 403 and b"SignatureDoesNotMatch" in out
    status, out = send(body_for(bad, seed=seed))  # signed, but the checksum is wrong
    assert status == 400 and b"BadDigest" in out
    _nothing_stored(gateway, b)
    status, out = send(body_for(good, seed=seed))
    assert status == 200, out
    assert gateway.lake.namespace(b).get("t") == data


def test_a_stored_page_never_runs_as_a_page_of_the_gateway(gateway: Any) -> None:
    # the web UI shares the gateway's host: an HTML or SVG object is served sandboxed
    s3 = gateway.boto3(signature_version="s3v4")
    b = gateway.bucket()
    s3.put_object(Bucket=b, Key="x.html", Body=b"<script>fetch('/ui/')</script>",
                  ContentType="text/html")  # fmt: skip
    url = s3.generate_presigned_url("get_object", Params={"Bucket": b, "Key": "x.html"})
    with urllib.request.urlopen(url, timeout=10) as resp:
        assert resp.headers["content-security-policy"] == "sandbox"
        assert resp.headers["x-content-type-options"] == "nosniff"


def test_a_json_call_with_a_huge_body_is_refused_before_it_is_read(gateway: Any) -> None:
    parts = urlsplit(gateway.url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    conn.putrequest("GET", "/api/v1/health")  # a public endpoint: no signature needed
    conn.putheader("content-length", str(20 * 1024**3))  # 20 GiB declared, none sent
    conn.putheader("content-type", "application/json")
    conn.endheaders()
    resp = conn.getresponse()
    assert resp.status == 413 and b"TooLarge" in resp.read()
    conn.close()
