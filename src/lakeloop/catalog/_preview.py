"""Previews: what an object holds, without downloading it.

A previewer is chosen by the object's content type and by sniffing its first bytes.
Each one reads only what it needs through a counting reader (a Parquet preview reads
the footer and the first row group, never the whole file), respects the ``preview_*``
limits, and says in ``truncated`` which limit cut it short. A file that does not parse
as what it claims to be gets a preview with ``error`` set and its hex head — never an
exception out of ``preview``.

To add a kind, subclass :class:`Previewer` and append an instance to ``PREVIEWERS``
(the first whose ``accepts`` answers yes wins).
"""

from __future__ import annotations

import base64
import csv
import io
import json
import mimetypes
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, BinaryIO

__all__ = ["PREVIEWERS", "Limits", "Preview", "Previewer", "sniff"]


@dataclass(frozen=True)
class Limits:
    """The ``preview_*`` settings, resolved for one preview."""

    max_bytes: int
    rows: int
    columns: int
    text_bytes: int
    thumbnail_px: int
    image_max_bytes: int
    cell_chars: int

    @classmethod
    def from_settings(cls, setting: Callable[[str], Any]) -> Limits:
        """Each field from the setting ``preview_<field>``."""
        return cls(**{f: int(setting(f"preview_{f}")) for f in cls.__dataclass_fields__})


@dataclass
class Preview:
    """One preview. ``data`` depends on ``kind`` (see docs/catalog.md)."""

    namespace: str
    key: str
    kind: str
    content_type: str
    size: int
    data: dict[str, Any] = field(default_factory=dict)
    truncated: list[str] = field(default_factory=list)
    error: str | None = None
    bytes_read: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "namespace": self.namespace,
            "key": self.key,
            "kind": self.kind,
            "content_type": self.content_type,
            "size": self.size,
            "data": self.data,
            "truncated": self.truncated,
            "error": self.error,
            "bytes_read": self.bytes_read,
        }


class CountingReader(io.RawIOBase):
    """Wraps a seekable binary file and counts the bytes read through it."""

    def __init__(self, f: BinaryIO, size: int) -> None:
        self._f = f
        self._size = size
        self.count = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._f.seek(offset, whence)

    def tell(self) -> int:
        return self._f.tell()

    def readinto(self, b: Any) -> int:
        data = self._f.read(len(b))
        n = len(data)
        b[:n] = data
        self.count += n
        return n

    def read(self, size: int = -1) -> bytes:
        data = self._f.read(size)
        self.count += len(data)
        return data

    def head(self, n: int) -> bytes:
        self.seek(0)
        return self.read(n)

    def close(self) -> None:
        self._f.close()
        super().close()


_MAGIC: list[tuple[bytes, int, str]] = [
    (b"\x89PNG\r\n\x1a\n", 0, "image/png"),
    (b"\xff\xd8\xff", 0, "image/jpeg"),
    (b"GIF87a", 0, "image/gif"),
    (b"GIF89a", 0, "image/gif"),
    (b"BM", 0, "image/bmp"),
    (b"II*\x00", 0, "image/tiff"),
    (b"MM\x00*", 0, "image/tiff"),
    (b"PAR1", 0, "application/vnd.apache.parquet"),
    (b"%PDF-", 0, "application/pdf"),
    (b"PK\x03\x04", 0, "application/zip"),
    (b"\x1f\x8b", 0, "application/gzip"),
    (b"\x93NUMPY", 0, "application/x-npy"),
]


def sniff(head: bytes, key: str = "") -> str | None:
    """A content type from the first bytes (magic numbers), else from the key's suffix."""
    for magic, offset, ctype in _MAGIC:
        if head[offset : offset + len(magic)] == magic:
            return ctype
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    lower = key.lower()
    for suffix, ctype in (
        (".parquet", "application/vnd.apache.parquet"),
        (".jsonl", "application/x-ndjson"),
        (".ndjson", "application/x-ndjson"),
        (".tsv", "text/tab-separated-values"),
        (".csv", "text/csv"),
        (".json", "application/json"),
    ):
        if lower.endswith(suffix):
            return ctype
    guess = mimetypes.guess_type(key)[0] if key else None
    if guess:
        return guess
    if head and b"\x00" not in head[:4096]:
        try:
            head[:4096].decode("utf-8")
            return "text/plain"
        except UnicodeDecodeError as exc:
            if exc.start >= len(head[:4096]) - 3:  # a character cut at the edge
                return "text/plain"
    return None


