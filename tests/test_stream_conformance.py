"""One conformance suite for every stream backend (embedded, Redis Streams, NATS JetStream).

Each case runs against all three; Redis and NATS are real servers started by the
session fixtures in conftest.py (``_streams.py``). Each test gets its own key prefix, so
streams of different tests never meet on a shared server.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from lakeloop import Lake
from lakeloop.errors import InvalidInput, InvalidName, LakeloopError
from lakeloop.stream import Message, Stream, StreamError, list_streams, open_stream
from lakeloop.stream._open import resolve_url

ACK_TIMEOUT = 0.6
BACKENDS = ["embedded", "redis", "nats"]

MakeStream = Callable[[str], Stream]


@pytest.fixture(params=BACKENDS)
def backend_url(request: pytest.FixtureRequest) -> str:
    if request.param == "embedded":
        return "embedded"
    return str(request.getfixturevalue(f"{request.param}_server"))


@pytest.fixture
def stream_lake(tmp_path: Path, backend_url: str, request: pytest.FixtureRequest) -> Iterator[Lake]:
    prefix = "t" + str(abs(hash(request.node.nodeid)) % 10**9)
    settings = {
        "stream_ack_timeout": ACK_TIMEOUT,
        "stream_url": backend_url,
        "stream_prefix": prefix,
    }
    with Lake.open(tmp_path / "lake", create=True, settings=settings, background=False) as lk:
        yield lk


@pytest.fixture
def make(stream_lake: Lake) -> Iterator[MakeStream]:
    opened: list[Stream] = []

    def factory(name: str) -> Stream:
        s = open_stream(stream_lake, name)
        opened.append(s)
        return s

    yield factory
    for s in opened:
        s.close()


def _drain(s: Stream, group: str, consumer: str, want: int, block: float = 2.0) -> list[Message]:
    got: list[Message] = []
    deadline = time.monotonic() + 10
    while len(got) < want and time.monotonic() < deadline:
        got += s.consume(group, consumer, max=want - len(got), block=block)
    return got


def test_publish_returns_offsets_and_replay_gives_everything_in_order(make: MakeStream) -> None:
    s = make("orders")
    first = s.publish({"n": 0, "text": "héllo ✓"}, id="evt-0")
    rest = s.publish_many([{"n": i} for i in range(1, 6)], ids=[f"evt-{i}" for i in range(1, 6)])
    assert len(rest) == 5 and len({first, *rest}) == 6
    msgs = list(s.replay())
    assert [m.offset for m in msgs] == [first, *rest]
    assert [m.id for m in msgs] == [f"evt-{i}" for i in range(6)]
    assert [m.data["n"] for m in msgs] == list(range(6))
    assert msgs[0].data["text"] == "héllo ✓"
    assert all(abs(m.time - time.time()) < 60 for m in msgs)
    assert all(m.deliveries == 0 for m in msgs)
    after = list(s.replay(from_offset=rest[1]))
    assert [m.data["n"] for m in after] == [3, 4, 5]
    assert list(s.replay(from_offset=rest[-1])) == []


def test_generated_ids_are_unique_uuid_hex(make: MakeStream) -> None:
    s = make("gen")
    s.publish_many([{"i": i} for i in range(3)])
    s.publish({"i": 3})
    ids = [m.id for m in s.replay()]
    assert len(set(ids)) == 4
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)


def test_a_group_gets_each_event_once_and_acked_events_never_return(make: MakeStream) -> None:
    s = make("jobs")
    offs = s.publish_many([{"i": i} for i in range(10)])
    got = _drain(s, "workers", "w1", 10)
    assert [m.offset for m in got] == offs
    assert all(m.deliveries == 1 for m in got)
    assert s.consume("workers", "w1", max=10, block=0) == []
    assert s.ack("workers", [m.offset for m in got]) == 10
    assert s.ack("workers", [m.offset for m in got]) == 0  # already acked: ignored
    time.sleep(ACK_TIMEOUT + 0.2)
    assert s.consume("workers", "w1", max=10, block=0) == []


def test_a_new_group_starts_at_the_beginning_and_groups_are_independent(
    make: MakeStream,
) -> None:
    s = make("shared")
    s.publish_many([{"i": i} for i in range(4)])
    a = _drain(s, "alpha", "c", 4)
    b = _drain(s, "beta", "c", 4)
    assert [m.data["i"] for m in a] == [m.data["i"] for m in b] == [0, 1, 2, 3]
    s.ack("alpha", [m.offset for m in a])
    s.publish({"i": 4})
    assert [m.data["i"] for m in _drain(s, "alpha", "c", 1)] == [4]
    assert [m.data["i"] for m in _drain(s, "beta", "c", 1)] == [4]


def test_consumers_of_one_group_share_the_work(make: MakeStream) -> None:
    s = make("split")
    s.publish_many([{"i": i} for i in range(6)])
    first = s.consume("g", "c1", max=3, block=1.0)
    second = _drain(s, "g", "c2", 6 - len(first))
    assert len(first) >= 1
    assert sorted(m.data["i"] for m in first + second) == list(range(6))
    assert not {m.offset for m in first} & {m.offset for m in second}


def test_unacked_events_are_delivered_again_after_the_ack_timeout(make: MakeStream) -> None:
    s = make("retry")
    s.publish_many([{"i": i} for i in range(3)])
    got = _drain(s, "g", "crashy", 3)
    s.ack("g", [got[0].offset])  # the consumer finished one, then "died"
    assert s.consume("g", "other", max=10, block=0) == []  # not yet: still within the timeout
    time.sleep(ACK_TIMEOUT + 0.2)
    again = _drain(s, "g", "other", 2)
    assert sorted(m.data["i"] for m in again) == [1, 2]
    assert all(m.deliveries == 2 for m in again)
    assert {m.id for m in again} == {m.id for m in got[1:]}
    s.ack("g", [m.offset for m in again])
    time.sleep(ACK_TIMEOUT + 0.2)
    assert s.consume("g", "other", max=10, block=0) == []


def test_a_blocked_consume_wakes_up_for_a_publish(make: MakeStream) -> None:
    s = make("wake")
    s.consume("g", "c", max=1, block=0)  # creates the group
    publisher = make("wake")
    timer = threading.Timer(0.3, lambda: publisher.publish({"late": True}))
    timer.start()
    try:
        t0 = time.monotonic()
        got = s.consume("g", "c", max=5, block=5.0)
        waited = time.monotonic() - t0
    finally:
        timer.join()
    assert [m.data for m in got] == [{"late": True}]
    assert waited < 4.5  # woke for the event, not at the end of the block
    t0 = time.monotonic()
    assert s.consume("g", "c", max=5, block=0.3) == []
    assert time.monotonic() - t0 >= 0.25


def test_another_handle_sees_the_events_and_the_group_state(make: MakeStream) -> None:
    s = make("durable")
    s.publish_many([{"i": i} for i in range(5)])
    got = _drain(s, "g", "c", 3)
    s.ack("g", [m.offset for m in got])
    s.close()
    again = make("durable")
    assert [m.data["i"] for m in again.replay()] == list(range(5))
    rest = _drain(again, "g", "c", 2, block=ACK_TIMEOUT + 2)
    assert sorted(m.data["i"] for m in rest) == [3, 4]


def test_list_streams_and_info(make: MakeStream, stream_lake: Lake) -> None:
    a = make("alpha-1")
    b = make("beta-2")
    a.publish_many([{"i": i} for i in range(3)])
    b.publish({"x": 1})
    assert {"alpha-1", "beta-2"} <= set(list_streams(stream_lake))
    _drain(a, "g", "c", 2)
    info = a.info()
    assert info["name"] == "alpha-1" and info["backend"] == a.backend
    assert info["length"] == 3
    offs = [m.offset for m in a.replay()]
    assert info["first_offset"] == offs[0] and info["last_offset"] == offs[-1]
    assert info["groups"]["g"]["pending"] == 2


# ---------------------------------------------------------------------------- bad input
BAD_EVENTS = [
    ["not a dict"],
    [[1, 2]],
    [{"x": object()}],
    [{"x": math.nan}],
    [{"x": b"bytes"}],
    [{"ok": 1}, 42],  # one bad event refuses the whole batch
]


@pytest.mark.parametrize("events", BAD_EVENTS, ids=range(len(BAD_EVENTS)))
def test_bad_events_are_refused_and_nothing_is_written(make: MakeStream, events: list) -> None:
    s = make("bad")
    s.publish({"before": True})
    with pytest.raises(InvalidInput) as err:
        s.publish_many(events)
    assert "publish" in str(err.value)
    with pytest.raises(InvalidInput):
        s.publish(events[-1])
    assert [m.data for m in s.replay()] == [{"before": True}]


def test_bad_ids_sizes_and_arguments(make: MakeStream, stream_lake: Lake) -> None:
    s = make("args")
    for ids in (["a"], ["a", ""], ["a", 7], "ab"):
        with pytest.raises(InvalidInput):
            s.publish_many([{"i": 1}, {"i": 2}], ids=ids)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput):
        s.publish({"i": 1}, id="x" * 300)
    with pytest.raises(InvalidInput, match="stream_max_event_bytes"):
        s.publish({"blob": "x" * (1024**2 + 1)})
    with pytest.raises(InvalidInput):
        s.publish_many({"i": 1})  # type: ignore[arg-type]
    for group in ("", "a b", "x" * 64, 5):
        with pytest.raises(InvalidName):
            s.consume(group, "c")  # type: ignore[arg-type]
    with pytest.raises(InvalidInput):
        s.consume("g", "c", max=0)
    with pytest.raises(InvalidInput):
        s.consume("g", "c", block=-1)
    for offsets in (["nonsense"], "0", [None]):
        with pytest.raises(InvalidInput):
            s.ack("g", offsets)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput):
        list(s.replay(from_offset="garbage"))
    assert list(s.replay()) == []
    assert s.publish_many([]) == []


@pytest.mark.parametrize("name", ["", "Upper", "has_underscore", "a" * 64, "dot.ted", 7])
def test_bad_stream_names(stream_lake: Lake, name: object) -> None:
    with pytest.raises(InvalidName):
        open_stream(stream_lake, name)  # type: ignore[arg-type]


@pytest.mark.parametrize("url", ["kafka://localhost:9092", "nonsense", "http://x"])
def test_unknown_backend_urls(stream_lake: Lake, url: str) -> None:
    with pytest.raises(InvalidInput, match="unknown stream backend"):
        open_stream(stream_lake, "ok", url=url)


def test_errors_are_lakeloop_errors(make: MakeStream) -> None:
    s = make("errs")
    with pytest.raises(LakeloopError):
        s.publish("x")  # type: ignore[arg-type]


def test_the_backend_comes_from_the_settings_and_the_environment(
    tmp_path: Path, redis_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Lake.open(tmp_path / "a", create=True, background=False) as lake:
        with open_stream(lake, "x") as s:
            assert s.backend == "embedded"  # the default: no server
        with open_stream(lake, "x", url=redis_server) as s:
            assert s.backend == "redis"
    monkeypatch.setenv("LAKELOOP_STREAM_URL", redis_server)
    with Lake.open(tmp_path / "a", background=False) as lake, open_stream(lake, "x") as s:
        assert s.backend == "redis"
    monkeypatch.delenv("LAKELOOP_STREAM_URL")
    with Lake.open(tmp_path / "b", create=True, settings={"stream_backend": "nats"}) as lake:
        assert resolve_url(lake) == ("nats", "nats://127.0.0.1:4222")


@pytest.mark.parametrize("scheme", ["redis", "nats"])
def test_a_server_that_is_down_gives_stream_error(lake: Lake, scheme: str) -> None:
    from _streams import free_port

    url = f"{scheme}://127.0.0.1:{free_port()}"  # nothing listens there
    t0 = time.monotonic()
    with pytest.raises(StreamError) as err:
        open_stream(lake, "x", url=url)
    assert url in str(err.value) and "hint" in str(err.value)
    assert time.monotonic() - t0 < 30
