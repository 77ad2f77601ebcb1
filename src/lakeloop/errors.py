"""The one exception tree of lakeloop.

Every error names the operation that failed, the thing it was working on, and a hint
for getting out of it. The CLI prints ``str(error)`` on one line and exits 2.

::

    LakeloopError
    ├── InvalidInput (also ValueError)      bad input; nothing was changed
    │   ├── InvalidKey                      object key is not valid UTF-8 / too long / empty
    │   ├── InvalidName                     namespace name breaks the bucket-name rules
    │   ├── InvalidSetting                  a setting has a bad value or is unknown
    │   ├── InvalidProject                  lakeloop.toml or lakeloop.lock is malformed
    │   ├── InvalidPolicy                   a gate policy is malformed (metric, margin, ...)
    │   ├── InvalidEvaluation               predictions/labels unusable: lengths, NaN, shape
    │   └── InvalidPipeline                 a pipeline file breaks the contract (points at it)
    ├── NotFound (also KeyError)            no such object, version, namespace or lake
    ├── AlreadyExists                       namespace or lake already there
    ├── Refused                             a rule forbids it (champion moved outside the gate)
    ├── ChecksumError                       stored bytes do not match their checksum
    ├── QuotaExceeded                       the namespace's quota would be exceeded
    ├── InsufficientSpace                   not enough free disk for the operation
    ├── AccessDenied                        not signed in, bad signature, or no grant
    │                                       on the namespace (a remote lake's gateway)
    ├── NamespaceUnavailable                a namespace cannot be used now (corrupt index,
    │   └── LockTimeout                     or its writer lock was not granted in time)
    ├── StoreError                          an I/O error or inconsistency in the store
    └── StreamError                         an event stream's backend failed (server
                                            unreachable, timed out, refused the call)
"""

from __future__ import annotations

__all__ = [
    "AccessDenied",
    "AlreadyExists",
    "ChecksumError",
    "InsufficientSpace",
    "InvalidEvaluation",
    "InvalidInput",
    "InvalidKey",
    "InvalidName",
    "InvalidPipeline",
    "InvalidPolicy",
    "InvalidProject",
    "InvalidSetting",
    "LakeloopError",
    "LockTimeout",
    "NamespaceUnavailable",
    "NotFound",
    "QuotaExceeded",
    "Refused",
    "StoreError",
    "StreamError",
]


class LakeloopError(Exception):
    """Base of every lakeloop error.

    ``op`` is what was being done ("put", "open namespace"), ``target`` what it was done
    on ("photos/cat.jpg"), ``hint`` how to recover.
    """

    default_hint: str | None = None

    def __init__(
        self,
        message: str,
        *,
        op: str | None = None,
        target: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.message = message
        self.op = op
        self.target = target
        self.hint = hint if hint is not None else self.default_hint
        super().__init__(message)

    def __str__(self) -> str:
        where = " ".join(p for p in (self.op, self.target) if p)
        text = f"{where}: {self.message}" if where else self.message
        if self.hint:
            text += f" (hint: {self.hint})"
        return text


class InvalidInput(LakeloopError, ValueError):
    """The caller passed something invalid; nothing was changed."""


class InvalidKey(InvalidInput):
    default_hint = "keys are non-empty UTF-8 strings of at most 1024 bytes"


class InvalidName(InvalidInput):
    default_hint = (
        "namespace names are 3-63 characters of lowercase letters, digits, '-' and '.', "
        "starting and ending with a letter or digit"
    )


class InvalidSetting(InvalidInput):
    default_hint = "run `lakeloop config` to see every setting with its help"


class InvalidProject(InvalidInput):
    """The project file ``lakeloop.toml`` (or its lock file) has a bad or unknown key."""

    default_hint = "docs/project.md lists every key of lakeloop.toml with its meaning"


class InvalidPolicy(InvalidInput):
    """A gate policy is malformed: unknown metric, margin out of range, and so on."""

    default_hint = "docs/gate.md describes every Policy field"


class InvalidEvaluation(InvalidInput):
    """Labels or predictions given to the gate cannot be used as they are."""


class InvalidPipeline(InvalidInput):
    """A pipeline file (``pipeline.py``) breaks the contract; ``target`` is ``file:line``."""

    default_hint = "docs/train.md describes the pipeline file's functions and variables"


class NotFound(LakeloopError, KeyError):
    """No such object, version, namespace or lake."""

    def __str__(self) -> str:  # KeyError would quote the message otherwise
        return LakeloopError.__str__(self)


class AlreadyExists(LakeloopError):
    """The namespace (or lake) already exists."""


class Refused(LakeloopError):
    """A rule forbids the action, e.g. moving ``champion`` without the gate."""


class ChecksumError(LakeloopError):
    """Stored bytes do not match their checksum; the data is never returned."""

    default_hint = "run `lakeloop fsck` to list damaged objects; other objects stay readable"

    def __init__(
        self,
        message: str,
        *,
        op: str | None = None,
        target: str | None = None,
        hint: str | None = None,
        volume: str | None = None,
        offset: int | None = None,
    ) -> None:
        self.volume = volume
        self.offset = offset
        super().__init__(message, op=op, target=target, hint=hint)


class QuotaExceeded(LakeloopError):
    default_hint = "delete objects, or raise the namespace quota in lake.toml"


class InsufficientSpace(LakeloopError):
    default_hint = "free disk space, or lower compaction's batch with compaction_max_bytes"


class AccessDenied(LakeloopError):
    """The gateway refused the request: unknown key, bad signature, or no grant."""

    default_hint = "check the access key and secret, and `lakeloop user list` for grants"


class NamespaceUnavailable(LakeloopError):
    """This namespace cannot be used now; other namespaces are unaffected."""


class LockTimeout(NamespaceUnavailable):
    default_hint = "another process holds the namespace's writer lock; retry, or raise lock_timeout"


class StoreError(LakeloopError):
    """An I/O error or an internal inconsistency in the store."""


class StreamError(LakeloopError):
    """An event stream's backend failed: its server is unreachable, timed out or refused.

    Nothing is known to be written when a publish raises it; publishing again may
    duplicate events, which consumers drop by their id (delivery is at least once).
    """

    default_hint = "check that the stream's server runs (stream_url), then retry"
