"""Column statistics of tables (CSV, TSV, JSON Lines, Parquet), mergeable across objects.

Each table object's statistics are computed once per content (keyed by its MD5) and
cached in the namespace's search index; a prefix's statistics merge the cached ones. Per
column: values, nulls, min, max and a HyperLogLog sketch (4,096 registers, theoretical 1.6 %
standard error) whose merge gives the approximate distinct count across all objects.
"""

from __future__ import annotations

import base64
import hashlib
import io
import math
from typing import Any

_P = 12
_M = 1 << _P
_MASK = (1 << 64) - 1

TABLE_TYPES = {
    "text/csv": "csv",
    "application/csv": "csv",
    "text/tab-separated-values": "tsv",
    "application/x-ndjson": "jsonl",
    "application/jsonl": "jsonl",
    "application/vnd.apache.parquet": "parquet",
    "application/x-parquet": "parquet",
}


def table_format(content_type: str | None, key: str) -> str | None:
    fmt = TABLE_TYPES.get((content_type or "").split(";")[0].strip().lower())
    if fmt:
        return fmt
    lower = key.lower()
    for suffix, f in (
        (".csv", "csv"),
        (".tsv", "tsv"),
        (".jsonl", "jsonl"),
        (".parquet", "parquet"),
    ):
        if lower.endswith(suffix):
            return f
    return None


class HyperLogLog:
    """A HyperLogLog sketch with 2**12 registers."""

    def __init__(self, registers: bytes | None = None) -> None:
        self.registers = bytearray(registers if registers is not None else bytes(_M))

    def add(self, value: object) -> None:
        h = int.from_bytes(hashlib.blake2b(repr(value).encode(), digest_size=8).digest(), "big")
        idx = h >> (64 - _P)
        rest = (h << _P) & _MASK
        rank = 64 - _P + 1 if rest == 0 else (64 - rest.bit_length()) + 1
        if rank > self.registers[idx]:
            self.registers[idx] = rank

    def merge(self, other: HyperLogLog) -> None:
        self.registers = bytearray(
            max(a, b) for a, b in zip(self.registers, other.registers, strict=True)
        )

    def estimate(self) -> int:
        alpha = 0.7213 / (1 + 1.079 / _M)
        total = sum(2.0**-r for r in self.registers)
        raw = alpha * _M * _M / total
        zeros = self.registers.count(0)
        if raw <= 2.5 * _M and zeros:
            return round(_M * math.log(_M / zeros))  # linear counting for small sets
        return round(raw)

    def encode(self) -> str:
        return base64.b64encode(bytes(self.registers)).decode()

    @classmethod
    def decode(cls, text: str) -> HyperLogLog:
        return cls(base64.b64decode(text))


def _read_table(fmt: str, data: bytes) -> Any:
    import pyarrow.csv as pacsv
    import pyarrow.json as pajson
    import pyarrow.parquet as pq

    if fmt == "parquet":
        return pq.read_table(io.BytesIO(data))
    if fmt == "jsonl":
        return pajson.read_json(io.BytesIO(data))
    delimiter = "\t" if fmt == "tsv" else ","
    return pacsv.read_csv(io.BytesIO(data), parse_options=pacsv.ParseOptions(delimiter=delimiter))


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def table_stats(fmt: str, data: bytes, max_columns: int) -> dict[str, Any]:
    """Statistics of one table object (raises pyarrow's errors for unreadable tables)."""
    import pyarrow.compute as pc

    table = _read_table(fmt, data)
    columns: dict[str, Any] = {}
    for name in table.column_names[:max_columns]:
        col = table.column(name)
        sketch = HyperLogLog()
        for v in pc.unique(col).to_pylist():
            if v is not None:
                sketch.add(v)
        entry: dict[str, Any] = {
            "type": str(col.type),
            "values": len(col),
            "nulls": col.null_count,
            "min": None,
            "max": None,
            "hll": sketch.encode(),
        }
        try:
            mm = pc.min_max(col)
            entry["min"], entry["max"] = _plain(mm["min"].as_py()), _plain(mm["max"].as_py())
        except Exception:  # types without an order (lists, structs) have no min/max
            pass
        columns[name] = entry
    return {
        "rows": table.num_rows,
        "columns": columns,
        "truncated_columns": table.num_columns > max_columns,
    }


def _better(a: Any, b: Any, pick: Any) -> Any:
    if a is None:
        return b
    if b is None:
        return a
    try:
        return pick(a, b)
    except TypeError:  # mixed types across objects: compare as text
        return pick(str(a), str(b))


def merge_table_stats(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """Merge per-object statistics into one summary (distinct counts from merged sketches)."""
    rows = 0
    merged: dict[str, dict[str, Any]] = {}
    sketches: dict[str, HyperLogLog] = {}
    for part in parts:
        rows += part["rows"]
        for name, c in part["columns"].items():
            m = merged.setdefault(
                name, {"types": set(), "values": 0, "nulls": 0, "min": None, "max": None}
            )
            m["types"].add(c["type"])
            m["values"] += c["values"]
            m["nulls"] += c["nulls"]
            m["min"] = _better(m["min"], c["min"], min)
            m["max"] = _better(m["max"], c["max"], max)
            sk = HyperLogLog.decode(c["hll"])
            if name in sketches:
                sketches[name].merge(sk)
            else:
                sketches[name] = sk
    out = {}
    for name, m in merged.items():
        out[name] = {
            "type": "|".join(sorted(m["types"])),
            "values": m["values"],
            "nulls": m["nulls"],
            "min": m["min"],
            "max": m["max"],
            "distinct_approx": sketches[name].estimate(),
        }
    return {"tables": len(parts), "rows": rows, "columns": out}
