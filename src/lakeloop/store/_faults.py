"""File layers that inject faults: simulated power cuts and full disks (private).

Tests and bench scripts pass one to ``Lake.open(..., _fs=layer)``; every byte the store
writes, every fsync and every change of a name then goes through it (see ``_fs.py``).
This is the idea of SQLite's crash-test VFS, for lakeloop's volumes and blobs.

``PowerCutLayer`` remembers what is durable: per file, the size at its last ``sync()``;
per name, whether its creation, rename or removal was made durable by ``sync_dir`` of its
folder. ``power_cut()`` (or the ``cut_at``-th operation) rewrites the disk to what a power
loss could leave at worst: files cut back to their last synced size, files whose names
were never made durable removed, removals and renames not yet made durable undone. The
machine is then *off*: every later operation raises ``OSError(EIO)``. ::

    layer = PowerCutLayer(cut_at=57)
    lake = Lake.open(path, create=True, _fs=layer)
    ...                      # the 57th file operation cuts the power and fails
    lake.close()
    lake = Lake.open(path)   # the real file system: recovery runs, check what survived

It also checks a rule of the design: volumes and blobs are append-only, so the store
must never overwrite bytes below a file's synced size. A write that would, and durable
bytes that changed behind the layer's back (found when the power is cut), are recorded
in ``violations`` and raise ``DurabilityViolation``.

What it does not model: SQLite's own files (the index) do not go through the layer; they
keep every committed transaction. The store is built so that the index may be behind or
ahead of the volumes after a power loss (recovery re-indexes an unindexed tail, and
rebuilds an index that knows more than the volumes hold). Folders created with
``os.makedirs`` outside the layer are taken as durable. Reads are not intercepted: they
see the disk as the layer left it.

``FaultLayer`` fails writes with ``ENOSPC`` (or another errno) once a byte budget is
spent or at the k-th write, optionally only for the paths a predicate picks (compaction's
outputs, blobs...), and keeps failing until ``heal()``.
"""

from __future__ import annotations

import errno
import os
import threading
import zlib
from collections.abc import Callable, Collection
from dataclasses import dataclass, field

from lakeloop.store._fs import FileLayer, OSFileLayer, WritableFile

__all__ = ["DurabilityViolation", "FaultLayer", "PowerCutLayer"]

_READ_CHUNK = 4 << 20


class DurabilityViolation(AssertionError):
    """The store overwrote durable bytes (volumes and blobs are append-only)."""


def _read(path: str, start: int, end: int) -> bytes:
    if end <= start:
        return b""
    with open(path, "rb") as f:
        f.seek(start)
        return f.read(end - start)


def _crc(path: str, start: int, end: int, value: int = 0) -> int:
    if end <= start:
        return value
    with open(path, "rb") as f:
        f.seek(start)
        left = end - start
        while left > 0:
            piece = f.read(min(left, _READ_CHUNK))
            if not piece:
                break
            value = zlib.crc32(piece, value)
            left -= len(piece)
    return value


def _real_size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        return -1


@dataclass
class _Node:
    """What the layer knows about one file."""

    path: str
    size: int  # its length as written through the layer
    synced: int  # length at its last sync: what survives a power cut
    guard: int  # bytes [0, guard) must keep their content (crc) until power is cut
    crc: int
    # durable bytes an un-synced truncate cut off: (offset, bytes), put back by a cut
    restore: tuple[int, bytes] | None = None
    handles: int = 0

    def durable_content(self) -> bytes:
        """The bytes this file holds after a power cut."""
        if self.restore is not None:
            start, data = self.restore
            return _read(self.path, 0, start) + data
        return _read(self.path, 0, self.synced)


@dataclass
class _NameOp:
    """A change of names not yet made durable by ``sync_dir`` of every folder it touched."""

    kind: str  # "create" | "unlink" | "rename"
    path: str  # created/unlinked path, or rename destination
    dirs: set[str]
    src: str = ""  # rename source
    content: bytes = b""  # unlink: the durable bytes of the removed file
    node: _Node | None = None  # rename: the moved file; unlink: the removed file
    replaced: tuple[_Node, bytes] | None = None  # rename over an existing file


