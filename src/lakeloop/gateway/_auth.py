"""Who sent this request: SigV4 in the ``Authorization`` header or in a presigned query.

Verification is cheap on purpose (it runs on every request): the derived signing key is
cached per secret and day, so a request costs one SHA-256 of its canonical request and
one HMAC. Anonymous requests are refused.
"""

from __future__ import annotations

import calendar
import hmac
import time
from dataclasses import dataclass
from functools import lru_cache

from lakeloop import _sigv4 as sigv4
from lakeloop.gateway._credentials import ANONYMOUS, Credentials, Principal
from lakeloop.gateway._errors import S3Error

__all__ = ["Auth", "verify"]


@dataclass(frozen=True, slots=True)
class Auth:
    """A verified request: the principal, and what chunk signatures chain from."""

    principal: Principal
    key: bytes
    scope: str
    amz_date: str
    signature: str
    payload_hash: str


@lru_cache(maxsize=256)  # many requests share their second
def _parse_date(text: str, code: str) -> float:
    try:
        return float(calendar.timegm(time.strptime(text, "%Y%m%dT%H%M%SZ")))
    except ValueError:
        raise S3Error(code, f"bad X-Amz-Date {text!r}") from None


def _parse_credential(credential: str, code: str) -> tuple[str, str, str, str]:
    parts = credential.split("/")
    if len(parts) != 5 or parts[4] != "aws4_request" or not parts[0]:
        raise S3Error(code, "the Credential must be ACCESS/DATE/REGION/SERVICE/aws4_request")
    return parts[0], parts[1], parts[2], parts[3]


def verify(
    method: str,
    path: str,
    raw_path: str,
    query: list[tuple[str, str]],
    headers: dict[str, str],
    credentials: Credentials,
    *,
    max_skew: float,
    max_expires: int,
    anonymous: bool = False,
    now: float | None = None,
) -> Auth:
    """Check the signature of one request; raise the S3 error a client should see.

    With *anonymous*, an unsigned request is the principal ``anonymous`` (its own grants).
    """
    now = time.time() if now is None else now
    header = headers.get("authorization")
    presigned = any(k == "X-Amz-Signature" for k, _ in query)
    if header is None and not presigned and anonymous:
        return Auth(credentials.principal(ANONYMOUS), b"", "", "", "", sigv4.UNSIGNED)
    if header is None and not presigned:
        if any(k == "AWSAccessKeyId" for k, _ in query):
            raise S3Error(
                "InvalidRequest",
                "signature version 2 is not supported; presign with SigV4 "
                "(botocore: Config(signature_version='s3v4'))",
            )
        raise S3Error("AccessDenied", "anonymous access is off: sign the request (SigV4)")
    if header is not None:
        code = "AuthorizationHeaderMalformed"
        algorithm, _, rest = header.partition(" ")
        if algorithm != sigv4.ALGORITHM:
            if algorithm == "AWS":
                raise S3Error("InvalidRequest", "signature version 2 is not supported; use SigV4")
            raise S3Error(code, f"unsupported algorithm {algorithm!r}")
        fields = {}
        for part in rest.split(","):
            k, _, v = part.strip().partition("=")
            fields[k] = v
        try:
            credential = fields["Credential"]
            signed = fields["SignedHeaders"].split(";")
            signature = fields["Signature"]
        except KeyError as exc:
            raise S3Error(code, f"the Authorization header lacks {exc}") from None
        amz_date = headers.get("x-amz-date") or ""
        if not amz_date:
            raise S3Error("AccessDenied", "the request lacks X-Amz-Date")
        when = _parse_date(amz_date, "AccessDenied")
        payload_hash = headers.get("x-amz-content-sha256", sigv4.UNSIGNED)
        canonical_query = sigv4.canonical_query(query)
    else:
        code = "AuthorizationQueryParametersError"
        params = dict(query)
        if params.get("X-Amz-Algorithm") != sigv4.ALGORITHM:
            raise S3Error(code, "X-Amz-Algorithm must be AWS4-HMAC-SHA256")
        try:
            credential = params["X-Amz-Credential"]
            signed = params["X-Amz-SignedHeaders"].split(";")
            signature = params["X-Amz-Signature"]
            amz_date = params["X-Amz-Date"]
            expires = int(params["X-Amz-Expires"])
        except (KeyError, ValueError) as exc:
            raise S3Error(code, f"the presigned query lacks or garbles {exc}") from None
        if not 0 < expires <= max_expires:
            raise S3Error(code, f"X-Amz-Expires must be between 1 and {max_expires}")
        when = _parse_date(amz_date, code)
        if now > when + expires:
            raise S3Error("AccessDenied", "Request has expired")
        payload_hash = params.get("X-Amz-Content-Sha256", sigv4.UNSIGNED)
        canonical_query = sigv4.canonical_query(query, skip="X-Amz-Signature")
    access, date, region, service = _parse_credential(credential, code)
    if header is not None and abs(now - when) > max_skew:
        raise S3Error(
            "RequestTimeTooSkewed",
            "the difference between the request time and the server's time is too large",
        )
    if date != amz_date[:8]:
        raise S3Error(code, "the credential date does not match X-Amz-Date")
    if "host" not in signed:
        raise S3Error(code, "the host header must be signed")
    found = credentials.lookup(access)
    if found is None:
        raise S3Error("InvalidAccessKeyId", "the access key ID does not exist in our records")
    principal, secret = found
    key = sigv4.signing_key(secret, date, region, service)
    scope = f"{date}/{region}/{service}/aws4_request"
    for uri in (sigv4.canonical_uri(path), raw_path):
        canonical = sigv4.canonical_request(
            method, uri, canonical_query, headers, signed, payload_hash
        )
        expected = sigv4.sign(key, sigv4.string_to_sign(amz_date, scope, canonical))
        if hmac.compare_digest(expected, signature):
            return Auth(principal, key, scope, amz_date, signature, payload_hash)
    raise S3Error(
        "SignatureDoesNotMatch",
        "the request signature we calculated does not match the signature you provided",
    )
