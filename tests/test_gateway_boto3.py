"""boto3, unmodified, against a real gateway."""

from __future__ import annotations

import hashlib
import urllib.request
from typing import Any

import pytest
from botocore.exceptions import ClientError


def _code(exc: pytest.ExceptionInfo[ClientError]) -> str:
    return str(exc.value.response["Error"]["Code"])


def test_put_get_head_delete(gateway: Any) -> None:
    s3 = gateway.boto3()
    b = gateway.bucket()
    put = s3.put_object(
        Bucket=b, Key="a/hello.txt", Body=b"hello", ContentType="text/plain", Metadata={"x": "1"}
    )
    assert put["ETag"] == '"5d41402abc4b2a76b9719d911017c592"'
    got = s3.get_object(Bucket=b, Key="a/hello.txt")
    assert got["Body"].read() == b"hello"
    assert got["ContentType"] == "text/plain" and got["Metadata"] == {"x": "1"}
    head = s3.head_object(Bucket=b, Key="a/hello.txt")
    assert head["ContentLength"] == 5 and head["ETag"] == put["ETag"]
    assert s3.get_object(Bucket=b, Key="a/hello.txt", Range="bytes=1-3")["Body"].read() == b"ell"
    s3.delete_object(Bucket=b, Key="a/hello.txt")
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=b, Key="a/hello.txt")
    assert _code(exc) == "NoSuchKey"


def test_conditional_get(gateway: Any) -> None:
    s3 = gateway.boto3()
    b = gateway.bucket()
    etag = s3.put_object(Bucket=b, Key="k", Body=b"v")["ETag"]
    assert s3.get_object(Bucket=b, Key="k", IfMatch=etag)["Body"].read() == b"v"
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=b, Key="k", IfMatch='"0000"')
    assert _code(exc) == "PreconditionFailed"
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket=b, Key="k", IfNoneMatch=etag)
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 304


def test_list_v1_v2_delimiter_pagination(gateway: Any) -> None:
    s3 = gateway.boto3()
    b = gateway.bucket()
    keys = [f"d{i % 3}/f{i:02d}" for i in range(12)] + ["top1", "top2", "sp ace+plus=é"]
    for k in keys:
        s3.put_object(Bucket=b, Key=k, Body=k.encode())
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=b, PaginationConfig={"PageSize": 4})
    listed = [o["Key"] for p in pages for o in p.get("Contents", [])]
    assert listed == sorted(keys, key=lambda k: k.encode())
    top = s3.list_objects_v2(Bucket=b, Delimiter="/")
    assert [p["Prefix"] for p in top["CommonPrefixes"]] == ["d0/", "d1/", "d2/"]
    assert [o["Key"] for o in top["Contents"]] == ["sp ace+plus=é", "top1", "top2"]
    pages = s3.get_paginator("list_objects_v2").paginate(
        Bucket=b, Delimiter="/", PaginationConfig={"PageSize": 2}
    )
    entries = []
    for p in pages:
        entries += [c["Prefix"] for c in p.get("CommonPrefixes", [])]
        entries += [o["Key"] for o in p.get("Contents", [])]
    assert sorted(entries) == ["d0/", "d1/", "d2/", "sp ace+plus=é", "top1", "top2"]
    v1 = s3.get_paginator("list_objects").paginate(
        Bucket=b, Delimiter="/", PaginationConfig={"PageSize": 2}
    )
    v1_entries = []
    for p in v1:
        v1_entries += [c["Prefix"] for c in p.get("CommonPrefixes", [])]
        v1_entries += [o["Key"] for o in p.get("Contents", [])]
    assert sorted(v1_entries) == sorted(entries)
    v1 = s3.get_paginator("list_objects").paginate(Bucket=b, PaginationConfig={"PageSize": 5})
    assert [o["Key"] for p in v1 for o in p.get("Contents", [])] == listed
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=b, Prefix="d1/")["Contents"]] == [
        k for k in listed if k.startswith("d1/")
    ]
    after = s3.list_objects_v2(Bucket=b, StartAfter="d2/f11")["Contents"]
    assert [o["Key"] for o in after] == ["sp ace+plus=é", "top1", "top2"]


