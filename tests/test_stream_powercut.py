"""Power cuts under the embedded stream (the store's ``PowerCutLayer``).

The stream's segment files go through the lake's file layer, so a simulated power cut
leaves only what was fsynced. With ``sync = "batch"`` or ``"none"`` a publish is
acknowledged before its frame is durable, so a cut may take acknowledged events back
(the documented window); what it must never do is leave a consumer group past the end
of the surviving log, where it would skip the events published after the restart at
the lost offsets. And ``sync = "batch"`` must close its window on its own, without a
next publish.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from lakeloop import Lake
from lakeloop.errors import StoreError
from lakeloop.store._faults import PowerCutLayer
from lakeloop.store._fs import FileLayer, OSFileLayer, WritableFile
from lakeloop.stream import open_stream
from lakeloop.stream._embedded import EmbeddedStream

WAIT = 30.0  # generous bound for conditions polled under load


def _settings(sync: str, interval: float) -> dict[str, Any]:
    return {
        "sync": sync,
        "sync_interval": interval,
        "stream_segment_size": "4KiB",
        "stream_ack_timeout": 0.05,
    }


def _cut(lake: Lake, stream: EmbeddedStream, layer: PowerCutLayer) -> None:
    """Cut the power, then let the dead process's handles go (their writes fail)."""
    layer.power_cut()
    with contextlib.suppress(OSError, Exception):
        stream.close()
    with contextlib.suppress(OSError, Exception):
        lake.close()


@pytest.mark.parametrize("sync", ["batch", "none"])
def test_a_group_never_skips_the_events_after_a_power_cut(tmp_path: Path, sync: str) -> None:
    root = tmp_path / "lake"
    layer = PowerCutLayer()
    # an hour between fsyncs: the window stays open for the whole test
    lake = Lake.open(root, create=True, settings=_settings(sync, 3600), _fs=layer, background=False)
    s = open_stream(lake, "events")
    assert isinstance(s, EmbeddedStream)
    s.publish_many([{"n": i, "pad": "x" * 50} for i in range(5)])  # batch: the first is synced
    s.publish_many([{"n": i, "pad": "x" * 50} for i in range(5, 60)])  # past a segment roll
    got = s.consume("g", "c", max=100)
    assert len(got) == 60
    assert s.ack("g", [m.offset for m in got]) == 60  # batch: the group's commit is fsynced
    groups = s.folder / "groups"
    written = {p.name: p.read_bytes() for p in groups.iterdir()}
    _cut(lake, s, layer)
    if sync == "none":
        # nothing was fsynced, and the OS may write files back in any order: here it
        # wrote the group's files and none of the log's
        for name, data in written.items():
            (groups / name).write_bytes(data)

    with Lake.open(root, background=False) as lake2, open_stream(lake2, "events") as s2:
        survived = [m.data["n"] for m in s2.replay()]
        assert survived == list(range(len(survived)))  # a prefix, in order
        assert len(survived) < 60  # the cut did take unsynced events (the test can fail)
        info = s2.info()["groups"]["g"]
        assert info["lag"] == 0 and info["pending"] == 0
        assert info["epoch"] == 1 and info["lost"] == 60 - len(survived)
        new = s2.publish_many([{"after": i} for i in range(7)])
        assert int(new[0]) == len(survived)  # the lost offsets are given out again
        seen = s2.consume("g", "c", max=100)
        assert [m.data.get("after") for m in seen] == list(range(7))
        assert [m.offset for m in seen] == new
        assert s2.ack("g", new) == 7
    # reopening once more changes nothing: the rewind was durable and happens once
    with Lake.open(root, background=False) as lake3, open_stream(lake3, "events") as s3:
        assert s3.info()["groups"]["g"]["epoch"] == 1
        assert s3.consume("g", "c", max=100) == []


def test_a_group_behind_the_surviving_log_is_left_alone(tmp_path: Path) -> None:
    root = tmp_path / "lake"
    layer = PowerCutLayer()
    lake = Lake.open(
        root, create=True, settings=_settings("batch", 3600), _fs=layer, background=False
    )
    s = open_stream(lake, "events")
    assert isinstance(s, EmbeddedStream)
    s.publish_many([{"n": i} for i in range(5)])  # synced (the first of the window)
    got = s.consume("g", "c", max=3)
    s.ack("g", [m.offset for m in got[:2]])
    s.publish_many([{"n": i} for i in range(5, 9)])  # unsynced: lost
    _cut(lake, s, layer)
    with Lake.open(root, background=False) as lake2, open_stream(lake2, "events") as s2:
        assert [m.data["n"] for m in s2.replay()] == list(range(5))
        info = s2.info()["groups"]["g"]
        assert "epoch" not in info and info["pending"] == 1 and info["lag"] == 2


