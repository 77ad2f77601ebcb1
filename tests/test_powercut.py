"""Power cuts at every step of a workload (like SQLite's crash tests).

A workload of puts (small and blob-sized), overwrites, deletes, a bulk load, a volume
roll and a compaction runs on a ``PowerCutLayer`` that cuts the power at its k-th file
operation: the disk then holds only what was made durable (files cut back to their last
fsync, names never made durable by a folder fsync gone). The lake is reopened on the real
file system and must hold every acknowledged write, and fsck must find it clean.

The sweep picks cut points in every phase of the workload, from a counting run, and
cycles through the ways of cutting (``MODES``): the operation has no effect or completes
just before the cut; unsynced bytes are all lost, half kept (torn records), or all kept
(what a ``kill -9`` leaves). The index (SQLite) does not go through the layer and keeps
every committed transaction; the tests at the end of the file also roll it back, the way
a power loss may with ``synchronous=NORMAL``.

``lake.fsck()`` runs without ``repair``: what a crash leaves (a torn or unindexed tail, a
volume roll the index lost, a crashed compaction's leftovers) is crash recovery's work,
done when the namespace is opened (and by fsck's own recovery step), not damage.
"""

from __future__ import annotations

import os
import random
import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from _lakemodel import DELETED, Model, digest, fsck_problems, make_data, summary, verify
from lakeloop import Lake
from lakeloop.errors import LakeloopError
from lakeloop.store._faults import PowerCutLayer
from lakeloop.store._index import IndexWriter

SETTINGS: dict[str, Any] = {
    "sync": "always",
    "volume_size": "128KiB",
    "blob_threshold": "64KiB",
    "blob_chunk_size": "16KiB",
    "compaction_free_margin": 0,
    "auto_compact": False,
}

# How a sweep cuts: (op completes before the cut?, what becomes of unsynced bytes)
MODES = [(False, "lose"), (True, "lose"), (False, "torn"), (True, "keep")]

Hook = Callable[[str], None]


def _small(rng: random.Random) -> int:
    return rng.choice([0, rng.randint(1, 512), rng.randint(512, 8192), rng.randint(8192, 30000)])


def workload(
    ns: Any,
    model: Model,
    layer: PowerCutLayer | None,
    *,
    compact: bool = True,
    hook: Hook | None = None,
    seed: int = 7,
) -> None:
    """Every kind of write the store has; stops at the first error (the power is off)."""
    rng = random.Random(seed)

    def phase(name: str) -> None:
        if layer is not None:
            layer.phase = name
        if hook is not None:
            hook(name)

    def put(key: str, size: int) -> None:
        data = make_data(rng, size)
        model.begin(key, digest(data))
        ns.put(key, data)
        model.ack(key, digest(data))

    def delete(key: str) -> None:
        model.begin(key, DELETED)
        ns.delete(key)
        model.ack(key, DELETED)

    phase("puts")
    for i in range(24):
        put(f"obj/{i:03d}", _small(rng))
    phase("blobs")
    put("blob/a", 70_000)
    put("blob/b", 150_000)
    phase("overwrites")
    for i in (1, 3, 5, 7, 13):
        put(f"obj/{i:03d}", _small(rng))
    put("blob/a", 3000)  # a blob overwritten by a record: its file is deleted
    put("obj/009", 90_000)  # a record overwritten by a blob
    phase("deletes")
    for key in ("obj/002", "obj/004", "blob/b", "obj/011", "obj/013"):
        delete(key)
    phase("put_many")
    items = [(f"many/{i:03d}", make_data(rng, _small(rng))) for i in range(30)]
    items.append(("many/blob", make_data(rng, 80_000)))
    for key, data in items:
        model.begin(key, digest(data))
    ns.put_many(items)
    for key, data in items:
        model.ack(key, digest(data))
    phase("roll")
    volumes = len(ns.volumes())
    i = 0
    while len(ns.volumes()) < volumes + 2:  # until the active volume rolled twice
        put(f"roll/{i:03d}", rng.randint(4096, 30000))
        if i % 3 == 2:
            delete(f"roll/{i - 1:03d}")
        i += 1
    if compact:
        phase("compact")
        ns.compact()
    phase("after")
    put("obj/001", _small(rng))
    delete("obj/003")
    put("late/blob", 100_000)
    put("late/small", 100)