class Previewer:
    """One kind of preview. ``accepts`` decides from the content type and the first bytes;
    ``build`` fills ``preview.data`` (and ``truncated``) reading through ``source``."""

    kind = "binary"

    def accepts(self, content_type: str, head: bytes) -> bool:
        raise NotImplementedError

    def build(self, preview: Preview, source: CountingReader, limits: Limits) -> None:
        raise NotImplementedError


def _cell(value: Any, limits: Limits) -> Any:
    if isinstance(value, bytes):
        value = value.hex()
    if isinstance(value, str) and len(value) > limits.cell_chars:
        return value[: limits.cell_chars] + "…"
    if value is None or isinstance(value, bool | int | float | str):
        return value
    text = str(value)
    return text if len(text) <= limits.cell_chars else text[: limits.cell_chars] + "…"


class ImagePreviewer(Previewer):
    kind = "image"

    def accepts(self, content_type: str, head: bytes) -> bool:
        return content_type.startswith("image/")

    def build(self, preview: Preview, source: CountingReader, limits: Limits) -> None:
        from PIL import Image, UnidentifiedImageError

        if preview.size > limits.image_max_bytes:
            preview.truncated.append("image_max_bytes")
            preview.error = f"image larger than preview_image_max_bytes ({limits.image_max_bytes})"
            return
        source.seek(0)
        data = source.read()
        try:
            with Image.open(io.BytesIO(data)) as img:
                preview.data.update(
                    width=img.width, height=img.height, mode=img.mode, format=img.format
                )
                img.load()
                thumb = img.copy()
                thumb.thumbnail((limits.thumbnail_px, limits.thumbnail_px))
                if thumb.mode not in ("1", "L", "LA", "P", "RGB", "RGBA"):
                    thumb = thumb.convert("RGBA" if "A" in thumb.mode else "RGB")
                out = io.BytesIO()
                thumb.save(out, format="PNG")
                preview.data["thumbnail_png"] = base64.b64encode(out.getvalue()).decode()
                preview.data["thumbnail_size"] = [thumb.width, thumb.height]
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
            preview.error = f"not a readable image: {exc}"


def _infer_type(values: list[str]) -> str:
    kinds = set()
    for v in values:
        if v == "":
            continue
        try:
            int(v)
            kinds.add("int")
            continue
        except ValueError:
            pass
        try:
            float(v)
            kinds.add("float")
            continue
        except ValueError:
            pass
        kinds.add("bool" if v.lower() in ("true", "false") else "string")
    if not kinds:
        return "null"
    if kinds <= {"int"}:
        return "int"
    if kinds <= {"int", "float"}:
        return "float"
    return "bool" if kinds == {"bool"} else "string"


class DelimitedPreviewer(Previewer):
    kind = "table"

    def accepts(self, content_type: str, head: bytes) -> bool:
        return content_type in ("text/csv", "text/tab-separated-values", "application/csv")

    def build(self, preview: Preview, source: CountingReader, limits: Limits) -> None:
        delimiter = "\t" if preview.content_type == "text/tab-separated-values" else ","
        raw = source.head(limits.max_bytes + 1)
        if len(raw) > limits.max_bytes:
            raw = raw[: limits.max_bytes]
            cut = raw.rfind(b"\n")
            raw = raw[: cut + 1] if cut > 0 else raw
            preview.truncated.append("max_bytes")
        text = raw.decode("utf-8", errors="replace")
        reader = csv.reader(io.StringIO(text), delimiter=delimiter)
        try:
            header = next(reader, [])
            rows: list[list[str]] = []
            ragged: list[str] = []
            for line in reader:
                if len(rows) >= limits.rows:
                    preview.truncated.append("rows")
                    break
                if len(line) != len(header):
                    ragged.append(
                        f"row {len(rows) + 1} has {len(line)} fields, the header has {len(header)}"
                    )
                rows.append(line)
        except csv.Error as exc:
            preview.error = f"not valid {delimiter!r}-separated text: {exc}"
            return
        if len(header) > limits.columns:
            preview.truncated.append("columns")
        names = header[: limits.columns]
        columns = []
        for i, name in enumerate(names):
            values = [r[i] for r in rows if i < len(r)]
            columns.append({"name": name, "type": _infer_type(values)})
        preview.data["columns"] = columns
        preview.data["rows"] = [[_cell(v, limits) for v in r[: limits.columns]] for r in rows]
        if ragged:
            preview.data["warnings"] = ragged[:10]


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    return "list" if isinstance(value, list) else "object"


