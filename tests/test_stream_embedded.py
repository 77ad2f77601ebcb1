"""The embedded backend's own guarantees: segments, torn tails, corruption, processes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from lakeloop import Lake
from lakeloop.errors import ChecksumError, StoreError
from lakeloop.stream import open_stream
from lakeloop.stream._embedded import EmbeddedStream
from lakeloop.stream._log import encode_frame, parse_frame

SRC = str(Path(__file__).resolve().parent.parent / "src")


@pytest.fixture
def lake(tmp_path: Path) -> Iterator[Lake]:
    settings = {"stream_segment_size": "1KiB", "stream_ack_timeout": 0.3}
    with Lake.open(tmp_path / "lake", create=True, settings=settings, background=False) as lk:
        yield lk


def _segments(s: EmbeddedStream) -> list[Path]:
    return sorted((s.folder / "segments").glob("*.seg"))


def test_the_stream_lives_in_the_reserved_namespace(lake: Lake) -> None:
    with open_stream(lake, "pred") as s:
        s.publish({"a": 1})
        assert isinstance(s, EmbeddedStream)
        assert s.folder.parent.parent.name == "_streams"
    assert "_streams" in lake.namespaces(include_internal=True)
    assert "_streams" not in lake.namespaces()
    assert lake.fsck(repair=True).ok  # the store's checks leave the stream files alone
    with open_stream(lake, "pred") as s:
        assert [m.data for m in s.replay()] == [{"a": 1}]


def test_segments_roll_at_their_size_and_replay_crosses_them(lake: Lake) -> None:
    with open_stream(lake, "roll") as s:
        assert isinstance(s, EmbeddedStream)
        offs = [s.publish({"i": i, "pad": "x" * 100}) for i in range(40)]
        segs = _segments(s)
        assert len(segs) >= 4
        # each segment is named by the offset of its first event
        assert int(segs[0].stem) == 0
        assert all(int(p.stem) in {int(o) for o in offs} for p in segs)
        assert [m.data["i"] for m in s.replay()] == list(range(40))
        assert [m.data["i"] for m in s.replay(offs[17])] == list(range(18, 40))
        got = s.consume("g", "c", max=100)
        assert [m.data["i"] for m in got] == list(range(40))
        assert s.info()["segments"] == len(segs)


def test_a_torn_tail_is_cut_on_the_next_open(lake: Lake) -> None:
    with open_stream(lake, "torn") as s:
        assert isinstance(s, EmbeddedStream)
        s.publish_many([{"i": i} for i in range(3)])
        seg = _segments(s)[-1]
        good = seg.stat().st_size
    # what a publisher killed in mid-write leaves: half a frame
    frame = bytearray(seg.read_bytes()[:good])
    with open(seg, "ab") as f:
        f.write(frame[: len(frame) // 2])
    with open_stream(lake, "torn") as s:
        assert seg.stat().st_size == good
        assert [m.data["i"] for m in s.replay()] == [0, 1, 2]
        assert [m.data["i"] for m in s.consume("g", "c", max=10)] == [0, 1, 2]
        off = s.publish({"i": 3})
        assert off == "3"
        assert [m.data["i"] for m in s.replay()] == [0, 1, 2, 3]
    assert seg.stat().st_size > good


def test_readers_of_an_open_stream_skip_a_torn_tail_the_next_publish_cuts(lake: Lake) -> None:
    with open_stream(lake, "torn2") as s:
        assert isinstance(s, EmbeddedStream)
        s.publish_many([{"i": i} for i in range(2)])
        seg = _segments(s)[-1]
        good = seg.stat().st_size
        with open(seg, "ab") as f:  # a publisher in another process died mid-write
            f.write(seg.read_bytes()[: good // 3])
        assert [m.data["i"] for m in s.replay()] == [0, 1]
        assert [m.data["i"] for m in s.consume("g", "c", max=10)] == [0, 1]
        assert s.publish({"i": 2}) == "2"
        assert [m.data["i"] for m in s.replay()] == [0, 1, 2]


def test_damage_before_a_whole_frame_is_corruption_not_a_tail(lake: Lake) -> None:
    with open_stream(lake, "rot") as s:
        assert isinstance(s, EmbeddedStream)
        s.publish({"i": 0, "pad": "a" * 50})
        s.publish({"i": 1})
        seg = _segments(s)[-1]
    data = bytearray(seg.read_bytes())
    data[60] ^= 0xFF  # inside the first frame's body
    seg.write_bytes(bytes(data))
    with open_stream(lake, "rot") as s:
        with pytest.raises(ChecksumError) as err:
            list(s.replay())
        assert err.value.volume == str(seg)
        with pytest.raises(ChecksumError):
            s.consume("g", "c")
        with pytest.raises(ChecksumError):
            s.publish({"i": 2})  # never cut acknowledged events away
    assert seg.read_bytes() == bytes(data)


def test_events_before_damage_stay_readable(lake: Lake) -> None:
    with open_stream(lake, "rot2") as s:
        assert isinstance(s, EmbeddedStream)
        s.publish_many([{"i": i} for i in range(3)])
        s.publish({"i": 3, "pad": "p" * 40})
        s.publish({"i": 4})
        seg = _segments(s)[-1]
        second = s._log._segments[-1].positions[1]
    data = bytearray(seg.read_bytes())
    data[second + 50] ^= 0x01
    seg.write_bytes(bytes(data))
    with open_stream(lake, "rot2") as s:
        seen = []
        with pytest.raises(ChecksumError):
            for m in s.replay():
                seen.append(m.data["i"])
        assert seen == [0, 1, 2]


@pytest.mark.parametrize("sync", ["batch", "none"])
def test_relaxed_sync_policies_read_back_across_rolls(tmp_path: Path, sync: str) -> None:
    settings = {"sync": sync, "stream_segment_size": "1KiB", "sync_interval": 0.05}
    with Lake.open(tmp_path / "l", create=True, settings=settings, background=False) as lk:
        with open_stream(lk, "fast") as s:
            for i in range(30):
                s.publish({"i": i, "pad": "q" * 100})
            got = s.consume("g", "c", max=100)
            assert s.ack("g", [m.offset for m in got]) == 30
        with open_stream(lk, "fast") as s:
            assert [m.data["i"] for m in s.replay()] == list(range(30))
            assert s.info()["segments"] > 2
            assert s.consume("g", "c", max=100) == []


_PUBLISHER = """
import sys
import time
from lakeloop import Lake
from lakeloop.stream import open_stream
lake = Lake.open(sys.argv[1], background=False)
with open_stream(lake, "multi") as s:
    for i in range(int(sys.argv[3])):
        s.publish({"who": sys.argv[2], "i": i}, id=f"{sys.argv[2]}-{i}")
