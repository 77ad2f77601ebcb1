"""Crash recovery of a namespace's writer state, run under the writer lock.

A writer that takes the lock after another process (or after a crash) cannot trust what
it cached: ``refresh`` reloads the state from the index and reconciles it with the
volumes, which are the truth. What a crash can leave, and what is done about it:

- complete records past the index's high-water mark (a writer died between fsync and
  commit): indexed (``recover_tail``);
- a torn record at the end of the active volume: cut;
- a volume a roll created but the index lost (a crash before the commit, or a power loss
  that took SQLite's last, unsynced commits): taken over (``roll_forward``);
- an active volume shorter than the index says (a power cut under ``sync = "none"``),
  or volumes with no index at all: the index is rebuilt from the volumes.
"""

from __future__ import annotations

import json
import os
import time
from typing import TYPE_CHECKING, Any

from lakeloop.store import _record as rec
from lakeloop.store._index import SQLiteIndex

if TYPE_CHECKING:
    from lakeloop.store.namespace import Namespace

__all__ = ["rebuild_locked", "recover_at_open", "refresh"]


def recover_at_open(ns: Namespace) -> None:
    """Run crash recovery now if a crash left work for it (see ``refresh``).

    After a power loss the index may be behind the volumes (SQLite's last commits
    are not fsynced): readers must see every acknowledged write at once, not only
    after the next write. Cheap when there is nothing to do; skipped when another
    process holds the writer lock (it recovered) or the lake cannot be written.
    """
    try:
        active_vol = ns._index.state("active_vol", 0)
        needed = unknown_volume(ns, active_vol)[1] >= 0
        if active_vol and not needed:
            hwm = ns._index.state("hwm", rec.VOLUME_HEADER_SIZE)
            try:
                needed = os.stat(ns._vol_path(active_vol)).st_size != hwm
            except FileNotFoundError:
                needed = True
        if not needed or not ns._lock.try_acquire():
            return
    except Exception:
        return
    try:
        refresh(ns)
    except Exception:
        ns._reset_writer()  # read-only, or worse: the first writer tries again
    finally:
        ns._lock.release()


def refresh(ns: Namespace) -> None:
    """Bring this process's writer state up to date (called under the writer lock).

    Another process may have written, rolled a volume or compacted since we last held
    the lock; a crash may have left an unindexed or torn tail on the active volume.
    """
    if ns._active is not None and not ns._lock.others_held:
        return  # nobody else wrote since we did: what we cached is still true
    try:
        ino = os.stat(ns._index_path).st_ino
    except FileNotFoundError:
        ino = -1
    if ino != ns._index_ino:
        # The index was rebuilt (fsck) by another process: reopen it.
        ns._index.close()
        ns._index = SQLiteIndex(ns._index_path)
        ns._index_ino = os.stat(ns._index_path).st_ino
    ns._reset_writer()
    os.makedirs(ns._vol_dir, exist_ok=True)
    active_vol = ns._index.state("active_vol", 0)
    if active_vol == 0:
        unknown, unknown_size = unknown_volume(ns, active_vol)
        if unknown_size > rec.VOLUME_HEADER_SIZE:
            # volumes with records, none registered: the index was lost or deleted
            ns.last_recovery = rebuild_locked(ns, reason="volumes unknown to the index")
            refresh_after_rebuild(ns)
            return
        if unknown_size >= 0:
            ns._fs.unlink(unknown)  # only a header: a crash before the first commit
        create_first_volume(ns)
        active_vol = ns._index.state("active_vol", 0)
    hwm = ns._index.state("hwm", rec.VOLUME_HEADER_SIZE)
    ns._next_seq = ns._index.state("next_seq", 1)
    path = ns._vol_path(active_vol)
    try:
        actual = os.stat(path).st_size
    except FileNotFoundError:
        actual = -1
    if actual < hwm:
        # The index knows records the volume lost (a power cut under sync="none", or
        # damage): the volumes are the truth, so rebuild the index from them.
        ns.last_recovery = rebuild_locked(ns, reason="active volume shorter than index")
        refresh_after_rebuild(ns)
        return
    ns._active = ns._fs.open_append(path)
    ns._active_id = active_vol
    if actual > hwm:
        recover_tail(ns, hwm, actual)
    roll_forward(ns)


