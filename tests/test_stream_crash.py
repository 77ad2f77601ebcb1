"""Crashes with real processes and ``kill -9``, on every stream backend.

- A publisher killed in mid-stream loses no publish that returned, and leaves a stream
  that reads and takes new events (embedded: a torn tail is cut, offsets stay dense).
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
from lakeloop.stream import open_stream

SRC = str(Path(__file__).resolve().parent.parent / "src")
ACK_TIMEOUT = 0.8

_CHILD = r"""
import sys, time
from lakeloop import Lake
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
        for i, o in zip(ids, offs):
            print("acked", i, o, flush=True)
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
    rest = proc.stdout.read().splitlines()
    proc.stdout.close()
    return rest


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
