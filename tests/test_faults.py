"""Faults: damaged bytes, full disks, broken indexes, power cuts inside compaction.

Every test works on a real lake on disk; faults come from editing its files, or from the
fault-injecting file layers of ``lakeloop.store._faults``.
"""

from __future__ import annotations

import errno
import os
import random
import shutil
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from _lakemodel import DELETED, Model, digest, fsck_problems, make_data, summary, verify
from lakeloop import Lake
from lakeloop.errors import (
    ChecksumError,
    InsufficientSpace,
    LakeloopError,
    NamespaceUnavailable,
    NotFound,
    QuotaExceeded,
    StoreError,
)
from lakeloop.store import _record as rec
from lakeloop.store._faults import FaultLayer, PowerCutLayer
from lakeloop.store._fs import OSFileLayer

SETTINGS: dict[str, Any] = {
    "volume_size": "64KiB",
    "blob_threshold": "32KiB",
    "blob_chunk_size": "8KiB",
    "compaction_free_margin": 0,
    "auto_compact": False,
}


def open_lake(root: Path, fs: Any = None, **settings: Any) -> Lake:
    if (root / "lake.toml").exists():
        return Lake.open(root, background=False, _fs=fs)
    return Lake.open(root, create=True, settings={**SETTINGS, **settings}, background=False, _fs=fs)


def fill(ns: Any, model: Model, rng: random.Random, n: int, prefix: str = "obj") -> None:
    """*n* objects of mixed sizes (a few blobs), then overwrites and deletes (garbage)."""
    for i in range(n):
        size = rng.choice([10, 300, 2000, 9000]) if i % 17 else 40_000
        data = make_data(rng, size)
        ns.put(f"{prefix}/{i:04d}", data)
        model.ack(f"{prefix}/{i:04d}", digest(data))
    for i in range(0, n, 5):
        data = make_data(rng, 1500)
        ns.put(f"{prefix}/{i:04d}", data)
        model.ack(f"{prefix}/{i:04d}", digest(data))
    for i in range(3, n, 7):
        ns.delete(f"{prefix}/{i:04d}")
        model.ack(f"{prefix}/{i:04d}", DELETED)


def assert_clean(lake: Lake, ns: Any, model: Model) -> None:
    problems = verify(ns, model)
    assert not problems, summary(problems)
    report = lake.fsck()
    assert report.ok, summary(fsck_problems(report))


def find(path: str | Path, data: bytes) -> int:
    """Where *data* sits in a file (it must be there once)."""
    raw = Path(path).read_bytes()
    at = raw.find(data)
    assert at >= 0 and raw.find(data, at + 1) < 0
    return at


def flip(path: str | Path, at: int) -> None:
    with open(path, "r+b") as f:
        f.seek(at)
        b = f.read(1)
        f.seek(at)
        f.write(bytes([b[0] ^ 0x5A]))


# ------------------------------------------------------------------ damaged bytes


