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
import time
from pathlib import Path
from typing import Any

import pytest

from lakeloop import Lake
from lakeloop.store._faults import PowerCutLayer
from lakeloop.stream import open_stream
from lakeloop.stream._embedded import EmbeddedStream

WAIT = 30.0  # generous bound for conditions polled under load


def _settings(sync: str, interval: float) -> dict[str, Any]:
    return {"sync": sync, "sync_interval": interval, "stream_segment_size": "4KiB"}


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
    assert s.ack("g", [m.offset for m in got]) == 60  # the group's commit is fsynced
    _cut(lake, s, layer)

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
