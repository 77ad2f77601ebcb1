"""The S3 API: path-style routing of bucket (namespace) and object requests.

Every request is authenticated (``_auth``), authorized against the principal's grant on
the namespace, then served by one handler. Store calls block, so they run in a bounded
thread pool: concurrent PUTs then meet in the store's group commit and share fsyncs.
Bodies are verified in full (``_body``) before the store commits anything.
"""

from __future__ import annotations

import base64
import email.utils
import hashlib
import io
import logging
import os
import secrets
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO, TypeVar
from urllib.parse import quote, unquote

import anyio
from anyio import to_thread

from lakeloop import _sigv4 as sigv4
from lakeloop.errors import InvalidInput, LakeloopError, NotFound
from lakeloop.gateway import _xml as xml
from lakeloop.gateway._auth import verify
from lakeloop.gateway._body import Body, SyncReader, next_raw, read_all
from lakeloop.gateway._credentials import Credentials, Principal
from lakeloop.gateway._errors import S3Error, from_lakeloop
from lakeloop.gateway._multipart import Multipart
from lakeloop.gateway._request import Receive, S3Request, Send, respond
from lakeloop.store import Lake, Namespace, ObjectInfo

__all__ = ["Receive", "S3App", "Send", "check_target", "s3_etag", "user_metadata"]

log = logging.getLogger("lakeloop.gateway")

T = TypeVar("T")

# gateway-owned metadata keys start with "s3:" (HTTP header names cannot hold ':')
ETAG_META = "s3:etag"
_STORED_HEADERS = (
    "cache-control",
    "content-disposition",
    "content-encoding",
    "content-language",
    "expires",
)
# subresources lakeloop does not implement: NotImplemented, never a 500
_UNSUPPORTED = {
    "accelerate",
    "acl",
    "analytics",
    "attributes",
    "cors",
    "encryption",
    "intelligent-tiering",
    "inventory",
    "legal-hold",
    "lifecycle",
    "logging",
    "metrics",
    "notification",
    "object-lock",
    "ownershipControls",
    "policy",
    "policyStatus",
    "publicAccessBlock",
    "replication",
    "requestPayment",
    "restore",
    "retention",
    "select",
    "tagging",
    "torrent",
    "versions",
    "website",
}


def s3_etag(info: ObjectInfo) -> str:
    """The ETag S3 clients expect: the MD5, or ``md5-of-md5s-N`` after a multipart upload."""
    return info.metadata.get(ETAG_META) or info.etag


def user_metadata(info: ObjectInfo) -> dict[str, str]:
    """The object's user metadata, without the keys the gateway keeps for itself."""
    return {k: v for k, v in info.metadata.items() if not k.startswith("s3:")}


def _http_date(ts: float) -> str:
    return email.utils.formatdate(ts, usegmt=True)


def _object_headers(info: ObjectInfo) -> list[tuple[bytes, bytes]]:
    headers = [
        (b"etag", f'"{s3_etag(info)}"'.encode()),
        (b"last-modified", _http_date(info.mtime).encode()),
        (
            b"content-type",
            (info.content_type or "binary/octet-stream").encode("latin-1", "replace"),
        ),
        (b"accept-ranges", b"bytes"),
        (b"x-amz-version-id", str(info.version).encode()),
        # an object is data, never a page of this host (the web UI lives on it): a stored
        # text/html or SVG opened in a browser runs no script and reaches no cookie
        (b"x-content-type-options", b"nosniff"),
        (b"content-security-policy", b"sandbox"),
    ]
    for k, v in info.metadata.items():
        if k.startswith("s3:h:"):
            headers.append((k[5:].encode("latin-1"), v.encode("latin-1", "replace")))
        elif not k.startswith("s3:"):
            headers.append(
                (f"x-amz-meta-{k}".encode("latin-1", "replace"), v.encode("latin-1", "replace"))
            )
    return headers


def _request_metadata(headers: dict[str, str]) -> dict[str, str]:
    meta = {k[11:]: v for k, v in headers.items() if k.startswith("x-amz-meta-")}
    for h in _STORED_HEADERS:
        if h in headers:
            meta[f"s3:h:{h}"] = headers[h]
    return meta