def count_ops(tmp: Path, settings: dict[str, Any], *, compact: bool = True) -> PowerCutLayer:
    """A run without a cut: how many operations, in which phases."""
    layer = PowerCutLayer()
    model = Model()
    with Lake.open(
        tmp / "count", create=True, settings=settings, background=False, _fs=layer
    ) as lake:
        layer.phase = "create"
        ns = lake.create_namespace("photos")
        workload(ns, model, layer, compact=compact)
    shutil.rmtree(tmp / "count")
    return layer


def pick_cuts(layer: PowerCutLayer, per_phase: int, *, since: int = 0) -> list[int]:
    """Up to *per_phase* cut points spread over each phase, first and last op included,
    plus every folder sync (where names become durable)."""
    phases: dict[str, list[int]] = {}
    for n, _name, _path, ph in layer.log:
        if n > since:
            phases.setdefault(ph, []).append(n)
    cuts: set[int] = set()
    for ops in phases.values():
        if len(ops) <= per_phase:
            cuts.update(ops)
        else:
            step = (len(ops) - 1) / (per_phase - 1)
            cuts.update(ops[round(i * step)] for i in range(per_phase))
    cuts.update(n for n, name, _p, _ph in layer.log if name == "sync_dir" and n > since)
    return sorted(cuts)


def describe(layer: PowerCutLayer, k: int, after: bool, unsynced: str) -> str:
    _n, name, path, ph = layer.log[k - 1] if k <= len(layer.log) else (k, "-", "", "")
    return (
        f"cut {'after' if after else 'at'} op {k} ({name} {os.path.basename(path)}, "
        f"phase {ph}, unsynced bytes: {unsynced})"
    )


def run_with_cut(
    root: Path,
    k: int,
    *,
    after: bool,
    unsynced: str = "lose",
    settings: dict[str, Any] = SETTINGS,
    compact: bool = True,
    hook: Callable[[str, Path], None] | None = None,
    before_reopen: Callable[[Path], None] | None = None,
    second_cut: int | None = None,
) -> tuple[PowerCutLayer, Model, list[str], Any]:
    """Run the workload with the power cut at op *k*; reopen on the real file system;
    -> (layer, model, problems, fsck report or None if the namespace is gone).

    *second_cut*: before that, reopen on another PowerCutLayer that cuts the power at
    its *second_cut*-th operation, during recovery or the writes that follow it."""
    layer = PowerCutLayer(cut_at=k, cut_after=after, unsynced=unsynced)
    model = Model()
    failure: BaseException | None = None
    lake = Lake.open(root, create=True, settings=settings, background=False, _fs=layer)
    try:
        layer.phase = "create"
        ns = lake.create_namespace("photos")
        workload(
            ns,
            model,
            layer,
            compact=compact,
            hook=None if hook is None else (lambda name: hook(name, Path(ns.root))),
        )
    except (OSError, LakeloopError) as exc:
        failure = exc
    finally:
        lake.close()
    where = describe(layer, k, after, unsynced)
    assert layer.is_off, f"{where}: the workload ended without the cut"
    assert failure is not None, f"{where}: nothing failed after the power cut"
    assert not layer.violations, f"{where}: {layer.violations}"
    if before_reopen is not None:
        before_reopen(root / "namespaces" / "photos")
    if second_cut is not None:
        recover_and_write(root, model, PowerCutLayer(cut_at=second_cut))
    with Lake.open(root, background=False) as lake:
        if not lake.has_namespace("photos"):
            return layer, model, ([] if model.acks == 0 else ["namespace lost"]), None
        ns = lake.namespace("photos")
        problems = verify(ns, model)
        report = lake.fsck()
        if report.ok and not problems:
            # and it takes writes again
            ns.put("obj/001", b"after the power came back")
            assert ns.get("obj/001") == b"after the power came back"
    return layer, model, problems, report


