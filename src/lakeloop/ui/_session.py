"""The UI's login session: a cookie naming an access key, signed with a server secret.

The cookie holds the access key (not secret: it is sent in every signed request) and an
expiry time, signed with HMAC-SHA256. It never holds the grants: every request looks the
key up in the credentials file again, so a revoked grant or a deleted user takes effect
at the next page, exactly as for signed S3 requests.

The server secret comes from ``LAKELOOP_UI_SECRET`` (several gateway workers must share
it) or is drawn at random when the app starts (sessions then end with the process).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import time

__all__ = ["COOKIE", "SessionSigner"]

COOKIE = "lakeloop_ui"


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class SessionSigner:
    """Makes and checks session cookie values.

    >>> s = SessionSigner(b"k" * 32, lifetime=60)
    >>> s.load(s.dump("LLAK123")) == "LLAK123"
    True
    """

    def __init__(self, secret: bytes | None = None, *, lifetime: float) -> None:
        if secret is None:
            env = os.environ.get("LAKELOOP_UI_SECRET")
            secret = env.encode() if env else secrets.token_bytes(32)
        self._secret = secret
        self.lifetime = lifetime

    def _sign(self, body: str) -> str:
        return _b64(hmac.new(self._secret, body.encode(), hashlib.sha256).digest())

    def dump(self, access_key: str, *, now: float | None = None) -> str:
        """A cookie value for *access_key*, valid for ``lifetime`` seconds."""
        expires = (time.time() if now is None else now) + self.lifetime
        body = _b64(json.dumps({"k": access_key, "e": round(expires)}).encode())
        return f"{body}.{self._sign(body)}"

    def load(self, value: str | None, *, now: float | None = None) -> str | None:
        """The access key of a valid, unexpired cookie value; None otherwise."""
        if not value or value.count(".") != 1:
            return None
        body, signature = value.split(".")
        if not hmac.compare_digest(self._sign(body), signature):
            return None
        try:
            doc = json.loads(_unb64(body))
            key, expires = doc["k"], float(doc["e"])
        except (ValueError, KeyError, TypeError):
            return None
        if not isinstance(key, str) or (time.time() if now is None else now) > expires:
            return None
        return key
