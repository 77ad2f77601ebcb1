"""A lake on the other side of a gateway: the same namespace API, spoken as signed S3.

``Lake.open("http://host:9000", access_key=..., secret_key=...)`` returns a
``RemoteLake``; keys also come from ``LAKELOOP_ACCESS_KEY`` / ``LAKELOOP_SECRET_KEY``
(or ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY``). It speaks HTTP only (the
standard library's ``http.client``, one keep-alive connection per thread) and imports
nothing of the gateway: every request is signed with SigV4 and its body's SHA-256, so
the gateway refuses a body altered on the way.

What differs from a local lake: ``ObjectInfo.version`` is 0 (S3 has no sequence
numbers), ``put_many``/``scan``/``changes``/``pin`` are not offered, and listings carry
no content type or metadata (``stat`` does).
"""

from __future__ import annotations

import calendar
import hashlib
import http.client
import io
import json
import os
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Iterator
from email.utils import parsedate_to_datetime
from typing import Any, BinaryIO
from urllib.parse import quote, urlsplit

from lakeloop import _sigv4 as sigv4
from lakeloop.errors import (
    AccessDenied,
    AlreadyExists,
    ChecksumError,
    InvalidInput,
    InvalidKey,
    InvalidName,
    LakeloopError,
    NamespaceUnavailable,
    NotFound,
    Refused,
    StoreError,
)
from lakeloop.store.namespace import ObjectInfo

__all__ = ["RemoteInternal", "RemoteLake", "RemoteNamespace"]

_PART = 8 << 20  # multipart part size for put_stream of large streams
_SINGLE_PUT = 64 << 20  # streams up to this size go in one PUT
_INTERNAL = {"_registry": "registry", "_runs": "runs", "_catalog": "catalog"}
_LOCATE_PAGE = 20_000  # versions per locate request (the JSON API takes bodies up to 1 MiB)


def _text(el: ET.Element, tag: str) -> str:
    for child in el:
        if child.tag.rsplit("}", 1)[-1] == tag:
            return child.text or ""
    return ""


def _children(el: ET.Element, tag: str) -> list[ET.Element]:
    return [c for c in el if c.tag.rsplit("}", 1)[-1] == tag]


class _Response:
    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status, self.headers, self.body = status, headers, body