@dataclass
class CutReport:
    """What a power cut did to the disk (for test messages)."""

    at_op: int
    truncated: dict[str, tuple[int, int]] = field(default_factory=dict)  # path: (from, to)
    removed: list[str] = field(default_factory=list)
    restored: list[str] = field(default_factory=list)
    renames_undone: list[tuple[str, str]] = field(default_factory=list)


class _CutFile(WritableFile):
    def __init__(self, layer: PowerCutLayer, node: _Node, inner: WritableFile) -> None:
        self._layer = layer
        self._node = node
        self._inner = inner
        self.path = node.path
        self._closed = False
        node.handles += 1

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._layer._write(self._node, self._inner, data)

    def sync(self) -> None:
        self._layer._sync(self._node, self._inner)

    def truncate(self, size: int) -> None:
        self._layer._truncate(self._node, self._inner, size)

    def size(self) -> int:
        return self._node.size

    def close(self) -> None:
        # Never fails and never counts as an operation: closing a descriptor writes
        # nothing, and a failing close would leak it.
        if not self._closed:
            self._closed = True
            self._node.handles -= 1
            self._inner.close()


class PowerCutLayer(FileLayer):
    """A file layer that forgets what was not made durable when the power is cut.

    *cut_at*: cut the power at the *cut_at*-th operation (1-based; ``create``,
    ``open_append``, ``write``, ``sync``, ``truncate``, ``sync_dir``, ``rename`` and
    ``unlink`` count one each; ``close`` and ``size`` do not). With ``cut_after=False``
    the operation has no effect; with ``cut_after=True`` it completes, then the power
    goes (a crash right after an fsync, before the caller could use its result). Either
    way the operation raises ``OSError(EIO)``.

    *unsynced* says what becomes of bytes written but not synced: ``"lose"`` (the worst
    case, the default) drops them all; ``"torn"`` keeps the first half of each file's
    unsynced bytes, so records end torn (part of the page cache reached the disk);
    ``"keep"`` keeps every byte and every change of names, as when only the process dies
    (a ``kill -9`` at that operation).

    ``ops`` counts the operations so far; ``log`` lists them as (number, name, path,
    phase), where ``phase`` is whatever the caller last stored in ``layer.phase`` (sweeps
    use it to cover every phase of a workload). ``check_overwrites=False`` skips the
    checksums of durable bytes (cheaper with large files).
    """

    def __init__(
        self,
        base: FileLayer | None = None,
        *,
        cut_at: int | None = None,
        cut_after: bool = False,
        unsynced: str = "lose",
        check_overwrites: bool = True,
    ) -> None:
        if unsynced not in ("lose", "torn", "keep"):
            raise ValueError(f"unsynced must be 'lose', 'torn' or 'keep', not {unsynced!r}")
        self.base = base or OSFileLayer()
        self.cut_at = cut_at
        self.cut_after = cut_after
        self.unsynced = unsynced
        self.check_overwrites = check_overwrites
        self.ops = 0
        self.phase = ""
        self.log: list[tuple[int, str, str, str]] = []
        self.is_off = False
        self.cut: CutReport | None = None
        self.violations: list[str] = []
        self._nodes: dict[str, _Node] = {}
        self._pending: list[_NameOp] = []
        self._mutex = threading.RLock()

    # ------------------------------------------------------------------ bookkeeping
    def _begin(self, name: str, path: str) -> None:
        if self.is_off:
            raise OSError(errno.EIO, "the power is off (simulated power cut)", path)
        self.ops += 1
        self.log.append((self.ops, name, path, self.phase))
        if self.cut_at is not None and self.ops == self.cut_at and not self.cut_after:
            self.power_cut()
            raise OSError(errno.EIO, f"power cut at operation {self.ops} ({name})", path)

    def _end(self, name: str, path: str) -> None:
        if self.cut_at is not None and self.ops == self.cut_at and self.cut_after:
            self.power_cut()
            raise OSError(errno.EIO, f"power cut after operation {self.ops} ({name})", path)

    def _violation(self, message: str) -> DurabilityViolation:
        self.violations.append(message)
        return DurabilityViolation(message)

    def _node_for(self, path: str) -> _Node:
        """The node of an existing file; a file never seen before counts as durable."""
        node = self._nodes.get(path)
        actual = _real_size(path)
        if node is None:
            crc = _crc(path, 0, actual) if self.check_overwrites else 0
            node = _Node(path=path, size=actual, synced=actual, guard=actual, crc=crc)
            self._nodes[path] = node
        elif actual != node.size:
            raise self._violation(
                f"{path} is {actual} bytes but {node.size} were written through the file "
                "layer: it was changed behind the layer's back"
            )
        return node

    @staticmethod
    def _abs(path: str) -> str:
        return os.path.abspath(path)

    # ------------------------------------------------------------------ FileLayer
    def create(self, path: str) -> WritableFile:
        path = self._abs(path)
        with self._mutex:
            self._begin("create", path)
            # A file the layer knew, removed with os.unlink (outside the layer) and now
            # created again: the new file replaces it.
            self._nodes.pop(path, None)
            inner = self.base.create(path)
            node = _Node(path=path, size=0, synced=0, guard=0, crc=0)
            self._nodes[path] = node
            self._pending.append(_NameOp("create", path, {os.path.dirname(path)}, node=node))
            f = _CutFile(self, node, inner)
            try:
                self._end("create", path)
            except OSError:
                f.close()
                raise
            return f

    def open_append(self, path: str) -> WritableFile:
        path = self._abs(path)
        with self._mutex:
            self._begin("open_append", path)
            inner = self.base.open_append(path)
            try:
                node = self._node_for(path)
            except BaseException:
                inner.close()
                raise
            f = _CutFile(self, node, inner)
            try:
                self._end("open_append", path)
            except OSError:
                f.close()
                raise
            return f

    def _write(
        self, node: _Node, inner: WritableFile, data: bytes | bytearray | memoryview
    ) -> None:
        with self._mutex:
            self._begin("write", node.path)
            actual = _real_size(node.path)
            if actual != node.size:
                raise self._violation(
                    f"{node.path} is {actual} bytes but {node.size} were written through "
                    "the file layer: it was changed behind the layer's back"
                )
            if node.size < node.synced and node.restore is None:
                raise self._violation(
                    f"write at offset {node.size} of {node.path} would overwrite durable "
                    f"bytes (synced up to {node.synced})"
                )
            try:
                inner.write(data)
            finally:
                node.size = max(_real_size(node.path), 0)
            self._end("write", node.path)

    def _sync(self, node: _Node, inner: WritableFile) -> None:
        with self._mutex:
            self._begin("sync", node.path)
            inner.sync()
            if self.check_overwrites:
                if node.restore is None and node.guard == node.synced <= node.size:
                    node.crc = _crc(node.path, node.synced, node.size, node.crc)
                else:
                    node.crc = _crc(node.path, 0, node.size)
            node.synced = node.guard = node.size
            node.restore = None
            self._end("sync", node.path)

    def _truncate(self, node: _Node, inner: WritableFile, size: int) -> None:
        with self._mutex:
            self._begin("truncate", node.path)
            if size < node.synced:
                # Durable bytes go; until the next sync a power cut brings them back.
                if node.restore is None:
                    node.restore = (size, _read(node.path, size, node.synced))
                elif size < node.restore[0]:
                    start, data = node.restore
                    node.restore = (size, _read(node.path, size, start) + data)
                if size < node.guard:
                    node.guard = size
                    node.crc = _crc(node.path, 0, size) if self.check_overwrites else 0
            inner.truncate(size)
            node.size = size
            self._end("truncate", node.path)

    def sync_dir(self, path: str) -> None:
        path = self._abs(path)
        with self._mutex:
            self._begin("sync_dir", path)
            self.base.sync_dir(path)
            keep = []
            for op in self._pending:
                op.dirs.discard(path)
                if op.dirs:
                    keep.append(op)
            self._pending = keep
            self._end("sync_dir", path)

    def rename(self, src: str, dst: str) -> None:
        src, dst = self._abs(src), self._abs(dst)
        with self._mutex:
            self._begin("rename", dst)
            node = self._node_for(src)
            replaced = None
            if os.path.exists(dst):
                old = self._node_for(dst)
                replaced = (old, old.durable_content())
            self.base.rename(src, dst)
            self._nodes.pop(src, None)
            node.path = dst
            self._nodes[dst] = node
            self._pending.append(
                _NameOp(
                    "rename",
                    dst,
                    {os.path.dirname(src), os.path.dirname(dst)},
                    src=src,
                    node=node,
                    replaced=replaced,
                )
            )
            self._end("rename", dst)

    def unlink(self, path: str) -> None:
        path = self._abs(path)
        with self._mutex:
            self._begin("unlink", path)
            if not os.path.exists(path):
                self._nodes.pop(path, None)
                self.base.unlink(path)  # raises FileNotFoundError, like the OS layer
            node = self._node_for(path)
            content = node.durable_content()
            self.base.unlink(path)
            self._nodes.pop(path, None)
            self._pending.append(
                _NameOp("unlink", path, {os.path.dirname(path)}, content=content, node=node)
            )
            self._end("unlink", path)

    def disk_free(self, path: str) -> int:
        return self.base.disk_free(path)

    # ------------------------------------------------------------------ the cut
    def power_cut(self) -> CutReport:
        """Make the disk look as after a power loss, then refuse every operation."""
        with self._mutex:
            if self.cut is not None:
                return self.cut
            report = CutReport(at_op=self.ops)
            if self.check_overwrites:
                for node in self._nodes.values():
                    if _real_size(node.path) < 0:
                        continue
                    if _crc(node.path, 0, node.guard) != node.crc:
                        self.violations.append(
                            f"durable bytes of {node.path} (below offset {node.guard}) changed"
                        )
            if self.unsynced == "keep":  # only the process died: the kernel keeps it all
                self._pending = []
            # Undo the changes of names that were not made durable, newest first.
            for op in reversed(self._pending):
                if op.kind == "create":
                    there = self._nodes.get(op.path)
                    if there is op.node:
                        del self._nodes[op.path]
                    if os.path.lexists(op.path) and (there is op.node or there is None):
                        os.unlink(op.path)
                        report.removed.append(op.path)
                elif op.kind == "unlink":
                    assert op.node is not None
                    self._put_back(op.node, op.path, op.content)
                    report.restored.append(op.path)
                elif op.kind == "rename":
                    assert op.node is not None
                    os.rename(op.path, op.src)
                    self._nodes.pop(op.path, None)
                    op.node.path = op.src
                    self._nodes[op.src] = op.node
                    if op.replaced is not None:
                        self._put_back(op.replaced[0], op.path, op.replaced[1])
                    report.renames_undone.append((op.src, op.path))
            self._pending = []
            # Cut every file back to its durable content.
            for node in self._nodes.values():
                actual = _real_size(node.path)
                if actual < 0:
                    continue
                if node.restore is not None and self.unsynced != "keep":
                    start, data = node.restore
                    with open(node.path, "r+b") as f:
                        f.truncate(start)
                        f.seek(start)
                        f.write(data)
                    report.truncated[node.path] = (actual, start + len(data))
                elif actual > node.synced and self.unsynced != "keep":
                    keep = node.synced
                    if self.unsynced == "torn":
                        keep += (actual - node.synced) // 2
                    os.truncate(node.path, keep)
                    report.truncated[node.path] = (actual, keep)
            self.is_off = True
            self.cut = report
            return report

    def _put_back(self, node: _Node, path: str, content: bytes) -> None:
        """Recreate a removed file with its durable bytes (the same node, so that an
        earlier, undone ``create`` of it still recognises it)."""
        with open(path, "wb") as f:
            f.write(content)
        n = len(content)
        node.path, node.size, node.synced, node.guard, node.restore = path, n, n, n, None
        node.crc = zlib.crc32(content) if self.check_overwrites else 0
        self._nodes[path] = node

    def op_names(self) -> list[str]:
        """The operations logged so far, as "name path" strings (for messages)."""
        return [
            f"{n} {name} {os.path.basename(path)} [{phase}]" for n, name, path, phase in self.log
        ]