class JsonLinesPreviewer(Previewer):
    kind = "table"

    def accepts(self, content_type: str, head: bytes) -> bool:
        return content_type in ("application/x-ndjson", "application/jsonl", "application/x-jsonl")

    def build(self, preview: Preview, source: CountingReader, limits: Limits) -> None:
        raw = source.head(limits.max_bytes + 1)
        if len(raw) > limits.max_bytes:
            preview.truncated.append("max_bytes")
            raw = raw[: limits.max_bytes]
        lines = raw.split(b"\n")
        if "max_bytes" in preview.truncated:
            lines = lines[:-1]  # the last line may be cut
        records: list[dict[str, Any]] = []
        problems: list[str] = []
        for n, line in enumerate(lines, 1):
            if not line.strip():
                continue
            if len(records) >= limits.rows:
                preview.truncated.append("rows")
                break
            try:
                value = json.loads(line)
            except ValueError as exc:
                problems.append(f"line {n}: not JSON ({exc})")
                continue
            records.append(value if isinstance(value, dict) else {"value": value})
        names: dict[str, set[str]] = {}
        for r in records:
            for k, v in r.items():
                names.setdefault(k, set()).add(_json_type(v))
        if len(names) > limits.columns:
            preview.truncated.append("columns")
        cols = list(names)[: limits.columns]
        preview.data["columns"] = [
            {"name": c, "type": "|".join(sorted(names[c] - {"null"})) or "null"} for c in cols
        ]
        preview.data["rows"] = [[_cell(r.get(c), limits) for c in cols] for r in records]
        if problems:
            preview.data["warnings"] = problems[:10]
            if not records:
                preview.error = problems[0]


class ParquetPreviewer(Previewer):
    kind = "table"

    def accepts(self, content_type: str, head: bytes) -> bool:
        return content_type in ("application/vnd.apache.parquet", "application/x-parquet")

    def build(self, preview: Preview, source: CountingReader, limits: Limits) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        source.seek(0)
        try:
            pf = pq.ParquetFile(source)
            meta = pf.metadata
            schema = pf.schema_arrow
            preview.data.update(
                num_rows=meta.num_rows,
                num_row_groups=meta.num_row_groups,
                created_by=meta.created_by,
            )
            if len(schema) > limits.columns:
                preview.truncated.append("columns")
            names = schema.names[: limits.columns]
            preview.data["columns"] = [
                {"name": f.name, "type": str(f.type)} for f in schema if f.name in set(names)
            ]
            rows: list[list[Any]] = []
            if meta.num_row_groups:
                # read the first row group's first rows only, by batches: never the file
                for batch in pf.iter_batches(batch_size=limits.rows, row_groups=[0], columns=names):
                    table = pa.Table.from_batches([batch])
                    rows = [[_cell(v, limits) for v in rec.values()] for rec in table.to_pylist()]
                    break
            if meta.num_rows > len(rows):
                preview.truncated.append("rows")
            preview.data["rows"] = rows
        except (pa.ArrowException, OSError, ValueError) as exc:
            preview.error = f"not a readable Parquet file: {exc}"