def check_target(
    ns: Namespace, key: str, content_type: str | None, metadata: dict[str, str]
) -> None:
    """Refuse a key or metadata the store would refuse, before any of the body is read.

    The store checks the same when it writes, but only after the body has arrived (a
    small body is read into memory first); checked here, a bad key costs nothing. The
    checks are the store's own (``Namespace.check_write``); ``from_lakeloop`` names the
    S3 error of each refusal."""
    try:
        ns.check_write(key, content_type, metadata)
    except LakeloopError as exc:
        raise from_lakeloop(exc) from None


def _parse_range(text: str, size: int) -> tuple[int, int] | None:
    """``bytes=a-b`` -> (start, end exclusive); None to serve the whole object."""
    unit, _, spec = text.partition("=")
    if unit.strip() != "bytes" or "," in spec:
        return None
    first, dash, last = spec.strip().partition("-")
    if not dash:
        return None
    try:
        if first == "":
            n = int(last)
            if n <= 0:
                raise S3Error("InvalidRange", "the requested range is not satisfiable")
            return max(size - n, 0), size
        start = int(first)
        end = int(last) + 1 if last else size
    except ValueError:
        return None
    if start < 0 or (last and end <= start):
        return None  # not a valid range: serve the whole object
    if start >= size:
        raise S3Error("InvalidRange", "the requested range is not satisfiable")
    return start, min(end, size)


def _encode_token(cursor: str) -> str:
    return base64.urlsafe_b64encode(cursor.encode()).decode()


def _decode_token(token: str) -> str:
    try:
        return base64.urlsafe_b64decode(token.encode()).decode()
    except (ValueError, UnicodeDecodeError):
        raise S3Error("InvalidArgument", "the continuation token is not valid") from None


_READ_TRIES = 10  # reads racing overwrites of the same key: then 503, which clients retry
_AFTER_ALL = "\U0010ffff"  # sorts after every other character: skips a common prefix


def list_page(
    ns: Namespace, prefix: str, delimiter: str, after: str | None, max_keys: int
) -> tuple[list[ObjectInfo], list[str], bool, str | None]:
    """One page of a listing: (objects, common prefixes, truncated, cursor for the next)."""
    contents: list[ObjectInfo] = []
    prefixes: list[str] = []
    cursor = after
    while True:
        restart = False
        for info in ns.list(prefix, start_after=cursor):
            if len(contents) + len(prefixes) >= max_keys:
                return contents, prefixes, True, cursor
            if delimiter:
                rest = info.key[len(prefix) :]
                cut = rest.find(delimiter)
                if cut >= 0:
                    common = prefix + rest[: cut + len(delimiter)]
                    prefixes.append(common)
                    cursor = common + _AFTER_ALL
                    restart = True
                    break
            contents.append(info)
            cursor = info.key
        if not restart:
            return contents, prefixes, False, None


