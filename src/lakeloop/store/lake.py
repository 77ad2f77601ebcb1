"""The lake: a folder of namespaces, with ``lake.toml`` for its settings.

::

    <root>/lake.toml                  the lake's settings (see ``lakeloop config``)
    <root>/namespaces/<name>/         one namespace: its index, volumes, blobs and locks
        index.sqlite                  the index (a cache of the volumes; rebuildable)
        volumes/0000000001.vol        append-only pack files (the truth)
        blobs/<id>.blob               objects above blob_threshold
        writer.lock, compact.lock     cross-process locks

Namespaces are opened lazily and independently: a namespace whose index is corrupt or
whose lock is held raises ``NamespaceUnavailable`` for itself alone.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import re
import shutil
import threading
import time
from pathlib import Path
from typing import Any

import tomli_w

from lakeloop.errors import (
    AlreadyExists,
    InvalidInput,
    InvalidName,
    LakeloopError,
    NamespaceUnavailable,
    NotFound,
)
from lakeloop.settings import Settings
from lakeloop.store._fs import FileLayer, OSFileLayer, sync_dir
from lakeloop.store.namespace import Namespace

__all__ = ["Lake", "check_namespace_name"]

log = logging.getLogger("lakeloop.store")

_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_LAKE_FILE = "lake.toml"
_NS_DIR = "namespaces"


def _write_durably(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def check_namespace_name(name: object, *, internal: bool = False) -> str:
    """Validate a namespace name (S3 bucket rules; ``_name`` for lakeloop's own data)."""
    if not isinstance(name, str):
        raise InvalidName("a namespace name must be a str", op="namespace", target=repr(name))
    body = name
    if name.startswith("_"):
        if not internal:
            raise InvalidName(
                "names starting with '_' are reserved for lakeloop's own data",
                op="create namespace",
                target=name,
            )
        body = name[1:]
        if not body or not re.fullmatch(r"[a-z0-9][a-z0-9-]*", body):
            raise InvalidName("bad internal namespace name", op="namespace", target=name)
        return name
    if not _NAME.match(body) or ".." in body or ".-" in body or "-." in body:
        raise InvalidName("not a valid namespace name", op="namespace", target=name)
    try:
        ipaddress.ip_address(body)
    except ValueError:
        pass
    else:
        raise InvalidName(
            "a namespace name must not look like an IP address", op="namespace", target=name
        )
    if body.startswith("xn--") or body.endswith("-s3alias"):
        raise InvalidName("reserved prefix or suffix", op="namespace", target=name)
    return name


class Lake:
    """A lake on local disk. Open it with ``Lake.open(path, create=True)``.

    >>> with Lake.open("/tmp/lake", create=True) as lake:     # doctest: +SKIP
    ...     ns = lake.create_namespace("photos", exist_ok=True)
    ...     ns.put("a.txt", b"hello").etag
    '5d41402abc4b2a76b9719d911017c592'
    """

    def __init__(self, root: Path, settings: Settings, fs: FileLayer, background: bool) -> None:
        self.root = root
        self.settings = settings
        self._fs = fs
        self._open: dict[str, Namespace] = {}
        self._lock = threading.Lock()
        self._closed = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if background:
            self._thread = threading.Thread(
                target=self._maintain, name="lakeloop-maintenance", daemon=True
            )
            self._thread.start()

    # ------------------------------------------------------------------ opening
    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        *,
        create: bool = False,
        settings: dict[str, Any] | None = None,
        background: bool = True,
        access_key: str | None = None,
        secret_key: str | None = None,
        _fs: FileLayer | None = None,
    ) -> Lake:
        """Open the lake at *path* (``create=True`` makes it, writing *settings* to lake.toml).

        ``background=False`` turns the compaction thread off (short-lived tools use it).
        An ``http://HOST:PORT`` *path* opens a lake served by ``lakeloop gateway`` with
        *access_key* / *secret_key* (default: ``LAKELOOP_ACCESS_KEY`` /
        ``LAKELOOP_SECRET_KEY``); it offers the same namespace API.
        """
        if isinstance(path, str) and path.startswith(("http://", "https://")):
            from lakeloop.store._remote import RemoteLake

            if create or settings:
                raise InvalidInput(
                    "a remote lake is created by its server, not by a client",
                    op="open lake",
                    target=path,
                )
            # duck-typed: a RemoteLake offers the same namespace API over the gateway
            return RemoteLake(  # type: ignore[return-value]
                path, access_key=access_key, secret_key=secret_key
            )
        root = Path(path)
        lake_file = root / _LAKE_FILE
        if not lake_file.exists():
            if not create:
                raise NotFound(
                    "no lake here (lake.toml is missing)",
                    op="open lake",
                    target=str(root),
                    hint="create one with `lakeloop init PATH`",
                )
            values = dict(settings or {})
            Settings(values, env={})  # validate before anything is written
            root.mkdir(parents=True, exist_ok=True)
            (root / _NS_DIR).mkdir(exist_ok=True)
            header = "# lakeloop lake settings; `lakeloop config` lists every setting.\n"
            tmp = root / (_LAKE_FILE + ".tmp")
            _write_durably(tmp, (header + tomli_w.dumps(values)).encode())
            os.replace(tmp, lake_file)
            sync_dir(root)
            sync_dir(root.parent)
        elif settings:
            raise AlreadyExists(
                "settings can only be given when the lake is created",
                op="open lake",
                target=str(root),
                hint="edit lake.toml instead",
            )
        loaded = Settings.load(lake_file)
        (root / _NS_DIR).mkdir(exist_ok=True)
        return cls(root, loaded, _fs or OSFileLayer(), background)

    def __enter__(self) -> Lake:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ namespaces
    def _ns_path(self, name: str) -> Path:
        return self.root / _NS_DIR / name

    def _check_open(self, op: str) -> None:
        if self._closed:
            raise NamespaceUnavailable("the lake is closed", op=op, target=str(self.root))

    def create_namespace(self, name: str, *, exist_ok: bool = False) -> Namespace:
        """Create namespace *name* (S3 bucket-name rules) and return it."""
        self._check_open("create namespace")
        check_namespace_name(name)
        return self._create(name, exist_ok)

    def internal_namespace(self, name: str) -> Namespace:
        """A reserved namespace (``_runs``, ``_models``...), created on first use."""
        self._check_open("open namespace")
        if not name.startswith("_"):
            raise InvalidName(
                "internal namespace names start with '_'", op="open namespace", target=name
            )
        check_namespace_name(name, internal=True)
        return self._create(name, exist_ok=True)

    def _create(self, name: str, exist_ok: bool) -> Namespace:
        path = self._ns_path(name)
        if path.exists():
            if exist_ok:
                return self.namespace(name)
            raise AlreadyExists(
                "namespace exists",
                op="create namespace",
                target=name,
                hint="pass exist_ok=True to open it instead",
            )
        tmp = self.root / _NS_DIR / f".creating-{name}-{os.getpid()}-{time.time_ns()}"
        tmp.mkdir(parents=True)
        try:
            (tmp / "volumes").mkdir()
            (tmp / "blobs").mkdir()
            _write_durably(
                tmp / "namespace.toml",
                tomli_w.dumps(
                    {"name": name, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
                ).encode(),
            )
            sync_dir(tmp)  # its entries first, then the rename that publishes it
            try:
                os.rename(tmp, path)
            except OSError:
                if exist_ok and path.exists():
                    return self.namespace(name)
                raise AlreadyExists(
                    "namespace exists", op="create namespace", target=name
                ) from None
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        self._fs.sync_dir(str(self.root / _NS_DIR))
        return self.namespace(name)

    def namespace(self, name: str) -> Namespace:
        """Open an existing namespace (``NotFound`` if there is none)."""
        self._check_open("open namespace")
        with self._lock:
            ns = self._open.get(name)
            if ns is not None:
                return ns
        check_namespace_name(name, internal=True)
        path = self._ns_path(name)
        if not (path / "namespace.toml").exists():
            raise NotFound(
                "no such namespace",
                op="open namespace",
                target=name,
                hint="list them with `lakeloop ns list`",
            )
        ns = Namespace(name, str(path), self.settings, self._fs)
        with self._lock:
            existing = self._open.get(name)
            if existing is not None:
                ns.close()
                return existing
            self._open[name] = ns
        return ns

    def delete_namespace(self, name: str) -> None:
        """Remove the empty namespace *name* (``InvalidInput`` if it holds objects)."""
        self._check_open("delete namespace")
        check_namespace_name(name)
        ns = self.namespace(name)
        if next(iter(ns.list(limit=1)), None) is not None:
            raise InvalidInput(
                "the namespace is not empty",
                op="delete namespace",
                target=name,
                hint="delete its objects first",
            )
        self._forget(name)
        path = self._ns_path(name)
        doomed = self.root / _NS_DIR / f".deleting-{name}-{os.getpid()}-{time.time_ns()}"
        os.rename(path, doomed)  # one atomic step: the name is free, even after a crash
        self._fs.sync_dir(str(self.root / _NS_DIR))
        shutil.rmtree(doomed, ignore_errors=True)

    def namespaces(self, *, include_internal: bool = False) -> list[str]:
        """Names of the namespaces, sorted."""
        base = self.root / _NS_DIR
        names = []
        for entry in sorted(os.listdir(base)) if base.exists() else []:
            if entry.startswith("."):
                continue
            if entry.startswith("_") and not include_internal:
                continue
            if (base / entry / "namespace.toml").exists():
                names.append(entry)
        return names

    def has_namespace(self, name: str) -> bool:
        return (self._ns_path(name) / "namespace.toml").exists()

    # ------------------------------------------------------------------ maintenance
    def fsck(
        self,
        repair: bool = False,
        *,
        rebuild_index: bool = False,
        namespaces: list[str] | None = None,
        deep: bool = True,
    ) -> Any:
        """Check every record, index row and blob; -> ``FsckReport`` with ``.ok``."""
        from lakeloop.store._fsck import fsck

        self._check_open("fsck")
        return fsck(self, repair=repair, rebuild_index=rebuild_index, names=namespaces, deep=deep)

    def _forget(self, name: str) -> None:
        with self._lock:
            ns = self._open.pop(name, None)
        if ns is not None:
            ns.close()

    def _maintain(self) -> None:
        """Background work: flush ``sync = "batch"`` namespaces every ``sync_interval``,
        and compact where a threshold is crossed every ``compaction_interval``."""
        from lakeloop.store._compact import compact, plan

        compact_every = float(self.settings["compaction_interval"])
        flush_every = max(float(self.settings["sync_interval"]), 0.01)
        # wake for flushes only if some namespace can be in sync = "batch"
        batch = self.settings["sync"] == "batch" or "batch" in self.settings.namespace_values(
            "sync"
        )
        tick = min(compact_every, flush_every) if batch else compact_every
        next_compaction = time.monotonic() + compact_every
        while not self._stop.wait(tick):
            with self._lock:
                open_now = list(self._open.values())
            for ns in open_now:
                if ns._dirty and ns.setting("sync") == "batch":
                    try:
                        ns.flush()
                    except Exception:
                        log.exception("background flush of %s failed", ns.name)
            if not self.settings["auto_compact"] or time.monotonic() < next_compaction:
                continue
            next_compaction = time.monotonic() + compact_every
            for ns in open_now:
                if self._stop.is_set():
                    return
                try:
                    picked, _ = plan(ns, force=False)
                    if picked:
                        report = compact(ns, force=False)
                        if not report.skipped:
                            log.info("compacted %s: %s", ns.name, report.as_dict())
                except LakeloopError as exc:
                    log.warning("background compaction of %s: %s", ns.name, exc)
                except Exception:  # the thread must survive anything one namespace does
                    log.exception("background compaction of %s failed", ns.name)

    def close(self) -> None:
        """Flush and close every open namespace; stop the background thread."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)
        with self._lock:
            opened, self._open = list(self._open.values()), {}
        for ns in opened:
            try:
                ns.close()
            except Exception:
                log.exception("closing namespace %s", ns.name)

    def __repr__(self) -> str:
        return f"<Lake {str(self.root)!r}>"
