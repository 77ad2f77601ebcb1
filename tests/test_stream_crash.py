"""Crashes with real processes and ``kill -9``, on every stream backend.

- A publisher killed in mid-stream loses no publish that returned, and leaves a stream
  that reads and takes new events (embedded: offsets stay dense). A publisher killed
  inside its append (it sends itself SIGKILL half-way through the write, so the tail is
  torn every time rather than by luck) leaves half a frame that the next open cuts.
- A consumer killed before it acked gets its events delivered again to the group.
- What a group acknowledged before the kill is never delivered again.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lakeloop import Lake
from lakeloop.errors import StreamError
from lakeloop.stream import open_stream

SRC = str(Path(__file__).resolve().parent.parent / "src")
ACK_TIMEOUT = 0.8

_CHILD = r"""
import sys, time
from lakeloop import Lake
from lakeloop.errors import StreamError
from lakeloop.stream import open_stream

role, root, name = sys.argv[1:4]
lake = Lake.open(root, background=False)
s = open_stream(lake, name)
print("ready", flush=True)
if role == "publish":
    n = 0
    while True:  # batches of growing size, so the kill can land inside a write
        size = 1 + n % 7
        ids = [f"{sys.argv[4]}-{n + i}" for i in range(size)]
        offs = s.publish_many([{"n": n + i, "pad": "x" * 700} for i in range(size)], ids=ids)
        sys.stdout.write("".join(f"acked {i} {o}\n" for i, o in zip(ids, offs)))
        sys.stdout.flush()
        n += size
elif role == "consume":
    acked = int(sys.argv[4])
    got = []
    while len(got) < acked:
        got += s.consume("workers", "doomed", max=acked - len(got), block=1.0)
    s.ack("workers", [m.offset for m in got])
    print("acked", " ".join(m.id for m in got), flush=True)
    more = []
    while not more:
        more = s.consume("workers", "doomed", max=100, block=1.0)
    print("holding", " ".join(m.id for m in more), flush=True)
    time.sleep(600)  # never acks: killed here
