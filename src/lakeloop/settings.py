"""Named settings: every limit of the lake, with a default, a help line, and a source.

A lake's settings live in ``lake.toml`` at its root. Each can be overridden by an
environment variable ``LAKELOOP_<NAME>`` (upper case). Per-namespace values (quotas and
anything else) go in a ``[namespaces.<name>]`` table of ``lake.toml``::

    volume_size = "256MiB"
    sync = "always"

    [namespaces.photos]
    quota_bytes = "50GiB"

``lakeloop config`` prints the effective value of each setting and where it came from.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lakeloop.errors import InvalidSetting

__all__ = ["SETTINGS", "Setting", "Settings", "parse_size"]

_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "kib": 1024,
    "m": 1000**2,
    "mb": 1000**2,
    "mib": 1024**2,
    "g": 1000**3,
    "gb": 1000**3,
    "gib": 1024**3,
    "t": 1000**4,
    "tb": 1000**4,
    "tib": 1024**4,
}


def parse_size(value: object) -> int:
    """``4096``, ``"64KiB"``, ``"1.5GB"`` -> bytes."""
    if isinstance(value, bool):
        raise ValueError("a size, not a boolean")
    if isinstance(value, int):
        if value < 0:
            raise ValueError("sizes are not negative")
        return value
    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]*)\s*", str(value))
    if not m or m.group(2).lower() not in _UNITS:
        raise ValueError(f"not a size: {value!r} (examples: 4096, '64KiB', '1GiB')")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


def _parse_bool(value: object) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"not a boolean: {value!r}")


def _parse_float(value: object) -> float:
    if isinstance(value, bool):
        raise ValueError("a number, not a boolean")
    number = float(value)  # type: ignore[arg-type]
    if number < 0:
        raise ValueError("must not be negative")
    return number


def _parse_int(value: object) -> int:
    if isinstance(value, bool):
        raise ValueError("an integer, not a boolean")
    number = int(str(value))
    if number < 0:
        raise ValueError("must not be negative")
    return number


def _choice(*options: str) -> Callable[[object], str]:
    def parse(value: object) -> str:
        text = str(value).strip().lower()
        if text not in options:
            raise ValueError(f"{value!r} is not one of {', '.join(options)}")
        return text

    return parse


def _word(value: object) -> str:
    text = str(value).strip()
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,32}", text):
        raise ValueError(f"{value!r} is not 1-32 letters, digits, '_' or '-'")
    return text


def _ratio(value: object) -> float:
    number = _parse_float(value)
    if number > 1:
        raise ValueError("a ratio between 0 and 1")
    return number


@dataclass(frozen=True)
class Setting:
    """One named setting: its default, how a value is parsed, and one line of help."""

    name: str
    default: Any
    parse: Callable[[object], Any]
    help: str
    per_namespace: bool = False

    @property
    def env_var(self) -> str:
        return "LAKELOOP_" + self.name.upper()


SETTINGS: dict[str, Setting] = {
    s.name: s
    for s in [
        Setting(
            "volume_size",
            256 * 1024**2,
            parse_size,
            "a volume is sealed once it reaches this size; new writes go to a new one",
            per_namespace=True,
        ),
        Setting(
            "blob_threshold",
            4 * 1024**2,
            parse_size,
            "objects larger than this are stored as standalone blobs, streamed in and out",
            per_namespace=True,
        ),
        Setting(
            "blob_chunk_size",
            1024**2,
            parse_size,
            "blobs are checksummed per chunk of this size, so range reads verify what they read",
        ),
        Setting(
            "sync",
            "always",
            _choice("always", "batch", "none"),
            "always: a put returns once durable (concurrent puts share fsyncs); "
            "batch: fsync every sync_interval, a crash may lose that window; "
            "none: leave flushing to the OS",
            per_namespace=True,
        ),
        Setting(
            "sync_interval",
            0.1,
            _parse_float,
            "seconds between fsyncs when sync = 'batch' (a crash can lose this window)",
        ),
        Setting(
            "group_commit_wait",
            0.0005,
            _parse_float,
            "seconds a group-commit leader waits for threads that wrote a moment ago, so "
            "that they share its fsync (0: commit at once)",
        ),
        Setting(
            "max_key_bytes",
            1024,
            _parse_int,
            "longest object key, in UTF-8 bytes (S3's limit is 1024)",
        ),
        Setting(
            "max_metadata_bytes",
            8192,
            parse_size,
            "largest user metadata of one object, as JSON bytes (S3 allows 2 KB of headers)",
        ),
        Setting(
            "index_prefetch",
            256 * 1024**2,
            parse_size,
            "when a namespace is opened, ask the kernel to read up to this much of its index "
            "ahead in the background, so cold reads cost one disk access (0: off)",
        ),
        Setting(
            "read_cache_entries",
            65536,
            _parse_int,
            "object locations a namespace keeps in memory per process (bounded; dropped "
            "whenever a writer takes the namespace's lock; 0 turns the cache off)",
        ),
        Setting(
            "lock_timeout",
            30.0,
            _parse_float,
            "seconds a writer waits for a namespace's writer lock held by another process",
        ),
        Setting(
            "quota_bytes",
            0,
            parse_size,
            "most logical bytes a namespace may hold (0: no quota)",
            per_namespace=True,
        ),
        Setting(
            "quota_objects",
            0,
            _parse_int,
            "most objects a namespace may hold (0: no quota)",
            per_namespace=True,
        ),
        Setting(
            "auto_compact",
            True,
            _parse_bool,
            "compact namespaces in a background thread when a threshold is crossed",
        ),
        Setting(
            "compaction_interval",
            60.0,
            _parse_float,
            "seconds between background checks of the compaction thresholds",
        ),
        Setting(
            "compaction_garbage_ratio",
            0.3,
            _ratio,
            "compact a sealed volume once this share of its bytes is deleted or overwritten",
            per_namespace=True,
        ),
        Setting(
            "compaction_small_volumes",
            4,
            _parse_int,
            "merge sealed volumes smaller than half of volume_size once there are this many",
            per_namespace=True,
        ),
        Setting(
            "compaction_age",
            3600.0,
            _parse_float,
            "seconds after sealing when a volume is rewritten compressed (if compression is on)",
            per_namespace=True,
        ),
        Setting(
            "compaction_max_bytes",
            4 * 1024**3,
            parse_size,
            "most live bytes one compaction pass copies; larger backlogs take several passes",
        ),
        Setting(
            "compaction_free_margin",
            64 * 1024**2,
            parse_size,
            "free disk space compaction keeps in reserve beyond what it will write",
        ),
        Setting(
            "compression",
            "zstd",
            _choice("zstd", "none"),
            "compress records when compaction rewrites a volume",
            per_namespace=True,
        ),
        Setting(
            "compression_level",
            3,
            _parse_int,
            "zstd level used by compaction (1 fast ... 19 small)",
        ),
        Setting(
            "compression_dict",
            True,
            _parse_bool,
            "train a zstd dictionary per compacted volume when its records are small",
            per_namespace=True,
        ),
        Setting(
            "compression_min_saving",
            0.1,
            _ratio,
            "keep a record compressed only if that saves at least this share of its bytes",
        ),
        # catalog
        Setting("search_limit", 50, _parse_int, "results per search page unless asked otherwise"),
        Setting("search_max_limit", 1000, _parse_int, "most results one search page may ask for"),
        Setting(
            "search_count_cap",
            10000,
            _parse_int,
            "a search counts matches up to this many, then says the total is capped",
        ),
        Setting(
            "search_count_time",
            0.03,
            _parse_float,
            "seconds a search spends counting matches; past it the total is a lower bound",
        ),
        Setting(
            "search_refresh_max",
            200000,
            _parse_int,
            "most store changes a search indexes before answering (the rest: reported as lag)",
        ),
        Setting("preview_max_bytes", 1024**2, parse_size, "most bytes a table/JSON preview reads"),
        Setting("preview_rows", 20, _parse_int, "rows a table preview shows"),
        Setting("preview_columns", 50, _parse_int, "columns a table preview shows"),
        Setting("preview_text_bytes", 1024, parse_size, "bytes of text a text/JSON preview shows"),
        Setting("preview_cell_chars", 200, _parse_int, "characters one table cell shows"),
        Setting("preview_thumbnail_px", 128, _parse_int, "longest side of an image thumbnail"),
        Setting(
            "preview_image_max_bytes", 64 * 1024**2, parse_size, "largest image a preview decodes"
        ),
        Setting("preview_timeout", 10.0, _parse_float, "seconds a preview may take"),
        Setting(
            "stats_max_tables",
            1000,
            _parse_int,
            "most table objects whose columns one stats call reads (cached ones are free)",
        ),
        Setting(
            "stats_max_table_bytes",
            256 * 1024**2,
            parse_size,
            "tables larger than this are left out of column statistics",
        ),
        Setting("stats_max_columns", 100, _parse_int, "most columns per table in statistics"),
        # gateway
        Setting(
            "gateway_max_object_size",
            5 * 1024**3,
            parse_size,
            "largest object the gateway accepts in one PUT or one completed multipart upload",
        ),
        Setting(
            "gateway_max_clock_skew",
            900.0,
            _parse_float,
            "seconds a signed request's X-Amz-Date may differ from the server clock",
        ),
        Setting(
            "gateway_anonymous",
            False,
            _parse_bool,
            "serve unsigned requests as the principal 'anonymous', with only the grants given to"
            " it (`lakeloop user grant anonymous NS read`); off: unsigned requests are refused",
        ),
        Setting(
            "gateway_presign_max_expires",
            604800,
            _parse_int,
            "longest lifetime of a presigned URL in seconds (S3's limit: 7 days)",
        ),
        Setting(
            "gateway_multipart_min_part_size",
            5 * 1024**2,
            parse_size,
            "smallest part of a multipart upload except the last (S3's limit: 5 MiB)",
        ),
        Setting(
            "gateway_multipart_max_parts",
            10000,
            _parse_int,
            "most parts in one multipart upload",
        ),
        Setting(
            "gateway_max_xml_bytes",
            1024**2,
            parse_size,
            "largest XML request document (multipart completion, multi-object delete)",
        ),
        Setting(
            "gateway_memory_body_limit",
            1024**2,
            parse_size,
            "request bodies up to this size are read into memory and verified before the put;"
            " larger ones stream into the store and are verified before it commits",
        ),
        Setting(
            "gateway_inline_read_max",
            64 * 1024,
            parse_size,
            "GETs of objects up to this size are served on the event loop, without a hand-off"
            " to a worker thread (faster; a cold disk read then delays other requests; 0: off)",
        ),
        Setting(
            "gateway_threads",
            64,
            _parse_int,
            "worker threads running store calls for the gateway (concurrent puts share fsyncs)",
        ),
        # train
        Setting(
            "train_workers",
            0,
            _parse_int,
            "trials `lakeloop train` runs at once (0: one per CPU)",
        ),
        Setting(
            "train_threads_per_trial",
            1,
            _parse_int,
            "threads each trial's framework may use (TensorFlow, BLAS), so trials do not compete",
        ),
        Setting(
            "train_max_trials",
            1000,
            _parse_int,
            "most trials (parameter sets x folds) one `lakeloop train` may start",
        ),
        Setting(
            "train_trial_timeout",
            0.0,
            _parse_float,
            "seconds one trial may run before it is stopped and reported failed (0: no limit)",
        ),
        # stream (the event log: see docs/stream.md)
        Setting(
            "stream_backend",
            "embedded",
            _choice("embedded", "redis", "nats"),
            "where streams live when stream_url names no server: embedded (segment files in"
            " the lake), redis or nats (their local default ports)",
        ),
        Setting(
            "stream_url",
            "",
            lambda v: str(v).strip(),
            "the stream server: redis://HOST:PORT/DB or nats://HOST:PORT, or 'embedded';"
            " empty: stream_backend decides",
        ),
        Setting(
            "stream_ack_timeout",
            30.0,
            _parse_float,
            "seconds a consumed event may stay unacknowledged before it is delivered again"
            " to a consumer of the same group",
        ),
        Setting(
            "stream_segment_size",
            64 * 1024**2,
            parse_size,
            "an embedded stream's segment file is sealed at this size; appends go to a new one",
        ),
        Setting(
            "stream_max_event_bytes",
            1024**2,
            parse_size,
            "largest event, as JSON bytes; a bigger one is refused and nothing is published",
        ),
        Setting(
            "stream_poll_interval",
            0.002,
            _parse_float,
            "seconds between checks for new events while an embedded consume blocks",
        ),
        Setting(
            "stream_prefix",
            "lakeloop",
            _word,
            "prefix of the Redis keys and NATS stream names, so lakes can share one server",
        ),
        # remote lake (a client of a gateway URL)
        Setting(
            "remote_read_workers",
            4,
            _parse_int,
            "batch reads a snapshot reader over a gateway URL keeps in flight at once (1: one"
            " after another)",
        ),
        Setting(
            "remote_read_batch_items",
            1024,
            _parse_int,
            "examples per batch read of a snapshot reader over a gateway URL (at most 4096;"
            " a batch also stops at 8 MiB)",
        ),
        # serve
        Setting(
            "serve_max_batch_size",
            64,
            _parse_int,
            "most instances `lakeloop serve` runs through the model in one micro-batch",
        ),
        Setting(
            "serve_max_wait_ms",
            2.0,
            _parse_float,
            "milliseconds an idle model waits for requests already being read to join a batch"
            " (never waits when no other request is arriving; 0: never)",
        ),
        Setting(
            "serve_poll_interval",
            2.0,
            _parse_float,
            "seconds between checks of the served alias (and the shadow's) in the registry"
            " (0: load it once, never follow it)",
        ),
        Setting(
            "serve_max_request_bytes",
            8 * 1024 * 1024,
            parse_size,
            "largest request body `lakeloop serve` reads (413 beyond it)",
        ),
        Setting(
            "serve_max_instances",
            1024,
            _parse_int,
            "most instances in one predict request, or feedback items in one feedback request",
        ),
        Setting(
            "serve_log_sync",
            False,
            _parse_bool,
            "answer a prediction only once it is durably in the inference log (off: the log"
            " is written right after the answer, in batches; a crash may lose the last ones)",
        ),
        Setting(
            "serve_log_inline_max",
            256,
            _parse_int,
            "an input of more numbers than this is stored in the lake (namespace _inference,"
            " one JSON object per instance) and logged as a reference; smaller ones inline",
        ),
        Setting(
            "serve_log_queue",
            10000,
            _parse_int,
            "predictions waiting to be written to the inference log; when full, answers wait",
        ),
        Setting(
            "serve_shadow_queue",
            2048,
            _parse_int,
            "instances waiting for the shadow model; beyond it they are skipped and counted",
        ),
        # --- the continuous-training loop (lakeloop loop; docs/loop.md) ---
        Setting(
            "loop_min_new_examples",
            100,
            _parse_int,
            "a loop turn starts once this many labelled examples were joined since the last "
            "turn (0: never for this reason)",
        ),
        Setting(
            "loop_interval",
            0.0,
            _parse_float,
            "seconds between scheduled loop turns (0: no schedule)",
        ),
        Setting(
            "loop_accuracy_drop",
            0.05,
            _ratio,
            "a loop turn starts when the champion's live accuracy falls this far below its "
            "accuracy at the gate (0: never for this reason)",
        ),
        Setting(
            "loop_accuracy_min_examples",
            50,
            _parse_int,
            "labelled predictions of the champion (since the last turn) needed before its live "
            "accuracy may start a turn",
        ),
        Setting(
            "loop_join_window",
            86400.0,
            _parse_float,
            "seconds a prediction waits for its label; feedback after that is kept as unmatched",
        ),
        Setting(
            "loop_poll",
            2.0,
            _parse_float,
            "seconds `lakeloop loop run` waits between checks of the joiner and the triggers",
        ),
        Setting(
            "loop_join_batch",
            500,
            _parse_int,
            "most events the joiner reads from a stream per call",
        ),
        # web UI (`lakeloop ui`, and /ui on the gateway)
        Setting("ui_page_size", 100, _parse_int, "rows one UI page lists (objects, runs, entries)"),
        Setting(
            "ui_session_hours",
            12.0,
            _parse_float,
            "hours a UI login lasts before the session cookie expires",
        ),
        Setting(
            "gateway_ui",
            True,
            _parse_bool,
            "the gateway serves the web UI at /ui (login with an access key and secret)",
        ),
        # --- serve: admission bound and model-load retries (docs/serve.md) ---
        Setting(
            "serve_max_queue",
            1024,
            _parse_int,
            "instances waiting for the model (and feedback items waiting to be written) beyond"
            " which `lakeloop serve` answers 503 with Retry-After at once (0: no bound)",
        ),
        Setting(
            "serve_load_retry",
            1.0,
            _parse_float,
            "seconds before `lakeloop serve` tries again to load a version that failed to load"
            " (the old one serves meanwhile); doubled after each failure",
        ),
        Setting(
            "serve_load_retry_max",
            60.0,
            _parse_float,
            "longest wait between two tries to load a version that keeps failing",
        ),
        # gateway: what one batch read may return (each item counted as it is opened)
        Setting(
            "gateway_read_batch_max_bytes",
            64 << 20,
            parse_size,
            "most bytes one batch read (POST /api/v1/namespaces/NS/read) may return; the "
            "batch is refused (413) at the item that would pass it (a blob is sized without "
            "reading it; a batch holds at most this plus one object up to blob_threshold)",
        ),
    ]
}


class Settings:
    """Effective settings of a lake: defaults < lake.toml < environment.

    >>> s = Settings({"volume_size": "64MiB"}, env={})
    >>> s["volume_size"]
    67108864
    >>> s.source("volume_size")
    'lake.toml'
    """

    def __init__(
        self,
        file_values: Mapping[str, Any] | None = None,
        *,
        env: Mapping[str, str] | None = None,
        file_label: str = "lake.toml",
    ) -> None:
        file_values = dict(file_values or {})
        env = os.environ if env is None else env
        self._ns_tables: dict[str, dict[str, Any]] = {}
        raw_ns = file_values.pop("namespaces", {}) or {}
        if not isinstance(raw_ns, dict):
            raise InvalidSetting("[namespaces] must be a table", op="read", target=file_label)
        self._values: dict[str, Any] = {}
        self._sources: dict[str, str] = {}
        for name in file_values:
            if name not in SETTINGS:
                raise InvalidSetting(f"unknown setting {name!r}", op="read", target=file_label)
        for name, setting in SETTINGS.items():
            value, source = setting.default, "default"
            if name in file_values:
                value = self._parse(setting, file_values[name], file_label)
                source = file_label
            if setting.env_var in env:
                value = self._parse(setting, env[setting.env_var], setting.env_var)
                source = setting.env_var
            self._values[name] = value
            self._sources[name] = source
        for ns, table in raw_ns.items():
            if not isinstance(table, dict):
                raise InvalidSetting(
                    f"[namespaces.{ns}] must be a table", op="read", target=file_label
                )
            parsed: dict[str, Any] = {}
            for name, value in table.items():
                found = SETTINGS.get(name)
                if found is None or not found.per_namespace:
                    raise InvalidSetting(
                        f"{name!r} cannot be set per namespace",
                        op="read",
                        target=f"{file_label} [namespaces.{ns}]",
                    )
                parsed[name] = self._parse(found, value, f"{file_label} [namespaces.{ns}]")
            self._ns_tables[ns] = parsed

    @staticmethod
    def _parse(setting: Setting, value: object, where: str) -> Any:
        try:
            return setting.parse(value)
        except (TypeError, ValueError) as exc:
            raise InvalidSetting(
                f"bad value for {setting.name}: {exc}", op="read setting", target=where
            ) from None

    @classmethod
    def load(cls, path: Path, *, env: Mapping[str, str] | None = None) -> Settings:
        """Read ``lake.toml`` at *path* (missing file: defaults)."""
        try:
            with open(path, "rb") as f:
                data = tomllib.load(f)
        except FileNotFoundError:
            data = {}
        except tomllib.TOMLDecodeError as exc:
            raise InvalidSetting(f"not valid TOML: {exc}", op="read", target=str(path)) from None
        return cls(data, env=env, file_label="lake.toml")

    def __getitem__(self, name: str) -> Any:
        return self._values[name]

    def source(self, name: str) -> str:
        return self._sources[name]

    def for_namespace(self, namespace: str, name: str) -> Any:
        """The value of *name* for *namespace*: its own table first, then the lake's."""
        table = self._ns_tables.get(namespace, {})
        if name in table:
            return table[name]
        return self._values[name]

    def namespace_values(self, name: str) -> set[Any]:
        """Every value a ``[namespaces.*]`` table gives setting *name*."""
        return {t[name] for t in self._ns_tables.values() if name in t}

    def namespace_overrides(self, namespace: str) -> dict[str, Any]:
        return dict(self._ns_tables.get(namespace, {}))

    def items(self) -> Iterator[tuple[Setting, Any, str]]:
        for name, setting in SETTINGS.items():
            yield setting, self._values[name], self._sources[name]