def recover_and_write(root: Path, model: Model, layer: PowerCutLayer) -> None:
    """Reopen (recovery runs) and write a little, until the layer cuts the power."""
    rng = random.Random(99)
    lake = Lake.open(root, background=False, _fs=layer)
    try:
        layer.phase = "recovery"
        ns = lake.namespace("photos")
        layer.phase = "writes after recovery"
        for i in range(4):
            key = f"second/{i}"
            data = make_data(rng, 5000 if i % 2 else 40_000)
            model.begin(key, digest(data))
            ns.put(key, data)
            model.ack(key, digest(data))
        ns.delete("obj/000", missing_ok=True)  # (never written again by the workload)
        model.ack("obj/000", DELETED)
    except (OSError, LakeloopError):
        assert layer.is_off
    finally:
        lake.close()
    assert not layer.violations, layer.violations


def sweep(tmp: Path, cuts: list[tuple[int, bool, str]], **kwargs: Any) -> list[str]:
    failures = []
    for k, after, unsynced in cuts:
        root = tmp / f"lake-{k}-{int(after)}-{unsynced}"
        layer, _model, problems, report = run_with_cut(
            root, k, after=after, unsynced=unsynced, **kwargs
        )
        where = describe(layer, k, after, unsynced)
        if problems:
            failures.append(f"{where}: {summary(problems, 4)}")
        if report is not None and not report.ok:
            failures.append(f"{where}: fsck: {summary(fsck_problems(report), 4)}")
        shutil.rmtree(root)
    return failures


def test_workload_runs_clean_without_a_cut(tmp_path: Path) -> None:
    layer = PowerCutLayer()
    model = Model()
    with Lake.open(
        tmp_path / "lake", create=True, settings=SETTINGS, background=False, _fs=layer
    ) as lake:
        ns = lake.create_namespace("photos")
        workload(ns, model, layer)
        assert verify(ns, model) == []
        report = lake.fsck()
        assert report.ok, report.problems
        assert len(ns.volumes()) >= 2
    assert not layer.violations
    phases = {ph for _n, _name, _p, ph in layer.log}
    assert {"puts", "blobs", "put_many", "roll", "compact", "after"} <= phases
    # A cut after the last operation is a clean shutdown: everything is there.
    layer.power_cut()
    with Lake.open(tmp_path / "lake", background=False) as lake:
        assert verify(lake.namespace("photos"), model) == []
        assert lake.fsck().ok


def test_power_cut_sweep(tmp_path: Path) -> None:
    layer = count_ops(tmp_path, SETTINGS)
    ks = pick_cuts(layer, per_phase=6)
    cuts = [(k, *MODES[i % len(MODES)]) for i, k in enumerate(ks)]
    failures = sweep(tmp_path, cuts)
    assert not failures, f"{len(failures)} of {len(cuts)} cut points failed:" + summary(failures)


@pytest.mark.slow
@pytest.mark.parametrize(
    "after,unsynced", MODES, ids=[f"{'after' if a else 'at'}-{u}" for a, u in MODES]
)
def test_power_cut_every_op(tmp_path: Path, after: bool, unsynced: str) -> None:
    """Exhaustive: a cut at every operation of the workload."""
    layer = count_ops(tmp_path, SETTINGS)
    cuts = [(k, after, unsynced) for k in range(1, layer.ops + 1)]
    failures = sweep(tmp_path, cuts)
    assert not failures, f"{len(failures)} of {len(cuts)} cut points failed:" + summary(failures)


