"""The NATS backend under threads and failures, against a real nats-server of its own.

The server here is this module's (not the session's shared one): the tests pause it
(``SIGSTOP``) and read its monitoring endpoint for the client's subscriptions.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from _streams import _require, _stop, _wait_port, free_port
from lakeloop import Lake
from lakeloop.stream import Message, StreamError, _nats, open_stream

ACK_TIMEOUT = 1.0
WAIT = 30.0  # generous bound for conditions polled under load


def _until(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


class _Server:
    def __init__(self, folder: Path) -> None:
        self.port, self.monitor = free_port(), free_port()
        args = ["-js", "-a", "127.0.0.1", "-p", str(self.port), "-m", str(self.monitor)]
        self.proc = subprocess.Popen(
            [_require("nats-server"), *args, "-sd", str(folder)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _wait_port(self.port, self.proc, "nats-server")
        _wait_port(self.monitor, self.proc, "nats-server monitoring")
        self.url = f"nats://127.0.0.1:{self.port}"

    def subscriptions(self) -> list[int]:
        """The number of subscriptions of each client connection, as the server counts."""
        url = f"http://127.0.0.1:{self.monitor}/connz?subs=1"
        with urllib.request.urlopen(url, timeout=10) as r:
            conns = json.loads(r.read())["connections"] or []
        return [int(c.get("subscriptions", 0)) for c in conns]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_Server]:
    srv = _Server(tmp_path_factory.mktemp("nats-own"))
    yield srv
    os.kill(srv.proc.pid, signal.SIGCONT)  # (should a test have left it paused)
    _stop(srv.proc)


@pytest.fixture
def lake(tmp_path: Path, server: _Server, request: pytest.FixtureRequest) -> Iterator[Lake]:
    settings = {
        "stream_url": server.url,
        "stream_ack_timeout": ACK_TIMEOUT,
        "stream_prefix": "t" + str(abs(hash(request.node.nodeid)) % 10**9),
    }
    with Lake.open(tmp_path / "lake", create=True, settings=settings, background=False) as lk:
        yield lk


def test_threads_consuming_one_group_at_once_share_one_subscription(
    lake: Lake, server: _Server
) -> None:
    groups, threads_per_group = 5, 3
    with open_stream(lake, "jobs") as s:
        s.publish_many([{"i": i} for i in range(groups * threads_per_group)])
        # (the server may still list the connection of an earlier test, closing)
        _until(lambda: len(server.subscriptions()) == 1, "one client connection")
        (before,) = server.subscriptions()
        got: list[tuple[str, str]] = []  # (group, offset)
        errors: list[BaseException] = []
        mu = threading.Lock()
        for g in range(groups):
            start = threading.Barrier(threads_per_group)

            def work(n: int, group: str = f"g{g}", start: threading.Barrier = start) -> None:
                try:
                    start.wait(timeout=30)
                    msgs = s.consume(group, f"c{n}", max=2, block=5.0)
                    with mu:
                        got.extend((group, m.offset) for m in msgs)
                except BaseException as exc:  # (reported below, in the test's thread)
                    errors.append(exc)

            threads = [threading.Thread(target=work, args=(n,)) for n in range(threads_per_group)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=60)
        assert not errors, errors
        # each group's first consumes made exactly one pull subscription between them
        assert server.subscriptions() == [before + groups]
        # and no message went to two threads of one group
        assert len(set(got)) == len(got) > 0
        # a later consume reuses it
        s.consume("g0", "late", max=1, block=0.1)
        assert server.subscriptions() == [before + groups]
    # closing drops the connection, and its subscriptions with it
    _until(lambda: server.subscriptions() == [], "the connection closed")


def test_a_failed_ack_keeps_its_messages_for_another_ack(
    lake: Lake, server: _Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    with open_stream(lake, "acks") as s:
        offsets = s.publish_many([{"i": i} for i in range(3)])
        got: list[Message] = []
        deadline = time.monotonic() + 30
        while len(got) < 3 and time.monotonic() < deadline:
            got += s.consume("g", "c", max=3 - len(got), block=2.0)
        assert [m.offset for m in got] == offsets
        monkeypatch.setattr(_nats, "_ACK_TIMEOUT", 0.5, raising=False)
        os.kill(server.proc.pid, signal.SIGSTOP)  # the server answers nothing now
        try:
            with pytest.raises(StreamError):
                s.ack("g", offsets)
        finally:
            os.kill(server.proc.pid, signal.SIGCONT)
        monkeypatch.undo()
        # the handle still holds the messages: the ack can be sent again, and is confirmed
        assert s.ack("g", offsets) == 3
        assert s.ack("g", offsets) == 0  # and now they are forgotten
        # acknowledged: never delivered again, even after the ack timeout
        assert s.consume("g", "c", max=10, block=ACK_TIMEOUT + 1.0) == []
        info = s.info()["groups"]["g"]
        assert info["pending"] == 0 and info["lag"] == 0
