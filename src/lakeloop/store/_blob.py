"""Standalone blob files for objects above ``blob_threshold``.

A blob file is a 64-byte header then fixed-size chunks, each preceded by its CRC32C::

    header: magic "LLBLOB\\0\\1" | chunk size u32 | 0 u32 | logical size u64 | 40 B zero
    chunk i at 64 + i * (4 + chunk): crc32c u32 | data (the last chunk may be short)

so a range read reads and verifies only the chunks it touches. The volume holds a small
record (flag BLOB) naming the file; the blob file is written and fsynced before that
record is appended, so an acknowledged blob is always complete.
"""

from __future__ import annotations

import hashlib
import io
import os
import struct
from typing import BinaryIO

from crc32c import crc32c

from lakeloop.errors import ChecksumError, StoreError
from lakeloop.store._fs import FileLayer

__all__ = ["BlobReader", "write_blob"]

_MAGIC = b"LLBLOB\x00\x01"
_HEADER = struct.Struct("<8sIIQ40s")
HEADER_SIZE = _HEADER.size  # 64


def write_blob(
    fs: FileLayer,
    path: str,
    source: BinaryIO,
    chunk_size: int,
    *,
    first: bytes = b"",
    durable: bool = True,
) -> tuple[int, bytes]:
    """Stream *first* then *source* into a new blob file; -> (size, md5 digest).

    The file is complete and fsynced (when *durable*) when this returns; the caller
    syncs the folder.
    """
    md5 = hashlib.md5(usedforsecurity=False)
    out = fs.create(path)
    size = 0
    try:
        out.write(_HEADER.pack(_MAGIC, chunk_size, 0, 0, b"\0" * 40))
        pending = bytearray(first)
        eof = False
        while not eof or pending:
            while not eof and len(pending) < chunk_size:
                piece = source.read(max(chunk_size - len(pending), 64 * 1024))
                if not piece:
                    eof = True
                else:
                    pending += piece
            if not pending:
                break
            chunk = bytes(pending[:chunk_size])
            del pending[:chunk_size]
            md5.update(chunk)
            out.write(struct.pack("<I", crc32c(chunk)) + chunk)
            size += len(chunk)
        if durable:
            out.sync()
    except BaseException:
        out.close()
        try:
            fs.unlink(path)
        except OSError:
            pass
        raise
    out.close()
    return size, md5.digest()


class BlobReader(io.RawIOBase):
    """A seekable, read-only view of a blob that verifies each chunk it reads."""

    def __init__(self, path: str, size: int, *, label: str) -> None:
        super().__init__()
        self._label = label
        try:
            self._fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            raise ChecksumError(
                "blob file is missing", op="read", target=label, volume=path
            ) from None
        head = os.pread(self._fd, HEADER_SIZE, 0)
        if len(head) < HEADER_SIZE or head[:8] != _MAGIC:
            os.close(self._fd)
            raise ChecksumError("blob header is damaged", op="read", target=label, volume=path)
        self._chunk = _HEADER.unpack(head)[1]
        if self._chunk <= 0:
            os.close(self._fd)
            raise ChecksumError("blob chunk size is damaged", op="read", target=label)
        self._path = path
        self._size = size
        self._pos = 0
        self._cache: tuple[int, bytes] | None = None

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_SET:
            pos = offset
        elif whence == io.SEEK_CUR:
            pos = self._pos + offset
        elif whence == io.SEEK_END:
            pos = self._size + offset
        else:
            raise ValueError(f"bad whence {whence}")
        if pos < 0:
            raise ValueError("negative seek position")
        self._pos = pos
        return pos

    def tell(self) -> int:
        return self._pos

    def _load(self, index: int) -> bytes:
        if self._cache is not None and self._cache[0] == index:
            return self._cache[1]
        want = min(self._chunk, self._size - index * self._chunk)
        at = HEADER_SIZE + index * (self._chunk + 4)
        raw = os.pread(self._fd, want + 4, at)
        if len(raw) != want + 4:
            raise ChecksumError(
                f"blob is truncated at chunk {index}",
                op="read",
                target=self._label,
                volume=self._path,
                offset=at,
            )
        data = raw[4:]
        if crc32c(data) != struct.unpack_from("<I", raw)[0]:
            raise ChecksumError(
                f"crc32c mismatch in blob chunk {index}",
                op="read",
                target=self._label,
                volume=self._path,
                offset=at,
            )
        self._cache = (index, data)
        return data

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        if self._pos >= self._size:
            return 0
        index, within = divmod(self._pos, self._chunk)
        data = self._load(index)
        n = min(len(buffer), len(data) - within)
        buffer[:n] = data[within : within + n]
        self._pos += n
        return n

    def read_range(self, start: int, end: int) -> bytes:
        """Bytes [start, end) with 0 <= start <= end <= size."""
        parts = []
        pos = start
        while pos < end:
            index, within = divmod(pos, self._chunk)
            data = self._load(index)
            take = data[within : within + (end - pos)]
            parts.append(take)
            pos += len(take)
        return b"".join(parts)

    def verify(self) -> None:
        """Read every chunk (fsck)."""
        chunks = (self._size + self._chunk - 1) // self._chunk
        for i in range(chunks):
            self._load(i)
        expected = HEADER_SIZE + chunks * 4 + self._size
        actual = os.fstat(self._fd).st_size
        if actual != expected:
            raise StoreError(
                f"blob file has {actual} bytes, expected {expected}",
                op="verify",
                target=self._label,
            )

    def close(self) -> None:
        if not self.closed:
            os.close(self._fd)
        super().close()
