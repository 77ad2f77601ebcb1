"""Request bodies: plain or ``aws-chunked``, with every check done before the store sees
the last byte.

A ``Body`` decodes what the client sends (``STREAMING-AWS4-HMAC-SHA256-PAYLOAD`` with
chunk signatures, ``STREAMING-UNSIGNED-PAYLOAD-TRAILER`` with a checksum trailer, or a
plain body whose SHA-256 was signed), counts it against ``Content-Length`` and the
decoded length, and checks ``Content-MD5`` and ``x-amz-checksum-*``. ``finish()`` raises
the S3 error when anything is off; callers stream the decoded bytes into the store
through ``SyncReader``, which calls ``finish()`` at end of stream, so a bad body aborts the
put before it is committed and nothing is stored.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import zlib
from collections.abc import Awaitable, Callable
from typing import Any

import crc32c

from lakeloop import _sigv4 as sigv4
from lakeloop.gateway._auth import Auth
from lakeloop.gateway._errors import S3Error

__all__ = ["Body", "SyncReader"]

_STREAM_SIGNED = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
_STREAM_SIGNED_TRAILER = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
_STREAM_UNSIGNED_TRAILER = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
_MAX_CHUNK_HEADER = 4096


class _Crc:
    def __init__(self, fn: Callable[[bytes, int], int], width: int = 4) -> None:
        self._fn = fn
        self._value = 0
        self._width = width

    def update(self, data: bytes) -> None:
        self._value = self._fn(data, self._value)

    def digest(self) -> bytes:
        return (self._value & ((1 << (8 * self._width)) - 1)).to_bytes(self._width, "big")


def _new_checksum(algorithm: str) -> Any:
    if algorithm == "crc32":
        return _Crc(zlib.crc32)
    if algorithm == "crc32c":
        return _Crc(crc32c.crc32c)
    if algorithm == "crc64nvme":
        from awscrt import checksums  # C code; imported only by the clients that send it

        return _Crc(checksums.crc64nvme, 8)
    if algorithm in ("sha1", "sha256"):
        return hashlib.new(algorithm)
    raise S3Error(
        "InvalidRequest",
        f"checksum algorithm {algorithm!r} is not supported here (crc32, crc32c, sha1, sha256 are)",
    )


class Body:
    """Decoder and verifier of one request body; feed raw bytes, get decoded bytes."""

    def __init__(self, headers: dict[str, str], auth: Auth | None, max_size: int) -> None:
        self.md5 = hashlib.md5(usedforsecurity=False)
        self.size = 0
        self._raw = 0
        self._max = max_size
        self._auth = auth
        declared = headers.get("content-length")
        try:
            self._content_length = int(declared) if declared is not None else None
        except ValueError:
            raise S3Error("InvalidArgument", "Content-Length is not a number") from None
        payload = auth.payload_hash if auth else sigv4.UNSIGNED
        self._mode = "plain"
        self._signed = self._signed_trailer = False
        self._sha256: Any = None
        if payload in (_STREAM_SIGNED, _STREAM_SIGNED_TRAILER, _STREAM_UNSIGNED_TRAILER):
            self._mode = "chunked"
            self._signed = payload != _STREAM_UNSIGNED_TRAILER
            self._signed_trailer = payload == _STREAM_SIGNED_TRAILER
        elif payload != sigv4.UNSIGNED:
            if len(payload) != 64:
                raise S3Error(
                    "InvalidArgument", f"x-amz-content-sha256 {payload[:80]!r} is not supported"
                )
            self._sha256 = hashlib.sha256()
        self._expect_sha256 = payload if self._sha256 is not None else None
        decoded = headers.get("x-amz-decoded-content-length")
        self.expected: int | None = None
        if self._mode == "chunked":
            if decoded is not None:
                try:
                    self.expected = int(decoded)
                except ValueError:
                    raise S3Error("InvalidArgument", "bad x-amz-decoded-content-length") from None
        else:
            self.expected = self._content_length
        if self.expected is not None and self.expected > max_size:
            raise S3Error("EntityTooLarge", f"the object is larger than {max_size} bytes")
        self._md5_expect: bytes | None = None
        if "content-md5" in headers:
            try:
                self._md5_expect = base64.b64decode(headers["content-md5"], validate=True)
            except ValueError:
                self._md5_expect = b""
            if len(self._md5_expect) != 16:
                raise S3Error("InvalidDigest", "the Content-MD5 you specified is not valid")
        self._checksum: Any = None
        self._checksum_name = ""
        self._checksum_expect: str | None = None
        trailer = headers.get("x-amz-trailer", "").strip().lower()
        for name, value in headers.items():
            if name.startswith("x-amz-checksum-") and name not in (
                "x-amz-checksum-algorithm",
                "x-amz-checksum-type",
                "x-amz-checksum-mode",
            ):
                self._checksum_name = name
                self._checksum_expect = value
        if trailer:
            if not trailer.startswith("x-amz-checksum-"):
                raise S3Error("InvalidRequest", f"unsupported trailer {trailer!r}")
            self._checksum_name = trailer
        if self._checksum_name:
            self._checksum = _new_checksum(self._checksum_name.removeprefix("x-amz-checksum-"))
        # aws-chunked parser state
        self._buf = bytearray()
        self._left = 0  # data bytes left in the current chunk
        self._state = "header"  # header | data | crlf | trailer | done
        self._prev_sig = auth.signature if auth else ""
        self._chunk_hash: Any = None
        self._chunk_sig = ""
        self._trailers: dict[str, str] = {}

    # ------------------------------------------------------------------ decoding
    def feed(self, raw: bytes) -> bytes:
        """Decoded bytes of *raw* (checked as they pass)."""
        self._raw += len(raw)
        if self._content_length is not None and self._raw > self._content_length:
            raise S3Error("IncompleteBody", "the body is longer than Content-Length")
        out = raw if self._mode == "plain" else self._dechunk(raw)
        if out:
            self.size += len(out)
            if self.size > self._max:
                raise S3Error("EntityTooLarge", f"the object is larger than {self._max} bytes")
            self.md5.update(out)
            if self._sha256 is not None:
                self._sha256.update(out)
            if self._checksum is not None:
                self._checksum.update(out)
        return out

    def _dechunk(self, raw: bytes) -> bytes:
        self._buf += raw
        out = bytearray()
        while True:
            if self._state == "header":
                end = self._buf.find(b"\r\n")
                if end < 0:
                    if len(self._buf) > _MAX_CHUNK_HEADER:
                        raise S3Error("IncompleteBody", "bad aws-chunked chunk header")
                    break
                line = bytes(self._buf[:end]).decode("latin-1")
                del self._buf[: end + 2]
                size_text, _, ext = line.partition(";")
                try:
                    self._left = int(size_text, 16)
                except ValueError:
                    raise S3Error("IncompleteBody", "bad aws-chunked chunk size") from None
                if self._signed:
                    name, _, sig = ext.partition("=")
                    if name.strip() != "chunk-signature" or not sig:
                        raise S3Error("SignatureDoesNotMatch", "a chunk lacks its signature")
                    self._chunk_sig = sig.strip()
                    self._chunk_hash = hashlib.sha256()
                if self._left == 0:
                    self._check_chunk()
                    self._state = "trailer"
                else:
                    self._state = "data"
            elif self._state == "data":
                if not self._buf:
                    break
                take = bytes(self._buf[: self._left])
                del self._buf[: len(take)]
                self._left -= len(take)
                if self._chunk_hash is not None:
                    self._chunk_hash.update(take)
                out += take
                if self._left == 0:
                    self._check_chunk()
                    self._state = "crlf"
            elif self._state == "crlf":
                if len(self._buf) < 2:
                    break
                if self._buf[:2] != b"\r\n":
                    raise S3Error("IncompleteBody", "a chunk is longer than its size")
                del self._buf[:2]
                self._state = "header"
            elif self._state == "trailer":
                end = self._buf.find(b"\r\n")
                if end < 0:
                    if len(self._buf) > _MAX_CHUNK_HEADER:
                        raise S3Error("IncompleteBody", "bad aws-chunked trailer")
                    break
                line = bytes(self._buf[:end]).decode("latin-1")
                del self._buf[: end + 2]
                if not line:
                    self._state = "done"
                    continue
                name, _, value = line.partition(":")
                self._trailers[name.strip().lower()] = value.strip()
            else:  # done
                if self._buf.strip():
                    raise S3Error("IncompleteBody", "bytes after the last chunk")
                self._buf.clear()
                break
        return bytes(out)

    def _check_chunk(self) -> None:
        if not self._signed or self._auth is None:
            return
        expected = sigv4.chunk_signature(
            self._auth.key,
            self._auth.amz_date,
            self._auth.scope,
            self._prev_sig,
            self._chunk_hash.hexdigest(),
        )
        if not hmac.compare_digest(expected, self._chunk_sig):
            raise S3Error("SignatureDoesNotMatch", "a chunk signature does not match")
        self._prev_sig = expected

    def _check_trailer_signature(self) -> None:
        """The trailer of ``STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER`` is signed too,
        chained from the last chunk's signature."""
        if self._auth is None:
            return
        given = self._trailers.get("x-amz-trailer-signature", "")
        lines = "".join(
            f"{k}:{v}\n" for k, v in self._trailers.items() if k != "x-amz-trailer-signature"
        )
        text = (
            f"{sigv4.ALGORITHM}-TRAILER\n{self._auth.amz_date}\n{self._auth.scope}\n"
            f"{self._prev_sig}\n{hashlib.sha256(lines.encode()).hexdigest()}"
        )
        if not hmac.compare_digest(sigv4.sign(self._auth.key, text), given):
            raise S3Error("SignatureDoesNotMatch", "the trailer signature does not match")

    # ------------------------------------------------------------------ verdict
    def finish(self) -> None:
        """Raise the S3 error if the body was short, long, or fails a checksum."""
        if self._content_length is not None and self._raw < self._content_length:
            raise S3Error(
                "IncompleteBody",
                f"got {self._raw} of the {self._content_length} bytes Content-Length announced",
            )
        if self._mode == "chunked" and self._state not in ("trailer", "done"):
            raise S3Error("IncompleteBody", "the aws-chunked body ended inside a chunk")
        if self.expected is not None and self.size != self.expected:
            raise S3Error(
                "IncompleteBody", f"got {self.size} bytes; {self.expected} were announced"
            )
        if self._expect_sha256 is not None and not hmac.compare_digest(
            self._sha256.hexdigest(), self._expect_sha256.lower()
        ):
            raise S3Error(
                "XAmzContentSHA256Mismatch",
                "the provided x-amz-content-sha256 does not match what was computed",
            )
        if self._md5_expect is not None and self.md5.digest() != self._md5_expect:
            raise S3Error("BadDigest", "the Content-MD5 you specified did not match what we got")
        if self._mode == "chunked" and self._signed_trailer:
            self._check_trailer_signature()
        if self._checksum is not None:
            expect = self._checksum_expect or self._trailers.get(self._checksum_name)
            if not expect:
                raise S3Error("InvalidRequest", f"the {self._checksum_name} trailer is missing")
            got = base64.b64encode(self._checksum.digest()).decode()
            if got != expect.strip():
                raise S3Error("BadDigest", f"the {self._checksum_name} you specified did not match")


