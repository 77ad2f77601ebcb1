"""TensorBoard event files, written without TensorFlow.

An event file is a sequence of TFRecords (length, masked CRC32C of the length, the bytes,
masked CRC32C of the bytes), each holding one serialized ``Event`` protocol buffer. Only
scalars are written, so the few protobuf fields needed are encoded here by hand, which
keeps trials that never import TensorFlow (scikit-learn ones) fast to start.
"""

from __future__ import annotations

import os
import socket
import struct
import time

import crc32c

__all__ = ["EventWriter"]


def _masked_crc(data: bytes) -> int:
    crc = crc32c.crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(number: int, wire: int, payload: bytes) -> bytes:
    return _varint((number << 3) | wire) + payload


def _bytes_field(number: int, data: bytes) -> bytes:
    return _field(number, 2, _varint(len(data)) + data)


def _event(
    wall_time: float, step: int, *, version: str | None = None, summary: bytes = b""
) -> bytes:
    out = _field(1, 1, struct.pack("<d", wall_time)) + _field(2, 0, _varint(step))
    if version is not None:
        out += _bytes_field(3, version.encode())
    if summary:
        out += _bytes_field(5, summary)
    return out


class EventWriter:
    """Scalars into one new event file in *logdir* (``events.out.tfevents.*``).

    >>> w = EventWriter("/tmp/tb/run1")              # doctest: +SKIP
    >>> w.scalar("loss", 0.25, step=1); w.close()    # doctest: +SKIP
    """

    def __init__(self, logdir: str | os.PathLike[str]) -> None:
        os.makedirs(logdir, exist_ok=True)
        name = f"events.out.tfevents.{int(time.time())}.{socket.gethostname()}.{os.getpid()}"
        self.path = os.path.join(logdir, name)
        self._f = open(self.path, "wb")  # noqa: SIM115 - closed by close()
        self._write(_event(time.time(), 0, version="brain.Event:2"))

    def _write(self, data: bytes) -> None:
        head = struct.pack("<Q", len(data))
        self._f.write(head + struct.pack("<I", _masked_crc(head)))
        self._f.write(data + struct.pack("<I", _masked_crc(data)))

    def scalar(self, tag: str, value: float, step: int, wall_time: float | None = None) -> None:
        """Add one point of the series *tag*."""
        val = _bytes_field(1, tag.encode()) + _field(2, 5, struct.pack("<f", float(value)))
        summary = _bytes_field(1, val)
        self._write(_event(wall_time or time.time(), int(step), summary=summary))

    def flush(self) -> None:
        self._f.flush()

    def close(self) -> None:
        if not self._f.closed:
            self._f.close()