class S3App:
    """The S3 half of the gateway, as a raw ASGI app (it is on every request's path)."""

    def __init__(self, lake: Lake, credentials: Credentials) -> None:
        self.lake = lake
        self.credentials = credentials
        s = lake.settings
        self.max_object = int(s["gateway_max_object_size"])
        self.max_skew = float(s["gateway_max_clock_skew"])
        self.max_expires = int(s["gateway_presign_max_expires"])
        self.anonymous = bool(s["gateway_anonymous"])
        self.max_xml = int(s["gateway_max_xml_bytes"])
        self.memory_limit = int(s["gateway_memory_body_limit"])
        self.inline_reads = int(s["gateway_inline_read_max"])
        self.limiter = anyio.CapacityLimiter(max(int(s["gateway_threads"]), 1))
        self.multipart = Multipart(lake)
        self._ids = secrets.token_hex(4).upper()
        self._seq = 0

    # ------------------------------------------------------------------ plumbing
    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        return await to_thread.run_sync(fn, *args, limiter=self.limiter)

    def _request_id(self) -> str:
        self._seq += 1
        return f"{self._ids}{self._seq:012X}"

    async def _drain(self, req: S3Request, limit: int) -> bytes:
        parts, total, more = [], 0, True
        while more:
            raw, more = await next_raw(req.receive)
            total += len(raw)
            if total > limit:
                raise S3Error("MalformedXML", f"the request document is over {limit} bytes")
            parts.append(raw)
        return b"".join(parts)

    async def _document(self, req: S3Request) -> bytes:
        body = Body(req.headers, req.auth, self.max_xml)
        try:
            return await read_all(req.receive, body)
        except S3Error as exc:
            if exc.code == "EntityTooLarge":
                raise S3Error(
                    "MalformedXML", f"the request document is over {self.max_xml} bytes"
                ) from None
            raise

    # ------------------------------------------------------------------ entry
    async def __call__(self, scope: dict[str, Any], asgi_receive: Receive, send: Send) -> None:
        rid = self._request_id()
        method = scope["method"]
        head = method == "HEAD"
        path: str = scope["path"]
        resource = path
        body_done = False

        async def receive() -> dict[str, Any]:
            nonlocal body_done
            message: dict[str, Any] = await asgi_receive()
            if message["type"] != "http.request" or not message.get("more_body"):
                body_done = True
            return message

        try:
            raw_query = scope.get("query_string", b"").decode("latin-1")
            query = sigv4.parse_query(raw_query)
            params = dict(query)
            headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
            raw_path = scope.get("raw_path", b"").decode("latin-1") or path
            self.credentials.refresh()
            auth = verify(
                method,
                path,
                raw_path,
                query,
                headers,
                self.credentials,
                max_skew=self.max_skew,
                max_expires=self.max_expires,
                anonymous=self.anonymous,
            )
            bucket, _, key = path.lstrip("/").partition("/")
            req = S3Request(method, bucket, key, params, headers, auth, receive, send, rid)
            if not bucket:
                if method != "GET":
                    raise S3Error("MethodNotAllowed", "only GET (ListBuckets) works on /")
                await self.list_buckets(req)
                return
            for name in params:
                if name in _UNSUPPORTED:
                    raise S3Error("NotImplemented", f"?{name} is not implemented by lakeloop")
            version = params.get("versionId", "null")
            if version not in ("", "null") and (method not in ("GET", "HEAD") or not key):
                # exact-version reads only: a lake version is a sequence number that a
                # snapshot pins; listing or deleting versions is not offered
                raise S3Error("NotImplemented", "versionId works on GET and HEAD of an object")
            if not key:
                await self.bucket(req)
            else:
                if len(key.encode("utf-8", "surrogatepass")) > 1024:
                    raise S3Error("KeyTooLongError", "your key is too long (1024 bytes at most)")
                await self.object(req)
        except Exception as exc:
            if isinstance(exc, S3Error):
                error = exc
            elif isinstance(exc, LakeloopError):
                error = from_lakeloop(exc)
            else:
                log.exception("gateway: %s %s failed", method, path)
                error = S3Error("InternalError", "internal error; see the gateway log")
            # A body left unread (refused before it was read, or cut short) would be
            # parsed as the next request on this connection: close it instead.
            unread = not body_done and self._has_body(scope["headers"])
            await self._error(send, error, resource, rid, head, close=unread)

    @staticmethod
    def _has_body(raw_headers: list[tuple[bytes, bytes]]) -> bool:
        for k, v in raw_headers:
            if k == b"transfer-encoding" or (k == b"content-length" and v.strip() != b"0"):
                return True
        return False

    async def _error(
        self, send: Send, exc: S3Error, resource: str, rid: str, head: bool, *, close: bool
    ) -> None:
        body = xml.error_xml(exc.code, exc.message, exc.resource or resource, rid)
        extra = [(b"connection", b"close")] if close else []
        try:
            await respond(send, exc.status, body, extra, head=head, request_id=rid)
        except Exception:  # the response had started already: nothing more to say
            log.debug("could not send %s for %s", exc.code, resource)

    def _authorize(self, principal: Principal, bucket: str, role: str) -> None:
        if bucket.startswith("_"):  # lakeloop's reserved namespaces are not buckets
            raise S3Error("InvalidBucketName", "bucket names cannot start with '_'")
        if not principal.can(bucket, role):
            raise S3Error(
                "AccessDenied", f"{principal.name} has no {role} grant on {bucket}", resource=bucket
            )

    def _ns(self, bucket: str) -> Namespace:
        try:
            return self.lake.namespace(bucket)
        except NotFound as exc:
            raise S3Error("NoSuchBucket", str(exc), resource=bucket) from None
        except InvalidInput:
            raise S3Error("NoSuchBucket", "the specified bucket does not exist") from None

    # ------------------------------------------------------------------ service
    async def list_buckets(self, req: S3Request) -> None:
        principal = req.principal

        def visible() -> list[tuple[str, float]]:
            out = []
            for name in self.lake.namespaces():
                if principal.role(name):
                    st = os.stat(self.lake.root / "namespaces" / name)
                    out.append((name, st.st_mtime))
            return out

        buckets = await self.run(visible)
        await req.xml(
            "ListAllMyBucketsResult",
            [
                xml.element("Owner", [xml.element("ID", principal.name)]),
                xml.element(
                    "Buckets",
                    [
                        xml.element(
                            "Bucket",
                            [xml.element("Name", n), xml.element("CreationDate", xml.iso8601(t))],
                        )
                        for n, t in buckets
                    ],
                ),
            ],
        )

    # ------------------------------------------------------------------ buckets
    async def bucket(self, req: S3Request) -> None:
        method, bucket, params, p = req.method, req.bucket, req.params, req.principal
        if method == "PUT":
            self._authorize(p, bucket, "admin")
            await self._drain(req, self.max_xml)  # CreateBucketConfiguration: ignored
            await self.run(self.lake.create_namespace, bucket)
            await req.reply(200, headers=[(b"location", f"/{bucket}".encode())])
            return
        if method == "DELETE":
            self._authorize(p, bucket, "admin")
            self._ns(bucket)
            try:
                await self.run(self.lake.delete_namespace, bucket)
            except InvalidInput as exc:
                raise S3Error("BucketNotEmpty", str(exc), resource=bucket) from None
            await req.reply(204)
            return
        if method == "HEAD":
            self._authorize(p, bucket, "read")
            self._ns(bucket)
            await req.reply(200, head=True)
            return
        if method == "POST" and "delete" in params:
            self._authorize(p, bucket, "write")
            await self.delete_objects(req)
            return
        if method != "GET":
            raise S3Error("NotImplemented", f"{method} on a bucket is not implemented")
        self._authorize(p, bucket, "read")
        ns = self._ns(bucket)
        if "location" in params:
            await req.xml("LocationConstraint", [])
            return
        if "versioning" in params:
            await req.xml("VersioningConfiguration", [])
            return
        if "uploads" in params:
            await self.multipart.list_uploads(self, req)
            return
        await self.list_objects(req, ns)

    async def list_objects(self, req: S3Request, ns: Namespace) -> None:
        params = req.params
        v2 = params.get("list-type") == "2"
        prefix = params.get("prefix", "")
        delimiter = params.get("delimiter", "")
        encoding = params.get("encoding-type")
        if encoding not in (None, "url"):
            raise S3Error("InvalidArgument", "encoding-type must be url")
        try:
            max_keys = min(max(int(params.get("max-keys", "1000")), 0), 1000)
        except ValueError:
            raise S3Error("InvalidArgument", "max-keys must be an integer") from None
        if v2:
            token = params.get("continuation-token")
            after = _decode_token(token) if token else params.get("start-after") or None
        else:
            after = params.get("marker") or None
            if after and delimiter and after.endswith(delimiter) and after.startswith(prefix):
                after += _AFTER_ALL  # a common prefix as marker: resume after all its keys
        contents, prefixes, truncated, cursor = await self.run(
            list_page, ns, prefix, delimiter, after, max_keys
        )

        def enc(text: str) -> str:
            return quote(text, safe="/") if encoding == "url" else text

        out = [
            xml.element("Name", ns.name),
            xml.element("Prefix", enc(prefix)),
            xml.element("MaxKeys", max_keys),
            xml.element("IsTruncated", truncated),
        ]
        if delimiter:
            out.append(xml.element("Delimiter", enc(delimiter)))
        if encoding:
            out.append(xml.element("EncodingType", encoding))
        if v2:
            out.append(xml.element("KeyCount", len(contents) + len(prefixes)))
            if "continuation-token" in params:
                out.append(xml.element("ContinuationToken", params["continuation-token"]))
            if "start-after" in params:
                out.append(xml.element("StartAfter", enc(params["start-after"])))
            if truncated and cursor is not None:
                out.append(xml.element("NextContinuationToken", _encode_token(cursor)))
        else:
            out.append(xml.element("Marker", enc(params.get("marker", ""))))
            if truncated and cursor is not None:
                # the last key or common prefix, as S3 gives it (see the marker above)
                out.append(xml.element("NextMarker", enc(cursor.removesuffix(_AFTER_ALL))))
        for info in contents:
            out.append(
                xml.element(
                    "Contents",
                    [
                        xml.element("Key", enc(info.key)),
                        xml.element("LastModified", xml.iso8601(info.mtime)),
                        xml.element("ETag", f'"{s3_etag(info)}"'),
                        xml.element("Size", info.size),
                        xml.element("StorageClass", "STANDARD"),
                    ],
                )
            )
        for common in prefixes:
            out.append(xml.element("CommonPrefixes", [xml.element("Prefix", enc(common))]))
        await req.xml("ListBucketResult", out)

    async def delete_objects(self, req: S3Request) -> None:
        ns = self._ns(req.bucket)
        doc = xml.parse(await self._document(req), "Delete")
        quiet = (doc.findtext("Quiet") or "").strip().lower() == "true"
        keys = [obj.findtext("Key") for obj in doc.findall("Object")]
        if len(keys) > 1000 or any(k is None for k in keys):
            raise S3Error("MalformedXML", "1 to 1000 <Object><Key> entries are expected")

        def delete_all() -> list[str]:
            out = []
            for k in keys:
                assert k is not None
                try:
                    ns.delete(k, missing_ok=True)
                    if not quiet:
                        out.append(xml.element("Deleted", [xml.element("Key", k)]))
                except LakeloopError as exc:
                    err = from_lakeloop(exc)
                    out.append(
                        xml.element(
                            "Error",
                            [
                                xml.element("Key", k),
                                xml.element("Code", err.code),
                                xml.element("Message", err.message),
                            ],
                        )
                    )
            return out

        await req.xml("DeleteResult", await self.run(delete_all))

    # ------------------------------------------------------------------ objects
    async def object(self, req: S3Request) -> None:
        method, bucket, params, p = req.method, req.bucket, req.params, req.principal
        if method in ("GET", "HEAD"):
            self._authorize(p, bucket, "read")
            if "uploadId" in params and method == "GET":
                await self.multipart.list_parts(self, req)
                return
            await self.get_object(req)
            return
        self._authorize(p, bucket, "write")
        if method == "PUT":
            if "uploadId" in params or "partNumber" in params:
                if "x-amz-copy-source" in req.headers:
                    raise S3Error("NotImplemented", "UploadPartCopy is not implemented")
                await self.multipart.upload_part(self, req)
            elif "x-amz-copy-source" in req.headers:
                await self.copy_object(req)
            else:
                await self.put_object(req)
            return
        if method == "DELETE":
            if "uploadId" in params:
                await self.multipart.abort(self, req)
                return
            ns = self._ns(bucket)
            await self.run(lambda: ns.delete(req.key, missing_ok=True))
            await req.reply(204)
            return
        if method == "POST":
            if "uploads" in params:
                await self.multipart.create(self, req)
                return
            if "uploadId" in params:
                await self.multipart.complete(self, req)
                return
        raise S3Error("NotImplemented", f"{method} on an object is not implemented")

    async def receive_into(
        self,
        req: S3Request,
        ns: Namespace,
        key: str,
        *,
        content_type: str | None,
        metadata: dict[str, str],
    ) -> ObjectInfo:
        """Verify the request body and store it under *key*; nothing is stored if it fails.

        The key and metadata are checked against the namespace's limits before the first
        byte of the body is read: a refused key never costs the upload's I/O."""
        headers = req.headers
        if (
            "content-length" not in headers
            and "x-amz-decoded-content-length" not in headers
            and headers.get("transfer-encoding", "").lower() != "chunked"
        ):
            raise S3Error("MissingContentLength", "you must provide the Content-Length")
        check_target(ns, key, content_type, metadata)
        body = Body(headers, req.auth, self.max_object)
        if body.expected is not None and body.expected <= self.memory_limit:
            data = await read_all(req.receive, body)
            md5 = body.md5.digest()
            return await self.run(
                lambda: ns.put(key, data, content_type=content_type, metadata=metadata, md5=md5)
            )
        reader = io.BufferedReader(SyncReader(req.receive, body), 1 << 20)
        return await self.run(
            lambda: ns.put_stream(
                key, reader, size=body.expected, content_type=content_type, metadata=metadata
            )
        )

    async def put_object(self, req: S3Request) -> None:
        ns = self._ns(req.bucket)
        info = await self.receive_into(
            req,
            ns,
            req.key,
            content_type=req.headers.get("content-type"),
            metadata=_request_metadata(req.headers),
        )
        hs = [(b"etag", f'"{info.etag}"'.encode())]
        hs.append((b"x-amz-version-id", str(info.version).encode()))
        await req.reply(200, headers=hs)

    def _conditions(self, info: ObjectInfo, headers: dict[str, str]) -> int | None:
        """The status a conditional request gets (412/304), or None to serve it."""
        etag = s3_etag(info)

        def matches(value: str) -> bool:
            tags = [t.strip().removeprefix("W/").strip('"') for t in value.split(",")]
            return "*" in tags or etag in tags

        if "if-match" in headers and not matches(headers["if-match"]):
            return 412
        if "if-unmodified-since" in headers and "if-match" not in headers:
            since = _parse_http_date(headers["if-unmodified-since"])
            if since is not None and int(info.mtime) > since:
                return 412
        if "if-none-match" in headers:
            if matches(headers["if-none-match"]):
                return 304
        elif "if-modified-since" in headers:
            since = _parse_http_date(headers["if-modified-since"])
            if since is not None and int(info.mtime) <= since:
                return 304
        return None

    async def get_object(self, req: S3Request) -> None:
        ns, key, headers, head = self._ns(req.bucket), req.key, req.headers, req.head
        small = self.memory_limit
        exact = _version_param(req.params)
        if exact is not None:
            # an exact version never changes: one stat, then its bytes (pinned versions
            # stay readable after overwrites; see Namespace.pin)
            def fetch_exact() -> tuple[ObjectInfo, bytes | None, BinaryIO | None]:
                info = ns.stat(key, version=exact)
                if head or self._conditions(info, headers) is not None:
                    return info, None, None
                if info.size <= small:
                    return info, ns.get(key, version=exact), None
                return info, None, ns.open(key, version=exact)

            info, data, opened = await self.run(fetch_exact)
            try:
                await self._answer_get(req, info, data, opened)
            finally:
                if opened is not None:
                    opened.close()
            return

        def fetch(limit: int) -> tuple[ObjectInfo, bytes | None]:
            for _ in range(_READ_TRIES):
                info = ns.stat(key)
                if head or info.size > limit or self._conditions(info, headers):
                    return info, None
                data = ns.get(key)
                # metadata and bytes come from two lookups: an overwrite in between would
                # pair them wrongly, which the store's MD5 of the content tells (cheaply)
                if hashlib.md5(data, usedforsecurity=False).hexdigest() == info.etag:
                    return info, data
            raise S3Error("ServiceUnavailable", "the object keeps changing; retry")

        if self.inline_reads:
            # An index lookup and one pread of a small record: cheaper on the event loop
            # than the hand-off to a worker thread and back (see gateway_inline_read_max).
            info, data = fetch(self.inline_reads)
            if data is None and not head and self.inline_reads < info.size <= small:
                info, data = await self.run(fetch, small)
        else:
            info, data = await self.run(fetch, small)
        stream: BinaryIO | None = None
        if data is None and not head and self._conditions(info, headers) is None:
            stream, info = await self.run(_open_current, ns, key)
        try:
            await self._answer_get(req, info, data, stream)
        finally:
            if stream is not None:
                stream.close()

    async def _answer_get(
        self, req: S3Request, info: ObjectInfo, data: bytes | None, stream: BinaryIO | None
    ) -> None:
        headers, params, head = req.headers, req.params, req.head
        status = self._conditions(info, headers)
        hs = _object_headers(info)
        if status == 304:
            await req.reply(304, headers=hs[:2], head=True, length=0)
            return
        if status == 412:
            raise S3Error("PreconditionFailed", "at least one of the preconditions failed")
        for param, header in (
            ("response-content-type", b"content-type"),
            ("response-content-disposition", b"content-disposition"),
            ("response-cache-control", b"cache-control"),
            ("response-content-encoding", b"content-encoding"),
        ):
            if param in params:
                hs = [h for h in hs if h[0] != header]
                hs.append((header, params[param].encode("latin-1", "replace")))
        start, end = 0, info.size
        code = 200
        if "range" in headers and info.size > 0:
            picked = _parse_range(headers["range"], info.size)
            if picked is not None:
                start, end = picked
                code = 206
                hs.append((b"content-range", f"bytes {start}-{end - 1}/{info.size}".encode()))
        elif "range" in headers:
            _parse_range(headers["range"], 0)  # an empty object has no satisfiable range: 416
        if head:
            await req.reply(code, headers=hs, head=True, length=end - start)
            return
        if data is not None:
            await req.reply(code, data[start:end], hs)
            return
        assert stream is not None
        if start:
            await self.run(stream.seek, start)
        hs.append((b"content-length", str(end - start).encode()))
        hs.append((b"x-amz-request-id", req.rid.encode()))
        await req.send({"type": "http.response.start", "status": code, "headers": hs})
        left = end - start
        while left > 0:
            chunk = await self.run(stream.read, min(left, 1 << 20))
            if not chunk:
                break
            left -= len(chunk)
            await req.send({"type": "http.response.body", "body": chunk, "more_body": left > 0})

    async def copy_object(self, req: S3Request) -> None:
        bucket, key, headers = req.bucket, req.key, req.headers
        source = unquote(headers["x-amz-copy-source"]).split("?", 1)[0].lstrip("/")
        src_bucket, _, src_key = source.partition("/")
        if not src_bucket or not src_key:
            raise S3Error("InvalidArgument", "x-amz-copy-source must be BUCKET/KEY")
        self._authorize(req.principal, src_bucket, "read")
        await self._drain(req, 0)
        src, dst = self._ns(src_bucket), self._ns(bucket)
        replace = headers.get("x-amz-metadata-directive", "COPY").upper() == "REPLACE"

        def copy() -> ObjectInfo:
            info = src.stat(src_key)
            if self._conditions_copy(info, headers):
                raise S3Error("PreconditionFailed", "a copy-source precondition failed")
            if replace:
                ctype, meta = headers.get("content-type"), _request_metadata(headers)
            else:
                ctype, meta = info.content_type, dict(info.metadata)
            with src.open(src_key, version=info.version) as f:
                return dst.put_stream(key, f, size=info.size, content_type=ctype, metadata=meta)

        info = await self.run(copy)
        await req.xml(
            "CopyObjectResult",
            [
                xml.element("LastModified", xml.iso8601(info.mtime)),
                xml.element("ETag", f'"{s3_etag(info)}"'),
            ],
        )

    def _conditions_copy(self, info: ObjectInfo, headers: dict[str, str]) -> bool:
        renamed = {
            k.removeprefix("x-amz-copy-source-"): v
            for k, v in headers.items()
            if k.startswith("x-amz-copy-source-if-")
        }
        return self._conditions(info, renamed) is not None


