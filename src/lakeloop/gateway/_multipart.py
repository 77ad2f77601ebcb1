"""Multipart uploads, staged in the reserved namespace ``_uploads``.

An upload is one record ``u/<id>`` (bucket, key, content type, metadata) and its parts
``p/<id>/<number>``: ordinary objects, so they are durable, checksummed and survive a
restart like any other. Completion checks the part list, streams the parts in order into
one object of the target namespace (a blob when large) with the ETag S3 clients expect
(``md5-of-md5s-N``), then deletes the staged parts. Abort deletes them.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from lakeloop.errors import NotFound
from lakeloop.gateway import _xml as xml
from lakeloop.gateway._errors import S3Error
from lakeloop.store import Lake, Namespace

if TYPE_CHECKING:
    from lakeloop.gateway._request import S3Request
    from lakeloop.gateway._s3 import S3App

__all__ = ["Multipart"]

STAGING = "_uploads"


def _part_key(upload: str, number: int) -> str:
    return f"p/{upload}/{number:05d}"


class Multipart:
    def __init__(self, lake: Lake) -> None:
        self.lake = lake
        s = lake.settings
        self.min_part = int(s["gateway_multipart_min_part_size"])
        self.max_parts = int(s["gateway_multipart_max_parts"])
        self._staging: Namespace | None = None

    @property
    def staging(self) -> Namespace:
        if self._staging is None:
            self._staging = self.lake.internal_namespace(STAGING)
        return self._staging

    def _record(self, upload: str, bucket: str, key: str) -> dict[str, Any]:
        if not upload.isalnum():
            raise S3Error("NoSuchUpload", "the specified upload does not exist")
        try:
            record: dict[str, Any] = json.loads(self.staging.get(f"u/{upload}"))
        except NotFound:
            raise S3Error("NoSuchUpload", "the specified upload does not exist") from None
        if record["bucket"] != bucket or record["key"] != key:
            raise S3Error("NoSuchUpload", "the upload belongs to another key")
        return record

    def _part_number(self, params: dict[str, str]) -> int:
        try:
            number = int(params.get("partNumber", ""))
        except ValueError:
            raise S3Error("InvalidArgument", "partNumber must be an integer") from None
        if not 1 <= number <= self.max_parts:
            raise S3Error("InvalidArgument", f"partNumber must be between 1 and {self.max_parts}")
        return number

    # ------------------------------------------------------------------ operations
    async def create(self, app: S3App, req: S3Request) -> None:
        from lakeloop.gateway._s3 import _request_metadata, check_target

        bucket, key = req.bucket, req.key
        ns = app._ns(bucket)  # NoSuchBucket now, not at completion
        content_type, metadata = req.headers.get("content-type"), _request_metadata(req.headers)
        # the key and metadata too: refused now, not after every part was uploaded
        check_target(ns, key, content_type, {**metadata, "s3:etag": "0" * 32 + "-10000"})
        upload = secrets.token_hex(16)
        record = {
            "bucket": bucket,
            "key": key,
            "content_type": content_type,
            "metadata": metadata,
            "initiated": time.time(),
        }
        await app.run(lambda: self.staging.put(f"u/{upload}", json.dumps(record).encode()))
        await req.xml(
            "InitiateMultipartUploadResult",
            [
                xml.element("Bucket", bucket),
                xml.element("Key", key),
                xml.element("UploadId", upload),
            ],
        )

    async def upload_part(self, app: S3App, req: S3Request) -> None:
        number = self._part_number(req.params)
        upload = req.params.get("uploadId", "")
        await app.run(self._record, upload, req.bucket, req.key)
        info = await app.receive_into(
            req, self.staging, _part_key(upload, number), content_type=None, metadata={}
        )
        await req.reply(200, headers=[(b"etag", f'"{info.etag}"'.encode())])

    async def complete(self, app: S3App, req: S3Request) -> None:
        from lakeloop.gateway._s3 import chain, md5_of_parts

        bucket, key = req.bucket, req.key
        upload = req.params["uploadId"]
        doc = xml.parse(await app._document(req), "CompleteMultipartUpload")
        wanted: list[tuple[int, str]] = []
        for part in doc.findall("Part"):
            try:
                number = int(part.findtext("PartNumber") or "")
            except ValueError:
                raise S3Error("MalformedXML", "PartNumber must be an integer") from None
            wanted.append((number, (part.findtext("ETag") or "").strip().strip('"')))
        if not wanted:
            raise S3Error("MalformedXML", "the part list is empty")
        if [n for n, _ in wanted] != sorted({n for n, _ in wanted}):
            raise S3Error("InvalidPartOrder", "parts must be listed in ascending order, once")
        ns = app._ns(bucket)

        def finish() -> Any:
            record = self._record(upload, bucket, key)
            infos = []
            for i, (number, etag) in enumerate(wanted):
                try:
                    info = self.staging.stat(_part_key(upload, number))
                except NotFound:
                    raise S3Error("InvalidPart", f"part {number} was not uploaded") from None
                if info.etag != etag:
                    raise S3Error("InvalidPart", f"part {number} has another ETag")
                if i < len(wanted) - 1 and info.size < self.min_part:
                    raise S3Error(
                        "EntityTooSmall", f"part {number} is smaller than {self.min_part} bytes"
                    )
                infos.append(info)
            total = sum(i.size for i in infos)
            if total > app.max_object:
                raise S3Error("EntityTooLarge", f"the object would be over {app.max_object} bytes")
            digests = [bytes.fromhex(i.etag) for i in infos]
            meta = dict(record["metadata"])
            meta["s3:etag"] = md5_of_parts(digests)

            def files() -> Iterator[Any]:
                for info in infos:
                    yield self.staging.open(info.key, version=info.version)

            result = ns.put_stream(
                key, chain(files()), size=total, content_type=record["content_type"], metadata=meta
            )
            self._discard(upload)
            return result

        info = await app.run(finish)
        await req.xml(
            "CompleteMultipartUploadResult",
            [
                xml.element("Location", f"/{bucket}/{key}"),
                xml.element("Bucket", bucket),
                xml.element("Key", key),
                xml.element("ETag", f'"{info.metadata["s3:etag"]}"'),
            ],
        )

    def _discard(self, upload: str) -> None:
        # the record goes last: until then the upload can still be listed and aborted
        for info in list(self.staging.list(f"p/{upload}/")):
            self.staging.delete(info.key, missing_ok=True)
        self.staging.delete(f"u/{upload}", missing_ok=True)

    async def abort(self, app: S3App, req: S3Request) -> None:
        upload = req.params["uploadId"]

        def abort() -> None:
            self._record(upload, req.bucket, req.key)
            self._discard(upload)

        await app.run(abort)
        await req.reply(204)

    async def list_parts(self, app: S3App, req: S3Request) -> None:
        bucket, key, params = req.bucket, req.key, req.params
        upload = params["uploadId"]
        try:
            marker = int(params.get("part-number-marker", "0") or 0)
            max_parts = min(int(params.get("max-parts", "1000")), 1000)
        except ValueError:
            raise S3Error(
                "InvalidArgument", "part-number-marker and max-parts are integers"
            ) from None

        def parts() -> list[Any]:
            self._record(upload, bucket, key)
            after = _part_key(upload, marker) if marker else None
            return list(self.staging.list(f"p/{upload}/", start_after=after, limit=max_parts + 1))

        found = await app.run(parts)
        truncated = len(found) > max_parts
        found = found[:max_parts]
        out = [
            xml.element("Bucket", bucket),
            xml.element("Key", key),
            xml.element("UploadId", upload),
            xml.element("PartNumberMarker", marker),
            xml.element("MaxParts", max_parts),
            xml.element("IsTruncated", truncated),
        ]
        if found:
            out.append(xml.element("NextPartNumberMarker", int(found[-1].key.rsplit("/", 1)[1])))
        for info in found:
            out.append(
                xml.element(
                    "Part",
                    [
                        xml.element("PartNumber", int(info.key.rsplit("/", 1)[1])),
                        xml.element("LastModified", xml.iso8601(info.mtime)),
                        xml.element("ETag", f'"{info.etag}"'),
                        xml.element("Size", info.size),
                    ],
                )
            )
        await req.xml("ListPartsResult", out)

    async def list_uploads(self, app: S3App, req: S3Request) -> None:
        bucket = req.bucket
        prefix = req.params.get("prefix", "")

        def uploads() -> list[tuple[str, dict[str, Any]]]:
            out = []
            for info in self.staging.list("u/"):
                record = json.loads(self.staging.get(info.key))
                if record["bucket"] == bucket and record["key"].startswith(prefix):
                    out.append((info.key[2:], record))
            return sorted(out, key=lambda u: (u[1]["key"], u[1]["initiated"]))[:1000]

        found = await app.run(uploads)
        out = [
            xml.element("Bucket", bucket),
            xml.element("Prefix", prefix),
            xml.element("MaxUploads", 1000),
            xml.element("IsTruncated", False),
        ]
        for upload, record in found:
            out.append(
                xml.element(
                    "Upload",
                    [
                        xml.element("Key", record["key"]),
                        xml.element("UploadId", upload),
                        xml.element("Initiated", xml.iso8601(record["initiated"])),
                        xml.element("StorageClass", "STANDARD"),
                    ],
                )
            )
        await req.xml("ListMultipartUploadsResult", out)