@pytest.mark.parametrize("where", ["data", "header"])
def test_flipped_byte_in_a_record(tmp_path: Path, where: str) -> None:
    rng = random.Random(1)
    with open_lake(tmp_path / "lake") as lake:
        ns = lake.create_namespace("photos")
        blobs = {f"k{i:02d}": rng.randbytes(rng.randint(200, 3000)) for i in range(40)}
        for key, data in blobs.items():
            ns.put(key, data)
        victim = "k17"
        vol = next(v.path for v in ns.volumes() if blobs[victim] in Path(v.path).read_bytes())
    at = find(vol, blobs[victim])
    # the record header is 64 bytes before the key (3 bytes) and the data
    flip(vol, at + len(blobs[victim]) // 2 if where == "data" else at - 3 - 64 + 20)

    with open_lake(tmp_path / "lake") as lake:
        ns = lake.namespace("photos")
        with pytest.raises(ChecksumError) as err:
            ns.get(victim)
        assert err.value.volume == vol
        assert err.value.offset is not None and err.value.offset == at - 3 - 64
        assert "fsck" in str(err.value)
        for key, data in blobs.items():  # everything else still reads
            if key != victim:
                assert ns.get(key) == data
        report = lake.fsck()
        assert not report.ok
        damaged = [p for p in report.problems if p["kind"] == "damaged-record"]
        assert damaged and damaged[0]["volume"] == vol
        assert damaged[0]["offset"] == at - 3 - 64
        assert any(p["kind"] == "lost-object" and p["key"] == victim for p in report.problems)

        repaired = lake.fsck(repair=True)
        assert repaired.ok, repaired.problems
        ns = lake.namespace("photos")
        with pytest.raises(NotFound):  # missing now: never wrong bytes
            ns.get(victim)
        for key, data in blobs.items():
            if key != victim:
                assert ns.get(key) == data
        again = lake.fsck()
        assert again.ok and not again.problems, again.problems
        ns.put(victim, b"written again")
        assert ns.get(victim) == b"written again"


def test_flipped_byte_in_a_blob_chunk(tmp_path: Path) -> None:
    chunk = 8 * 1024
    data = random.Random(2).randbytes(5 * chunk + 100)  # six chunks, the last one short
    with open_lake(tmp_path / "lake") as lake:
        ns = lake.create_namespace("photos")
        ns.put("big", data)
        ns.put("small", b"fine")
        blob = next(Path(ns.root, "blobs").iterdir())
    at = find(blob, data[2 * chunk : 3 * chunk])
    flip(blob, at + 1000)  # inside chunk 2

    with open_lake(tmp_path / "lake") as lake:
        ns = lake.namespace("photos")
        with pytest.raises(ChecksumError) as err:
            ns.get("big")
        assert err.value.volume == str(blob)
        assert err.value.offset == at - 4  # the chunk's CRC comes first
        # ranges over intact chunks still verify and read
        assert ns.get_range("big", 0, chunk) == data[:chunk]
        assert ns.get_range("big", 3 * chunk, 3 * chunk + 10) == data[3 * chunk : 3 * chunk + 10]
        assert ns.get_range("big", 5 * chunk) == data[5 * chunk :]
        with pytest.raises(ChecksumError):
            ns.get_range("big", 2 * chunk + 5, 2 * chunk + 6)
        with pytest.raises(ChecksumError):
            ns.open("big").read()
        assert ns.get("small") == b"fine"
        report = lake.fsck()
        assert not report.ok
        assert any(p["kind"] == "damaged-blob" for p in report.problems), report.problems
        assert lake.fsck(repair=True).ok
        with pytest.raises(NotFound):
            lake.namespace("photos").get("big")
        assert lake.fsck().ok


# ------------------------------------------------------------------ full disks


def _volume_id(path: str) -> int | None:
    name = os.path.basename(path)
    return int(name[:-4]) if name.endswith(".vol") else None


@pytest.mark.parametrize(
    "fault",
    [
        {"fail_after_bytes": 20_000},  # the disk fills in the middle of an output
        {"fail_on_write": 2},  # the second output's first write
        {"fail_on_write": 1, "error": errno.EIO},  # an I/O error, not a full disk
    ],
    ids=["bytes", "second-output", "eio"],
)
def test_enospc_during_compaction(tmp_path: Path, fault: dict[str, Any]) -> None:
    rng = random.Random(3)
    model = Model()
    layer = FaultLayer(**fault)
    layer.armed = False
    with open_lake(tmp_path / "lake", layer) as lake:
        ns = lake.create_namespace("photos")
        fill(ns, model, rng, 120)
        old = ns.put("pinned", b"old version")
        ns.pin("run", [old.version])
        ns.put("pinned", b"new version")
        model.ack("pinned", digest(b"new version"))
        assert len(ns.volumes()) >= 4
        # compaction first seals the active volume (taking next_vol); outputs come after
        first_output = ns._index.state("next_vol", 1) + 1
        layer.match = lambda p: (_volume_id(p) or 0) >= first_output
        layer.armed = True
        before = {v.id for v in ns.volumes()}
        with pytest.raises((InsufficientSpace, StoreError)) as err:
            ns.compact()
        assert layer.tripped
        if fault.get("error", errno.ENOSPC) == errno.ENOSPC:
            assert isinstance(err.value, InsufficientSpace)
        assert "nothing was changed" in str(err.value)
        # nothing changed: no output is left, every object reads back
        states = {v["id"]: v["state"] for v in ns._index.volumes()}
        assert all(s in ("active", "sealed") for s in states.values()), states
        on_disk = {_volume_id(n) for n in os.listdir(Path(ns.root, "volumes"))}
        assert on_disk == set(states), (on_disk, states)
        assert before <= set(states)
        assert ns.get("pinned", version=old.version) == b"old version"
        assert_clean(lake, ns, model)
        # space freed: the next compaction goes through
        layer.heal()
        report = ns.compact()
        assert report.skipped is None and report.volumes_out, report
        assert ns.get("pinned", version=old.version) == b"old version"
        assert_clean(lake, ns, model)


def test_compaction_refuses_without_free_space(tmp_path: Path) -> None:
    rng = random.Random(4)
    model = Model()
    layer = PowerCutLayer()  # no cut: it records what was written
    with open_lake(tmp_path / "lake", layer, compaction_free_margin="1000TiB") as lake:
        ns = lake.create_namespace("photos")
        fill(ns, model, rng, 60)
        mark = layer.ops
        states_before = {v["id"]: v["state"] for v in ns._index.volumes()}
        with pytest.raises(InsufficientSpace) as err:
            ns.compact()
        assert "free" in str(err.value)
        written = [(name, os.path.basename(p)) for _n, name, p, _ph in layer.log[mark:]]
        # At most the active volume was sealed (a new, empty active volume); nothing was
        # copied: no output volume was created.
        created = [p for name, p in written if name == "create"]
        assert len(created) <= 1, written
        states = {v["id"]: v["state"] for v in ns._index.volumes()}
        assert "compacting" not in states.values()
        assert set(states) - set(states_before) <= {_volume_id(p) for p in created}
        assert_clean(lake, ns, model)


def test_enospc_during_puts(tmp_path: Path) -> None:
    """A full disk fails the write in progress; nothing of it stays; after space is
    freed, writes go on and everything reads back."""
    rng = random.Random(5)
    model = Model()
    layer = FaultLayer(fail_after_bytes=150_000)
    with open_lake(tmp_path / "lake", layer) as lake:
        ns = lake.create_namespace("photos")
        failures: list[str] = []
        for i in range(200):
            key = f"k{i % 50:03d}"
            data = make_data(rng, rng.choice([100, 3000, 40_000]))
            model.begin(key, digest(data))
            try:
                if i % 10 == 9:
                    ns.put_many([(key, data)])
                else:
                    ns.put(key, data)
            except InsufficientSpace:  # (ENOSPC, whichever way the write went)
                failures.append(key)
                model.inflight.pop(key)  # a failed write must leave no trace
                continue
            model.ack(key, digest(data))
        assert layer.tripped and failures
        assert verify(ns, model) == []
        layer.heal()
        for key in failures:  # the failed writes, again
            data = make_data(rng, 500)
            ns.put(key, data)
            model.ack(key, digest(data))
        assert_clean(lake, ns, model)
    with open_lake(tmp_path / "lake") as lake:
        assert_clean(lake, lake.namespace("photos"), model)


def test_failing_blob_cleanup_fails_no_write(tmp_path: Path) -> None:
    """Deleting the file of a blob that a write made unreachable is cleanup after the
    commit: if it fails, the write still succeeded (and must say so); the file stays
    as an orphan for fsck."""
    layer = FaultLayer(fail_ops={"unlink"}, error=errno.EIO, match=lambda p: p.endswith(".blob"))
    layer.armed = False
    model = Model()
    big = random.Random(9).randbytes(50_000)
    with open_lake(tmp_path / "lake", layer) as lake:
        ns = lake.create_namespace("photos")
        for key in ("a", "b", "c"):
            ns.put(key, big + key.encode())
        layer.armed = True
        ns.put("a", b"small now")  # a's blob becomes garbage
        model.ack("a", digest(b"small now"))
        ns.delete("b")  # ... and b's; the store deletes garbage blobs here
        model.ack("b", DELETED)
        ns.put("c", big + b"again")  # a blob replacing a blob
        model.ack("c", digest(big + b"again"))
        ns.put_many([("d", b"bulk"), ("e", big + b"e")])
        model.ack("d", digest(b"bulk"))
        model.ack("e", digest(big + b"e"))
        assert layer.failures > 0, "no blob cleanup was attempted"
        assert_clean(lake, ns, model)
        layer.heal()
    with open_lake(tmp_path / "lake") as lake:
        assert_clean(lake, lake.namespace("photos"), model)


# ------------------------------------------------------------------ namespace isolation


def test_corrupt_index_is_isolated_and_rebuilt(tmp_path: Path) -> None:
    rng = random.Random(6)
    a, b = Model(), Model()
    with open_lake(tmp_path / "lake") as lake:
        fill(lake.create_namespace("alpha"), a, rng, 50)
        fill(lake.create_namespace("beta"), b, rng, 20)
    index = tmp_path / "lake" / "namespaces" / "alpha" / "index.sqlite"
    index.write_bytes(b"this is not a database, " * 200)

    with open_lake(tmp_path / "lake") as lake:
        with pytest.raises(NamespaceUnavailable) as err:
            lake.namespace("alpha")
        assert "fsck" in str(err.value) and err.value.hint and "fsck" in err.value.hint
        beta = lake.namespace("beta")  # the other namespace reads and writes as usual
        assert verify(beta, b) == []
        beta.put("more", b"still fine")
        b.ack("more", digest(b"still fine"))
        beta.delete("obj/0001")
        b.ack("obj/0001", DELETED)
        assert verify(beta, b) == []

        report = lake.fsck(repair=True)
        assert report.ok, report.problems
        assert any("alpha" in r for r in report.repairs)
        assert_clean(lake, lake.namespace("alpha"), a)
        assert_clean(lake, lake.namespace("beta"), b)


def test_quota_is_per_namespace(tmp_path: Path) -> None:
    settings = {"namespaces": {"alpha": {"quota_bytes": "20KiB", "quota_objects": 10}}}
    with open_lake(tmp_path / "lake", **settings) as lake:
        alpha = lake.create_namespace("alpha")
        beta = lake.create_namespace("beta")
        for i in range(9):
            alpha.put(f"k{i}", b"x" * 1000)
        before = alpha.usage()
        with pytest.raises(QuotaExceeded):
            alpha.put("big", b"y" * 15_000)
        with pytest.raises(QuotaExceeded):
            alpha.put_many([("m1", b"1"), ("m2", b"2")])  # 11 objects: none is kept
        assert alpha.usage()["objects"] == before["objects"] == 9
        assert alpha.usage()["bytes"] == before["bytes"]
        for key in ("big", "m1", "m2"):
            assert not alpha.exists(key)
        alpha.put("k0", b"z" * 500)  # an overwrite that fits still works
        for i in range(50):  # beta has no quota
            beta.put(f"k{i}", b"w" * 5000)
        assert beta.usage()["objects"] == 50
        assert lake.fsck().ok


# ------------------------------------------------------------------ power cut in compaction


def _compaction_lake(root: Path) -> tuple[Model, int, bytes]:
    """A lake whose compaction has several inputs and outputs, a pin and blobs."""
    rng = random.Random(7)
    model = Model()
    with open_lake(root) as lake:
        ns = lake.create_namespace("photos")
        fill(ns, model, rng, 150)
        data = make_data(rng, 3000)
        old = ns.put("pinned", data)
        ns.pin("run", [old.version])
        ns.put("pinned", b"now")
        model.ack("pinned", digest(b"now"))
        assert len(ns.volumes()) >= 5
    return model, old.version, data


COMPACT_MODES = [(False, "lose"), (True, "lose"), (False, "torn"), (True, "keep")]


def test_power_cut_at_every_step_of_compaction(tmp_path: Path) -> None:
    base = tmp_path / "base"
    model, pinned, pinned_data = _compaction_lake(base)
    # counting run: which operations does compaction do?
    shutil.copytree(base, tmp_path / "count")
    counter = PowerCutLayer()
    with open_lake(tmp_path / "count", counter) as lake:
        report = lake.namespace("photos").compact()
        assert len(report.volumes_out) >= 2, report
    ops = counter.ops
    assert {name for _n, name, _p, _ph in counter.log} >= {
        "create",
        "write",
        "sync",
        "sync_dir",
        "unlink",
    }
    failures = []
    for k in range(1, ops + 1):
        for after, unsynced in COMPACT_MODES:
            root = tmp_path / f"cut-{k}-{after}-{unsynced}"
            shutil.copytree(base, root)
            layer = PowerCutLayer(cut_at=k, cut_after=after, unsynced=unsynced)
            with open_lake(root, layer) as lake, pytest.raises((OSError, LakeloopError)):
                lake.namespace("photos").compact()
            assert layer.is_off and not layer.violations
            where = f"cut {'after' if after else 'at'} {counter.op_names()[k - 1]} ({unsynced})"
            with open_lake(root) as lake:
                ns = lake.namespace("photos")
                problems = verify(ns, model)
                try:
                    if ns.get("pinned", version=pinned) != pinned_data:
                        problems.append("pinned version changed")
                except LakeloopError as exc:
                    problems.append(f"pinned version: {exc}")
                report = lake.fsck()
                problems += [str(p) for p in fsck_problems(report)]
                if not problems:  # and compaction works again
                    ns.compact()
                    problems += verify(ns, model)
                    problems += [str(p) for p in fsck_problems(lake.fsck())]
            if problems:
                failures.append(f"{where}: {summary(problems, 4)}")
            shutil.rmtree(root)
    assert not failures, f"{len(failures)} of {ops * len(COMPACT_MODES)} failed" + summary(failures)


# ------------------------------------------------------------------ rebuilding the index


def _rebuild_lake(root: Path) -> tuple[Model, int]:
    rng = random.Random(8)
    model = Model()
    with open_lake(root) as lake:
        ns = lake.create_namespace("photos")
        fill(ns, model, rng, 80)
        old = ns.put("pinned", b"version one")
        ns.pin("run", [old.version])
        ns.put("pinned", b"version two")
        model.ack("pinned", digest(b"version two"))
        ns.compact()  # the first volumes are gone: ids no longer start at 1
        fill(ns, model, rng, 30, prefix="late")
    return model, old.version


def test_rebuild_index_keeps_pins(tmp_path: Path) -> None:
    model, pinned = _rebuild_lake(tmp_path / "lake")
    with open_lake(tmp_path / "lake") as lake:
        report = lake.fsck(rebuild_index=True)
        assert report.ok, report.problems
        assert any("rebuilt" in r for r in report.repairs)
        ns = lake.namespace("photos")
        assert ns.get("pinned", version=pinned) == b"version one"
        assert ns.pins() == {"run": 1}
        assert_clean(lake, ns, model)
        ns.put("after", b"rebuild")
        assert ns.get("after") == b"rebuild"


@pytest.mark.parametrize("how", ["deleted", "garbage"])
def test_rebuild_lost_index(tmp_path: Path, how: str) -> None:
    """Without its index a namespace is rebuilt from its volumes: every current object
    and every deletion. Pins lived only in the index, so they are gone with it."""
    model, pinned = _rebuild_lake(tmp_path / "lake")
    ns_root = tmp_path / "lake" / "namespaces" / "photos"
    for suffix in ("", "-wal", "-shm"):
        (ns_root / f"index.sqlite{suffix}").unlink(missing_ok=True)
    if how == "garbage":
        (ns_root / "index.sqlite").write_bytes(os.urandom(8192))
    with open_lake(tmp_path / "lake") as lake:
        report = lake.fsck(repair=True, rebuild_index=True)
        assert report.ok, report.problems
        ns = lake.namespace("photos")
        assert_clean(lake, ns, model)
        with pytest.raises(NotFound):
            ns.get("pinned", version=pinned)
        ns.put("after", b"rebuild")
    with open_lake(tmp_path / "lake") as lake:
        model.ack("after", digest(b"rebuild"))
        assert_clean(lake, lake.namespace("photos"), model)


def test_deleted_index_is_rebuilt_on_open(tmp_path: Path) -> None:
    """A namespace whose index file is simply gone reads its objects at once: the
    volumes hold records the (new, empty) index never allocated, so it is rebuilt."""
    model, _pinned = _rebuild_lake(tmp_path / "lake")
    ns_root = tmp_path / "lake" / "namespaces" / "photos"
    for suffix in ("", "-wal", "-shm"):
        (ns_root / f"index.sqlite{suffix}").unlink(missing_ok=True)
    with open_lake(tmp_path / "lake") as lake:
        ns = lake.namespace("photos")
        assert verify(ns, model) == []
        for i in range(40):  # new writes must not reuse a volume id (and delete it)
            ns.put(f"new/{i}", b"n" * 5000)
            model.ack(f"new/{i}", digest(b"n" * 5000))
        assert_clean(lake, ns, model)


class _PausingLayer(OSFileLayer):
    """Holds the first write to a file whose name *pred* picks until ``go`` is set."""

    def __init__(self, pred: Any) -> None:
        self.pred = pred
        self.paused = threading.Event()
        self.go = threading.Event()

    def create(self, path: str) -> Any:
        f = super().create(path)
        if self.pred(path) and not self.paused.is_set():
            inner_write = f.write

            def write(data: Any) -> None:
                if not self.paused.is_set():
                    self.paused.set()
                    assert self.go.wait(30)
                inner_write(data)

            f.write = write  # type: ignore[method-assign]
        return f


def test_rebuild_index_waits_for_a_running_compaction(tmp_path: Path) -> None:
    """fsck --rebuild-index from another process while a compaction copies: the
    rebuild must not swap the index under the compaction (whose swap would then land
    in the old index, and whose retiring would delete volumes the new index uses)."""
    rng = random.Random(10)
    model = Model()
    with open_lake(tmp_path / "lake") as lake:
        ns = lake.create_namespace("photos")
        fill(ns, model, rng, 120)
        first_output = ns._index.state("next_vol", 1) + 1
    layer = _PausingLayer(lambda p: (_volume_id(p) or 0) >= first_output)
    errors: list[BaseException] = []
    with open_lake(tmp_path / "lake", layer) as lake:
        ns = lake.namespace("photos")
        worker = threading.Thread(target=lambda: _catch(errors, ns.compact))
        worker.start()
        assert layer.paused.wait(30)  # compaction is copying now
        with open_lake(tmp_path / "lake") as other:  # "another process"
            fsck = threading.Thread(target=lambda: other.fsck(rebuild_index=True))
            fsck.start()
            time.sleep(0.3)
            layer.go.set()
            worker.join(60)
            fsck.join(60)
        assert not errors, errors
    with open_lake(tmp_path / "lake") as lake:
        assert_clean(lake, lake.namespace("photos"), model)


def test_lost_roll_recovered_while_another_process_compacts(tmp_path: Path) -> None:
    """A writer that died between creating its next volume (with records in it) and
    committing the roll leaves a volume the index never allocated. The next writer
    takes it over while a compaction runs in another process: the compaction must not
    notice (so recovery may not replace the index under it)."""
    rng = random.Random(11)
    model = Model()
    with open_lake(tmp_path / "lake") as lake:
        ns = lake.create_namespace("photos")
        fill(ns, model, rng, 120)
        first_output = ns._index.state("next_vol", 1) + 1
    layer = _PausingLayer(lambda p: (_volume_id(p) or 0) >= first_output)
    errors: list[BaseException] = []
    with open_lake(tmp_path / "lake", layer) as lake:
        ns = lake.namespace("photos")
        worker = threading.Thread(target=lambda: _catch(errors, ns.compact))
        worker.start()
        assert layer.paused.wait(30)  # compaction allocated its outputs and is copying
        # what the dead writer left: its new volume, with a record, never committed
        vol = ns._index.state("next_vol", 1)
        seq = ns._index.state("next_seq", 1)
        with open(ns._vol_path(vol), "wb") as f:
            f.write(rec.encode_volume_header(vol, time.time_ns()))
            f.write(
                rec.encode_record(
                    seq=seq, key=b"residue", data=b"unacknowledged", ts_ns=time.time_ns()
                )
            )
        model.begin("residue", digest(b"unacknowledged"))
        with open_lake(tmp_path / "lake") as other:  # "another process" writes
            other.namespace("photos").put("after", b"the crash")
            model.ack("after", digest(b"the crash"))
            layer.go.set()
            worker.join(60)
        assert not errors, errors
    with open_lake(tmp_path / "lake") as lake:
        assert_clean(lake, lake.namespace("photos"), model)


def _catch(errors: list[BaseException], fn: Any) -> None:
    try:
        fn()
    except BaseException as exc:
        errors.append(exc)


def test_blob_of_an_overwritten_object_is_not_an_orphan(tmp_path: Path) -> None:
    """An overwrite leaves the old blob file for the writer to delete later (in batches):
    fsck must not call it an orphan, however old it is."""
    big = random.Random(12).randbytes(40_000)
    with open_lake(tmp_path / "lake") as lake:
        ns = lake.create_namespace("photos")
        ns.put("a", big)
        ns.put("b", big)
        ns.put("a", b"small now")
        ns.put_many([("b", b"small too")])
        old = time.time() - 3600  # older than fsck's grace period for puts in progress
        for blob in Path(ns.root, "blobs").iterdir():
            os.utime(blob, (old, old))
        report = lake.fsck()
        assert report.ok, report.problems
        assert ns.get("a") == b"small now" and ns.get("b") == b"small too"


def test_orphan_blob_is_residue_not_damage(tmp_path: Path) -> None:
    """A blob whose put was killed before its commit holds no acknowledged data: fsck
    reports it without failing, and cleanup deletes it once it is old enough."""
    from lakeloop.store._compact import ORPHAN_BLOB_AGE, cleanup_leftovers

    settings = {"blob_threshold": "16KiB", "blob_chunk_size": "4KiB"}
    with Lake.open(tmp_path / "l", create=True, settings=settings, background=False) as lake:
        ns = lake.create_namespace("photos")
        kept = os.urandom(40_000)
        ns.put("kept", kept)
        orphan = tmp_path / "l" / "namespaces" / "photos" / "blobs" / "dead-put.blob"
        orphan.write_bytes(b"half a blob")
        report = lake.fsck()
        assert report.ok and orphan.exists()  # too young: may belong to a put in progress
        old = time.time() - ORPHAN_BLOB_AGE - 10
        os.utime(orphan, (old, old))
        report = lake.fsck()  # its recovery step takes the free locks and cleans up
        assert report.ok, report.problems
        assert not orphan.exists()
        orphan.write_bytes(b"another")
        os.utime(orphan, (old, old))
        with Lake.open(tmp_path / "l", background=False) as other:
            busy = other.namespace("photos")._compact_lock  # as another process would
            busy.acquire(5)
            try:
                report = lake.fsck()  # cannot clean now: it reports, and passes
            finally:
                busy.release()
        assert report.ok
        assert [p["kind"] for p in report.problems] == ["orphan-blob"]
        assert report.problems[0]["residue"] and orphan.exists()
        assert cleanup_leftovers(ns) == 1 and not orphan.exists()
        assert ns.get("kept") == kept and lake.fsck().ok