class JsonPreviewer(Previewer):
    kind = "json"

    def accepts(self, content_type: str, head: bytes) -> bool:
        return content_type == "application/json" or content_type.endswith("+json")

    def build(self, preview: Preview, source: CountingReader, limits: Limits) -> None:
        raw = source.head(limits.max_bytes + 1)
        if len(raw) > limits.max_bytes:
            preview.truncated.append("max_bytes")
            preview.error = (
                f"JSON larger than preview_max_bytes ({limits.max_bytes}): showing its head"
            )
            preview.data["text"] = raw[: limits.text_bytes].decode("utf-8", errors="replace")
            return
        try:
            value = json.loads(raw)
        except ValueError as exc:
            preview.error = f"not valid JSON: {exc}"
            preview.data["text"] = raw[: limits.text_bytes].decode("utf-8", errors="replace")
            return
        pretty = json.dumps(value, indent=2, ensure_ascii=False)
        preview.data["type"] = _json_type(value)
        if isinstance(value, dict | list):
            preview.data["length"] = len(value)
        if len(pretty) > limits.text_bytes:
            preview.truncated.append("text_bytes")
            pretty = pretty[: limits.text_bytes]
        preview.data["text"] = pretty


class TextPreviewer(Previewer):
    kind = "text"

    def accepts(self, content_type: str, head: bytes) -> bool:
        return content_type.startswith("text/") or content_type in (
            "application/xml",
            "application/x-yaml",
            "application/yaml",
            "application/toml",
        )

    def build(self, preview: Preview, source: CountingReader, limits: Limits) -> None:
        raw = source.head(limits.text_bytes + 4)
        if len(raw) > limits.text_bytes:
            preview.truncated.append("text_bytes")
            raw = raw[: limits.text_bytes]
        text = raw.decode("utf-8", errors="ignore" if len(raw) == limits.text_bytes else "replace")
        preview.data["text"] = text
        preview.data["encoding"] = "utf-8"


class BinaryPreviewer(Previewer):
    kind = "binary"

    def accepts(self, content_type: str, head: bytes) -> bool:
        return True

    def build(self, preview: Preview, source: CountingReader, limits: Limits) -> None:
        head = source.head(64)
        preview.data["hex_head"] = head.hex(" ")
        preview.data["type_guess"] = sniff(head, preview.key) or "application/octet-stream"
        if preview.size > 64:
            preview.truncated.append("hex_head")


PREVIEWERS: list[Previewer] = [
    ImagePreviewer(),
    ParquetPreviewer(),
    DelimitedPreviewer(),
    JsonLinesPreviewer(),
    JsonPreviewer(),
    TextPreviewer(),
    BinaryPreviewer(),
]

_GENERIC = {"", "application/octet-stream", "binary/octet-stream"}


def build_preview(
    namespace: str,
    key: str,
    size: int,
    content_type: str | None,
    opener: Callable[[], BinaryIO],
    limits: Limits,
) -> Preview:
    """Pick a previewer and run it (see the module docstring)."""
    with opener() as f:
        source = CountingReader(f, size)
        head = source.head(4096)
        declared = (content_type or "").split(";")[0].strip().lower()
        sniffed = sniff(head, key)
        ctype = declared
        # a generic or missing type gives way to what the bytes say; so does a claim the
        # magic number contradicts (a ".png" that is really a JPEG)
        if declared in _GENERIC or (
            sniffed and sniffed.startswith("image/") and declared.startswith("image/")
        ):
            ctype = sniffed or declared or "application/octet-stream"
        if declared == "text/plain" and sniffed and sniffed != "text/plain":
            ctype = sniffed
        preview = Preview(namespace, key, "binary", ctype, size)
        for previewer in PREVIEWERS:
            if previewer.accepts(ctype, head):
                preview.kind = previewer.kind
                try:
                    previewer.build(preview, source, limits)
                except Exception as exc:  # a previewer bug must not take the service down
                    preview.error = f"{previewer.kind} preview failed: {type(exc).__name__}: {exc}"
                if preview.error and previewer.kind != "binary":
                    head64 = head[:64]
                    preview.data.setdefault("hex_head", head64.hex(" "))
                break
        preview.bytes_read = source.count
        return preview
