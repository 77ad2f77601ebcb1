"""fsck: verify every record, every index row and every blob of a lake.

For each volume the records are scanned in order and merged with the index rows that
point into that volume (both sorted by offset), so memory stays flat however many objects
there are. ``repair`` removes index rows whose bytes are damaged (the objects are reported
as lost, never served), deletes leftovers of crashed compactions and orphan blob files,
and rebuilds an index that cannot be opened; ``rebuild_index`` rebuilds from the volumes
in any case.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lakeloop.errors import LakeloopError, NamespaceUnavailable
from lakeloop.store import _record as rec
from lakeloop.store._blob import BlobReader
from lakeloop.store._index import Row

if TYPE_CHECKING:
    from lakeloop.store.lake import Lake
    from lakeloop.store.namespace import Namespace

__all__ = ["FsckReport", "fsck"]


@dataclass
class FsckReport:
    """``ok`` is False when a problem remains (after repair, when repairing)."""

    namespaces: list[str] = field(default_factory=list)
    objects: int = 0
    records: int = 0
    volumes: int = 0
    blobs: int = 0
    problems: list[dict[str, Any]] = field(default_factory=list)
    repairs: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """No damage left: repaired problems and crash residue (which holds no
        acknowledged data) do not count."""
        return not any(not (p.get("repaired") or p.get("residue")) for p in self.problems)

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "namespaces": self.namespaces,
            "objects": self.objects,
            "records": self.records,
            "volumes": self.volumes,
            "blobs": self.blobs,
            "problems": self.problems,
            "repairs": self.repairs,
            "seconds": self.seconds,
        }


def fsck(
    lake: Lake, *, repair: bool, rebuild_index: bool, names: list[str] | None, deep: bool
) -> FsckReport:
    started = time.monotonic()
    report = FsckReport()
    targets = names if names is not None else lake.namespaces(include_internal=True)
    for name in targets:
        report.namespaces.append(name)
        try:
            ns = lake.namespace(name)
        except NamespaceUnavailable as exc:
            report.problems.append(
                {"namespace": name, "kind": "index-unreadable", "detail": str(exc)}
            )
            if repair or rebuild_index:
                _rebuild_unopenable(lake, name, report)
            continue
        if rebuild_index:
            _rebuild(lake, ns, report, "requested")
            ns = lake.namespace(name)
        _check_namespace(ns, report, repair=repair, deep=deep)
    report.seconds = round(time.monotonic() - started, 3)
    return report


def _rebuild(lake: Lake, ns: Namespace, report: FsckReport, reason: str) -> None:
    name = ns.name
    # The compaction lock too (taken first, as compaction does): a compaction running
    # meanwhile would swap into the replaced index and delete volumes the new one uses.
    ns._compact_lock.acquire(max(ns._settings["lock_timeout"], 600.0), op="rebuild index")
    try:
        ns._lock.acquire(ns._settings["lock_timeout"], op="rebuild index")
        try:
            result = ns._rebuild_locked(reason=reason)
        finally:
            ns._lock.release()
    finally:
        ns._compact_lock.release()
    lake._forget(name)
    report.repairs.append(
        f"{name}: index rebuilt from {result['volumes']} volumes "
        f"({result['objects']} objects, {len(result['corrupt'])} damaged stretches skipped)"
    )


def _rebuild_unopenable(lake: Lake, name: str, report: FsckReport) -> None:
    from lakeloop.store._lock import ProcessLock
    from lakeloop.store._rebuild import rebuild_index

    root = str(lake._ns_path(name))
    index_path = os.path.join(root, "index.sqlite")
    timeout = lake.settings["lock_timeout"]
    # The same locks, in the same order, as compaction and a writer take: nobody may
    # write or swap into this namespace while its index is replaced.
    compact_lock = ProcessLock(os.path.join(root, "compact.lock"), f"namespace {name}")
    writer_lock = ProcessLock(os.path.join(root, "writer.lock"), f"namespace {name}")
    compact_lock.acquire(max(timeout, 600.0), op="rebuild index")
    try:
        writer_lock.acquire(timeout, op="rebuild index")
        try:
            # Move the damaged index aside (kept for inspection), then rebuild.
            stamp = int(time.time())
            for suffix in ("", "-wal", "-shm"):
                src = index_path + suffix
                if os.path.exists(src):
                    os.replace(src, os.path.join(root, f"index.damaged-{stamp}.sqlite{suffix}"))

            class _Bare:
                pass

            bare: Any = _Bare()
            bare.root, bare.name = root, name
            result = rebuild_index(bare, reason="index could not be opened")
        finally:
            writer_lock.release()
            writer_lock.close()
    finally:
        compact_lock.release()
        compact_lock.close()
    report.problems[-1]["repaired"] = True
    report.repairs.append(
        f"{name}: unreadable index moved aside and rebuilt ({result['objects']} objects)"
    )


def _check_namespace(ns: Namespace, report: FsckReport, *, repair: bool, deep: bool) -> None:
    from lakeloop.store._compact import cleanup_leftovers

    name = ns.name
    # Crash recovery first, repairing or not: it is what the next writer and the next
    # compaction do anyway, and what a crash leaves for them is not damage. A writer's
    # refresh indexes a complete unindexed tail, cuts a torn one and re-indexes a volume
    # the index lost; compaction deletes a crashed compaction's leftovers. Without
    # repair, a busy lock skips the step (its holder has recovered).
    if repair:
        with ns._writing("fsck"):
            pass
    elif ns._lock.try_acquire():
        try:
            ns._refresh()
        finally:
            ns._lock.release()
    if ns._compact_lock.try_acquire():
        try:
            n = cleanup_leftovers(ns)
            if n:
                report.repairs.append(f"{name}: removed {n} leftovers of crashes (volumes, blobs)")
        finally:
            ns._compact_lock.release()
    index = ns._index  # (a refresh may have rebuilt it)
    vols = index.volumes()
    registered = {v["id"] for v in vols}
    vol_dir = ns._vol_dir
    on_disk = set()
    for entry in os.listdir(vol_dir) if os.path.isdir(vol_dir) else []:
        if entry.endswith(".vol"):
            try:
                on_disk.add(int(entry[:-4]))
            except ValueError:
                continue
    for vid in sorted(on_disk - registered):
        report.problems.append(
            {
                "namespace": name,
                "kind": "unregistered-volume",
                "volume": ns._vol_path(vid),
                "detail": "volume file not in the index (run fsck --rebuild-index)",
            }
        )
    lost: list[tuple[int, bytes]] = []
    for v in vols:
        if v["state"] not in ("active", "sealed"):
            report.problems.append(
                {
                    "namespace": name,
                    "kind": "leftover-volume",
                    "volume": ns._vol_path(v["id"]),
                    "detail": v["state"],
                }
            )
            continue
        report.volumes += 1
        path = ns._vol_path(v["id"])
        if v["id"] not in on_disk:
            report.problems.append({"namespace": name, "kind": "missing-volume", "volume": path})
            for row in _rows(ns, v["id"]):
                lost.append((row.seq, row.key))
            continue
        if deep:
            _check_volume(ns, v["id"], path, report, lost)
    totals = index.reader.execute("SELECT coalesce(sum(size),0), count(*) FROM objects").fetchone()
    report.objects += int(totals[1])
    if tuple(totals) != index.totals():
        report.problems.append(
            {
                "namespace": name,
                "kind": "accounting",
                "detail": f"totals {index.totals()} != rows {tuple(totals)}",
            }
        )
    # blobs nobody references: residue of a put killed before its commit. The recovery
    # step above deletes them when it could take the locks; otherwise they are reported,
    # and do not fail the check (they hold no acknowledged data).
    from lakeloop.store._compact import orphan_blobs

    for path in orphan_blobs(ns):
        problem: dict[str, Any] = {"namespace": name, "kind": "orphan-blob", "path": path}
        if repair:
            os.unlink(path)
            problem["repaired"] = True
            report.repairs.append(f"{name}: deleted orphan blob {os.path.basename(path)}")
        else:
            problem["residue"] = True
        report.problems.append(problem)
    if deep:
        for row in index.reader.execute(
            "SELECT seq, key, size, blob FROM objects WHERE blob IS NOT NULL"
            " UNION ALL SELECT seq, key, size, blob FROM versions WHERE blob IS NOT NULL"
        ).fetchall():
            report.blobs += 1
            label = f"{name}/{row[1].decode(errors='replace')}"
            try:
                with BlobReader(ns._blob_path(row[3]), row[2], label=label) as b:
                    b.verify()
            except LakeloopError as exc:
                report.problems.append(
                    {"namespace": name, "kind": "damaged-blob", "key": label, "detail": str(exc)}
                )
                lost.append((row[0], row[1]))
    if lost:
        _report_lost(ns, lost, report, repair)
    if repair:
        _rewrite_damaged(ns, report)


def _rows(ns: Namespace, vol: int) -> list[Row]:
    conn = ns._index.reader
    cols = "seq, key, vol, off, len, size, md5, flags, mtime, meta, blob"
    return [
        Row(*r)
        for r in conn.execute(
            f"SELECT {cols} FROM objects WHERE vol = ?1 UNION ALL "
            f"SELECT {cols} FROM versions WHERE vol = ?1 ORDER BY 4",
            (vol,),
        )
    ]


def _check_volume(
    ns: Namespace, vol: int, path: str, report: FsckReport, lost: list[tuple[int, bytes]]
) -> None:
    name = ns.name
    fd = os.open(path, os.O_RDONLY)
    try:
        try:
            rec.read_volume_header(os.pread(fd, rec.VOLUME_HEADER_SIZE, 0))
        except rec.RecordError as exc:
            report.problems.append(
                {
                    "namespace": name,
                    "kind": "damaged-volume-header",
                    "volume": path,
                    "detail": str(exc),
                }
            )
        # rows pointing into this volume, by offset; merged with the physical scan
        conn = ns._index.reader
        cur = conn.execute(
            "SELECT seq, key, off, len FROM objects WHERE vol = ?1 UNION ALL "
            "SELECT seq, key, off, len FROM versions WHERE vol = ?1 ORDER BY 3",
            (vol,),
        )
        pending = cur.fetchmany(1000)
        pi = 0

        def next_row() -> tuple[int, bytes, int, int] | None:
            nonlocal pending, pi
            if pi >= len(pending):
                pending = cur.fetchmany(1000)
                pi = 0
                if not pending:
                    return None
            row = pending[pi]
            pi += 1
            return row

        def bad_row(row: tuple[int, bytes, int, int], kind: str) -> None:
            """An index row with no matching record: the object is lost."""
            report.problems.append(
                {
                    "namespace": name,
                    "kind": kind,
                    "volume": path,
                    "offset": row[2],
                    "key": row[1].decode(errors="replace"),
                }
            )
            lost.append((row[0], row[1]))

        row = next_row()
        for item in rec.scan_volume(fd):
            if isinstance(item, rec.Corrupt):
                report.problems.append(
                    {
                        "namespace": name,
                        "kind": "damaged-record",
                        "volume": path,
                        "offset": item.offset,
                        "detail": item.reason,
                    }
                )
                while row is not None and row[2] < item.end:
                    if row[2] >= item.offset:
                        lost.append((row[0], row[1]))
                    row = next_row()
                continue
            report.records += 1
            while row is not None and row[2] < item.offset:
                bad_row(row, "dangling-index-row")
                row = next_row()
            if row is not None and row[2] == item.offset:
                if row[0] != item.seq or row[1] != item.key:
                    bad_row(row, "index-mismatch")
                row = next_row()
        while row is not None:
            bad_row(row, "dangling-index-row")
            row = next_row()
    finally:
        os.close(fd)


def _rewrite_damaged(ns: Namespace, report: FsckReport) -> None:
    """Compact volumes with damaged stretches, so the damage is gone, not just unreferenced."""
    from lakeloop.store._compact import compact_volumes

    paths = {
        p["volume"]
        for p in report.problems
        if p["namespace"] == ns.name and p["kind"] == "damaged-record"
    }
    if not paths:
        return
    ids = sorted(v["id"] for v in ns._index.volumes() if ns._vol_path(v["id"]) in paths)
    result = compact_volumes(ns, ids)
    for p in report.problems:
        if p["namespace"] == ns.name and p["kind"] == "damaged-record":
            p["repaired"] = True
    report.repairs.append(
        f"{ns.name}: rewrote volumes {ids} without their damaged records "
        f"({result.records_copied} records kept)"
    )


def _report_lost(
    ns: Namespace, lost: list[tuple[int, bytes]], report: FsckReport, repair: bool
) -> None:
    for seq, key in lost:
        problem = {
            "namespace": ns.name,
            "kind": "lost-object",
            "key": key.decode(errors="replace"),
            "version": seq,
        }
        report.problems.append(problem)
    if not repair:
        return
    with ns._writing("fsck"), ns._index.write() as w:
        for seq, _key in lost:
            w.conn.execute("DELETE FROM objects WHERE seq = ?", (seq,))
            w.conn.execute("DELETE FROM versions WHERE seq = ?", (seq,))
            w.conn.execute("DELETE FROM pins WHERE seq = ?", (seq,))
    ns._reset_writer()
    for p in report.problems:
        if p["namespace"] == ns.name and p["kind"] in (
            "lost-object",
            "damaged-record",
            "dangling-index-row",
            "index-mismatch",
            "damaged-blob",
            "missing-volume",
        ):
            p["repaired"] = True
    report.repairs.append(
        f"{ns.name}: removed {len(lost)} damaged objects from the index "
        "(they read as missing now, never as wrong bytes)"
    )