def test_batch_sync_closes_its_window_without_another_publish(tmp_path: Path) -> None:
    root = tmp_path / "lake"
    layer = PowerCutLayer()
    lake = Lake.open(
        root, create=True, settings=_settings("batch", 0.2), _fs=layer, background=False
    )
    s = open_stream(lake, "burst")
    assert isinstance(s, EmbeddedStream)
    s.publish({"n": 0})  # the first publish of a window is fsynced at once
    offsets = [s.publish({"n": i}) for i in range(1, 20)]  # a burst inside the window
    segment = str((s.folder / "segments" / f"{0:020d}.seg").resolve())

    def synced_after_last_write() -> bool:
        ops = [(n, name) for n, name, path, _ph in list(layer.log) if path == segment]
        last_write = max(n for n, name in ops if name == "write")
        return any(name == "sync" and n > last_write for n, name in ops)

    deadline = time.monotonic() + WAIT
    while not synced_after_last_write() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert synced_after_last_write(), "nothing fsynced the end of the burst"
    _cut(lake, s, layer)
    with Lake.open(root, background=False) as lake2, open_stream(lake2, "burst") as s2:
        assert [m.data["n"] for m in s2.replay()] == list(range(20))
        assert [m.offset for m in s2.replay()][1:] == offsets


# ---------------------------------------------------------------------------------------
# A power cut at every step of a small stream workload.

MODES = [(False, "lose"), (True, "lose"), (False, "torn"), (True, "keep")]


class _Seen:
    """What the workload was told before the power went: publishes and acks that returned."""

    def __init__(self) -> None:
        self.published: list[str] = []  # ids, in order
        self.attempted: list[str] = []  # ... and those of a publish that did not return
        self.delivered: set[str] = set()
        self.acked: set[str] = set()
        self.acking: set[str] = set()  # ... and those of an ack that did not return


def _workload(s: EmbeddedStream, seen: _Seen) -> None:
    n = 0

    def publish(count: int) -> None:
        nonlocal n
        ids = [f"e{n + i}" for i in range(count)]
        seen.attempted += ids
        s.publish_many([{"pad": "p" * 300} for _ in ids], ids=ids)
        seen.published += ids
        n += count

    def consume_and_ack(count: int, ack: int) -> None:
        msgs = s.consume("g", "c", max=count)
        seen.delivered.update(m.id for m in msgs)
        by_offset = {m.offset: m.id for m in msgs[:ack]}
        seen.acking.update(by_offset.values())
        if s.ack("g", list(by_offset)) != len(by_offset):
            raise AssertionError("an ack of pending events acked fewer")
        seen.acked.update(by_offset.values())

    publish(1)
    publish(4)
    consume_and_ack(3, 2)
    publish(12)  # rolls a 4 KiB segment
    consume_and_ack(10, 10)
    publish(2)
    consume_and_ack(100, 3)


def _run(root: Path, sync: str, layer: PowerCutLayer) -> _Seen:
    seen = _Seen()
    lake = Lake.open(root, create=True, settings=_settings(sync, 3600), _fs=layer, background=False)
    s: Any = None
    try:
        s = open_stream(lake, "w")
        _workload(s, seen)
    except Exception:  # (the power went: every later operation fails)
        assert layer.is_off
    finally:
        if s is not None:
            with contextlib.suppress(Exception):
                s.close()
        with contextlib.suppress(Exception):
            lake.close()
    return seen