def test_multipart_upload(gateway: Any) -> None:
    s3 = gateway.boto3()
    b = gateway.bucket()
    part1, part2 = b"a" * (5 << 20), b"tail-bytes"
    up = s3.create_multipart_upload(Bucket=b, Key="big.bin", ContentType="application/x-test")
    uid = up["UploadId"]
    e1 = s3.upload_part(Bucket=b, Key="big.bin", UploadId=uid, PartNumber=1, Body=part1)["ETag"]
    e2 = s3.upload_part(Bucket=b, Key="big.bin", UploadId=uid, PartNumber=2, Body=part2)["ETag"]
    uploads = s3.list_multipart_uploads(Bucket=b)["Uploads"]
    assert [u["UploadId"] for u in uploads] == [uid]
    parts = s3.list_parts(Bucket=b, Key="big.bin", UploadId=uid)["Parts"]
    assert [(p["PartNumber"], p["Size"]) for p in parts] == [(1, len(part1)), (2, len(part2))]
    done = s3.complete_multipart_upload(
        Bucket=b,
        Key="big.bin",
        UploadId=uid,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": e1}, {"PartNumber": 2, "ETag": e2}]},
    )
    digests = hashlib.md5(part1).digest() + hashlib.md5(part2).digest()
    expected = f'"{hashlib.md5(digests).hexdigest()}-2"'
    assert done["ETag"] == expected
    got = s3.get_object(Bucket=b, Key="big.bin")
    assert got["ETag"] == expected and got["ContentType"] == "application/x-test"
    assert got["Body"].read() == part1 + part2
    tail = s3.get_object(Bucket=b, Key="big.bin", Range="bytes=-4")["Body"].read()
    assert tail == b"ytes"
    assert s3.list_multipart_uploads(Bucket=b).get("Uploads", []) == []
    # staged parts are gone
    assert list(gateway.lake.internal_namespace("_uploads").list(f"p/{uid}/")) == []


def test_multipart_abort_and_bad_parts(gateway: Any) -> None:
    s3 = gateway.boto3()
    b = gateway.bucket()
    uid = s3.create_multipart_upload(Bucket=b, Key="x")["UploadId"]
    e1 = s3.upload_part(Bucket=b, Key="x", UploadId=uid, PartNumber=1, Body=b"small")["ETag"]
    e2 = s3.upload_part(Bucket=b, Key="x", UploadId=uid, PartNumber=2, Body=b"small")["ETag"]
    with pytest.raises(ClientError) as exc:  # a part other than the last below 5 MiB
        s3.complete_multipart_upload(
            Bucket=b,
            Key="x",
            UploadId=uid,
            MultipartUpload={
                "Parts": [{"PartNumber": 1, "ETag": e1}, {"PartNumber": 2, "ETag": e2}]
            },
        )
    assert _code(exc) == "EntityTooSmall"
    with pytest.raises(ClientError) as exc:
        s3.complete_multipart_upload(
            Bucket=b,
            Key="x",
            UploadId=uid,
            MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": '"deadbeef"'}]},
        )
    assert _code(exc) == "InvalidPart"
    s3.abort_multipart_upload(Bucket=b, Key="x", UploadId=uid)
    with pytest.raises(ClientError) as exc:
        s3.list_parts(Bucket=b, Key="x", UploadId=uid)
    assert _code(exc) == "NoSuchUpload"
    assert list(gateway.lake.internal_namespace("_uploads").list(f"p/{uid}/")) == []
    assert "Contents" not in s3.list_objects_v2(Bucket=b)


def test_upload_fileobj_uses_multipart(gateway: Any) -> None:
    import io

    from boto3.s3.transfer import TransferConfig

    s3 = gateway.boto3()
    b = gateway.bucket()
    data = bytes(range(256)) * (48 * 1024)  # 12 MiB: two 6 MiB parts
    cfg = TransferConfig(multipart_threshold=6 << 20, multipart_chunksize=6 << 20)
    s3.upload_fileobj(io.BytesIO(data), b, "obj", Config=cfg)
    assert s3.head_object(Bucket=b, Key="obj")["ETag"].endswith('-2"')
    out = io.BytesIO()
    s3.download_fileobj(b, "obj", out, Config=cfg)
    assert out.getvalue() == data


