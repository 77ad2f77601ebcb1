"""Principals, their access keys and their grants, kept in one file outside the lake.

SigV4 needs the plain secret on the server (it recomputes the signature), so secrets
cannot be hashed. They live in a JSON file readable by its owner only (mode 0600),
like ``~/.aws/credentials``: by default ``$XDG_CONFIG_HOME/lakeloop/credentials.json``
(``~/.config/...``), or the path in ``LAKELOOP_CREDENTIALS``. A copy of the lake folder
therefore carries no usable credentials.

::

    {"principals": {"alice": {"keys": {"LLAK...": "secret"},
                              "grants": {"photos": "write", "*": "read"}}}}

Roles are ordered: ``read`` < ``write`` < ``admin``; ``*`` grants a role on every
namespace (and ``admin`` on ``*`` may create namespaces). No grant: no access.

Two grant targets are not namespaces: ``@models`` (the model registry: read to list and
load models, write to register versions, move aliases, record decisions and promote on
a decision, admin for forced champion overrides) and ``@runs`` (training runs: read to
list and show, write to record). ``*`` covers them too.
"""

from __future__ import annotations

import json
import os
import secrets
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lakeloop.errors import AlreadyExists, InvalidInput, NotFound
from lakeloop.store._fs import sync_dir

__all__ = [
    "AREA_TARGETS", "MODELS", "ROLES", "RUNS", "Credentials", "Principal",
    "default_credentials_path",
]  # fmt: skip

ROLES = ("read", "write", "admin")
_RANK = {r: i for i, r in enumerate(ROLES)}
ALL = "*"
ANONYMOUS = "anonymous"  # who unsigned requests are, when gateway_anonymous is on
# grant targets that are not namespaces ('@' cannot start a namespace name)
MODELS = "@models"
RUNS = "@runs"
AREA_TARGETS = (MODELS, RUNS)


def default_credentials_path() -> Path:
    """``LAKELOOP_CREDENTIALS``, else ``$XDG_CONFIG_HOME/lakeloop/credentials.json``."""
    explicit = os.environ.get("LAKELOOP_CREDENTIALS")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "lakeloop" / "credentials.json"


@dataclass(frozen=True)
class Principal:
    """Who signed a request, with the roles granted per namespace."""

    name: str
    grants: dict[str, str] = field(default_factory=dict)

    def role(self, namespace: str) -> str | None:
        """The strongest role on *namespace* (its own grant or a ``*`` grant)."""
        own, every = self.grants.get(namespace), self.grants.get(ALL)
        roles = [r for r in (own, every) if r]
        return max(roles, key=_RANK.__getitem__) if roles else None

    def can(self, namespace: str, role: str) -> bool:
        have = self.role(namespace)
        return have is not None and _RANK[have] >= _RANK[role]