class FaultLayer(FileLayer):
    """A file layer whose writes fail like a full (or broken) disk.

    ``fail_after_bytes=N``: matching writes succeed until N bytes were written through
    the layer; the write that crosses the budget writes what fits and raises.
    ``fail_on_write=k``: the k-th matching write raises without writing.
    Once tripped, every later matching write fails as well (a full disk stays full)
    until ``heal()``.
    ``fail_ops``: other operations ("create", "sync", "sync_dir", "rename", "unlink")
    that fail on every matching path while the layer is armed, tripped or not.
    ``match``: a predicate on the path; only matching files count and fail (default all).
    ``error``: the errno raised (ENOSPC by default). ``armed = False`` pauses it all.
    """

    def __init__(
        self,
        base: FileLayer | None = None,
        *,
        fail_after_bytes: int | None = None,
        fail_on_write: int | None = None,
        fail_ops: Collection[str] = (),
        match: Callable[[str], bool] | None = None,
        error: int = errno.ENOSPC,
    ) -> None:
        unknown = set(fail_ops) - {"create", "sync", "sync_dir", "rename", "unlink"}
        if unknown:
            raise ValueError(f"unknown operations {sorted(unknown)}")
        self.base = base or OSFileLayer()
        self.fail_after_bytes = fail_after_bytes
        self.fail_on_write = fail_on_write
        self.fail_ops = frozenset(fail_ops)
        self.match = match
        self.error = error
        self.bytes_written = 0
        self.writes = 0
        self.failures = 0
        self.tripped = False
        self.armed = True
        self._mutex = threading.Lock()

    def heal(self) -> None:
        """Stop failing (space was freed)."""
        with self._mutex:
            self.armed = False
            self.tripped = False

    def _matches(self, path: str) -> bool:
        return self.armed and (self.match is None or bool(self.match(path)))

    def _fail(self, path: str, *, trip: bool = True) -> OSError:
        self.failures += 1
        self.tripped = self.tripped or trip  # (failing writes keep failing)
        return OSError(self.error, os.strerror(self.error), path)

    def _check(self, op: str, path: str) -> None:
        if op in self.fail_ops:
            with self._mutex:
                if self._matches(path):
                    raise self._fail(path, trip=False)

    def _write(self, inner: WritableFile, data: bytes | bytearray | memoryview) -> None:
        path = inner.path
        with self._mutex:
            if not self._matches(path):
                allowed = len(data)
            elif self.tripped:
                raise self._fail(path)
            else:
                self.writes += 1
                allowed = len(data)
                if self.fail_on_write is not None and self.writes >= self.fail_on_write:
                    allowed = 0
                if self.fail_after_bytes is not None:
                    allowed = min(allowed, max(self.fail_after_bytes - self.bytes_written, 0))
                self.bytes_written += allowed
        if allowed:
            inner.write(memoryview(data)[:allowed] if allowed < len(data) else data)
        if allowed < len(data):
            with self._mutex:
                raise self._fail(path)

    def _sync(self, inner: WritableFile) -> None:
        self._check("sync", inner.path)
        inner.sync()

    def create(self, path: str) -> WritableFile:
        self._check("create", path)
        return _FaultFile(self, self.base.create(path))

    def open_append(self, path: str) -> WritableFile:
        return _FaultFile(self, self.base.open_append(path))

    def sync_dir(self, path: str) -> None:
        self._check("sync_dir", path)
        self.base.sync_dir(path)

    def rename(self, src: str, dst: str) -> None:
        self._check("rename", dst)
        self.base.rename(src, dst)

    def unlink(self, path: str) -> None:
        self._check("unlink", path)
        self.base.unlink(path)

    def disk_free(self, path: str) -> int:
        return self.base.disk_free(path)


class _FaultFile(WritableFile):
    def __init__(self, layer: FaultLayer, inner: WritableFile) -> None:
        self._layer = layer
        self._inner = inner
        self.path = inner.path

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._layer._write(self._inner, data)

    def sync(self) -> None:
        self._layer._sync(self._inner)

    def truncate(self, size: int) -> None:
        self._inner.truncate(size)

    def size(self) -> int:
        return self._inner.size()

    def close(self) -> None:
        self._inner.close()