"""


@pytest.fixture(params=["embedded", "redis", "nats"])
def crash_lake(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Lake]:
    url = "embedded"
    if request.param != "embedded":
        url = str(request.getfixturevalue(f"{request.param}_server"))
    settings = {
        "stream_url": url,
        "stream_prefix": "c" + str(abs(hash(request.node.nodeid)) % 10**9),
        "stream_ack_timeout": ACK_TIMEOUT,
        "stream_segment_size": "16KiB",  # rolls happen during the kills too
    }
    with Lake.open(tmp_path / "lake", create=True, settings=settings, background=False) as lk:
        yield lk


def _spawn(*args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": SRC}
    proc = subprocess.Popen(
        [sys.executable, "-c", _CHILD, *args], stdout=subprocess.PIPE, text=True, env=env
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    return proc


def _kill(proc: subprocess.Popen[str]) -> list[str]:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.stdout is not None
    rest = proc.stdout.read()
    proc.stdout.close()
    # The kill can land inside a print (a full pipe buffer flushes part of a line), so a
    # last line without its newline is torn: its id or offset may be cut short, and it is
    # dropped rather than read as an acknowledgement.
    return rest.split("\n")[:-1]


def _read_acked(proc: subprocess.Popen[str], want: int) -> list[tuple[str, str]]:
    assert proc.stdout is not None
    acked: list[tuple[str, str]] = []
    while len(acked) < want:
        line = proc.stdout.readline()
        assert line, "the publisher died on its own"
        _, event_id, off = line.split()
        acked.append((event_id, off))
    return acked


@pytest.mark.parametrize("rounds", [3])
def test_a_killed_publisher_loses_no_returned_publish(crash_lake: Lake, rounds: int) -> None:
    acked: dict[str, str] = {}
    for r in range(rounds):
        proc = _spawn("publish", str(crash_lake.root), "events", f"r{r}")
        got = _read_acked(proc, 20 + 15 * r)
        time.sleep(0.01 * r)  # land the kill at different points of a publish
        for line in _kill(proc):  # lines printed before the kill: acknowledged too
            if line.startswith("acked"):
                _, event_id, off = line.split()
                got.append((event_id, off))
        acked.update(got)
    with open_stream(crash_lake, "events") as s:
        msgs = list(s.replay())
        by_id = {m.id: m.offset for m in msgs}
        for event_id, off in acked.items():
            assert by_id.get(event_id) == off, f"acknowledged {event_id} at {off} is lost"
        assert len({m.offset for m in msgs}) == len(msgs)
        if s.backend == "embedded":  # dense offsets: a torn batch left no hole
            assert [m.offset for m in msgs] == [str(i) for i in range(len(msgs))]
        # the stream still takes events, and a group reads all of it
        last = s.publish({"after": "crash"}, id="after")
        assert [m.id for m in s.replay(msgs[-1].offset)] == ["after"]
        seen: list[str] = []
        while len(seen) < len(msgs) + 1:
            batch = s.consume("check", "c", max=500, block=1.0)
            assert batch, "a group could not read the whole stream"
            seen += [m.offset for m in batch]
        assert seen[-1] == last


def test_a_killed_consumer_gets_redelivered_and_acked_events_stay_acked(
    crash_lake: Lake,
) -> None:
    with open_stream(crash_lake, "jobs") as s:
        s.publish_many([{"n": i} for i in range(12)], ids=[f"job-{i}" for i in range(12)])
    proc = _spawn("consume", str(crash_lake.root), "jobs", "5")
    assert proc.stdout is not None
    acked_line = proc.stdout.readline().split()
    holding_line = proc.stdout.readline().split()
    assert acked_line[0] == "acked" and holding_line[0] == "holding"
    acked, held = set(acked_line[1:]), set(holding_line[1:])
    assert len(acked) == 5 and held and not acked & held
    _kill(proc)
    with open_stream(crash_lake, "jobs") as s:
        got = []
        deadline = time.monotonic() + 20
        while len(got) < 7 and time.monotonic() < deadline:
            got += s.consume("workers", "heir", max=100, block=ACK_TIMEOUT + 1)
        ids = [m.id for m in got]
        assert sorted(ids) == sorted(f"job-{i}" for i in range(12) if f"job-{i}" not in acked)
        assert all(m.deliveries >= 2 for m in got if m.id in held)
        assert all(m.deliveries == 1 for m in got if m.id not in held)
        s.ack("workers", [m.offset for m in got])
        time.sleep(ACK_TIMEOUT + 0.2)
        assert s.consume("workers", "heir", max=100, block=0.2) == []


@pytest.mark.parametrize(
    "scheme", ["redis", pytest.param("nats", marks=pytest.mark.slow)]
)  # nats: a publish waits 10 s for the acks of a server that is gone
def test_a_server_killed_mid_session_gives_stream_error(tmp_path: Path, scheme: str) -> None:
    from _streams import start_nats, start_redis

    url, stop = (start_redis if scheme == "redis" else start_nats)(tmp_path / scheme)
    with Lake.open(tmp_path / "lake", create=True, background=False) as lake:
        s = open_stream(lake, "x", url=url)
        try:
            s.publish({"a": 1})
            got = s.consume("g", "c", max=1)
            stop()
            with pytest.raises(StreamError, match="hint"):
                s.publish({"a": 2})
            with pytest.raises(StreamError):
                s.consume("g", "c", block=0.2)
            with pytest.raises(StreamError):
                s.ack("g", [got[0].offset])
        finally:
            s.close()


_TORN_CHILD = r"""
import os, signal, sys
from lakeloop import Lake
from lakeloop.stream import open_stream

lake = Lake.open(sys.argv[1], background=False)
s = open_stream(lake, "torn")
for i in range(10):
    print("acked", s.publish({"i": i}, id=f"ok-{i}"), flush=True)
real_write = os.write

def half_then_die(fd, data):  # the kernel kills us half-way through the append
    real_write(fd, bytes(data)[: len(data) // 2])
    os.kill(os.getpid(), signal.SIGKILL)

os.write = half_then_die
s.publish_many([{"i": 100 + i, "pad": "z" * 500} for i in range(20)])
print("not reached", flush=True)
"""


def test_a_publisher_killed_inside_its_append_leaves_a_tail_that_is_cut(tmp_path: Path) -> None:
    with Lake.open(tmp_path / "lake", create=True, background=False) as lake:
        env = {**os.environ, "PYTHONPATH": SRC}
        proc = subprocess.run(
            [sys.executable, "-c", _TORN_CHILD, str(lake.root)],
            capture_output=True, text=True, env=env, timeout=120,
        )  # fmt: skip
        assert proc.returncode == -signal.SIGKILL
        acked = [line.split()[1] for line in proc.stdout.splitlines()]
        assert acked == [str(i) for i in range(10)]
        seg = next((Path(lake.root) / "namespaces/_streams/streams/torn/segments").iterdir())
        torn_size = seg.stat().st_size
        with open_stream(lake, "torn") as s:
            assert seg.stat().st_size < torn_size  # opening cut the half frame
            assert [m.id for m in s.replay()] == [f"ok-{i}" for i in range(10)]
            assert s.publish({"i": 10}) == "10"
            assert [m.data["i"] for m in s.consume("g", "c", max=100)] == list(range(11))
