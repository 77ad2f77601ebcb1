#!/usr/bin/env python3
"""Store benchmark: lakeloop against one file per object and a SQLite blob table.

Everything runs side by side in one process tree, on the same file system, with the
same data:

  (a) lakeloop        packed volumes + SQLite index, group commit (sync = "always")
  (b) files + fsync   one file per object in 256 fanned-out folders; fsync file and folder
  (c) files           the same without any fsync
  (d) SQLite          a (key TEXT PRIMARY KEY, data BLOB) table in WAL mode;
                      synchronous=FULL and one commit per put for durable puts,
                      one transaction (executemany) for the bulk load

Sections: durable puts (1 KB / 16 KB / 256 KB; 1 and 16 threads; 4 processes), bulk
loading, the CLI's import of a directory (report only), random gets (warm and cold page
cache), RSS growth per million objects, bytes on disk per object, and compaction. A
"targets" section compares the ratios with the acceptance targets.

    python bench/store.py              # default run, under 2 minutes
    python bench/store.py --quick      # smoke run, about 30 s
    python bench/store.py --large      # paper scale (10 M objects for RSS), long
    python bench/store.py --out bench/out/store.md   # the tables as markdown too
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import gc
import json
import multiprocessing as mp
import os
import platform
import queue
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lakeloop import Lake

KB = 1024
MB = 1024 * 1024
NS = "bench"
LAKE_SETTINGS: dict[str, Any] = {"sync": "always"}

LAKELOOP, FILES_FSYNC, FILES, SQLITE = "lakeloop", "files+fsync", "files", "sqlite"


# ---------------------------------------------------------------------------- scales
@dataclass(frozen=True)
class Scale:
    name: str
    cell_seconds: float  # duration of one put cell
    cell_max_bytes: int  # ... or until this many bytes were written
    repeats: int  # 1 KB / 16-thread cells (the target) are repeated; the median is reported
    bulk_objects: int  # 1 KB objects in the bulk load (16 KB: an eighth of that)
    warm_gets: int
    cold_gets: int
    import_files: int
    rss_put_many: int
    rss_put: int
    compact_objects: int
    compact_read_seconds: float


SCALES = {
    "quick": Scale(
        name="quick",
        cell_seconds=0.25,
        cell_max_bytes=64 * MB,
        repeats=1,
        bulk_objects=10_000,
        warm_gets=5_000,
        cold_gets=500,
        import_files=3_000,
        rss_put_many=60_000,
        rss_put=20_000,
        compact_objects=8_000,
        compact_read_seconds=0.4,
    ),
    "default": Scale(
        name="default",
        cell_seconds=0.7,
        cell_max_bytes=192 * MB,
        repeats=3,
        bulk_objects=30_000,
        warm_gets=20_000,
        cold_gets=2_000,
        import_files=10_000,
        rss_put_many=200_000,
        rss_put=160_000,
        compact_objects=20_000,
        compact_read_seconds=1.0,
    ),
    "large": Scale(
        name="large",
        cell_seconds=3.0,
        cell_max_bytes=1024 * MB,
        repeats=3,
        bulk_objects=1_000_000,
        warm_gets=200_000,
        cold_gets=10_000,
        import_files=200_000,
        rss_put_many=10_000_000,
        rss_put=1_000_000,
        compact_objects=400_000,
        compact_read_seconds=5.0,
    ),
}


# ---------------------------------------------------------------------------- tables
@dataclass
class Table:
    title: str
    columns: list[str]
    rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, *cells: object) -> None:
        self.rows.append([str(c) for c in cells])

    def text(self) -> str:
        widths = [len(c) for c in self.columns]
        for row in self.rows:
            widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]

        def line(cells: list[str]) -> str:
            out = []
            for i, (c, w) in enumerate(zip(cells, widths, strict=True)):
                out.append(c.ljust(w) if i == 0 or not _numeric(c) else c.rjust(w))
            return "  ".join(out).rstrip()

        parts = [self.title, "=" * len(self.title), line(self.columns)]
        parts.append("  ".join("-" * w for w in widths))
        parts += [line(r) for r in self.rows]
        parts += [f"  {n}" for n in self.notes]
        return "\n".join(parts)

    def markdown(self) -> str:
        numeric = [
            i > 0 and all(_numeric(r[i]) for r in self.rows) and bool(self.rows)
            for i in range(len(self.columns))
        ]
        parts = [f"#### {self.title}", ""]
        parts.append("| " + " | ".join(self.columns) + " |")
        parts.append("|" + "|".join("---:" if n else "---" for n in numeric) + "|")
        parts += ["| " + " | ".join(r) + " |" for r in self.rows]
        if self.notes:
            parts.append("")
            parts += [f"- {n}" for n in self.notes]
        return "\n".join(parts)


def _numeric(cell: str) -> bool:
    c = cell.strip().rstrip("×%").replace(",", "").replace("/", "").replace(".", "")
    c = c.replace("-", "").replace("+", "").replace("x", "").replace(" ", "")
    return c.isdigit() or cell.strip() in ("-", "n/a")


def f_rate(x: float) -> str:
    return f"{x:,.0f}"


def f_ratio(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2f}×"


def f_us(ns: float) -> str:
    us = ns / 1000
    return f"{us:,.0f}" if us >= 100 else f"{us:.1f}"


def f_mb(b: float) -> str:
    return f"{b / MB:,.1f}"


def pct(values: list[int], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return float(s[min(len(s) - 1, round(q * (len(s) - 1)))])


# ---------------------------------------------------------------------------- helpers
def log(msg: str) -> None:
    print(f"  .. {msg}", file=sys.stderr, flush=True)


def allocated(root: Path) -> int:
    """Bytes allocated on disk under *root* (st_blocks, files and folders, like du)."""
    total = 0
    for dirpath, _dirnames, filenames in os.walk(root):
        total += os.lstat(dirpath).st_blocks * 512
        for name in filenames:
            with contextlib.suppress(FileNotFoundError):
                total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
    return total


def files_under(root: Path) -> Iterator[str]:
    for dirpath, _dirs, names in os.walk(root):
        for name in names:
            yield os.path.join(dirpath, name)


def drop_caches(roots: Iterable[Path]) -> str:
    """Evict the page cache; -> the method used ("drop_caches" or "fadvise")."""
    os.sync()
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        return "drop_caches"
    except OSError:
        pass
    for root in roots:
        for path in files_under(root):
            try:
                fd = os.open(path, os.O_RDONLY)
            except OSError:
                continue
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)
    return "fadvise"


def settle(path: Path | None = None) -> None:
    """Flush dirty pages (and delete *path*) so that one cell does not tax the next."""
    gc.collect()
    os.sync()
    if path is not None:
        shutil.rmtree(path, ignore_errors=True)
        os.sync()


def measure_fsync(root: Path, n: int = 300) -> float:
    """Median µs of append 4 KB + fdatasync on this file system."""
    path = root / "fsync-probe"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    block = os.urandom(4096)
    times = []
    try:
        for _ in range(n):
            os.write(fd, block)
            t = time.perf_counter_ns()
            os.fdatasync(fd)
            times.append(time.perf_counter_ns() - t)
    finally:
        os.close(fd)
        os.unlink(path)
    return pct(times, 0.5) / 1000


def cpu_times() -> tuple[float, float]:
    """(CPU seconds the whole machine was busy, CPU seconds of this process and its
    finished children)."""
    busy = 0.0
    with contextlib.suppress(OSError, ValueError), open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:9]]
        # user nice system idle iowait irq softirq steal
        busy = (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")
    t = os.times()
    return busy, t.user + t.system + t.children_user + t.children_system


def lakeloop_version() -> str:
    """lakeloop's version, with the git commit of its source tree when there is one."""
    import lakeloop

    text = f"lakeloop {lakeloop.__version__}"
    src = Path(lakeloop.__file__).resolve().parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=src,
            capture_output=True,
            text=True,
            timeout=10,
        )
        if head.returncode == 0:
            text += f" at commit {head.stdout.strip()}"
            dirty = subprocess.run(
                ["git", "status", "--porcelain", "--", "."],
                cwd=src,
                capture_output=True,
                text=True,
                timeout=10,
            )
            if dirty.stdout.strip():
                text += " (with uncommitted changes to the package)"
    except (OSError, subprocess.SubprocessError):
        pass
    return text


