"""S3 error codes with their HTTP statuses, and how lakeloop's errors map onto them."""

from __future__ import annotations

from lakeloop.errors import (
    AlreadyExists,
    ChecksumError,
    InsufficientSpace,
    InvalidInput,
    InvalidKey,
    InvalidName,
    LakeloopError,
    NamespaceUnavailable,
    NotFound,
    QuotaExceeded,
)

__all__ = ["STATUS", "S3Error", "from_lakeloop"]

STATUS = {
    "AccessDenied": 403,
    "AuthorizationHeaderMalformed": 400,
    "AuthorizationQueryParametersError": 400,
    "BadDigest": 400,
    "BucketAlreadyOwnedByYou": 409,
    "BucketNotEmpty": 409,
    "EntityTooLarge": 400,
    "EntityTooSmall": 400,
    "IncompleteBody": 400,
    "InternalError": 500,
    "InvalidAccessKeyId": 403,
    "InvalidArgument": 400,
    "InvalidBucketName": 400,
    "InvalidDigest": 400,
    "InvalidPart": 400,
    "InvalidPartOrder": 400,
    "InvalidRange": 416,
    "InvalidRequest": 400,
    "KeyTooLongError": 400,
    "MalformedXML": 400,
    "MetadataTooLarge": 400,
    "MethodNotAllowed": 405,
    "MissingContentLength": 411,
    "MissingSecurityHeader": 400,
    "NoSuchBucket": 404,
    "NoSuchKey": 404,
    "NoSuchUpload": 404,
    "NotImplemented": 501,
    "NotModified": 304,
    "PreconditionFailed": 412,
    "QuotaExceeded": 403,
    "RequestTimeTooSkewed": 403,
    "ServiceUnavailable": 503,
    "SignatureDoesNotMatch": 403,
    "XAmzContentSHA256Mismatch": 400,
}


class S3Error(Exception):
    """An S3 error answer: ``code`` picks the HTTP status."""

    def __init__(self, code: str, message: str, *, resource: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.resource = resource
        self.status = STATUS.get(code, 400)


def from_lakeloop(exc: LakeloopError, *, bucket_level: bool = False) -> S3Error:
    """The S3 answer to one of lakeloop's errors (never a 500 for bad input)."""
    text = str(exc)
    if isinstance(exc, NotFound):
        if bucket_level or exc.op == "open namespace":
            return S3Error("NoSuchBucket", text)
        return S3Error("NoSuchKey", text)
    if isinstance(exc, InvalidKey):
        code = "KeyTooLongError" if "limit" in exc.message else "InvalidArgument"
        return S3Error(code, text)
    if isinstance(exc, InvalidName):
        return S3Error("InvalidBucketName", text)
    if isinstance(exc, InvalidInput):
        # the store refuses metadata over max_metadata_bytes as "metadata is N bytes ... limit"
        too_large = exc.message.startswith("metadata is") and "limit" in exc.message
        return S3Error("MetadataTooLarge" if too_large else "InvalidArgument", text)
    if isinstance(exc, AlreadyExists):
        return S3Error("BucketAlreadyOwnedByYou", text)
    if isinstance(exc, QuotaExceeded):
        return S3Error("QuotaExceeded", text)
    if isinstance(exc, NamespaceUnavailable | InsufficientSpace):
        return S3Error("ServiceUnavailable", text)
    if isinstance(exc, ChecksumError):
        return S3Error("InternalError", text)
    return S3Error("InternalError", text)