def roll_forward(ns: Namespace) -> None:
    """Take over a volume that a roll created but the index lost (``unknown_volume``):
    seal the active volume, make that one active and index its records as a tail.
    One more transaction, not a rebuild: safe while another process compacts."""
    while True:
        assert ns._active is not None
        vol = ns._index.state("next_vol", 1)
        path = ns._vol_path(vol)
        try:
            size = os.stat(path).st_size
        except FileNotFoundError:
            return
        if size <= rec.VOLUME_HEADER_SIZE:
            ns._fs.unlink(path)  # only a header: a roll that crashed before its commit
            return
        with ns._index.write() as w:
            w.update_volume(
                ns._active_id,
                state="sealed",
                sealed_ns=time.time_ns(),
                size=ns._active.size(),
            )
            w.add_volume(vol, "active", time.time_ns(), rec.VOLUME_HEADER_SIZE, ns._next_seq)
            w.set_state(active_vol=vol, next_vol=vol + 1, hwm=rec.VOLUME_HEADER_SIZE)
        ns._active.close()
        ns._active = ns._fs.open_append(path)
        ns._active_id = vol
        recover_tail(ns, rec.VOLUME_HEADER_SIZE, size)


def unknown_volume(ns: Namespace, active_vol: int) -> tuple[str, int]:
    """A volume file the index never allocated -> (path, size), or ("", -1).

    The file at ``next_vol`` is one: a volume roll (or the first volume) whose
    transaction the index lost, by a crash before the commit or a power loss that
    took SQLite's last, not yet synced (synchronous=NORMAL) transactions. With no
    volume registered at all (the index was deleted), any volume file is one. If it
    holds records, they may have been acknowledged: they must be indexed.
    """
    paths = [ns._vol_path(ns._index.state("next_vol", 1))]
    if active_vol == 0 and os.path.isdir(ns._vol_dir):
        paths += [
            os.path.join(ns._vol_dir, n) for n in os.listdir(ns._vol_dir) if n.endswith(".vol")
        ]
    found = ("", -1)
    for path in paths:
        try:
            size = os.stat(path).st_size
        except FileNotFoundError:
            continue
        if size > found[1]:
            found = (path, size)
    return found


def refresh_after_rebuild(ns: Namespace) -> None:
    ns._index.close()
    ns._index = SQLiteIndex(ns._index_path)
    ns._index_ino = os.stat(ns._index_path).st_ino
    active_vol = ns._index.state("active_vol", 0)
    if active_vol == 0:  # no volume file survived (a power cut under sync="none")
        create_first_volume(ns)
        active_vol = ns._index.state("active_vol", 0)
    ns._next_seq = ns._index.state("next_seq", 1)
    ns._active = ns._fs.open_append(ns._vol_path(active_vol))
    ns._active_id = active_vol


def create_first_volume(ns: Namespace) -> None:
    with ns._index.write() as w:
        vol = max(w.get_state("next_vol", 1), 1)
        ns._new_volume_file(vol)
        next_seq = w.get_state("next_seq", 1)
        w.add_volume(vol, "active", time.time_ns(), rec.VOLUME_HEADER_SIZE, next_seq)
        w.set_state(active_vol=vol, next_vol=vol + 1, hwm=rec.VOLUME_HEADER_SIZE, next_seq=next_seq)


def recover_tail(ns: Namespace, hwm: int, actual: int) -> None:
    """Index the complete records past the index's high-water mark; cut a torn tail."""
    assert ns._active is not None
    fd = os.open(ns._vol_path(ns._active_id), os.O_RDONLY)
    good_end = hwm
    applied = 0
    try:
        records: list[rec.Record] = []
        for item in rec.scan_volume(fd, hwm, actual):
            if isinstance(item, rec.Corrupt):
                break
            records.append(item)
            good_end = item.offset + item.length
    finally:
        os.close(fd)
    if good_end < actual:
        ns._active.truncate(good_end)
    if ns.setting("sync") != "none":
        ns._active.sync()
    if records:
        with ns._index.write() as w:
            for r in records:
                if r.flags & rec.DICT:
                    continue
                if r.is_tombstone:
                    w.delete(r.key, r.seq)
                else:
                    meta = r.meta.decode() if r.meta else None
                    blob = json.loads(r.data)["file"] if r.flags & rec.BLOB else None
                    w.upsert(
                        [
                            (
                                r.seq,
                                r.key,
                                ns._active_id,
                                r.offset,
                                r.length,
                                r.size,
                                r.md5,
                                r.flags,
                                r.ts_ns,
                                meta,
                                blob,
                            )
                        ]
                    )
                applied += 1
                ns._next_seq = max(ns._next_seq, r.seq + 1)
            w.grow_volume(ns._active_id, good_end, records[0].seq, records[-1].seq)
            w.set_state(next_seq=ns._next_seq, hwm=good_end)
    else:
        with ns._index.write() as w:
            w.set_state(hwm=good_end)
    ns.last_recovery = {"indexed_tail_records": applied, "cut_bytes": actual - good_end}


def rebuild_locked(ns: Namespace, reason: str) -> dict[str, Any]:
    from lakeloop.store._rebuild import rebuild_index

    ns._reset_writer()
    ns._index.close()
    report = rebuild_index(ns, reason=reason)
    return report