def test_power_cut_during_recovery(tmp_path: Path) -> None:
    """A second power cut while the lake recovers from the first (cutting a torn tail,
    indexing an unindexed one) or right after: recovery must be idempotent."""
    layer = count_ops(tmp_path, SETTINGS)
    # first cuts that leave recovery work: torn appends, syncs done but not indexed
    firsts = [
        n
        for n, name, _p, ph in layer.log
        if name in ("write", "sync") and ph in ("puts", "blobs", "put_many", "roll", "after")
    ][::18]
    failures = []
    for k in firsts:
        for j in range(1, 9):
            for after, unsynced in ((False, "torn"), (True, "lose")):
                root = tmp_path / f"lake-{k}-{j}-{unsynced}"
                _l, _m, problems, report = run_with_cut(
                    root, k, after=after, unsynced=unsynced, second_cut=j
                )
                where = f"{describe(layer, k, after, unsynced)}, then at op {j} of recovery"
                if problems:
                    failures.append(f"{where}: {summary(problems, 4)}")
                if report is not None and not report.ok:
                    failures.append(f"{where}: fsck: {summary(fsck_problems(report), 4)}")
                shutil.rmtree(root)
    assert not failures, f"{len(failures)} failed:" + summary(failures)


def test_sync_none_loses_acknowledged_writes(tmp_path: Path) -> None:
    """With sync="none" nothing is fsynced: the same sweep must see losses (so it can fail)."""
    settings = {**SETTINGS, "sync": "none"}
    layer = count_ops(tmp_path, settings)
    ks = pick_cuts(layer, per_phase=2)
    lost = 0
    for k in ks:
        root = tmp_path / f"lake-{k}"
        _layer, model, problems, report = run_with_cut(root, k, after=False, settings=settings)
        if problems or (report is not None and not report.ok) or (report is None and model.acks):
            lost += 1
        shutil.rmtree(root)
    assert lost > 0, "a power cut under sync='none' lost nothing: the sweep cannot fail"


# ---------------------------------------------------------------------------------------
# The index loses its last transactions too.
#
# The index is SQLite in WAL mode with synchronous=NORMAL: a commit is not fsynced, and a
# power loss may take every transaction since the last checkpoint
# (https://sqlite.org/pragma.html#pragma_synchronous). The volumes are fsynced before a
# put returns, so nothing acknowledged is lost, but the index may come back *behind*
# them, even by whole volume rolls. These tests take the index's database file at a
# checkpoint, go on writing (without another checkpoint: the WAL stays far below
# SQLite's 1000-page auto-checkpoint and no FULL commit happens without compaction),
# cut the power, and put the checkpointed index back with its WAL gone.


_WAL_AUTOCHECKPOINT_BYTES = 1000 * 4096


def _checkpoint(ns_root: Path) -> bytes:
    """Checkpoint the index's WAL into its database file, as SQLite itself does now and
    then; -> the database file's bytes, a state a power loss may revert the index to."""
    conn = sqlite3.connect(ns_root / "index.sqlite")
    try:
        busy, _log, _done = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    finally:
        conn.close()
    assert busy == 0
    return (ns_root / "index.sqlite").read_bytes()