def _version_param(params: dict[str, str]) -> int | None:
    """``?versionId=N`` -> N (a lake version: the sequence number ``stat`` reports);
    absent, empty or S3's ``null`` -> None (the current version)."""
    value = params.get("versionId", "null")
    if value in ("", "null"):
        return None
    if not value.isdigit() or int(value) < 1:
        raise S3Error("InvalidArgument", "versionId must be a lake version (a positive integer)")
    return int(value)


def _open_current(ns: Namespace, key: str) -> tuple[BinaryIO, ObjectInfo]:
    """Open *key* with the metadata of exactly the version opened.

    Two stats that agree around the open prove no write landed in between, so the
    reader holds the version they describe (an open file stays readable after an
    overwrite).
    """
    for _ in range(_READ_TRIES):
        before = ns.stat(key)
        f = ns.open(key)
        if ns.stat(key).version == before.version:
            return f, before
        f.close()
    raise S3Error("ServiceUnavailable", "the object keeps changing; retry")


def _parse_http_date(text: str) -> int | None:
    try:
        parsed = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    return int(parsed.timestamp())


def md5_of_parts(digests: list[bytes]) -> str:
    """S3's multipart ETag: MD5 of the concatenated part MD5s, dash, part count."""
    return f"{hashlib.md5(b''.join(digests), usedforsecurity=False).hexdigest()}-{len(digests)}"


def chain(files: Iterator[io.BufferedIOBase]) -> io.BufferedReader:
    """One reader over several, in order (multipart completion)."""

    class _Chain(io.RawIOBase):
        def __init__(self) -> None:
            self._current: Any = next(files, None)

        def readable(self) -> bool:
            return True

        def readinto(self, buffer: Any) -> int:
            while self._current is not None:
                n = self._current.readinto(buffer)
                if n:
                    return int(n)
                self._current.close()
                self._current = next(files, None)
            return 0

    return io.BufferedReader(_Chain(), 1 << 20)