"""


def test_publishers_in_several_processes_interleave_safely(lake: Lake) -> None:
    env = {**os.environ, "PYTHONPATH": SRC}
    n = 40
    procs = [
        subprocess.Popen([sys.executable, "-c", _PUBLISHER, str(lake.root), who, str(n)], env=env)
        for who in ("a", "b", "c")
    ]
    for p in procs:
        assert p.wait(timeout=120) == 0
    with open_stream(lake, "multi") as s:
        msgs = list(s.replay())
    assert [m.offset for m in msgs] == [str(i) for i in range(3 * n)]
    assert {m.id for m in msgs} == {f"{w}-{i}" for w in "abc" for i in range(n)}
    for who in "abc":  # each publisher's events stay in its order
        assert [m.data["i"] for m in msgs if m.data["who"] == who] == list(range(n))


def test_concurrent_threads_share_commits_and_keep_their_order(lake: Lake) -> None:
    import threading

    with open_stream(lake, "threads") as s:
        assert isinstance(s, EmbeddedStream)
        results: dict[int, list[str]] = {}

        def publish(t: int) -> None:
            results[t] = [s.publish({"t": t, "i": i}, id=f"{t}-{i}") for i in range(25)]

        threads = [threading.Thread(target=publish, args=(t,)) for t in range(8)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        msgs = list(s.replay())
        assert [m.offset for m in msgs] == [str(i) for i in range(200)]
        by_offset = {m.offset: m for m in msgs}
        for t, offs in results.items():  # each returned offset holds that very event
            assert [by_offset[o].id for o in offs] == [f"{t}-{i}" for i in range(25)]
            assert [int(o) for o in offs] == sorted(int(o) for o in offs)


def _newest_commit(groups: Path) -> Path:
    """The group's latest commit copy, by the generation it holds (two acks in a row can
    share a modification time)."""
    from lakeloop.stream._embedded import _decode_state

    def gen(p: Path) -> int:
        state = _decode_state(p.read_bytes())
        return -1 if state is None else int(state["gen"])

    return max(groups.glob("g.commit-*"), key=gen)


def test_a_torn_group_commit_falls_back_to_the_previous_one(lake: Lake) -> None:
    with open_stream(lake, "acks") as s:
        assert isinstance(s, EmbeddedStream)
        s.publish_many([{"i": i} for i in range(6)])
        got = s.consume("g", "c", max=10)
        assert s.ack("g", [got[0].offset, got[1].offset]) == 2
        assert s.ack("g", [got[2].offset]) == 1
        groups = s.folder / "groups"
    newest = _newest_commit(groups)
    raw = newest.read_bytes()
    newest.write_bytes(raw[: len(raw) // 2])  # the last ack was torn: it never returned
    state = groups / "g.state"  # and a consume after it was torn too
    state.write_bytes(b"LLG1 999 00000000\n{")
    time.sleep(0.35)
    with open_stream(lake, "acks") as s:
        again = s.consume("g", "c", max=10)
        assert [m.data["i"] for m in again] == [2, 3, 4, 5]
        assert all(m.deliveries == 2 for m in again)
    for p in groups.glob("g.*"):
        if p.suffix != ".lock":
            p.write_bytes(b"garbage")
    with open_stream(lake, "acks") as s, pytest.raises(StoreError, match="damaged"):
        s.consume("g", "c")


def test_sealed_segments_are_read_only_when_needed(lake: Lake) -> None:
    with open_stream(lake, "lazy") as s:
        assert isinstance(s, EmbeddedStream)
        offs = s.publish_many([{"i": i, "pad": "y" * 200} for i in range(4)])
        for i in range(4, 40):
            offs.append(s.publish({"i": i, "pad": "y" * 200}))
        segs = _segments(s)
    assert len(segs) > 5
    damaged = bytearray(segs[0].read_bytes())
    damaged[50] ^= 0xFF  # the first (sealed) segment's first frame
    segs[0].write_bytes(bytes(damaged))
    with open_stream(lake, "lazy") as s:
        assert isinstance(s, EmbeddedStream)
        # opening indexed only the last segment; the damage is not even seen yet
        assert not any(seg.complete for seg in s._log._segments)
        assert s.info()["length"] == 40
        assert [m.data["i"] for m in s.replay(offs[20])] == list(range(21, 40))
        with pytest.raises(ChecksumError):
            list(s.replay())
        assert s.publish({"i": 40}) == "40"  # appends go on: the damage is not at the tail


# ---------------------------------------------------------------------------- frame format
_events = st.lists(
    st.tuples(
        st.text(min_size=1, max_size=40),
        st.binary(max_size=300),
    ),
    min_size=1,
    max_size=8,
)


@hsettings(max_examples=150, deadline=None)
@given(_events, st.integers(0, 2**40), st.integers(0, 2**62), st.data())
def test_frames_round_trip_and_every_change_or_cut_is_caught(
    events: list[tuple[str, bytes]], first: int, ts: int, data: st.DataObject
) -> None:
    raw = encode_frame(first, ts, events)
    frame = parse_frame(raw, 0, 0)
    assert frame is not None
    assert (frame.first_seq, frame.ts_ns, frame.end) == (first, ts, len(raw))
    assert frame.events == events
    cut = data.draw(st.integers(0, len(raw) - 1))
    assert parse_frame(raw[:cut], 0, 0) is None  # a torn frame is never taken as whole
    at = data.draw(st.integers(0, len(raw) - 1))
    flipped = bytearray(raw)
    flipped[at] ^= data.draw(st.integers(1, 255))
    assert parse_frame(bytes(flipped), 0, 0) is None  # CRC32C catches one changed byte


def test_a_remote_lake_has_no_embedded_streams() -> None:
    from lakeloop.errors import InvalidInput
    from lakeloop.store._remote import RemoteLake

    remote = RemoteLake("http://127.0.0.1:9", access_key="k", secret_key="s")
    with pytest.raises(InvalidInput, match="needs a local lake"):
        open_stream(remote, "x")  # type: ignore[arg-type]


def test_an_ack_never_overwrites_the_newest_commit(lake: Lake) -> None:
    with open_stream(lake, "acks2") as s:
        assert isinstance(s, EmbeddedStream)
        s.publish_many([{"i": i} for i in range(6)])
        first = s.consume("g", "c", max=3)
        assert s.ack("g", [first[0].offset]) == 1  # returned: must survive anything
        second = s.consume("g", "c", max=3)
        assert s.ack("g", [first[1].offset]) == 1
        groups = s.folder / "groups"
    assert [m.data["i"] for m in second] == [3, 4, 5]
    newest = _newest_commit(groups)
    newest.write_bytes(newest.read_bytes()[:10])  # as if the second ack had been torn
    (groups / "g.state").write_bytes(b"")  # and a power cut took the consume state
    time.sleep(0.35)
    with open_stream(lake, "acks2") as s:
        again = s.consume("g", "c", max=10)
    assert sorted(m.data["i"] for m in again) == [1, 2, 3, 4, 5]  # 0 stays acknowledged


def test_offsets_are_ascii_digits_only(lake: Lake) -> None:
    from lakeloop.errors import InvalidInput

    with open_stream(lake, "digits-only", url="embedded") as s:
        for n in range(13):
            s.publish({"n": n})
        s.consume("g", "c", max=13)
        with pytest.raises(InvalidInput):
            s.ack("g", ["١٢"])  # Arabic-Indic digits: isdigit() is true, yet no offset
        with pytest.raises(InvalidInput):
            list(s.replay(from_offset="٣"))
        assert s.ack("g", ["12"]) == 1
