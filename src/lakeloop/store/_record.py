"""The on-disk record format of volumes (self-describing, checksummed, 8-byte aligned).

A volume starts with a 64-byte header, then holds records back to back::

    volume header (64 B): magic "LLVOL\\0\\1\\0" | format u32 | 0 u32 | volume id u64
                          | created ns u64 | reserved 28 B | crc32c of the first 60 B

    record header (64 B, little endian):
        magic     4  b"LLR\\x01"
        flags     1  TOMBSTONE | BLOB | ZSTD | DICT
        reserved  1
        key_len   2
        meta_len  4  JSON {"ct": content type, "m": user metadata, ...} or empty
        seq       8  per-namespace sequence number = the version id of this record
        ts_ns     8  wall-clock time of the write
        data_len  8  stored bytes that follow key and meta
        size      8  logical size of the object (differs from data_len for ZSTD and BLOB)
        md5      16  MD5 of the object's content (the S3 ETag)
        crc32c    4  over the header's first 60 bytes, the key, the meta and the data
    then key | meta | data | zero padding to a multiple of 8

A record's CRC covers everything but the padding, so a reader that gets a record back
from one ``pread`` knows it is whole and unchanged. Volumes are the truth: the index can
be rebuilt from them alone (see ``scan_volume``).
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from crc32c import crc32c

__all__ = [
    "BLOB",
    "DICT",
    "RECORD_HEADER",
    "TOMBSTONE",
    "VOLUME_HEADER_SIZE",
    "ZSTD",
    "Corrupt",
    "Record",
    "decode_meta",
    "encode_meta",
    "encode_record",
    "encode_volume_header",
    "parse_record",
    "plain_payloads",
    "read_volume_header",
    "record_length",
    "scan_volume",
]

TOMBSTONE = 0x01
BLOB = 0x02
ZSTD = 0x04
DICT = 0x08

RECORD_MAGIC = b"LLR\x01"
RECORD_HEADER = struct.Struct("<4sBBHIQQQQ16sI")
HEADER_SIZE = RECORD_HEADER.size  # 64
_CRC_SPAN = HEADER_SIZE - 4

VOLUME_MAGIC = b"LLVOL\x00\x01\x00"
_VOLUME_HEADER = struct.Struct("<8sIIQQ28sI")
VOLUME_HEADER_SIZE = _VOLUME_HEADER.size  # 64
_VOLUME_FORMAT = 1

# Sanity bounds used when scanning untrusted bytes.
_MAX_KEY = 65535
_MAX_META = 16 * 1024**2

_EMPTY_MD5 = b"\0" * 16


def _pad(n: int) -> int:
    return (-n) & 7


def record_length(key_len: int, meta_len: int, data_len: int) -> int:
    """Bytes a record takes in a volume, padding included."""
    n = HEADER_SIZE + key_len + meta_len + data_len
    return n + _pad(n)


def encode_meta(content_type: str | None, metadata: dict[str, str] | None) -> bytes:
    doc: dict[str, Any] = {}
    if content_type:
        doc["ct"] = content_type
    if metadata:
        doc["m"] = metadata
    if not doc:
        return b""
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()


def decode_meta(raw: bytes | str | None) -> dict[str, Any]:
    if not raw:
        return {}
    return dict(json.loads(raw))


def encode_record(
    *,
    seq: int,
    key: bytes,
    data: bytes | memoryview = b"",
    meta: bytes = b"",
    flags: int = 0,
    ts_ns: int,
    size: int | None = None,
    md5: bytes = _EMPTY_MD5,
) -> bytes:
    """One record, ready to append (its length is a multiple of 8)."""
    data_len = len(data)
    header = RECORD_HEADER.pack(
        RECORD_MAGIC,
        flags,
        0,
        len(key),
        len(meta),
        seq,
        ts_ns,
        data_len,
        data_len if size is None else size,
        md5,
        0,
    )
    crc = crc32c(header[:_CRC_SPAN])
    crc = crc32c(key, value=crc)
    if meta:
        crc = crc32c(meta, value=crc)
    crc = crc32c(data, value=crc)
    total = HEADER_SIZE + len(key) + len(meta) + data_len
    parts = [header[:_CRC_SPAN], struct.pack("<I", crc), key, meta, data]
    pad = _pad(total)
    if pad:
        parts.append(b"\0" * pad)
    return b"".join(parts)


@dataclass(frozen=True, slots=True)
class Record:
    """A decoded, verified record."""

    offset: int
    length: int
    flags: int
    seq: int
    ts_ns: int
    key: bytes
    meta: bytes
    data: bytes
    size: int
    md5: bytes
    crc: int

    @property
    def is_tombstone(self) -> bool:
        return bool(self.flags & TOMBSTONE)


@dataclass(frozen=True, slots=True)
class Corrupt:
    """A stretch of a volume that did not parse or failed its checksum."""

    offset: int
    reason: str
    end: int = 0


class RecordError(Exception):
    """Raised by ``parse_record`` with a reason; callers turn it into ChecksumError."""


def parse_record(buf: bytes | memoryview, offset: int = 0) -> Record:
    """Decode and verify the record at the start of *buf*.

    Raises ``RecordError`` if the magic, the lengths or the CRC are wrong.
    """
    if len(buf) < HEADER_SIZE:
        raise RecordError("truncated record header")
    (magic, flags, _r, key_len, meta_len, seq, ts_ns, data_len, size, md5, crc) = (
        RECORD_HEADER.unpack_from(buf, 0)
    )
    if magic != RECORD_MAGIC:
        raise RecordError("bad record magic")
    end = HEADER_SIZE + key_len + meta_len + data_len
    if end > len(buf):
        raise RecordError("record runs past the end of what was read")
    view = memoryview(buf)
    got = crc32c(view[:_CRC_SPAN])
    got = crc32c(view[HEADER_SIZE:end], value=got)
    if got != crc:
        raise RecordError(f"crc32c mismatch (stored {crc:08x}, computed {got:08x})")
    k_end = HEADER_SIZE + key_len
    m_end = k_end + meta_len
    return Record(
        offset=offset,
        length=end + _pad(end),
        flags=flags,
        seq=seq,
        ts_ns=ts_ns,
        key=bytes(view[HEADER_SIZE:k_end]),
        meta=bytes(view[k_end:m_end]),
        data=bytes(view[m_end:end]),
        size=size,
        md5=md5,
        crc=crc,
    )


_HEAD60 = struct.Struct("<4sBBHIQQQQ16s")
_CRC = struct.Struct("<I")
_PADS = [b"\0" * i for i in range(8)]
BULK_ROW_FLAG = 256  # index-only flag: the per-row accounting triggers skip these rows


def encode_bulk(
    items: list[tuple[bytes, bytes, bytes, bytes, str | None]],
    first_seq: int,
    ts_ns: int,
    vol: int,
    offset: int,
) -> tuple[bytearray, list[tuple[object, ...]], int, int]:
    """Encode plain records for (key, data, meta, md5, meta_text) items in one buffer.

    -> (bytes to append, index rows, record bytes, logical bytes). The same format as
    ``encode_record``, written without per-record objects for bulk loads.
    """
    out = bytearray()
    rows: list[tuple[object, ...]] = []
    pack = _HEAD60.pack
    seq = first_seq
    off = offset
    logical = 0
    for key, data, meta, md5, meta_text in items:
        dlen = len(data)
        head = pack(RECORD_MAGIC, 0, 0, len(key), len(meta), seq, ts_ns, dlen, dlen, md5)
        body = key + meta + data if meta else key + data
        crc = crc32c(body, value=crc32c(head))
        n = HEADER_SIZE + len(body)
        pad = (-n) & 7
        out += head
        out += _CRC.pack(crc)
        out += body
        if pad:
            out += _PADS[pad]
        rows.append((seq, key, vol, off, n + pad, dlen, md5, BULK_ROW_FLAG, ts_ns, meta_text, None))
        off += n + pad
        logical += dlen
        seq += 1
    return out, rows, off - offset, logical


_PLAIN_MASK = TOMBSTONE | BLOB | DICT
_unpack_header = RECORD_HEADER.unpack_from
_NOT_PLAIN = TOMBSTONE | BLOB | ZSTD | DICT


def inline_payload(buf: bytes, seq: int, key: bytes) -> tuple[int, bytes, int] | None:
    """(flags, stored data, logical size) of *buf* if it is a verified record of *seq*
    and *key* holding its data inline (plain or ZSTD), else None.

    The hot path of ``get``: no objects are built; any doubt returns None and the caller
    takes the general path (which reports corruption properly).
    """
    if len(buf) < HEADER_SIZE:
        return None
    magic, flags, _r, key_len, meta_len, rseq, _ts, data_len, size, _md5, crc = _unpack_header(buf)
    end = HEADER_SIZE + key_len + meta_len + data_len
    if magic != RECORD_MAGIC or rseq != seq or flags & _PLAIN_MASK or end > len(buf):
        return None
    view = memoryview(buf)
    if crc32c(view[HEADER_SIZE:end], value=crc32c(view[:_CRC_SPAN])) != crc:
        return None
    if view[HEADER_SIZE : HEADER_SIZE + key_len] != key:
        return None
    return flags, buf[end - data_len : end], size


def plain_payloads(
    buf: bytes, rels: list[int], seqs: list[int], md5s: list[bytes]
) -> list[bytes | None]:
    """The data of the records at offsets *rels* of *buf* (one read of a volume's
    stretch), each verified: record magic, version *seqs[i]*, the whole record inside
    *buf*, its CRC32C, and the MD5 of its data (recorded in the header and computed
    again) equal to *md5s[i]*; ``None`` for a record that fails any of these or does not
    hold its data inline and uncompressed.

    The bulk path of training readers: one tight loop, no per-record objects. A ``None``
    sends the caller to the general path (``get`` of that version), which tells a record
    moved by compaction from a damaged one and reports the damage.
    """
    out: list[bytes | None] = []
    append = out.append
    view = memoryview(buf)
    n = len(buf)
    unpack = _unpack_header
    span = _CRC_SPAN
    md5_of = hashlib.md5
    for rel, seq, md5 in zip(rels, seqs, md5s, strict=True):
        if rel < 0 or rel + HEADER_SIZE > n:
            append(None)
            continue
        magic, flags, _r, key_len, meta_len, rseq, _ts, data_len, _size, rmd5, crc = unpack(
            buf, rel
        )
        start = rel + HEADER_SIZE
        end = start + key_len + meta_len + data_len
        if (
            magic != RECORD_MAGIC
            or rseq != seq
            or flags & _NOT_PLAIN
            or end > n
            or rmd5 != md5
            or crc32c(view[start:end], value=crc32c(view[rel : rel + span])) != crc
        ):
            append(None)
            continue
        data = buf[end - data_len : end]
        append(data if md5_of(data).digest() == md5 else None)
    return out


def encode_volume_header(volume_id: int, created_ns: int) -> bytes:
    head = _VOLUME_HEADER.pack(
        VOLUME_MAGIC, _VOLUME_FORMAT, 0, volume_id, created_ns, b"\0" * 28, 0
    )
    return head[:-4] + struct.pack("<I", crc32c(head[:-4]))


def read_volume_header(buf: bytes) -> tuple[int, int]:
    """-> (volume id, created ns); raises RecordError if the header is damaged."""
    if len(buf) < VOLUME_HEADER_SIZE:
        raise RecordError("truncated volume header")
    magic, fmt, _z, volume_id, created_ns, _res, crc = _VOLUME_HEADER.unpack_from(buf, 0)
    if magic != VOLUME_MAGIC:
        raise RecordError("not a lakeloop volume (bad magic)")
    if crc32c(buf[: VOLUME_HEADER_SIZE - 4]) != crc:
        raise RecordError("volume header checksum mismatch")
    if fmt != _VOLUME_FORMAT:
        raise RecordError(f"unknown volume format {fmt}")
    return volume_id, created_ns


def scan_volume(
    fd: int, start: int = VOLUME_HEADER_SIZE, end: int | None = None, *, chunk: int = 8 << 20
) -> Iterator[Record | Corrupt]:
    """Yield every record of a volume in physical order, with sequential reads.

    A damaged stretch is reported once as ``Corrupt`` and the scan resynchronises on
    the next 8-aligned record magic whose record verifies, so one bad record never
    hides the ones after it.
    """
    if end is None:
        end = os.fstat(fd).st_size
    pos = start
    buf = b""
    buf_start = start
    corrupt_from: int | None = None

    def fill(need_upto: int) -> bool:
        nonlocal buf, buf_start
        have_end = buf_start + len(buf)
        if need_upto <= have_end:
            return True
        if pos >= have_end:
            keep, read_from = b"", pos
        else:
            keep, read_from = buf[pos - buf_start :], have_end
        if read_from >= end:
            return False
        n = min(max(chunk, need_upto - pos) - len(keep), end - read_from)
        buf = keep + os.pread(fd, n, read_from)
        buf_start = pos
        return pos + len(buf) >= need_upto

    while pos + HEADER_SIZE <= end:
        if not fill(pos + HEADER_SIZE):
            break
        rel = pos - buf_start
        head = buf[rel : rel + HEADER_SIZE]
        ok = head[:4] == RECORD_MAGIC
        if ok:
            key_len, meta_len = struct.unpack_from("<HI", head, 6)
            data_len = struct.unpack_from("<Q", head, 28)[0]
            total = HEADER_SIZE + key_len + meta_len + data_len
            if meta_len > _MAX_META or key_len > _MAX_KEY or pos + total > end:
                ok = False
            elif fill(pos + total):
                rel = pos - buf_start
                try:
                    rec = parse_record(memoryview(buf)[rel : rel + total], pos)
                except RecordError:
                    ok = False
                else:
                    if corrupt_from is not None:
                        yield Corrupt(corrupt_from, "damaged bytes before a valid record", pos)
                        corrupt_from = None
                    yield rec
                    pos += rec.length
                    continue
            else:
                ok = False
        if corrupt_from is None:
            corrupt_from = pos
        pos += 8
    if corrupt_from is not None:
        yield Corrupt(corrupt_from, "damaged bytes up to the end of the volume", end)
    elif pos < end and any(os.pread(fd, end - pos, pos)):
        yield Corrupt(pos, "torn record at the end of the volume", end)