Receive = Callable[[], Awaitable[dict[str, Any]]]


async def next_raw(receive: Receive) -> tuple[bytes, bool]:
    """(bytes, more) of the next ASGI body message; a disconnect is an incomplete body."""
    message = await receive()
    if message["type"] == "http.disconnect":
        raise S3Error("IncompleteBody", "the client went away before the body ended")
    return message.get("body", b""), bool(message.get("more_body", False))


async def read_all(receive: Receive, body: Body) -> bytes:
    """The whole decoded body, verified."""
    parts = []
    more = True
    while more:
        raw, more = await next_raw(receive)
        if raw:
            parts.append(body.feed(raw))
    body.finish()
    return b"".join(parts)


class SyncReader(io.RawIOBase):
    """A blocking file object over an ASGI body, for a store call in a worker thread.

    Each read runs the next ``receive()`` on the event loop; at end of stream the body is
    verified, so a bad body raises inside the store's read loop, before it commits.
    """

    def __init__(self, receive: Receive, body: Body, first: bytes = b"") -> None:
        self._receive = receive
        self._body = body
        self._pending = bytearray(first)
        self._more = True

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        from anyio import from_thread

        while not self._pending and self._more:
            raw, self._more = from_thread.run(next_raw, self._receive)
            if raw:
                self._pending += self._body.feed(raw)
            if not self._more:
                self._body.finish()
        n = min(len(buffer), len(self._pending))
        buffer[:n] = self._pending[:n]
        del self._pending[:n]
        return n