def machine(root: Path) -> dict[str, str]:
    cpu = "unknown"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for ln in f:
            if ln.startswith("model name"):
                cpu = ln.split(":", 1)[1].strip()
                break
    ram = "unknown"
    with contextlib.suppress(OSError), open("/proc/meminfo") as f:
        for ln in f:
            if ln.startswith("MemTotal"):
                ram = f"{int(ln.split()[1]) / 1024 / 1024:.1f} GiB"
                break
    fs = "unknown"
    with contextlib.suppress(OSError, subprocess.SubprocessError, IndexError):
        out = subprocess.run(["df", "-T", str(root)], capture_output=True, text=True, timeout=10)
        fields = out.stdout.splitlines()[1].split()
        fs = f"{fields[1]} ({int(fields[2]) / 1024 / 1024:.0f} GiB)"
    rotational = ""
    with contextlib.suppress(OSError, ValueError, IndexError, subprocess.SubprocessError):
        out = subprocess.run(["df", str(root)], capture_output=True, text=True, timeout=10)
        dev = os.path.basename(out.stdout.splitlines()[1].split()[0])
        flag = Path(f"/sys/block/{dev}/queue/rotational").read_text().strip()
        rotational = ", rotational" if flag == "1" else ", non-rotational"
    return {
        "lakeloop": lakeloop_version(),
        "cpu": f"{os.cpu_count()} cores ({cpu})",
        "ram": ram,
        "fs": fs + rotational,
        "python": platform.python_version(),
        "kernel": platform.release(),
        "fsync": f"{measure_fsync(root):.0f} µs (median 4 KB append + fdatasync)",
    }


# RSS is extrapolated to 10 M objects only from runs past SQLite's page caches' warm-up
# (8 MiB per connection fills at roughly 80,000 index rows).
RSS_MIN_OBJECTS = 150_000


# ---------------------------------------------------------------------------- stores
class Store:
    """One system under test, opened in the current process."""

    def writer(self) -> Callable[[str, bytes], Any]:
        raise NotImplementedError

    def get(self, key: str) -> bytes:
        raise NotImplementedError

    def close(self) -> None:
        pass


class LakeStore(Store):
    def __init__(self, root: Path, create: bool, settings: dict[str, Any] | None = None) -> None:
        if create:
            self.lake = Lake.open(
                root, create=True, settings=settings or LAKE_SETTINGS, background=False
            )
            self.ns = self.lake.create_namespace(NS)
        else:
            self.lake = Lake.open(root, background=False)
            self.ns = self.lake.namespace(NS)

    def writer(self) -> Callable[[str, bytes], Any]:
        return self.ns.put

    def get(self, key: str) -> bytes:
        return self.ns.get(key)

    def close(self) -> None:
        self.lake.close()


def fan(key: str) -> int:
    return zlib.crc32(key.encode()) & 0xFF