def test_presigned_get_and_put(gateway: Any) -> None:
    s3 = gateway.boto3(signature_version="s3v4")
    b = gateway.bucket()
    s3.put_object(Bucket=b, Key="p q.txt", Body=b"presigned")
    url = s3.generate_presigned_url("get_object", Params={"Bucket": b, "Key": "p q.txt"})
    with urllib.request.urlopen(url) as resp:
        assert resp.read() == b"presigned"
    put_url = s3.generate_presigned_url("put_object", Params={"Bucket": b, "Key": "up"})
    req = urllib.request.Request(put_url, data=b"via url", method="PUT")
    with urllib.request.urlopen(req) as resp:
        assert resp.status == 200
    assert s3.get_object(Bucket=b, Key="up")["Body"].read() == b"via url"


def test_copy_and_delete_objects(gateway: Any) -> None:
    s3 = gateway.boto3()
    b1, b2 = gateway.bucket(), gateway.bucket()
    s3.put_object(Bucket=b1, Key="src", Body=b"copy me", Metadata={"m": "1"})
    s3.copy_object(Bucket=b2, Key="dst", CopySource={"Bucket": b1, "Key": "src"})
    got = s3.get_object(Bucket=b2, Key="dst")
    assert got["Body"].read() == b"copy me" and got["Metadata"] == {"m": "1"}
    s3.copy_object(
        Bucket=b2,
        Key="dst2",
        CopySource={"Bucket": b1, "Key": "src"},
        MetadataDirective="REPLACE",
        Metadata={"n": "2"},
    )
    assert s3.head_object(Bucket=b2, Key="dst2")["Metadata"] == {"n": "2"}
    for i in range(5):
        s3.put_object(Bucket=b1, Key=f"many/{i}", Body=b"x")
    out = s3.delete_objects(
        Bucket=b1, Delete={"Objects": [{"Key": f"many/{i}"} for i in range(5)] + [{"Key": "nope"}]}
    )
    assert len(out["Deleted"]) == 6
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=b1)["Contents"]] == ["src"]


def test_buckets(gateway: Any) -> None:
    s3 = gateway.boto3()
    s3.create_bucket(Bucket="made-by-boto3")
    assert "made-by-boto3" in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    s3.head_bucket(Bucket="made-by-boto3")
    s3.put_object(Bucket="made-by-boto3", Key="k", Body=b"v")
    with pytest.raises(ClientError) as exc:
        s3.delete_bucket(Bucket="made-by-boto3")
    assert _code(exc) == "BucketNotEmpty"
    s3.delete_object(Bucket="made-by-boto3", Key="k")
    s3.delete_bucket(Bucket="made-by-boto3")
    with pytest.raises(ClientError) as exc:
        s3.head_bucket(Bucket="made-by-boto3")
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    with pytest.raises(ClientError) as exc:
        s3.get_object(Bucket="no-such-bucket-here", Key="k")
    assert _code(exc) == "NoSuchBucket"


def test_unsupported_operation_is_501(gateway: Any) -> None:
    s3 = gateway.boto3()
    b = gateway.bucket()
    with pytest.raises(ClientError) as exc:
        s3.get_bucket_policy(Bucket=b)
    assert _code(exc) == "NotImplemented"
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 501


def test_concurrent_overwrites_and_reads_agree(gateway: Any) -> None:
    """While a key is overwritten from several threads, every GET's ETag is its body's MD5."""
    import threading

    b = gateway.bucket()
    writer_s3, reader_s3 = gateway.boto3(), gateway.boto3()
    writer_s3.put_object(Bucket=b, Key="hot", Body=b"start")
    stop = threading.Event()
    failures: list[str] = []

    def write(n: int) -> None:
        i = 0
        try:
            while not stop.is_set():
                body = f"writer {n} version {i}".encode() * 50
                writer_s3.put_object(Bucket=b, Key="hot", Body=body)
                i += 1
        except Exception as exc:
            failures.append(repr(exc))

    def read() -> None:
        try:
            while not stop.is_set():
                got = reader_s3.get_object(Bucket=b, Key="hot")
                body = got["Body"].read()
                if got["ETag"].strip('"') != hashlib.md5(body).hexdigest():
                    failures.append(got["ETag"])
        except ClientError as exc:  # 503 after many lost races is allowed; S3 clients retry it
            if exc.response["Error"]["Code"] != "ServiceUnavailable":
                failures.append(repr(exc))
        except Exception as exc:
            failures.append(repr(exc))

    threads = [threading.Thread(target=write, args=(n,)) for n in range(3)]
    threads += [threading.Thread(target=read) for _ in range(3)]
    for t in threads:
        t.start()
    threading.Event().wait(1.5)
    stop.set()
    for t in threads:
        t.join()
    assert failures == []