class RemoteLake:
    """A lake served by ``lakeloop gateway`` (or any S3 server), used like a local one."""

    remote = True  # what Registry, Runs, Catalog and the readers look at

    def __init__(
        self,
        url: str,
        *,
        access_key: str | None = None,
        secret_key: str | None = None,
        region: str = "us-east-1",
        timeout: float = 60.0,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise InvalidInput("expected http(s)://HOST:PORT", op="open lake", target=url)
        self.url = url.rstrip("/")
        self.root = self.url
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port or (443 if self._https else 80)
        self._host_header = parts.netloc
        env = os.environ
        self._access = (
            access_key or env.get("LAKELOOP_ACCESS_KEY") or env.get("AWS_ACCESS_KEY_ID") or ""
        )
        self._secret = (
            secret_key or env.get("LAKELOOP_SECRET_KEY") or env.get("AWS_SECRET_ACCESS_KEY") or ""
        )
        if not self._access or not self._secret:
            raise AccessDenied(
                "no access key",
                op="open lake",
                target=url,
                hint="pass access_key= and secret_key=, or set LAKELOOP_ACCESS_KEY and "
                "LAKELOOP_SECRET_KEY",
            )
        self._region = region
        self._timeout = timeout
        self._local = threading.local()
        self._conns: dict[int, http.client.HTTPConnection] = {}  # thread id -> connection
        self._conns_lock = threading.Lock()
        self._closed = False

    # ------------------------------------------------------------------ HTTP
    def _new_connection(self) -> http.client.HTTPConnection:
        cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
        return cls(self._host, self._port, timeout=self._timeout)

    def _connection(self, fresh: bool = False) -> http.client.HTTPConnection:
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        if conn is None or fresh:
            if conn is not None:
                conn.close()
            conn = self._new_connection()
            self._local.conn = conn
            with self._conns_lock:
                self._conns[threading.get_ident()] = conn
        return conn

    def _drop_connections(self, threads: Iterable[int]) -> None:
        """Close the keep-alive connections of *threads* (a finished pool's workers)."""
        with self._conns_lock:
            conns = [self._conns.pop(t) for t in threads if t in self._conns]
        for conn in conns:
            conn.close()

    def request(
        self,
        method: str,
        path: str,
        query: list[tuple[str, str]] | None = None,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
        *,
        stream: bool = False,
    ) -> Any:
        """Send one signed request; the body (or, with *stream*, the open response)."""
        if self._closed:
            raise NamespaceUnavailable("the lake is closed", op=method, target=self.url)
        query = query or []
        hs = {"host": self._host_header, **{k.lower(): v for k, v in (headers or {}).items()}}
        if body or method in ("PUT", "POST"):
            hs["content-length"] = str(len(body))
        amz_date = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        signed = sigv4.sign_headers(
            method,
            path,
            query,
            hs,
            access_key=self._access,
            secret_key=self._secret,
            amz_date=amz_date,
            region=self._region,
            payload_hash=hashlib.sha256(body).hexdigest(),
        )
        target = quote(path, safe="/~")
        if query:
            target += "?" + sigv4.canonical_query(query)
        for attempt in (0, 1):
            # a streamed response keeps its connection busy: it gets one of its own
            conn = self._new_connection() if stream else self._connection(fresh=attempt > 0)
            try:
                conn.request(method, target, body=body or None, headers=signed)
                resp = conn.getresponse()
                break
            except (ConnectionError, http.client.HTTPException, BrokenPipeError):
                if attempt:
                    raise
        headers_out = {k.lower(): v for k, v in resp.getheaders()}
        if stream and resp.status < 300:
            return resp, conn
        try:
            data = resp.read()
        except (http.client.IncompleteRead, ConnectionError) as exc:
            # the server failed after its answer began (a streamed object found damaged
            # at its end): never hand back a short body as if it were whole
            conn.close()
            got = len(exc.partial) if isinstance(exc, http.client.IncompleteRead) else 0
            promised = headers_out.get("content-length", "?")
            raise StoreError(
                f"the answer was cut short: {got:,} of {promised} bytes came",
                op=f"{method} {path}",
                target=self.url,
                hint="the gateway's log says why (a damaged object: `lakeloop fsck` on its lake)",
            ) from None
        if stream:
            conn.close()
        return _Response(resp.status, headers_out, data)

    def _check(self, resp: _Response, op: str, target: str) -> _Response:
        if resp.status < 300 or resp.status == 304:
            return resp
        code, message = "", resp.body.decode("utf-8", "replace")[:200]
        if resp.body.startswith(b"<?xml") or resp.body.startswith(b"<Error"):
            try:
                doc = ET.fromstring(resp.body)
                code, message = _text(doc, "Code"), _text(doc, "Message")
            except ET.ParseError:
                pass
        raise _error(resp.status, code, message, op, target)

    # ------------------------------------------------------------------ namespaces
    def namespaces(self) -> list[str]:
        """Names of the namespaces this principal holds a grant on, sorted."""
        resp = self._check(self.request("GET", "/"), "list namespaces", self.url)
        doc = ET.fromstring(resp.body)
        names = []
        for buckets in _children(doc, "Buckets"):
            names += [_text(b, "Name") for b in _children(buckets, "Bucket")]
        return sorted(names)

    def has_namespace(self, name: str) -> bool:
        if name in _INTERNAL:
            return True  # served through the JSON API; the server creates it on first use
        resp = self.request("HEAD", f"/{name}")
        return resp.status == 200

    def internal_namespace(self, name: str) -> RemoteInternal:
        """The reserved namespace *name* (``_registry``, ``_runs``, ``_catalog``) through
        the gateway's JSON API: reads for whoever holds the area's grant, writes only
        where the server allows them (runs); registry and catalog changes go through
        their own endpoints, which run under the server's locks."""
        if name not in _INTERNAL:
            raise InvalidName(
                f"the gateway serves no reserved namespace {name!r}",
                op="open namespace",
                target=name,
                hint=f"served: {', '.join(sorted(_INTERNAL))}",
            )
        return RemoteInternal(self, name)

    def require(self, target: str, role: str, *, op: str) -> None:
        """``AccessDenied`` now, before any work, unless this principal holds *role* on
        *target* (a namespace, ``@models`` or ``@runs``), as the gateway's whoami says."""
        ranks = {"read": 0, "write": 1, "admin": 2}
        doc = self.api("GET", "/whoami")
        grants = doc.get("grants", {})
        held = [grants[t] for t in (target, "*") if t in grants]
        if not any(ranks.get(r, -1) >= ranks[role] for r in held):
            raise AccessDenied(
                f"{doc.get('name')} holds no {role} grant on {target}",
                op=op,
                target=self.url,
                hint=f"on the gateway's machine: lakeloop user grant {doc.get('name')} "
                f"{target} {role}",
            )

    @property
    def settings(self) -> Any:
        """This client's settings: the defaults and ``LAKELOOP_*`` variables (the
        server's ``lake.toml`` stays the server's; training knobs are the client's)."""
        from lakeloop.settings import Settings

        settings = getattr(self, "_settings", None)
        if settings is None:
            settings = self._settings = Settings({})
        return settings

    def create_namespace(self, name: str, *, exist_ok: bool = False) -> RemoteNamespace:
        try:
            self._check(self.request("PUT", f"/{name}"), "create namespace", name)
        except AlreadyExists:
            if not exist_ok:
                raise
        return RemoteNamespace(self, name)

    def namespace(self, name: str) -> RemoteNamespace:
        resp = self.request("HEAD", f"/{name}")
        if resp.status == 404:
            raise NotFound("no such namespace", op="open namespace", target=name)
        self._check(resp, "open namespace", name)
        return RemoteNamespace(self, name)

    def delete_namespace(self, name: str) -> None:
        self._check(self.request("DELETE", f"/{name}"), "delete namespace", name)

    def api(
        self,
        method: str,
        path: str,
        query: dict[str, Any] | None = None,
        body: Any = None,
    ) -> Any:
        """Call the gateway's JSON API (``/api/v1`` + *path*) -> the decoded JSON.

        *query* values are sent as strings (None values are left out); *body* as JSON.
        """
        raw = b"" if body is None else json.dumps(body).encode()
        headers = {"content-type": "application/json"} if raw else None
        return json.loads(self.api_bytes(method, path, query, raw, headers))

    def api_bytes(
        self,
        method: str,
        path: str,
        query: dict[str, Any] | None = None,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
    ) -> bytes:
        """Call the JSON API with a raw *body* -> the raw answer (artifacts, manifests)."""
        pairs = [(k, str(v)) for k, v in (query or {}).items() if v is not None]
        resp = self.request(method, "/api/v1" + path, pairs, body, headers)
        if resp.status >= 300:
            try:
                err = json.loads(resp.body)["error"]
            except (ValueError, KeyError, TypeError):
                err = {"code": "", "message": resp.body.decode("utf-8", "replace")}
            raise _error(resp.status, err["code"], err["message"], method, path)
        data: bytes = resp.body
        return data

    def close(self) -> None:
        self._closed = True
        with self._conns_lock:
            conns, self._conns = list(self._conns.values()), {}
        for conn in conns:
            conn.close()

    def __enter__(self) -> RemoteLake:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<RemoteLake {self.url!r}>"


def _error(status: int, code: str, message: str, op: str, target: str) -> LakeloopError:
    text = f"{code}: {message}" if code else message or f"HTTP {status}"
    if code in ("NoSuchKey", "NoSuchBucket", "NoSuchUpload") or status == 404:
        return NotFound(text, op=op, target=target)
    if code in ("KeyTooLongError",):
        return InvalidKey(text, op=op, target=target)
    if code in ("InvalidBucketName",):
        return InvalidName(text, op=op, target=target)
    if code in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists", "AlreadyExists"):
        return AlreadyExists(text, op=op, target=target)
    if code == "Refused":
        return Refused(text, op=op, target=target)
    if code == "ChecksumError":
        return ChecksumError(text, op=op, target=target)
    if status == 403 and code != "QuotaExceeded":
        return AccessDenied(text, op=op, target=target)
    if 400 <= status < 500:
        return InvalidInput(text, op=op, target=target)
    if status == 503:
        return NamespaceUnavailable(text, op=op, target=target)
    return StoreError(text, op=op, target=target)


def _version(headers: dict[str, str]) -> int:
    """The lake version a gateway reports (``x-amz-version-id``); 0 from other servers."""
    value = headers.get("x-amz-version-id", "")
    return int(value) if value.isdigit() else 0


def _info_from_headers(ns: str, key: str, headers: dict[str, str]) -> ObjectInfo:
    try:
        mtime = parsedate_to_datetime(headers.get("last-modified", "")).timestamp()
    except (TypeError, ValueError):
        mtime = 0.0
    meta = {k[11:]: v for k, v in headers.items() if k.startswith("x-amz-meta-")}
    return ObjectInfo(
        key=key,
        size=int(headers.get("content-length", "0")),
        etag=headers.get("etag", "").strip('"'),
        version=_version(headers),
        mtime=mtime,
        content_type=headers.get("content-type"),
        metadata=meta,
        namespace=ns,
    )


class RemoteNamespace:
    """One namespace of a remote lake: put/get/get_range/open/stat/exists/delete/list."""

    def __init__(self, lake: RemoteLake, name: str) -> None:
        self.lake = lake
        self.name = name

    def _path(self, key: str, op: str) -> str:
        if not isinstance(key, str):
            raise InvalidKey(
                f"key must be a str, not {type(key).__name__}", op=op, target=self.name
            )
        try:
            kb = key.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidKey("key is not valid UTF-8", op=op, target=self.name) from None
        if not kb:
            raise InvalidKey("key is empty", op=op, target=self.name)
        if len(kb) > 1024:
            raise InvalidKey(f"key is {len(kb)} bytes; the limit is 1024", op=op, target=self.name)
        return f"/{self.name}/{key}"

    def _check(self, resp: _Response, op: str, key: str) -> _Response:
        return self.lake._check(resp, op, f"{self.name}/{key}")

    # ------------------------------------------------------------------ writes
    def put(
        self,
        key: str,
        data: bytes | bytearray | memoryview,
        *,
        content_type: str | None = None,
        metadata: dict[str, str] | None = None,
    ) -> ObjectInfo:
        """Store *data* under *key*; returns once the gateway has made it durable."""
        path = self._path(key, "put")
        if not isinstance(data, bytes | bytearray | memoryview):
            raise InvalidInput(
                f"data must be bytes, not {type(data).__name__}", op="put", target=self.name
            )
        if metadata is not None and not all(
            isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
        ):
            raise InvalidInput("metadata must be a dict of str to str", op="put", target=key)
        data = bytes(data)
        headers = {f"x-amz-meta-{k}": v for k, v in (metadata or {}).items()}
        if content_type is not None:
            headers["content-type"] = content_type
        resp = self._check(self.lake.request("PUT", path, body=data, headers=headers), "put", key)
        return ObjectInfo(
            key=key,
            size=len(data),
            etag=resp.headers.get("etag", "").strip('"'),
            version=_version(resp.headers),
            mtime=time.time(),
            content_type=content_type,
            metadata=dict(metadata or {}),
            namespace=self.name,
        )

    def put_stream(
        self,
        key: str,
        fileobj: BinaryIO,
        size: int | None = None,
        *,
        content_type: str | None = None,
        metadata: dict[str, str] | None = None,
    ) -> ObjectInfo:
        """Store what *fileobj* yields: one PUT when small, a multipart upload when large."""
        path = self._path(key, "put")
        head = fileobj.read(_SINGLE_PUT + 1)
        if len(head) <= _SINGLE_PUT:
            if size is not None and size != len(head):
                raise InvalidInput(
                    f"stream gave {len(head)} bytes, but size={size}", op="put", target=key
                )
            return self.put(key, head, content_type=content_type, metadata=metadata)
        headers = {f"x-amz-meta-{k}": v for k, v in (metadata or {}).items()}
        if content_type is not None:
            headers["content-type"] = content_type
        resp = self._check(
            self.lake.request("POST", path, [("uploads", "")], headers=headers), "put", key
        )
        upload = _text(ET.fromstring(resp.body), "UploadId")
        buffer = io.BytesIO(head)
        parts: list[tuple[int, str]] = []
        total = 0
        try:
            while True:
                chunk = buffer.read(_PART)
                if len(chunk) < _PART:
                    chunk += fileobj.read(_PART - len(chunk))
                if not chunk and parts:
                    break
                number = len(parts) + 1
                q = [("partNumber", str(number)), ("uploadId", upload)]
                r = self._check(self.lake.request("PUT", path, q, body=chunk), "put", key)
                parts.append((number, r.headers.get("etag", "")))
                total += len(chunk)
                if len(chunk) < _PART:
                    break
            if size is not None and size != total:
                raise InvalidInput(
                    f"stream gave {total} bytes, but size={size}", op="put", target=key
                )
            doc = "".join(
                f"<Part><PartNumber>{n}</PartNumber><ETag>{e}</ETag></Part>" for n, e in parts
            )
            body = f"<CompleteMultipartUpload>{doc}</CompleteMultipartUpload>".encode()
            r = self._check(
                self.lake.request("POST", path, [("uploadId", upload)], body=body), "put", key
            )
        except BaseException:
            self.lake.request("DELETE", path, [("uploadId", upload)])
            raise
        etag = _text(ET.fromstring(r.body), "ETag").strip('"')
        return ObjectInfo(
            key=key,
            size=total,
            etag=etag,
            version=0,
            mtime=time.time(),
            content_type=content_type,
            metadata=dict(metadata or {}),
            namespace=self.name,
        )

    def delete(self, key: str, *, missing_ok: bool = False) -> None:
        """Delete *key*. ``NotFound`` if it does not exist, unless *missing_ok*."""
        path = self._path(key, "delete")
        if not missing_ok:
            self.stat(key)
        self._check(self.lake.request("DELETE", path), "delete", key)

    # ------------------------------------------------------------------ reads
    def get(self, key: str, *, version: int | None = None) -> bytes:
        """The object's bytes; ``version`` reads an exact (pinned) version."""
        resp = self.lake.request("GET", self._path(key, "get"), _version_query(version))
        body: bytes = self._check(resp, "get", key).body
        return body

    def get_many(
        self, items: Iterable[tuple[str, int | None]], *, workers: int = 8, window: int = 64
    ) -> Iterator[bytes]:
        """The bytes of each ``(key, version)`` of *items*, in order, fetched by up to
        *workers* threads at once (each with its own keep-alive connection), at most
        *window* requests ahead of the consumer: one round trip per object is what a
        remote reader pays, and overlapping them is what keeps its throughput up."""
        if workers <= 1:
            for key, version in items:
                yield self.get(key, version=version)
            return
        from collections import deque
        from concurrent.futures import Future, ThreadPoolExecutor

        pending: deque[Future[bytes]] = deque()
        threads: set[int] = set()

        def fetch(key: str, version: int | None) -> bytes:
            threads.add(threading.get_ident())
            return self.get(key, version=version)

        try:
            with ThreadPoolExecutor(workers, thread_name_prefix="lakeloop-get") as pool:
                try:
                    for key, version in items:
                        pending.append(pool.submit(fetch, key, version))
                        if len(pending) >= window:
                            yield pending.popleft().result()
                    while pending:
                        yield pending.popleft().result()
                finally:
                    for f in pending:
                        f.cancel()
        finally:
            self.lake._drop_connections(threads)

    def get_versions(self, items: list[tuple[str, int]]) -> list[bytes]:
        """The bytes of each exact ``(key, version)`` in one request (at most 4096 items
        and 64 MiB: see ``plan_reads``), in order."""
        import struct

        body = json.dumps({"items": [[k, int(v)] for k, v in items]}).encode()
        raw = self.lake.api_bytes(
            "POST", f"/namespaces/{self.name}/read", body=body,
            headers={"content-type": "application/json"},
        )  # fmt: skip
        (count,) = struct.unpack_from(">I", raw)
        if count != len(items):
            raise StoreError(
                f"asked for {len(items)} items, got {count}", op="read", target=self.name
            )
        sizes = struct.unpack_from(f">{count}Q", raw, 4)
        out, pos = [], 4 + 8 * count
        for n in sizes:
            out.append(raw[pos : pos + n])
            pos += n
        if pos != len(raw):
            raise StoreError("the batch answer is cut short", op="read", target=self.name)
        return out

    def read_batches(
        self,
        items: Iterable[tuple[str, int, int]],
        *,
        workers: int = 2,
        batch_items: int = 1024,
        batch_bytes: int = 8 << 20,
    ) -> Iterator[bytes]:
        """The bytes of each ``(key, version, size)``, in order: grouped into batch reads
        of at most *batch_items* items and *batch_bytes* bytes, *workers* batches in
        flight ahead of the consumer (one thread and keep-alive connection each)."""

        def grouped() -> Iterator[list[tuple[str, int]]]:
            group: list[tuple[str, int]] = []
            size = 0
            for key, version, n in items:
                if group and (len(group) >= batch_items or size + n > batch_bytes):
                    yield group
                    group, size = [], 0
                group.append((key, version))
                size += n
            if group:
                yield group

        if workers <= 1:
            for group in grouped():
                yield from self.get_versions(group)
            return
        from collections import deque
        from concurrent.futures import Future, ThreadPoolExecutor

        pending: deque[Future[list[bytes]]] = deque()
        threads: set[int] = set()

        def fetch(group: list[tuple[str, int]]) -> list[bytes]:
            threads.add(threading.get_ident())
            return self.get_versions(group)

        try:
            with ThreadPoolExecutor(workers, thread_name_prefix="lakeloop-read") as pool:
                try:
                    for group in grouped():
                        pending.append(pool.submit(fetch, group))
                        if len(pending) > workers:
                            yield from pending.popleft().result()
                    while pending:
                        yield from pending.popleft().result()
                finally:
                    for f in pending:
                        f.cancel()
        finally:
            self.lake._drop_connections(threads)

    def locate(self, versions: Iterable[int]) -> list[tuple[int, int, int]]:
        """Where exact versions lie on the server: ``[(version, volume, offset)]`` in
        physical order (see ``Namespace.locate``); readers plan and shard by volume."""
        seqs = [int(v) for v in versions]
        out: list[tuple[int, int, int]] = []
        for i in range(0, len(seqs), _LOCATE_PAGE):
            page = {"versions": seqs[i : i + _LOCATE_PAGE]}
            doc = self.lake.api("POST", f"/namespaces/{self.name}/locate", body=page)
            out += [(int(v), int(vol), int(off)) for v, vol, off in doc["located"]]
        out.sort(key=lambda t: (t[1], t[2]))
        return out

    def get_range(
        self, key: str, start: int, end: int | None = None, *, version: int | None = None
    ) -> bytes:
        """``get(key)[start:end]`` (Python slice semantics), reading only that range."""
        path = self._path(key, "get_range")
        if not isinstance(start, int) or not (end is None or isinstance(end, int)):
            raise InvalidInput("start and end must be integers", op="get_range", target=key)
        if start < 0 or (end is not None and end < 0):
            size = self.stat(key, version=version).size
            start, end, _ = slice(start, end).indices(size)
        if end is not None and end <= start:
            self.stat(key, version=version)  # NotFound still wins over an empty range
            return b""
        spec = f"bytes={start}-" + ("" if end is None else str(end - 1))
        resp = self.lake.request("GET", path, _version_query(version), headers={"range": spec})
        if resp.status == 416:
            return b""
        body: bytes = self._check(resp, "get_range", key).body
        return body

    def open(self, key: str, *, version: int | None = None) -> BinaryIO:
        """A seekable binary file over the object (or its exact *version*), streamed
        from the gateway with range requests."""
        info = self.stat(key, version=version)
        return io.BufferedReader(_RemoteFile(self, key, info.size, version), 1 << 20)

    def stat(self, key: str, *, version: int | None = None) -> ObjectInfo:
        path = self._path(key, "stat")
        resp = self._check(self.lake.request("HEAD", path, _version_query(version)), "stat", key)
        return _info_from_headers(self.name, key, resp.headers)

    def exists(self, key: str) -> bool:
        resp = self.lake.request("HEAD", self._path(key, "exists"))
        if resp.status == 404:
            return False
        self._check(resp, "exists", key)
        return True

    def list(
        self, prefix: str = "", start_after: str | None = None, limit: int | None = None
    ) -> Iterator[ObjectInfo]:
        """Objects whose key starts with *prefix*, in key order, page by page."""
        if not isinstance(prefix, str):
            raise InvalidInput("prefix must be a str", op="list", target=self.name)
        if limit is not None and (not isinstance(limit, int) or limit < 0):
            raise InvalidInput("limit must be a non-negative integer", op="list", target=self.name)
        left = limit
        token = None
        while left is None or left > 0:
            q = [("list-type", "2"), ("prefix", prefix)]
            q.append(("max-keys", str(1000 if left is None else min(left, 1000))))
            if token:
                q.append(("continuation-token", token))
            elif start_after:
                q.append(("start-after", start_after))
            resp = self._check(self.lake.request("GET", f"/{self.name}", q), "list", prefix)
            doc = ET.fromstring(resp.body)
            for c in _children(doc, "Contents"):
                yield ObjectInfo(
                    key=_text(c, "Key"),
                    size=int(_text(c, "Size") or 0),
                    etag=_text(c, "ETag").strip('"'),
                    version=0,
                    mtime=_iso(_text(c, "LastModified")),
                    namespace=self.name,
                )
                if left is not None:
                    left -= 1
            if _text(doc, "IsTruncated") != "true":
                return
            token = _text(doc, "NextContinuationToken")

    def usage(self) -> dict[str, int]:
        """Objects, bytes, volumes and garbage, from the gateway's JSON API."""
        result: dict[str, int] = self.lake.api("GET", f"/namespaces/{self.name}")["usage"]
        return result

    def __repr__(self) -> str:
        return f"<RemoteNamespace {self.lake.url}/{self.name}>"


def _version_query(version: int | None) -> list[tuple[str, str]]:
    if version is None:
        return []
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise InvalidInput(f"bad version {version!r}", op="get", hint="a positive integer")
    return [("versionId", str(version))]


class RemoteInternal:
    """A reserved namespace of a remote lake, as far as the registry, runs and snapshots
    use one: ``get``/``open``/``list`` read it through ``/api/v1/internal/<area>/``;
    ``put``/``put_stream`` exist for runs only (``/api/v1/runs/<id>``)."""

    def __init__(self, lake: RemoteLake, name: str) -> None:
        self.lake = lake
        self.name = name
        self._area = _INTERNAL[name]

    def get(self, key: str) -> bytes:
        return self.lake.api_bytes("GET", f"/internal/{self._area}/object", {"key": key})

    def open(self, key: str) -> BinaryIO:
        """The whole object, fetched once (reserved objects are records, manifests and
        model files, read from start to end)."""
        return io.BytesIO(self.get(key))

    def exists(self, key: str) -> bool:
        try:
            self.get(key)
        except NotFound:
            return False
        return True

    def list(
        self, prefix: str = "", start_after: str | None = None, limit: int | None = None
    ) -> Iterator[ObjectInfo]:
        left = limit
        after = start_after
        while left is None or left > 0:
            q = {"prefix": prefix, "start_after": after}
            doc = self.lake.api("GET", f"/internal/{self._area}/list", q)
            for o in doc["objects"]:
                if left is not None:
                    if left <= 0:
                        return
                    left -= 1
                yield ObjectInfo(
                    key=o["key"], size=o["size"], etag=o["etag"], version=o["version"],
                    mtime=o["mtime"], namespace=self.name,
                )  # fmt: skip
                after = o["key"]
            if not doc["truncated"]:
                return

    def _run_key(self, key: str, op: str) -> tuple[str, str]:
        parts = key.split("/", 2)
        if self._area != "runs" or len(parts) != 3 or parts[0] != "runs":
            raise Refused(
                f"{self.name} changes only through its own endpoints",
                op=op,
                target=key,
                hint="use Registry / Catalog methods; they run on the gateway",
            )
        return parts[1], parts[2]

    def put(
        self,
        key: str,
        data: bytes,
        *,
        content_type: str | None = None,
        metadata: dict[str, str] | None = None,
    ) -> None:
        run, rest = self._run_key(key, "put")
        if rest == "run.json":
            self.lake.api("PUT", f"/runs/{run}", body=json.loads(data))
        else:
            self.lake.api_bytes("PUT", f"/runs/{run}/files", {"path": rest}, bytes(data))

    def put_stream(
        self,
        key: str,
        fileobj: BinaryIO,
        size: int | None = None,
        *,
        content_type: str | None = None,
        metadata: dict[str, str] | None = None,
    ) -> None:
        # the body is signed with its SHA-256, which needs it whole before it is sent
        data = fileobj.read()
        if size is not None and size != len(data):
            raise InvalidInput(f"stream gave {len(data)} bytes, but size={size}", op="put")
        self.put(key, data, content_type=content_type)

    def __repr__(self) -> str:
        return f"<RemoteInternal {self.lake.url} {self.name}>"


def _iso(text: str) -> float:
    try:
        return float(calendar.timegm(time.strptime(text[:19], "%Y-%m-%dT%H:%M:%S")))
    except ValueError:
        return 0.0


class _RemoteFile(io.RawIOBase):
    """Seekable reads over ranged GETs; one open response is followed while reading on."""

    def __init__(
        self, ns: RemoteNamespace, key: str, size: int, version: int | None = None
    ) -> None:
        self._ns, self._key, self._size = ns, key, size
        self._query = _version_query(version)
        self._pos = 0
        self._resp: Any = None
        self._conn: Any = None
        self._resp_pos = -1

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self._pos, 2: self._size}[whence]
        self._pos = max(base + offset, 0)
        return self._pos

    def readinto(self, buffer: Any) -> int:
        if self._pos >= self._size:
            return 0
        if self._resp is None or self._resp_pos != self._pos:
            self._drop()
            answer = self._ns.lake.request(
                "GET",
                self._ns._path(self._key, "read"),
                self._query,
                headers={"range": f"bytes={self._pos}-"},
                stream=True,
            )
            if isinstance(answer, _Response):
                self._ns._check(answer, "read", self._key)
                return 0
            self._resp, self._conn = answer
            self._resp_pos = self._pos
        n: int = self._resp.readinto(buffer)
        self._pos += n
        self._resp_pos = self._pos
        return n

    def _drop(self) -> None:
        if self._resp is not None:
            self._resp.close()
            self._conn.close()
            self._resp = self._conn = None

    def close(self) -> None:
        self._drop()
        super().close()