class FileStore(Store):
    """One file per object in 256 folders; ``durable``: fsync the file and its folder."""

    def __init__(self, root: Path, create: bool, durable: bool) -> None:
        self.root = str(root)
        self.durable = durable
        if create:
            # Each folder gets a first file before timing starts, so that the file system's
            # one-off costs of a new folder (its first block, its inode group) stay out of
            # the measurement, as lakeloop's first volume is made before timing too.
            for h in range(256):
                os.makedirs(f"{self.root}/{h:02x}", exist_ok=True)
                fd = os.open(f"{self.root}/{h:02x}/.first", os.O_WRONLY | os.O_CREAT, 0o644)
                os.write(fd, b"x")
                os.close(fd)
            os.sync()
        self.dir_fds: list[int] = []
        if durable:
            self.dir_fds = [
                os.open(f"{self.root}/{h:02x}", os.O_RDONLY | os.O_DIRECTORY) for h in range(256)
            ]

    def path(self, key: str) -> str:
        return f"{self.root}/{fan(key):02x}/{key}"

    def put(self, key: str, data: bytes) -> None:
        h = fan(key)
        fd = os.open(f"{self.root}/{h:02x}/{key}", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            if self.durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        if self.durable:
            os.fsync(self.dir_fds[h])

    def writer(self) -> Callable[[str, bytes], Any]:
        return self.put

    def get(self, key: str) -> bytes:
        fd = os.open(self.path(key), os.O_RDONLY)
        try:
            return os.read(fd, 65536)
        finally:
            os.close(fd)

    def close(self) -> None:
        for fd in self.dir_fds:
            os.close(fd)
        self.dir_fds = []


class SqliteStore(Store):
    """A blob table in WAL mode; every connection uses synchronous=FULL."""

    def __init__(self, root: Path, create: bool) -> None:
        self.path = str(root / "objects.sqlite")
        self.conns: list[sqlite3.Connection] = []
        self._reader = threading.local()
        if create:
            os.makedirs(root, exist_ok=True)
            conn = self.connect()
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("CREATE TABLE objects(key TEXT PRIMARY KEY, data BLOB NOT NULL)")

    def connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA busy_timeout=60000")
        conn.execute("PRAGMA synchronous=FULL")
        self.conns.append(conn)
        return conn

    def writer(self) -> Callable[[str, bytes], Any]:
        conn = self.connect()
        sql = "INSERT OR REPLACE INTO objects(key, data) VALUES (?, ?)"

        def put(key: str, data: bytes) -> None:
            conn.execute(sql, (key, data))

        return put

    def put_many(self, items: Iterable[tuple[str, bytes]]) -> None:
        conn = self.connect()
        conn.execute("BEGIN")
        conn.executemany("INSERT OR REPLACE INTO objects(key, data) VALUES (?, ?)", items)
        conn.execute("COMMIT")

    def get(self, key: str) -> bytes:
        conn = getattr(self._reader, "conn", None)
        if conn is None:
            conn = self._reader.conn = self.connect()
        row = conn.execute("SELECT data FROM objects WHERE key = ?", (key,)).fetchone()
        return row[0]  # type: ignore[no-any-return]

    def close(self) -> None:
        for conn in self.conns:
            conn.close()
        self.conns = []


def open_store(kind: str, root: Path, create: bool) -> Store:
    if kind == LAKELOOP:
        return LakeStore(root, create)
    if kind == FILES_FSYNC:
        return FileStore(root, create, durable=True)
    if kind == FILES:
        return FileStore(root, create, durable=False)
    if kind == SQLITE:
        return SqliteStore(root, create)
    raise ValueError(kind)


# ---------------------------------------------------------------------------- put cells
def put_loop(
    put: Callable[[str, bytes], Any], data: bytes, prefix: str, seconds: float, cap: int
) -> tuple[int, list[int]]:
    clock = time.perf_counter_ns
    end = clock() + int(seconds * 1e9)
    lats: list[int] = []
    i = 0
    while i < cap:
        t = clock()
        if t >= end:
            break
        put(f"{prefix}-{i:09d}", data)
        lats.append(clock() - t)
        i += 1
    return i, lats


@dataclass
class CellResult:
    ops: int
    seconds: float
    lats: list[int]

    @property
    def rate(self) -> float:
        return self.ops / self.seconds if self.seconds else 0.0


def run_threads(store: Store, threads: int, size: int, seconds: float, cap: int) -> CellResult:
    barrier = threading.Barrier(threads + 1)
    counts = [0] * threads
    lats: list[list[int]] = [[] for _ in range(threads)]
    errors: list[BaseException] = []
    per_thread = max(cap // threads, 1)

    def work(t: int) -> None:
        try:
            put = store.writer()
            data = os.urandom(size)
            put(f"t{t}-warmup", data)
            barrier.wait()
            counts[t], lats[t] = put_loop(put, data, f"t{t}", seconds, per_thread)
        except BaseException as exc:
            errors.append(exc)
            barrier.abort()

    pool = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for th in pool:
        th.start()
    barrier.wait()
    t0 = time.perf_counter()
    for th in pool:
        th.join()
    elapsed = time.perf_counter() - t0
    if errors:
        raise errors[0]
    return CellResult(sum(counts), elapsed, [x for part in lats for x in part])


def _proc_worker(inbox: Any, outbox: Any, barrier: Any) -> None:
    """A writer process: runs put cells sent by the parent until it gets None."""
    while True:
        task = inbox.get()
        if task is None:
            return
        kind, root, size, seconds, cap, prefix = task
        try:
            store = open_store(kind, Path(root), create=False)
            put = store.writer()
            data = os.urandom(size)
            put(f"{prefix}-warmup", data)
            barrier.wait(timeout=120)
            t0 = time.perf_counter()
            n, lats = put_loop(put, data, prefix, seconds, cap)
            elapsed = time.perf_counter() - t0
            store.close()
            outbox.put((n, elapsed, lats, None))
        except BaseException as exc:
            with contextlib.suppress(Exception):
                barrier.abort()
            outbox.put((0, 0.0, [], f"{type(exc).__name__}: {exc}"))


class ProcessPool:
    """N persistent writer processes (spawned once, reused for every cell)."""

    def __init__(self, n: int) -> None:
        ctx = mp.get_context("spawn")
        self.n = n
        self.barrier = ctx.Barrier(n)  # the workers start each cell together
        self.outbox = ctx.Queue()
        self.inboxes = [ctx.Queue() for _ in range(n)]
        self.procs = [
            ctx.Process(target=_proc_worker, args=(q, self.outbox, self.barrier), daemon=True)
            for q in self.inboxes
        ]
        for p in self.procs:
            p.start()

    def run(self, kind: str, root: Path, size: int, seconds: float, cap: int) -> CellResult:
        per = max(cap // self.n, 1)
        for i, q in enumerate(self.inboxes):
            q.put((kind, str(root), size, seconds, per, f"p{i}"))
        results = []
        deadline = time.monotonic() + seconds + 300
        while len(results) < self.n:
            try:
                results.append(self.outbox.get(timeout=1))
            except queue.Empty:
                dead = [p.exitcode for p in self.procs if not p.is_alive()]
                if dead:
                    raise RuntimeError(f"a writer process died (exit code {dead[0]})") from None
                if time.monotonic() > deadline:
                    raise RuntimeError("writer processes did not finish in time") from None
        errors = [r[3] for r in results if r[3]]
        if errors:
            self.barrier.reset()
            raise RuntimeError(f"writer process failed: {errors[0]}")
        return CellResult(
            sum(r[0] for r in results),
            max(r[1] for r in results),
            [x for r in results for x in r[2]],
        )

    def close(self) -> None:
        for q in self.inboxes:
            q.put(None)
        for p in self.procs:
            p.join(timeout=10)
            if p.is_alive():
                p.terminate()


class Reader:
    """A thread of random gets, timed one by one and checked against what was written."""

    def __init__(self, ns: Any, keys: list[str], expected: dict[str, bytes], seed: int) -> None:
        self.ns, self.keys, self.expected = ns, keys, expected
        self.rnd = random.Random(seed)
        self.lats: list[int] = []
        self.errors = 0
        self.first = ""
        self.seconds = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop)

    def _loop(self) -> None:
        clock = time.perf_counter_ns
        get, keys, expected, choice = self.ns.get, self.keys, self.expected, self.rnd.choice
        while not self._stop.is_set():
            k = choice(keys)
            t = clock()
            try:
                data = get(k)
            except Exception as exc:
                data = None
                self.first = self.first or f"{type(exc).__name__}: {exc}"
            self.lats.append(clock() - t)
            if data != expected[k]:
                self.errors += 1

    def start(self) -> Reader:
        self._t0 = time.perf_counter()
        self._thread.start()
        return self

    def stop(self) -> Reader:
        self._stop.set()
        self._thread.join()
        self.seconds = time.perf_counter() - self._t0
        return self

    def run_for(self, seconds: float) -> Reader:
        self.start()
        time.sleep(seconds)
        return self.stop()


# ---------------------------------------------------------------------------- bench
class Bench:
    def __init__(self, scale: Scale, work: Path, sections: set[str]) -> None:
        self.scale = scale
        self.work = work
        self.sections = sections
        self.tables: list[Table] = []
        self.targets = Table(
            "Targets (ratios measured in this run)",
            ["target", "wanted", "measured", "result"],
        )
        self.m: dict[str, float] = {}
        self.bad_reads: list[str] = []  # objects that did not read back as written
        self.first_compaction_error = ""
        self.cell = 0
        self.cache_method = "not measured"

    def fresh(self, name: str) -> Path:
        self.cell += 1
        path = self.work / f"{self.cell:03d}-{name}"
        path.mkdir(parents=True)
        return path

    def emit(self, table: Table) -> None:
        self.tables.append(table)
        print("\n" + table.text() + "\n", flush=True)

    # -- durable puts ------------------------------------------------------------
    def puts(self) -> None:
        sc = self.scale
        sizes = [1 * KB, 16 * KB, 256 * KB]
        kinds = [LAKELOOP, FILES_FSYNC, FILES, SQLITE]
        table = Table(
            "Durable puts (puts/s; every put durable before it returns, except (c))",
            [
                "object",
                "writers",
                "(a) lakeloop",
                "p50/p99 ms",
                "(b) file+fsync",
                "(c) file",
                "(d) SQLite FULL",
                "(a)/(b)",
                "(a)/(d)",
            ],
        )
        table.notes.append(
            f"each cell runs {sc.cell_seconds:g} s (or until {sc.cell_max_bytes // MB} MiB are "
            "written) on a fresh store; (d) commits every put (WAL, synchronous=FULL), one "
            "connection per writer; dirty pages are flushed between cells; (c) is not run "
            "in 4 processes"
        )
        pool = ProcessPool(4)
        try:
            for size in sizes:
                cap = max(sc.cell_max_bytes // size, 1000)
                for label, threads in (("1 thread", 1), ("16 threads", 16), ("4 procs", 0)):
                    reps = sc.repeats if (size, threads) == (KB, 16) else 1
                    runs: dict[str, list[CellResult]] = {k: [] for k in kinds}
                    for _ in range(reps):  # interleaved, so that drift hits every system
                        for kind in kinds:
                            if kind == FILES and not threads:
                                continue
                            runs[kind].append(self.put_cell(pool, kind, size, threads, cap))
                            log(f"put {size // KB} KB {label} {kind}: {runs[kind][-1].rate:,.0f}/s")
                    rate = {k: statistics.median(r.rate for r in v) for k, v in runs.items() if v}
                    a_lats = [x for r in runs[LAKELOOP] for x in r.lats]
                    lat = f"{pct(a_lats, 0.5) / 1e6:.2f}/{pct(a_lats, 0.99) / 1e6:.2f}"
                    ra, rb, rd = rate[LAKELOOP], rate[FILES_FSYNC], rate[SQLITE]
                    table.add(
                        f"{size // KB} KB",
                        label + (f" (median of {reps})" if reps > 1 else ""),
                        f_rate(ra),
                        lat,
                        f_rate(rb),
                        f_rate(rate[FILES]) if FILES in rate else "-",
                        f_rate(rd),
                        f_ratio(ra / rb if rb else None),
                        f_ratio(ra / rd if rd else None),
                    )
                    self.m[f"put_{size // KB}k_{threads}_b"] = ra / rb if rb else 0.0
                    self.m[f"put_{size // KB}k_{threads}_d"] = ra / rd if rd else 0.0
        finally:
            pool.close()
        self.emit(table)
        r_b, r_d = self.m["put_1k_16_b"], self.m["put_1k_16_d"]
        self.target("durable 1 KB puts, 16 threads vs (b)", 5.0, r_b)
        self.target("durable 1 KB puts, 16 threads vs (d) commit per put", 5.0, r_d)

    def put_cell(
        self, pool: ProcessPool, kind: str, size: int, threads: int, cap: int
    ) -> CellResult:
        """One put cell on a fresh store: *threads* threads, or the 4 processes of *pool*."""
        sc = self.scale
        root = self.fresh(f"put-{kind}")
        open_store(kind, root, create=True).close()
        try:
            if not threads:
                return pool.run(kind, root, size, sc.cell_seconds, cap)
            store = open_store(kind, root, create=False)
            try:
                return run_threads(store, threads, size, sc.cell_seconds, cap)
            finally:
                store.close()
        finally:
            settle(root)

    def target(self, name: str, wanted: float, got: float | None, unit: str = "×") -> None:
        if got is None:
            self.targets.add(name, f"≥ {wanted:g}{unit}", "n/a", "not run")
            return
        ok = got >= wanted
        miss = "" if ok else f" (short by {(1 - got / wanted) * 100:.0f}%)"
        self.targets.add(
            name, f"≥ {wanted:g}{unit}", f"{got:.2f}{unit}", ("PASS" if ok else "MISS") + miss
        )

    # -- bulk load, gets, bytes on disk -------------------------------------------
    def bulk(self) -> None:
        sc = self.scale
        table = Table(
            "Bulk load (N in-memory objects, durable once at the end)",
            [
                "object",
                "N",
                "(a) put_many/s",
                "files + 1 sync/s",
                "(c) files, no sync/s",
                "(d) SQLite 1 txn/s",
                "(a)/files+sync",
                "(a)/(d)",
            ],
        )
        table.notes.append(
            "files + 1 sync: one file per object (no fsync), then one os.sync(); "
            "(c) is the same write phase without the final sync; "
            "(d): executemany in one transaction, synchronous=FULL"
        )
        keep: dict[str, Path] = {}
        expected: dict[str, bytes] = {}
        for size, n in ((1 * KB, sc.bulk_objects), (16 * KB, max(sc.bulk_objects // 8, 1000))):
            src = os.urandom(MB + size)
            items = [
                (f"obj-{i:09d}", src[(i * 4099) % MB : (i * 4099) % MB + size]) for i in range(n)
            ]
            res: dict[str, float | None] = {}
            for kind in (LAKELOOP, FILES, SQLITE):
                root = self.fresh(f"bulk-{kind}")
                store = open_store(kind, root, create=True)
                settle()
                t0 = time.perf_counter()
                if isinstance(store, LakeStore):
                    try:
                        store.ns.put_many(items)
                    except Exception as exc:
                        # Report the failure, and load in smaller calls so that the
                        # sections that read this data can still run.
                        res[kind] = None
                        table.notes.append(
                            f"lakeloop put_many of {n:,} {size // KB} KB objects in one call "
                            f"FAILED: {type(exc).__name__}: {exc}; loaded with calls of "
                            "10,000 objects for the sections below"
                        )
                        for i in range(0, n, 10_000):
                            store.ns.put_many(items[i : i + 10_000])
                elif isinstance(store, SqliteStore):
                    store.put_many(items)
                elif isinstance(store, FileStore):
                    for key, data in items:
                        store.put(key, data)
                    res["files-nosync"] = time.perf_counter() - t0
                    os.sync()
                res.setdefault(kind, time.perf_counter() - t0)
                store.close()
                secs = res[kind]
                log(f"bulk {size // KB} KB {kind}: " + (f"{n / secs:,.0f}/s" if secs else "failed"))
                if size == KB:
                    keep[kind] = root
                else:
                    settle(root)
            rate = {k: (n / v if v else None) for k, v in res.items()}
            a, f, d = rate[LAKELOOP], rate[FILES], rate[SQLITE]
            table.add(
                f"{size // KB} KB",
                f"{n:,}",
                f_rate(a) if a else "failed",
                f_rate(f or 0),
                f_rate(rate["files-nosync"] or 0),
                f_rate(d or 0),
                f_ratio(a / f if a and f else None),
                f_ratio(a / d if a and d else None),
            )
            if size == KB:
                self.m["bulk_files"] = a / f if a and f else 0.0
                self.m["bulk_sqlite"] = a / d if a and d else 0.0
                expected = dict(items)
            del items
        self.emit(table)
        self.target("bulk load 1 KB vs (d) batched", 1.0, self.m["bulk_sqlite"])
        self.target("bulk load 1 KB vs files + one final sync", 5.0, self.m["bulk_files"])
        self.disk(keep, len(expected))
        self.gets(keep, expected)
        for root in keep.values():
            settle(root)

    def disk(self, roots: dict[str, Path], n: int) -> None:
        table = Table(
            f"Bytes on disk per 1 KB object ({n:,} objects, allocated blocks)",
            ["system", "total MiB", "bytes/object", "of which index", "overhead vs 1 KB"],
        )
        os.sync()
        for kind, label in ((LAKELOOP, "(a) lakeloop"), (FILES, "(b)/(c) file per object")):
            root = roots[kind]
            total = allocated(root)
            index = 0
            if kind == LAKELOOP:
                index = sum(
                    os.lstat(p).st_blocks * 512 for p in files_under(root) if "index.sqlite" in p
                )
            table.add(
                label,
                f_mb(total),
                f"{total / n:,.0f}",
                f"{index / n:,.0f}" if index else "-",
                f"{total / n / KB:.2f}×",
            )
        total = allocated(roots[SQLITE])
        table.add("(d) SQLite", f_mb(total), f"{total / n:,.0f}", "-", f"{total / n / KB:.2f}×")
        table.notes.append(
            "allocated bytes = st_blocks × 512 of every file and folder (du); inodes of the "
            "per-object files are not counted; lakeloop's index includes its WAL"
        )
        self.emit(table)

    def _time_gets(
        self, get: Callable[[str], bytes], keys: list[str]
    ) -> tuple[float, list[int], int, str]:
        """Time one get per key; -> (gets/s, latencies ns, errors, first error)."""
        clock = time.perf_counter_ns
        lats = []
        errors, first = 0, ""
        t0 = clock()
        for k in keys:
            t = clock()
            try:
                get(k)
            except Exception as exc:
                errors += 1
                first = first or f"{type(exc).__name__}: {exc}"
            lats.append(clock() - t)
        return len(keys) / ((clock() - t0) / 1e9), lats, errors, first

    def gets(self, roots: dict[str, Path], expected: dict[str, bytes]) -> None:
        sc = self.scale
        rnd = random.Random(42)
        keys = list(expected)
        table = Table(
            f"Random 1 KB gets, one thread ({len(keys):,} objects)",
            ["cache", "system", "gets/s", "p50 µs", "p99 µs", "vs (c)", "bad reads"],
        )
        kinds = [(LAKELOOP, "(a) lakeloop"), (FILES, "(c) os.open/os.read"), (SQLITE, "(d) SQLite")]
        results: dict[tuple[str, str], float] = {}
        for cache in ("warm, 1st read", "warm", "cold"):
            if cache == "warm, 1st read":  # distinct keys: no process-level cache can help
                count = min(sc.warm_gets, len(keys))
                sample = rnd.sample(keys, count)
            else:
                count = sc.warm_gets if cache == "warm" else sc.cold_gets
                sample = [rnd.choice(keys) for _ in range(count)]
            for kind, label in kinds:
                if cache == "cold":
                    self.cache_method = drop_caches([roots[kind]])
                store = open_store(kind, roots[kind], create=False)
                try:
                    if cache == "warm":  # every key read once first, in random order
                        for k in rnd.sample(keys, len(keys)):
                            with contextlib.suppress(Exception):
                                store.get(k)
                    rate, lats, errors, first = self._time_gets(store.get, sample)
                    # content check, untimed, on the keys just read
                    for k in sample[:2000]:
                        try:
                            errors += store.get(k) != expected[k]
                        except Exception as exc:
                            first = first or f"{type(exc).__name__}: {exc}"
                            errors += 1
                finally:
                    store.close()
                results[(cache, kind)] = rate
                checked = count + min(count, 2000)
                table.add(
                    cache,
                    label,
                    f_rate(rate),
                    f_us(pct(lats, 0.5)),
                    f_us(pct(lats, 0.99)),
                    "",
                    f"{errors:,} of {checked:,}" if errors else "0",
                )
                if errors:
                    self.bad_reads.append(f"{label}, {cache} gets: {errors:,} bad reads ({first})")
                log(f"gets {cache} {kind}: {rate:,.0f}/s" + (f", {errors} bad" if errors else ""))
        # ratios against (c) for rows listed before it
        for row in table.rows:
            if row[1] == "(a) lakeloop":
                row[5] = f_ratio(results[(row[0], LAKELOOP)] / results[(row[0], FILES)])
            elif row[1] == "(d) SQLite":
                row[5] = f_ratio(results[(row[0], SQLITE)] / results[(row[0], FILES)])
        if self.cache_method == "drop_caches":
            how = "cold: `echo 3 > /proc/sys/vm/drop_caches` before each system (after os.sync)"
        else:
            how = (
                "cold: drop_caches was not permitted; posix_fadvise(DONTNEED) on every data "
                "file instead, so dentries and inodes stay cached (only page-cache-cold for data)"
            )
        table.notes.append(how)
        table.notes.append(
            "every store is reopened for each phase; 'warm, 1st read': page cache warm, "
            f"{min(sc.warm_gets, len(keys)):,} distinct keys, each read once by this process "
            "(lakeloop's in-process location cache cannot help); 'warm': every key read once "
            f"(untimed, random order), then {sc.warm_gets:,} random gets (lakeloop's location "
            "cache, read_cache_entries = 65,536 by default, then holds every key; with more "
            f"objects than that the 1st-read row applies); cold: {sc.cold_gets:,} random gets "
            "right after the cache drop and a fresh open"
        )
        self.emit(table)
        w = results[("warm", LAKELOOP)] / results[("warm", FILES)]
        c = results[("cold", LAKELOOP)] / results[("cold", FILES)]
        self.m["get_warm"], self.m["get_cold"] = w, c
        first_read = results[("warm, 1st read", LAKELOOP)] / results[("warm, 1st read", FILES)]
        self.target("random 1 KB gets, warm cache vs (c)", 1.0, w)
        self.targets.notes.append(
            f"random 1 KB gets, warm page cache, 1st read of each key (location cache "
            f"missing): {first_read:.2f}× (c)"
        )
        self.target(f"random 1 KB gets, cold cache vs (c) [{self.cache_method}]", 2.0, c)

    # -- CLI import ----------------------------------------------------------------
    def cli_import(self) -> None:
        sc = self.scale
        table = Table(
            "CLI import of a directory of small files (report only)",
            ["files", "MiB", "seconds", "files/s", "MiB/s", "objects after"],
        )
        cli = Path(sys.executable).with_name("lakeloop")
        reason = cli_missing(cli)
        if reason:
            table.notes.append(f"skipped (CLI not available: {reason})")
            self.emit(table)
            return
        src = self.fresh("import-src")
        total = make_tree(src, sc.import_files)
        lake = self.fresh("import-lake") / "lake"
        base = [str(cli), "--lake", str(lake)]
        try:
            run_cli([*base, "init"])
            run_cli([*base, "ns", "create", NS])
            settle()
            t0 = time.perf_counter()
            run_cli([*base, "put", str(src), f"{NS}/imported"])
            secs = time.perf_counter() - t0
        except RuntimeError as exc:
            table.notes.append(f"failed: {exc}")
            self.emit(table)
            return
        with Lake.open(lake, background=False) as opened:
            objects = opened.namespace(NS).usage()["objects"]
        table.add(
            f"{sc.import_files:,}",
            f_mb(total),
            f"{secs:.2f}",
            f_rate(sc.import_files / secs),
            f"{total / MB / secs:.1f}",
            f"{objects:,}",
        )
        table.notes.append(
            "`lakeloop --lake LAKE put DIR bench/imported` on JSON and text files of 0.2-8 KB "
            "in 100 folders, source files warm in the page cache; includes process start-up"
        )
        self.emit(table)
        settle(src)
        settle(lake.parent)

    # -- RSS ---------------------------------------------------------------------------
    def rss(self) -> None:
        sc = self.scale
        table = Table(
            "RSS as objects grow (separate process, 256-byte objects)",
            [
                "write path",
                "objects",
                "RSS start MiB",
                "RSS end MiB",
                "peak MiB",
                "MiB per million",
                "RSS at 10 M MiB",
                "after gets MiB",
            ],
        )
        ctx = mp.get_context("spawn")
        at_10m: dict[str, float] = {}
        for mode, n in (("put_many", sc.rss_put_many), ("put", sc.rss_put)):
            root = self.fresh(f"rss-{mode}")
            q = ctx.Queue()
            p = ctx.Process(target=_rss_worker, args=(str(root / "lake"), mode, n, q))
            p.start()
            out = q.get(timeout=3600)
            p.join()
            if out.get("error"):
                raise RuntimeError(out["error"])
            samples: list[tuple[int, int]] = out["samples"]
            base = out["base"]
            tail = [s for s in samples if s[0] >= n // 2] or samples
            slope = _slope(tail) * 1e6  # bytes per million objects
            end = samples[-1][1]
            peak = max(s[1] for s in samples)
            proj = end + slope * (10_000_000 - n) / 1e6 if n < 10_000_000 else end
            if n >= RSS_MIN_OBJECTS:
                at_10m[mode] = proj
            label = f"{mode} (sync={out['sync']})"
            table.add(
                label,
                f"{n:,}",
                f_mb(base),
                f_mb(end),
                f_mb(peak),
                f"{slope / MB:+.1f}",
                (("≈" if n < 10_000_000 else "") + f_mb(proj)) if mode in at_10m else "n/a",
                f_mb(out["after_gets"]),
            )
            log(f"rss {mode}: {base / MB:.0f} -> {end / MB:.0f} MiB, {slope / MB:+.1f}/M")
            if out["bad"]:
                self.bad_reads.append(f"RSS, {mode}: {out['bad']:,} of 50,000 gets bad")
            settle(root)
        table.notes.append(
            "start = after opening the lake; slope fitted over the second half of the "
            "samples (after SQLite's page caches have filled); 'RSS at 10 M' is measured "
            "at 10 M objects in --large and extrapolated (≈) otherwise; 'after gets' "
            f"follows 50,000 random gets; n/a: fewer than {RSS_MIN_OBJECTS:,} objects, too "
            "few to get past the caches' warm-up"
        )
        table.notes.append(
            "put_many: batches of 10,000, default settings (sync=always, one fdatasync per "
            "batch); put: 16 threads, sync=none so that the count is reached quickly"
        )
        self.emit(table)
        if not at_10m:
            self.targets.add(
                "RSS at 10 M objects < 300 MB", "< 300 MB", "n/a", "not measured at this scale"
            )
            return
        worst = max(at_10m.values())
        measured = "extrapolated"
        if sc.rss_put_many >= 10_000_000:
            measured = "measured" if sc.rss_put >= 10_000_000 else "put_many measured"
        self.targets.add(
            f"RSS at 10 M objects < 300 MB ({measured})",
            "< 300 MB",
            f"{worst / 1e6:.0f} MB",
            "PASS" if worst < 300e6 else f"MISS (over by {(worst / 300e6 - 1) * 100:.0f}%)",
        )

    # -- compaction -------------------------------------------------------------------
    def compaction(self) -> None:
        sc = self.scale
        n = sc.compact_objects
        root = self.fresh("compact") / "lake"
        settings = {"sync": "always", "volume_size": "8MiB", "compression": "zstd"}
        store = LakeStore(root, create=True, settings=settings)
        ns = store.ns
        rnd = random.Random(7)
        expected: dict[str, bytes] = {}
        for i in range(n):
            expected[f"rec-{i:09d}"] = json_record(rnd, i)
        ns.put_many(expected.items())
        keys = list(expected)
        overwrite = rnd.sample(keys, n // 4)
        gone = set(rnd.sample(sorted(set(keys) - set(overwrite)), n * 15 // 100))
        for k in overwrite:
            expected[k] = json_record(rnd, n + rnd.randrange(n))
        ns.put_many((k, expected[k]) for k in overwrite)
        delete_threads(ns, sorted(gone))
        for k in gone:
            del expected[k]
        live = list(expected)
        usage_before = ns.usage()

        def check() -> int:
            """Objects of a 2,000-key sample that do not read back as written."""
            bad = 0
            for k in random.Random(9).sample(live, min(2000, len(live))):
                try:
                    bad += ns.get(k) != expected[k]
                except Exception as exc:
                    self.first_compaction_error = self.first_compaction_error or repr(exc)
                    bad += 1
            return bad

        wrong_before = check()
        before = Reader(ns, live, expected, 1).run_for(sc.compact_read_seconds)
        during = Reader(ns, live, expected, 2).start()
        t0 = time.perf_counter()
        report = ns.compact()
        secs = time.perf_counter() - t0
        during.stop()
        after = Reader(ns, live, expected, 3).run_for(sc.compact_read_seconds)
        wrong = check()
        usage_after = ns.usage()
        store.close()

        t1 = Table(
            f"Compaction ({n:,} JSON records of ~0.4-1 KB; 25% overwritten, 15% deleted)",
            [
                "volumes in/out",
                "input MiB",
                "live MiB copied",
                "seconds",
                "live MiB/s",
                "input MiB/s",
                "reclaimed MiB",
                "compression",
            ],
        )
        t1.add(
            f"{len(report.volumes_in)}/{len(report.volumes_out)}",
            f_mb(report.bytes_before),
            f_mb(report.logical_bytes),
            f"{secs:.2f}",
            f"{report.logical_bytes / MB / secs:.1f}",
            f"{report.bytes_before / MB / secs:.1f}",
            f_mb(report.reclaimed_bytes),
            f"{report.compression_ratio:.2f}×",
        )
        t1.notes.append(
            f"volume_size 8 MiB, zstd with a trained dictionary; volume bytes "
            f"{f_mb(usage_before['volume_bytes'])} -> {f_mb(usage_after['volume_bytes'])} MiB; "
            f"{report.records_copied:,} records copied, {report.records_dropped:,} dropped; "
            f"bad reads in a 2,000-object check: {wrong_before} before compaction, "
            f"{wrong} after"
        )
        self.emit(t1)
        t2 = Table(
            "Read latency around compaction (reader thread in the same process)",
            ["phase", "gets", "gets/s", "p50 µs", "p99 µs", "p99.9 µs", "bad reads"],
        )
        for phase, rd in (
            ("before", before),
            ("during compaction", during),
            ("after (compressed)", after),
        ):
            lats = rd.lats
            t2.add(
                phase,
                f"{len(lats):,}",
                f_rate(len(lats) / rd.seconds),
                f_us(pct(lats, 0.5)),
                f_us(pct(lats, 0.99)),
                f_us(pct(lats, 0.999)),
                f"{rd.errors:,}",
            )
            if rd.errors:
                self.bad_reads.append(f"compaction, reads {phase}: {rd.errors:,} ({rd.first})")
        if wrong_before or wrong:
            self.bad_reads.append(
                f"compaction check: {wrong_before} bad before, {wrong} after "
                f"({self.first_compaction_error})"
            )
        self.emit(t2)
        self.m["compact_p99_ratio"] = pct(during.lats, 0.99) / max(pct(before.lats, 0.99), 1)
        settle(root.parent)

    # -- run ----------------------------------------------------------------------------
    def run(self) -> None:
        order = [
            ("puts", self.puts),
            ("bulk", self.bulk),
            ("import", self.cli_import),
            ("rss", self.rss),
            ("compaction", self.compaction),
        ]
        for name, fn in order:
            if name in self.sections:
                t0 = time.perf_counter()
                try:
                    fn()
                except Exception as exc:  # report it and go on with the other sections
                    failed = Table(f"Section {name}: FAILED", ["error"])
                    failed.add(f"{type(exc).__name__}: {exc}")
                    self.emit(failed)
                    self.targets.notes.append(f"section {name} failed; its targets are missing")
                log(f"section {name}: {time.perf_counter() - t0:.1f} s")
        self.targets.add(
            "every object read back as written",
            "0 bad reads",
            f"{len(self.bad_reads)} failing checks" if self.bad_reads else "0",
            "FAIL" if self.bad_reads else "PASS",
        )
        self.targets.notes += self.bad_reads
        self.emit(self.targets)


# ---------------------------------------------------------------------------- workers
_WORDS = (
    "alpha beta gamma delta lake loop model train serve gate volume index record object "
    "namespace bucket shard epoch metric loss accuracy label image text token user event "
    "click view page session region north south east west red green blue small large"
)
WORDS = _WORDS.split()


def json_record(rnd: random.Random, i: int) -> bytes:
    doc = {
        "id": i,
        "user": f"user-{rnd.randrange(100_000):05d}",
        "ts": 1_700_000_000 + rnd.randrange(10_000_000),
        "event": rnd.choice(WORDS),
        "tags": rnd.sample(WORDS, 4),
        "score": round(rnd.random(), 4),
        "text": " ".join(rnd.choice(WORDS) for _ in range(rnd.randrange(40, 140))),
    }
    return json.dumps(doc).encode()


def make_tree(root: Path, n: int) -> int:
    """Write *n* small JSON and text files in 100 folders; -> total bytes."""
    rnd = random.Random(11)
    total = 0
    for i in range(n):
        folder = root / f"part-{i % 100:03d}"
        if i < 100:
            folder.mkdir()
        if i % 3:
            data = json_record(rnd, i)
            name = f"{i:07d}.json"
        else:
            words = rnd.randrange(30, 1200)
            data = (" ".join(rnd.choice(WORDS) for _ in range(words)) + "\n").encode()
            name = f"{i:07d}.txt"
        (folder / name).write_bytes(data)
        total += len(data)
    return total


def cli_missing(cli: Path) -> str | None:
    """Why the CLI cannot run the import (None: it can)."""
    if not cli.exists():
        return "no lakeloop executable"
    try:
        out = subprocess.run([str(cli), "--help"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as exc:
        return str(exc)
    if out.returncode != 0:
        last = (out.stderr.strip().splitlines() or ["no output"])[-1]
        return f"`lakeloop --help` failed: {last}"
    text = out.stdout
    for word in ("put", "init", "ns"):
        if word not in text.split():
            return f"no `{word}` command"
    return None


def run_cli(cmd: list[str]) -> None:
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
    if out.returncode != 0:
        msg = (out.stderr.strip() or out.stdout.strip()).splitlines()[-1:]
        raise RuntimeError(f"`lakeloop {' '.join(cmd[3:4])}` exited {out.returncode}: {msg}")


def delete_threads(ns: Any, keys: list[str], threads: int = 16) -> None:
    def work(part: list[str]) -> None:
        for k in part:
            ns.delete(k)

    pool = [threading.Thread(target=work, args=(keys[i::threads],)) for i in range(threads)]
    for th in pool:
        th.start()
    for th in pool:
        th.join()


def _slope(points: list[tuple[int, int]]) -> float:
    if len(points) < 2:
        return 0.0
    mx = sum(p[0] for p in points) / len(points)
    my = sum(p[1] for p in points) / len(points)
    var = sum((p[0] - mx) ** 2 for p in points)
    return sum((p[0] - mx) * (p[1] - my) for p in points) / var if var else 0.0


def put_threads(ns: Any, lo: int, hi: int, payload: bytes, threads: int = 16) -> None:
    """ns.put of keys lo..hi-1 from *threads* threads."""

    def work(t: int) -> None:
        put = ns.put
        for i in range(lo + t, hi, threads):
            put(f"obj/{i:010d}", payload)

    pool = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for th in pool:
        th.start()
    for th in pool:
        th.join()


def _rss_worker(path: str, mode: str, n: int, q: Any) -> None:
    try:
        import psutil

        proc = psutil.Process()
        sync = "always" if mode == "put_many" else "none"
        lake = Lake.open(path, create=True, settings={"sync": sync}, background=False)
        ns = lake.create_namespace(NS)
        payload = os.urandom(256)
        ns.put("warmup", payload)
        gc.collect()
        base = proc.memory_info().rss
        samples: list[tuple[int, int]] = []
        batch = 10_000
        every = max(n // 100, batch)
        done = 0
        while done < n:
            m = min(batch, n - done)
            if mode == "put_many":
                ns.put_many((f"obj/{i:010d}", payload) for i in range(done, done + m))
            else:
                put_threads(ns, done, done + m, payload)
            done += m
            if done % every < batch or done == n:
                samples.append((done, proc.memory_info().rss))
        rnd = random.Random(5)
        bad = 0
        for _ in range(50_000):
            try:
                bad += ns.get(f"obj/{rnd.randrange(n):010d}") != payload
            except Exception:
                bad += 1
        after = proc.memory_info().rss
        lake.close()
        q.put({"base": base, "samples": samples, "after_gets": after, "sync": sync, "bad": bad})
    except BaseException as exc:
        q.put({"error": f"{type(exc).__name__}: {exc}"})


# ---------------------------------------------------------------------------- main
SECTIONS = ("puts", "bulk", "import", "rss", "compaction")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="bench/store.py",
        description=(
            "Benchmark lakeloop's store against one file per object (with and without "
            "fsync) and a SQLite blob table (WAL), side by side on the same file system. "
            "Prints one table per section and a targets section."
        ),
    )
    size = p.add_mutually_exclusive_group()
    size.add_argument(
        "--quick", action="store_true", help="smoke run (about 30 s, small counts, short cells)"
    )
    size.add_argument(
        "--large",
        action="store_true",
        help="paper scale: 3 s cells, 1 M-object bulk load, 10 M objects for RSS (long)",
    )
    p.add_argument("--out", metavar="FILE", help="also write the tables as markdown to FILE")
    p.add_argument(
        "--dir",
        metavar="DIR",
        help=(
            "where to put the data (a temporary folder is made inside it and removed "
            "afterwards); default: the current directory, so that the file system under "
            "test is the one you run from (avoid tmpfs such as /dev/shm)"
        ),
    )
    p.add_argument(
        "--only",
        metavar="SECTIONS",
        help=f"comma-separated subset of: {', '.join(SECTIONS)} (default: all)",
    )
    p.add_argument("--keep", action="store_true", help="keep the data folder afterwards")
    return p.parse_args(argv)


def public_args(argv: list[str]) -> list[str]:
    """The options that shape the run, without the ones naming local paths."""
    out: list[str] = []
    skip = False
    for a in argv:
        if skip:
            skip = False
        elif a in ("--out", "--dir"):
            skip = True
        elif not a.startswith(("--out=", "--dir=")) and a != "--keep":
            out.append(a)
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    scale = SCALES["quick" if args.quick else "large" if args.large else "default"]
    sections = set(SECTIONS)
    if args.only:
        sections = {s.strip() for s in args.only.split(",") if s.strip()}
        unknown = sections - set(SECTIONS)
        if unknown:
            print(f"unknown section(s): {', '.join(sorted(unknown))}", file=sys.stderr)
            return 2
    base = Path(args.dir) if args.dir else Path.cwd()
    base.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="lakeloop-bench-", dir=base))
    started = time.perf_counter()
    when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    cmd = "python bench/store.py" + "".join(f" {a}" for a in public_args(argv or sys.argv[1:]))
    try:
        info = machine(work)
        head = [
            f"lakeloop store benchmark ({scale.name} scale), {when}, {info['lakeloop']}",
            f"machine: {info['cpu']}, {info['ram']} RAM, {info['fs']}",
            f"Python {info['python']}, kernel {info['kernel']}, fsync {info['fsync']}",
        ]
        load0 = os.getloadavg()[0]
        head.append(f"load average (1 min) at the start: {load0:.2f}")
        if load0 > 1.0:
            head.append("WARNING: the machine is busy; other work skews these numbers")
        cpu0 = cpu_times()
        print("\n".join(head), flush=True)
        bench = Bench(scale, work, sections)
        bench.run()
        total = time.perf_counter() - started
        busy, mine = (b - a for a, b in zip(cpu0, cpu_times(), strict=True))
        others = max(busy - mine, 0.0)
        noise = (
            f"CPU used outside this benchmark's processes (other programs and kernel threads, "
            f"this run's writeback included): {others:.0f} s of {total * (os.cpu_count() or 1):.0f}"
            f" s ({others / (total * (os.cpu_count() or 1)) * 100:.0f}%)"
        )
        print(f"total time: {total:.0f} s; {noise}")
        if args.out:
            md = [
                f"### Store benchmark ({scale.name} scale)",
                "",
                f"- date: {when}",
                f"- code: {info['lakeloop']}",
                f"- command: `{cmd}`",
                f"- machine: {info['cpu']}, {info['ram']} RAM, file system {info['fs']}",
                f"- Python {info['python']}, kernel {info['kernel']}",
                f"- fsync: {info['fsync']}",
                f"- cold cache method: {bench.cache_method}",
                f"- total time: {total:.0f} s; load average (1 min) at the start {load0:.2f}",
                f"- {noise}",
                "",
            ]
            md += [t.markdown() + "\n" for t in bench.tables]
            Path(args.out).write_text("\n".join(md))
    finally:
        if args.keep:
            print(f"data kept in {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
