"""The UI's login session: a cookie naming an access key, signed with a server secret,
and the CSRF tokens that every form posts back.

The cookie holds the access key (not secret: it is sent in every signed request), a tag
of the key's secret and an expiry time, signed with HMAC-SHA256. It never holds the
grants: every request looks the key up in the credentials file again, so a revoked grant
or a deleted user takes effect at the next page, exactly as for signed S3 requests. The
tag (an HMAC of the secret under the server secret, so it tells nothing about it) ties
the session to the secret it was opened with: give the key a new secret and every
session opened with the old one ends at its next page.

Forms are protected against cross-site posts twice: cookies are ``SameSite=Strict``,
and every POST carries a token a foreign page cannot know. Once logged in, the token is
an HMAC of the session cookie (:meth:`SessionSigner.csrf_token`); the login form, which
has no session yet, gets a random cookie of its own and posts back its HMAC (a signed
double submit: a site that can plant cookies still cannot make the matching token).

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
from dataclasses import dataclass

__all__ = ["COOKIE", "CSRF_COOKIE", "CSRF_FIELD", "Session", "SessionSigner"]

COOKIE = "lakeloop_ui"
CSRF_COOKIE = "lakeloop_csrf"  # the login form's random half of the double submit
CSRF_FIELD = "csrf"  # the form field every POST carries


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class Session:
    """A valid session cookie: whose it is, and the tag of the secret it was opened with."""

    access_key: str
    secret_tag: str


class SessionSigner:
    """Makes and checks session cookie values and CSRF tokens.

    >>> s = SessionSigner(b"k" * 32, lifetime=60)
    >>> s.load(s.dump("LLAK123", "its secret")).access_key
    'LLAK123'
    """

    def __init__(self, secret: bytes | None = None, *, lifetime: float) -> None:
        if secret is None:
            env = os.environ.get("LAKELOOP_UI_SECRET")
            secret = env.encode() if env else secrets.token_bytes(32)
        self._secret = secret
        self.lifetime = lifetime

    def _mac(self, purpose: str, text: str) -> str:
        message = f"{purpose}\0{text}".encode("utf-8", "surrogatepass")
        return _b64(hmac.new(self._secret, message, hashlib.sha256).digest())

    def secret_tag(self, secret: str) -> str:
        """What a cookie records of the key's secret (an HMAC: it reveals nothing)."""
        return self._mac("secret", secret)[:22]

    def dump(self, access_key: str, secret: str, *, now: float | None = None) -> str:
        """A cookie value for *access_key* and its current *secret*, valid ``lifetime``
        seconds (or until the secret changes)."""
        expires = (time.time() if now is None else now) + self.lifetime
        doc = {"k": access_key, "s": self.secret_tag(secret), "e": round(expires)}
        body = _b64(json.dumps(doc).encode())
        return f"{body}.{self._mac('session', body)}"

    def load(self, value: str | None, *, now: float | None = None) -> Session | None:
        """The session of a valid, unexpired cookie value; None otherwise."""
        if not value or value.count(".") != 1:
            return None
        body, signature = value.split(".")
        if not hmac.compare_digest(self._mac("session", body), signature):
            return None
        try:
            doc = json.loads(_unb64(body))
            key, tag, expires = doc["k"], doc["s"], float(doc["e"])
        except (ValueError, KeyError, TypeError):
            return None
        if not isinstance(key, str) or not isinstance(tag, str):
            return None
        if (time.time() if now is None else now) > expires:
            return None
        return Session(key, tag)

    def matches(self, session: Session, secret: str) -> bool:
        """True while the key's secret is the one the session was opened with."""
        return hmac.compare_digest(session.secret_tag, self.secret_tag(secret))

    def csrf_token(self, cookie_value: str) -> str:
        """The token forms carry: for a session cookie once logged in, for the login
        form's ``CSRF_COOKIE`` before. Only this server can compute it."""
        return self._mac("csrf", cookie_value)

    def check_csrf(self, cookie_value: str | None, token: str | None) -> bool:
        """True when *token* was made for *cookie_value* (both present)."""
        if not cookie_value or not token:
            return False
        return hmac.compare_digest(self.csrf_token(cookie_value), token)