def _check_after_cut(root: Path, sync: str, seen: _Seen) -> list[str]:
    problems = []
    with Lake.open(root, background=False) as lake, open_stream(lake, "w") as s:
        ids = [m.id for m in s.replay()]
        if ids != seen.attempted[: len(ids)]:
            problems.append(f"the log is not a prefix of the publishes: {ids}")
        if sync == "always" and ids[: len(seen.published)] != seen.published:
            problems.append(f"acknowledged publishes lost: {len(ids)} of {len(seen.published)}")
        after = [f"after{i}" for i in range(3)]
        s.publish_many([{} for _ in after], ids=after)
        # everything not acknowledged comes (again): new events at once, events pending
        # before the cut once their ack timeout passed
        want = (set(ids) | set(after)) - seen.acking
        got: set[str] = set()
        deadline = time.monotonic() + WAIT
        while not want <= got and time.monotonic() < deadline:
            got.update(m.id for m in s.consume("g", "c", max=1000, block=0.2))
        if not set(after) <= got:
            problems.append(f"the group skipped events published after the cut: {got}")
        if not want <= got:
            problems.append(f"the group skipped surviving events: {sorted(want - got)}")
        if got & seen.acked:
            problems.append(f"acknowledged events delivered again: {sorted(got & seen.acked)}")
    return problems


def _sweep(tmp_path: Path, sync: str, cuts: list[tuple[int, bool, str]]) -> None:
    failures = []
    for k, after, unsynced in cuts:
        root = tmp_path / f"cut-{k}-{int(after)}-{unsynced}"
        layer = PowerCutLayer(cut_at=k, cut_after=after, unsynced=unsynced)
        seen = _run(root, sync, layer)
        assert layer.is_off, f"op {k}: the workload ended before the cut: {layer.op_names()}"
        assert not layer.violations, layer.violations
        where = f"cut {'after' if after else 'at'} op {k} ({layer.log[k - 1][1]}, {unsynced})"
        failures += [f"{where}: {p}" for p in _check_after_cut(root, sync, seen)]
    assert not failures, f"{len(failures)} of {len(cuts)} cuts:\n" + "\n".join(failures)


def _ops(tmp_path: Path, sync: str) -> int:
    counter = PowerCutLayer()
    _run(tmp_path / "count", sync, counter)
    assert not counter.is_off and counter.ops > 30
    return counter.ops