class Credentials:
    """The credentials file: reloaded when it changes, rewritten atomically with 0600."""

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = Path(path) if path is not None else default_credentials_path()
        self._lock = threading.Lock()
        self._data: dict[str, Any] = {"principals": {}}
        self._by_key: dict[str, tuple[str, str]] = {}
        # (inode, mtime_ns, size): every save replaces the file (a new inode), so a
        # rewrite is seen even when its mtime falls in the same coarse tick and its size
        # is unchanged (a new secret is always 40 characters)
        self._stamp: tuple[int, int, int] | None = None
        self._checked = 0.0
        self._load()

    # ------------------------------------------------------------------ reading
    def _load(self) -> None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            self._data, self._by_key, self._stamp = {"principals": {}}, {}, None
            return
        stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        if stamp == self._stamp:
            return
        try:
            data = json.loads(self.path.read_text())
            principals = data["principals"]
            assert isinstance(principals, dict)
        except (ValueError, KeyError, AssertionError, OSError) as exc:
            raise InvalidInput(
                f"unreadable credentials file: {exc}",
                op="read credentials",
                target=str(self.path),
                hint="fix or remove the file, then recreate users with `lakeloop user create`",
            ) from None
        by_key = {}
        for name, p in principals.items():
            for access, secret in p.get("keys", {}).items():
                by_key[access] = (name, secret)
        self._data, self._by_key, self._stamp = data, by_key, stamp

    def refresh(self, every: float = 1.0) -> None:
        """Reload the file if it changed (checked at most every *every* seconds)."""
        now = time.monotonic()
        if now - self._checked < every:
            return
        with self._lock:
            self._checked = now
            self._load()

    def lookup(self, access_key: str) -> tuple[Principal, str] | None:
        """(principal, secret) for *access_key*, or None."""
        found = self._by_key.get(access_key)
        if found is None:
            return None
        name, secret = found
        grants = self._data["principals"].get(name, {}).get("grants", {})
        return Principal(name, dict(grants)), secret

    def principal(self, name: str) -> Principal:
        """*name* with its grants (none if unknown)."""
        grants = self._data["principals"].get(name, {}).get("grants", {})
        return Principal(name, dict(grants))

    def principals(self) -> list[dict[str, Any]]:
        """Every principal with its access keys (no secrets) and grants."""
        self._load()
        return [
            {"name": n, "access_keys": sorted(p.get("keys", {})), "grants": p.get("grants", {})}
            for n, p in sorted(self._data["principals"].items())
        ]

    # ------------------------------------------------------------------ writing
    def _save(self) -> None:
        """Write the whole file under a temporary name, fsync it, rename it over, fsync the folder.

        Without the folder's fsync a power cut after the rename can bring the old file
        back, and with it a secret that ``new_secret`` or ``delete`` had retired."""
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".credentials-")
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "w") as f:
                json.dump(self._data, f, indent=2, sort_keys=True)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        sync_dir(self.path.parent)
        self._stamp = None
        self._load()

    def create(self, name: str) -> tuple[str, str]:
        """Create principal *name* with one new access key -> (access_key, secret)."""
        if not name or not name.replace("-", "").replace("_", "").replace(".", "").isalnum():
            raise InvalidInput(
                "principal names are letters, digits, '-', '_' and '.'",
                op="create user",
                target=repr(name),
            )
        with self._lock:
            self._load()
            if name in self._data["principals"]:
                raise AlreadyExists("user exists", op="create user", target=name)
            access = "LL" + secrets.token_hex(9).upper()
            secret = secrets.token_urlsafe(30)
            self._data["principals"][name] = {"keys": {access: secret}, "grants": {}}
            self._save()
        return access, secret

    def _principal(self, name: str, op: str) -> dict[str, Any]:
        p: dict[str, Any] | None = self._data["principals"].get(name)
        if p is None:
            raise NotFound("no such user", op=op, target=name, hint="see `lakeloop user list`")
        return p

    def grant(self, name: str, namespace: str, role: str) -> None:
        """Give *name* *role* on *namespace* (``*``: every namespace); replaces a grant."""
        if role not in ROLES:
            raise InvalidInput(f"role must be one of {', '.join(ROLES)}", op="grant", target=role)
        if namespace != ALL and namespace not in AREA_TARGETS:
            from lakeloop.store import check_namespace_name

            check_namespace_name(namespace)
        with self._lock:
            self._load()
            if name == ANONYMOUS and name not in self._data["principals"]:
                # the principal of unsigned requests has grants but never keys
                self._data["principals"][name] = {"keys": {}, "grants": {}}
            self._principal(name, "grant")["grants"][namespace] = role
            self._save()

    def revoke(self, name: str, namespace: str) -> bool:
        """Remove *name*'s grant on *namespace*; False if there was none."""
        with self._lock:
            self._load()
            had = self._principal(name, "revoke")["grants"].pop(namespace, None) is not None
            self._save()
        return had

    def new_secret(self, name: str) -> dict[str, str]:
        """Give each of *name*'s access keys a new secret -> {access_key: secret}.

        The old secret stops working at once: signed requests with it are refused, and
        web UI sessions opened with it end at their next page."""
        with self._lock:
            self._load()
            keys = self._principal(name, "new secret")["keys"]
            if not keys:
                raise InvalidInput("this principal has no access key", op="new secret", target=name)
            for access in keys:
                keys[access] = secrets.token_urlsafe(30)
            self._save()
            return dict(keys)

    def delete(self, name: str) -> None:
        with self._lock:
            self._load()
            self._principal(name, "delete user")
            del self._data["principals"][name]
            self._save()