class IndexRevert:
    """The index's last durable state, and a way back to it after a power cut.

    It starts at a checkpoint taken when the workload enters *phase*; every later
    commit made with synchronous=FULL (the store asks for it where an index-only change
    must survive) moves it forward, since SQLite fsyncs the WAL for those. (Observing
    them wraps ``IndexWriter.__exit__``: the commit itself is untouched.)
    """

    def __init__(self, phase: str, monkeypatch: pytest.MonkeyPatch | None = None) -> None:
        self.phase = phase
        self.ns_root: Path | None = None
        self.db: bytes | None = None
        self.wal: bytes | None = None
        self.full_commits = 0
        if monkeypatch is not None:
            original = IndexWriter.__exit__

            def exit_and_capture(w: IndexWriter, exc_type: Any, exc: Any, tb: Any) -> None:
                original(w, exc_type, exc, tb)
                if exc_type is None and w._full_sync and self.db is not None:
                    self.full_commits += 1
                    self.capture()

            monkeypatch.setattr(IndexWriter, "__exit__", exit_and_capture)

    def hook(self, name: str, ns_root: Path) -> None:
        self.ns_root = ns_root
        if name == self.phase:
            self.db, self.wal = _checkpoint(ns_root), None
        wal = ns_root / "index.sqlite-wal"
        if wal.exists():
            assert wal.stat().st_size < _WAL_AUTOCHECKPOINT_BYTES

    def capture(self) -> None:
        assert self.ns_root is not None
        self.db = (self.ns_root / "index.sqlite").read_bytes()
        wal = self.ns_root / "index.sqlite-wal"
        self.wal = wal.read_bytes() if wal.exists() else None

    def revert(self, ns_root: Path) -> None:
        if self.db is None:  # the cut came first: the index is as it was
            return
        for suffix in ("-wal", "-shm"):
            (ns_root / f"index.sqlite{suffix}").unlink(missing_ok=True)
        (ns_root / "index.sqlite").write_bytes(self.db)
        if self.wal is not None:
            (ns_root / "index.sqlite-wal").write_bytes(self.wal)


@pytest.mark.parametrize("phase", ["puts", "overwrites", "put_many"])
def test_index_reverted_to_last_checkpoint(tmp_path: Path, phase: str) -> None:
    """No cut of the volumes at all: a clean run, then the index loses everything since
    the checkpoint. Every acknowledged write must still read back after reopening."""
    layer = count_ops(tmp_path, SETTINGS, compact=False)
    revert = IndexRevert(phase)
    # a cut after the very last operation loses nothing of the volumes
    failures = sweep(
        tmp_path,
        [(layer.ops, True, "lose")],
        compact=False,
        hook=revert.hook,
        before_reopen=revert.revert,
    )
    assert revert.db is not None
    assert not failures, summary(failures)


def test_power_cut_sweep_with_index_reverted(tmp_path: Path) -> None:
    layer = count_ops(tmp_path, SETTINGS, compact=False)
    start = min(n for n, _name, _p, ph in layer.log if ph == "blobs")
    ks = pick_cuts(layer, per_phase=4, since=start)
    revert = IndexRevert("blobs")
    cuts = [(k, *MODES[i % len(MODES)]) for i, k in enumerate(ks)]
    failures = sweep(tmp_path, cuts, compact=False, hook=revert.hook, before_reopen=revert.revert)
    assert not failures, f"{len(failures)} of {len(cuts)} cut points failed:" + summary(failures)


def test_pins_survive_index_revert(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A pin lives only in the index: once ``pin`` returns it must survive a power loss
    (and so must an ``unpin``: it deletes the blob files of the versions it frees)."""
    revert = IndexRevert("start", monkeypatch)
    with Lake.open(tmp_path / "lake", create=True, settings=SETTINGS, background=False) as lake:
        ns = lake.create_namespace("photos")
        old_small = ns.put("small", b"version one")
        old_blob = ns.put("blob", b"b" * 100_000)
        revert.hook("start", Path(ns.root))
        ns.pin("run-1", [old_small.version])
        ns.pin("run-2", [old_blob.version])
        ns.put("small", b"version two")
        ns.put("blob", b"c" * 90_000)
        ns.unpin("run-2")  # the old blob's file goes
        ns.put("other", b"x")
    revert.revert(Path(ns.root))
    with Lake.open(tmp_path / "lake", background=False) as lake:
        ns = lake.namespace("photos")
        assert ns.get("small") == b"version two"
        assert ns.get("small", version=old_small.version) == b"version one"
        assert ns.pins() == {"run-1": 1}
        assert ns.get("blob") == b"c" * 90_000
        ns.compact()
        assert ns.get("small", version=old_small.version) == b"version one"
        report = lake.fsck()
        assert report.ok, report.problems