@pytest.mark.parametrize("sync", ["always", "batch"])
def test_power_cut_sweep_over_a_stream_workload(tmp_path: Path, sync: str) -> None:
    """Every other operation (the two policies take turns), cycling the ways of cutting."""
    first = 1 if sync == "always" else 2
    cuts = [(k, *MODES[(k // 2) % len(MODES)]) for k in range(first, _ops(tmp_path, sync) + 1, 2)]
    _sweep(tmp_path, sync, cuts)


def test_a_crash_before_a_groups_first_state_was_written_leaves_it_usable(
    tmp_path: Path,
) -> None:
    """A crash between creating a group's first state file (or first commit copy) and
    writing it leaves an empty file: nothing was acknowledged, the group starts over."""
    with Lake.open(tmp_path / "lake", create=True, background=False) as lake:
        with open_stream(lake, "first") as s:
            assert isinstance(s, EmbeddedStream)
            s.publish_many([{"n": i} for i in range(3)])
            groups = s.folder / "groups"
        groups.mkdir()
        (groups / "g.state").write_bytes(b"")
        (groups / "g.commit-0").write_bytes(b"")
        (groups / "h.state").write_bytes(b"LLG1 40 0000")  # torn in its first consume
        with open_stream(lake, "first") as s:
            for group in ("g", "h"):
                got = s.consume(group, "c", max=10)
                assert [m.data["n"] for m in got] == [0, 1, 2]
                assert s.ack(group, [m.offset for m in got]) == 3
                assert s.consume(group, "c", max=10) == []


# ---------------------------------------------------------------------------------------
# Segment rolls, fsync failures and the flusher (review fixes).


class _HookFile(WritableFile):
    def __init__(self, layer: _HookLayer, inner: WritableFile) -> None:
        self._layer = layer
        self._inner = inner
        self.path = inner.path

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._layer.before("write", self.path)
        self._inner.write(data)

    def sync(self) -> None:
        self._layer.before("sync", self.path)
        self._inner.sync()

    def truncate(self, size: int) -> None:
        self._inner.truncate(size)

    def size(self) -> int:
        return self._inner.size()

    def close(self) -> None:
        self._inner.close()


class _HookLayer(FileLayer):
    """A file layer (over another) that fails or holds operations on segment files.

    ``fail["sync"] = 1`` fails the next segment fsync with EIO, ``fail["create"] = 1``
    the next segment creation with ENOSPC; ``hold[op] = thread name prefix`` holds that
    operation of such a thread until ``release`` is set (``holding`` says it waits).
    """

    def __init__(self, base: FileLayer | None = None) -> None:
        self.base = base or OSFileLayer()
        self.fail: dict[str, int] = {}
        self.failed: list[str] = []
        self.hold: dict[str, str] = {}
        self.holding = threading.Event()
        self.release = threading.Event()

    def before(self, op: str, path: str) -> None:
        if not path.endswith(".seg"):
            return
        if self.fail.get(op):
            self.fail[op] -= 1
            self.failed.append(op)
            code = errno.EIO if op == "sync" else errno.ENOSPC
            raise OSError(code, f"simulated {op} failure", path)
        prefix = self.hold.get(op)
        if prefix is not None and threading.current_thread().name.startswith(prefix):
            self.holding.set()
            self.release.wait(WAIT)

    def create(self, path: str) -> WritableFile:
        self.before("create", path)
        return _HookFile(self, self.base.create(path))

    def open_append(self, path: str) -> WritableFile:
        return _HookFile(self, self.base.open_append(path))

    def sync_dir(self, path: str) -> None:
        self.base.sync_dir(path)

    def rename(self, src: str, dst: str) -> None:
        self.base.rename(src, dst)

    def unlink(self, path: str) -> None:
        self.base.unlink(path)


def _fill(s: EmbeddedStream, start: int, stop: int) -> None:
    """Publish events ``start..stop-1``, one frame, large enough to fill a 4 KiB segment."""
    s.publish_many([{"n": i, "pad": "x" * 300} for i in range(start, stop)])


def test_a_roll_by_another_publisher_makes_the_sealed_segment_durable(tmp_path: Path) -> None:
    """Publisher A leaves its last frames of a full segment unsynced (its flusher has not
    run); publisher B rolls to a new segment and makes that durable. The cut must not
    keep the new segment and lose the sealed one's tail: a hole in the log."""
    root = tmp_path / "lake"
    layer = PowerCutLayer()
    settings = _settings("batch", 3600)
    lake_a = Lake.open(root, create=True, settings=settings, _fs=layer, background=False)
    lake_b = Lake.open(root, _fs=layer, background=False)  # a second "process"
    a = open_stream(lake_a, "two")
    b = open_stream(lake_b, "two")
    assert isinstance(a, EmbeddedStream) and isinstance(b, EmbeddedStream)
    a.publish({"n": 0})  # the first append of a handle is fsynced
    _fill(a, 1, 20)  # unsynced, and past the segment size
    assert a._log.unsynced()
    b.publish({"n": 20})  # rolls; B's first append is fsynced
    assert len(list((a.folder / "segments").glob("*.seg"))) == 2
    layer.power_cut()
    for handle in (a, b, lake_a, lake_b):
        with contextlib.suppress(Exception):
            handle.close()
    with Lake.open(root, background=False) as lake2, open_stream(lake2, "two") as s2:
        got = [(int(m.offset), m.data["n"]) for m in s2.replay()]
    assert got == [(i, i) for i in range(21)]


@pytest.mark.parametrize("fault", ["sync", "create"])
def test_a_disk_error_at_a_roll_is_a_store_error(tmp_path: Path, fault: str) -> None:
    """The sealed segment's fsync (sticky: the handle refuses to go on) or the new
    segment's creation (not sticky: the next publish rolls again) fails at a roll."""
    root = tmp_path / "lake"
    layer = _HookLayer()
    lake = Lake.open(
        root, create=True, settings=_settings("batch", 3600), _fs=layer, background=False
    )
    s = open_stream(lake, "roll")
    assert isinstance(s, EmbeddedStream)
    s.publish({"n": 0})
    _fill(s, 1, 20)  # unsynced, past the segment size
    layer.fail[fault] = 1
    with pytest.raises(StoreError):
        s.publish({"n": 20})
    assert layer.failed == [fault]
    segments = s.folder / "segments"
    if fault == "sync":
        assert len(list(segments.glob("*.seg"))) == 1  # no new name before the old is durable
        assert s._log.unsynced()  # the window was not closed by the failed fsync
        with pytest.raises(StoreError, match="fsync"):
            s.publish({"n": 20})  # sticky: a second fsync is not trusted
        with pytest.raises(StoreError, match="fsync"):
            s.close()
    else:
        assert s.publish({"n": 20}) == "20"
        s.close()
    lake.close()
    with Lake.open(root, background=False) as lake2, open_stream(lake2, "roll") as s2:
        want = 21 if fault == "create" else 20
        assert [m.data["n"] for m in s2.replay()] == list(range(want))


def test_a_failed_background_fsync_is_sticky(tmp_path: Path) -> None:
    """The flusher's fsync fails once: no retry marks the log clean (a second fsync after
    EIO may succeed for dropped pages); the next publish, flush and close raise."""
    root = tmp_path / "lake"
    layer = _HookLayer()
    lake = Lake.open(
        root, create=True, settings=_settings("batch", 0.05), _fs=layer, background=False
    )
    s = open_stream(lake, "eio")
    assert isinstance(s, EmbeddedStream)
    s.publish({"n": 0})  # fsynced at once
    layer.fail["sync"] = 1
    s.publish({"n": 1})  # unsynced: the flusher's fsync fails
    deadline = time.monotonic() + WAIT
    while not layer.failed and time.monotonic() < deadline:
        time.sleep(0.01)
    assert layer.failed == ["sync"], "the flusher never fsynced"
    with pytest.raises(StoreError, match="fsync"):
        s.publish({"n": 2})
    assert s._log.unsynced()
    with pytest.raises(StoreError, match="fsync"):
        s._log.flush()
    with pytest.raises(StoreError, match="fsync"):
        s.close()
    lake.close()
    with Lake.open(root, background=False) as lake2, open_stream(lake2, "eio") as s2:
        assert [m.data["n"] for m in s2.replay()] == [0, 1]  # (the real disk kept them)
        assert s2.publish({"n": 2}) == "2"


def test_readers_do_not_wait_for_the_flushers_fsync(tmp_path: Path) -> None:
    layer = _HookLayer()
    settings = _settings("batch", 0.05)
    lake = Lake.open(tmp_path / "lake", create=True, settings=settings, _fs=layer, background=False)
    s = open_stream(lake, "slow")
    assert isinstance(s, EmbeddedStream)
    try:
        s.publish({"n": 0})
        layer.hold["sync"] = "lakeloop-stream-flush"
        s.publish({"n": 1})  # unsynced: the flusher's fsync is held
        assert layer.holding.wait(WAIT), "the flusher never fsynced"
        read: list[int] = []
        reader = threading.Thread(target=lambda: read.extend(m.data["n"] for m in s.replay()))
        reader.start()
        reader.join(WAIT)
        assert not reader.is_alive() and read == [0, 1], "a read waited for the fsync"
        assert s._log.unsynced()
    finally:
        layer.release.set()
    deadline = time.monotonic() + WAIT
    while s._log.unsynced() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not s._log.unsynced()
    s.close()
    lake.close()


def test_a_child_forked_during_a_publish_can_publish(tmp_path: Path) -> None:
    """A thread of the parent is inside a publish (holding the log's locks and leading
    the group commit) when the process forks: the child must not wait for it forever."""
    layer = _HookLayer()
    lake = Lake.open(
        tmp_path / "lake",
        create=True,
        settings=_settings("always", 0.1),
        _fs=layer,
        background=False,
    )
    s = open_stream(lake, "fork")
    assert isinstance(s, EmbeddedStream)
    s.publish({"n": 0})
    layer.hold["write"] = "held-publisher"
    held = threading.Thread(target=lambda: s.publish({"n": 1}), name="held-publisher")
    held.start()
    pid = -1
    try:
        assert layer.holding.wait(WAIT), "the publisher never wrote"
        pid = os.fork()
        if pid == 0:  # the child: publish, and say by the exit status whether it could
            code = 1
            try:
                layer.hold.clear()
                code = 0 if s.publish({"n": 2}) == "2" else 2
            finally:
                os._exit(code)
    finally:
        layer.release.set()
        held.join(WAIT)
    deadline = time.monotonic() + WAIT
    status = None
    while status is None and time.monotonic() < deadline:
        done, raw = os.waitpid(pid, os.WNOHANG)
        status = os.waitstatus_to_exitcode(raw) if done else None
        time.sleep(0.01)
    if status is None:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    assert status == 0, "the forked child could not publish"
    assert [m.data["n"] for m in s.replay()] == [0, 1, 2]
    s.close()
    lake.close()
