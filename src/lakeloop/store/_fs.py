"""The file layer: every byte the store writes, and every fsync, goes through here.

Reads use plain ``os.pread`` on descriptors (the layer never buffers), so a layer that
rewrites files on disk (a simulated power cut) is seen by readers at once. Tests swap in
a layer that forgets whatever was not fsynced (``_faults.PowerCutLayer``) or one that
fails with ENOSPC (``_faults.FaultLayer``), the way SQLite's test VFS does.

Contract for implementations:

- ``create(path)`` makes a new, empty file (it must not exist) and returns a handle
  that appends; the new name is durable only after ``sync_dir`` of its folder.
- ``open_append(path)`` opens an existing file for appending.
- ``WritableFile.write`` appends; ``sync`` makes everything written so far durable;
  ``truncate`` cuts the file (used only to drop a torn tail).
- ``rename``, ``unlink`` change names; they are durable after ``sync_dir``.
"""

from __future__ import annotations

import os
import shutil
from abc import ABC, abstractmethod

__all__ = ["FileLayer", "OSFileLayer", "WritableFile"]


class WritableFile(ABC):
    """An append-only file handle."""

    path: str

    @abstractmethod
    def write(self, data: bytes | bytearray | memoryview) -> None: ...

    @abstractmethod
    def sync(self) -> None: ...

    @abstractmethod
    def truncate(self, size: int) -> None: ...

    @abstractmethod
    def size(self) -> int: ...

    @abstractmethod
    def close(self) -> None: ...


class FileLayer(ABC):
    """How the store writes files. One instance is shared by a whole lake."""

    @abstractmethod
    def create(self, path: str) -> WritableFile: ...

    @abstractmethod
    def open_append(self, path: str) -> WritableFile: ...

    @abstractmethod
    def sync_dir(self, path: str) -> None: ...

    @abstractmethod
    def rename(self, src: str, dst: str) -> None: ...

    @abstractmethod
    def unlink(self, path: str) -> None: ...

    def disk_free(self, path: str) -> int:
        return shutil.disk_usage(path).free


class _OSFile(WritableFile):
    __slots__ = ("_fd", "_size", "path")

    def __init__(self, path: str, fd: int) -> None:
        self.path = path
        self._fd = fd
        self._size = os.fstat(fd).st_size

    def write(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data)
        while view:
            n = os.write(self._fd, view)
            self._size += n
            view = view[n:]

    def sync(self) -> None:
        # fdatasync flushes the data and the size the data needs, which is all an
        # append-only file asks for.
        os.fdatasync(self._fd)

    def truncate(self, size: int) -> None:
        os.ftruncate(self._fd, size)
        self._size = size

    def size(self) -> int:
        return self._size

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def sync_dir(path: str | os.PathLike[str]) -> None:
    """fsync a folder, so that the creations and renames inside it survive a power cut."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class OSFileLayer(FileLayer):
    """The real file system."""

    def create(self, path: str) -> WritableFile:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
        return _OSFile(path, fd)

    def open_append(self, path: str) -> WritableFile:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND)
        return _OSFile(path, fd)

    def sync_dir(self, path: str) -> None:
        sync_dir(path)

    def rename(self, src: str, dst: str) -> None:
        os.replace(src, dst)

    def unlink(self, path: str) -> None:
        os.unlink(path)
