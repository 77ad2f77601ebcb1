"""AWS Signature Version 4: the canonical request, the signing key and the signatures.

Both sides use it: the gateway verifies requests, the remote-lake client signs them.
It holds no I/O and no state beyond a small cache of signing keys.

>>> key = signing_key("secret", "20260101", "us-east-1", "s3")
>>> len(key)
32
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping
from functools import lru_cache
from urllib.parse import quote, unquote

__all__ = [
    "ALGORITHM",
    "EMPTY_SHA256",
    "UNSIGNED",
    "canonical_query",
    "canonical_request",
    "canonical_uri",
    "chunk_signature",
    "sign",
    "sign_headers",
    "signing_key",
    "string_to_sign",
]

ALGORITHM = "AWS4-HMAC-SHA256"
UNSIGNED = "UNSIGNED-PAYLOAD"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


def _uri_encode(text: str, safe: str) -> str:
    return quote(text, safe=safe)


def canonical_uri(path: str) -> str:
    """The decoded *path* encoded as S3 does (each byte once; ``/`` kept)."""
    return _uri_encode(path or "/", "/~")


def canonical_query(pairs: Iterable[tuple[str, str]], *, skip: str = "") -> str:
    """Decoded query *pairs* encoded and sorted; *skip* leaves one parameter out."""
    encoded = sorted(
        (_uri_encode(k, "-_.~"), _uri_encode(v, "-_.~")) for k, v in pairs if k != skip
    )
    return "&".join(f"{k}={v}" for k, v in encoded)


def parse_query(raw: str) -> list[tuple[str, str]]:
    """``a=1&b`` -> ``[("a", "1"), ("b", "")]``, percent-decoded ('+' stays '+')."""
    out = []
    for part in raw.split("&"):
        if not part:
            continue
        k, _, v = part.partition("=")
        out.append((unquote(k), unquote(v)))
    return out


def _header_value(value: str) -> str:
    return " ".join(value.split())


def canonical_request(
    method: str,
    uri: str,
    query: str,
    headers: Mapping[str, str],
    signed: list[str],
    payload_hash: str,
) -> str:
    """The canonical request over the *signed* (lower-case) header names."""
    lines = "".join(f"{h}:{_header_value(headers.get(h, ''))}\n" for h in signed)
    return f"{method}\n{uri}\n{query}\n{lines}\n{';'.join(signed)}\n{payload_hash}"


def string_to_sign(amz_date: str, scope: str, canonical: str) -> str:
    digest = hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    return f"{ALGORITHM}\n{amz_date}\n{scope}\n{digest}"


@lru_cache(maxsize=1024)
def signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    """The derived key for one day, region and service (cached: it changes once a day)."""
    key = hmac.digest(("AWS4" + secret).encode(), date.encode(), "sha256")
    key = hmac.digest(key, region.encode(), "sha256")
    key = hmac.digest(key, service.encode(), "sha256")
    return hmac.digest(key, b"aws4_request", "sha256")


def sign(key: bytes, text: str) -> str:
    return hmac.new(key, text.encode("utf-8"), hashlib.sha256).hexdigest()


def chunk_signature(key: bytes, amz_date: str, scope: str, previous: str, chunk_sha256: str) -> str:
    """Signature of one chunk of a ``STREAMING-AWS4-HMAC-SHA256-PAYLOAD`` body."""
    text = f"{ALGORITHM}-PAYLOAD\n{amz_date}\n{scope}\n{previous}\n{EMPTY_SHA256}\n{chunk_sha256}"
    return sign(key, text)


def sign_headers(
    method: str,
    path: str,
    query: list[tuple[str, str]],
    headers: dict[str, str],
    *,
    access_key: str,
    secret_key: str,
    amz_date: str,
    region: str = "us-east-1",
    service: str = "s3",
    payload_hash: str = UNSIGNED,
) -> dict[str, str]:
    """Add ``x-amz-date``, ``x-amz-content-sha256`` and ``Authorization`` to *headers*.

    *headers* must hold ``host``; names are lower-cased. Returns the same dict.
    """
    headers = {k.lower(): v for k, v in headers.items()}
    headers["x-amz-date"] = amz_date
    headers["x-amz-content-sha256"] = payload_hash
    signed = sorted(headers)
    scope = f"{amz_date[:8]}/{region}/{service}/aws4_request"
    canonical = canonical_request(
        method, canonical_uri(path), canonical_query(query), headers, signed, payload_hash
    )
    signature = sign(
        signing_key(secret_key, amz_date[:8], region, service),
        string_to_sign(amz_date, scope, canonical),
    )
    headers["authorization"] = (
        f"{ALGORITHM} Credential={access_key}/{scope}, "
        f"SignedHeaders={';'.join(signed)}, Signature={signature}"
    )
    return headers
