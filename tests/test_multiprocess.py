"""Several real processes on one lake: concurrent writers and readers, and the
namespace writer lock (LockTimeout, reads unaffected, other namespaces unaffected)."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from _lakemodel import DELETED, Model, digest, fsck_problems, summary, verify
from lakeloop import Lake
from lakeloop.errors import LockTimeout, NamespaceUnavailable
from mp_child import value

CHILD = Path(__file__).with_name("mp_child.py")
SETTINGS: dict[str, Any] = {
    "volume_size": "256KiB",
    "blob_threshold": "64KiB",
    "blob_chunk_size": "16KiB",
    "compaction_free_margin": 0,
}


def spawn(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, str(CHILD), *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )


def finish(proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    _out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err.decode(errors="replace")[-3000:]


def test_concurrent_writers_and_readers(tmp_path: Path) -> None:
    lake_path = tmp_path / "lake"
    model = Model()
    with Lake.open(lake_path, create=True, settings=SETTINGS, background=False) as lake:
        ns = lake.create_namespace("shared")
        for i in range(40):
            key = f"seed/{i:03d}"
            data = value(key, random.Random(i), 500 + i)
            ns.put(key, data)
            model.ack(key, digest(data))
    writers = [
        spawn("writer", str(lake_path), str(i), "120", str(tmp_path / f"w{i}.json"))
        for i in range(4)
    ]
    readers = [spawn("reader", str(lake_path), "3", str(tmp_path / f"r{i}.json")) for i in range(2)]
    procs = writers + readers
    try:
        for p in procs:  # everyone has opened the lake: start together
            assert p.stdout is not None and p.stdout.readline().strip() == b"ready"
        for p in procs:
            assert p.stdin is not None
            p.stdin.write(b"go\n")
            p.stdin.flush()
        for p in procs:
            finish(p)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    for i in range(4):
        for key, md5 in json.loads((tmp_path / f"w{i}.json").read_text()).items():
            model.ack(key, DELETED if md5 is None else md5)
    assert sum(1 for v in model.acked.values() if v == DELETED) > 10  # writer 0 deleted
    for i in range(2):
        stats = json.loads((tmp_path / f"r{i}.json").read_text())
        assert not stats["bad"], stats["bad"][:5]
        assert stats["reads"] > 100 and stats["found"] > 0, stats
    with Lake.open(lake_path, background=False) as lake:
        ns = lake.namespace("shared")
        problems = verify(ns, model)
        assert not problems, summary(problems)
        report = lake.fsck()
        assert report.ok, summary(fsck_problems(report))
        assert report.objects == len(model.live_keys())


@pytest.fixture
def short_lock_timeout(monkeypatch: pytest.MonkeyPatch) -> float:
    monkeypatch.setenv("LAKELOOP_LOCK_TIMEOUT", "0.5")
    return 0.5


def test_lock_timeout_and_namespace_isolation(tmp_path: Path, short_lock_timeout: float) -> None:
    lake_path = tmp_path / "lake"
    with Lake.open(lake_path, create=True, settings=SETTINGS, background=False) as lake:
        lake.create_namespace("locked").put("there", b"before")
        lake.create_namespace("free").put("there", b"before")
    env = {k: v for k, v in os.environ.items() if k != "LAKELOOP_LOCK_TIMEOUT"}
    holder = spawn("hold", str(lake_path), "locked", env=env)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == b"locked"
        with Lake.open(lake_path, background=False) as lake:
            assert lake.settings["lock_timeout"] == short_lock_timeout
            ns = lake.namespace("locked")  # opening does not need the lock
            started = time.monotonic()
            with pytest.raises(LockTimeout) as err:
                ns.put("new", b"data")
            waited = time.monotonic() - started
            assert short_lock_timeout <= waited < short_lock_timeout + 5
            text = str(err.value)
            assert "writer lock" in text and "locked" in text and "0.5" in text
            assert "another process" in text  # the hint says what is going on
            assert isinstance(err.value, NamespaceUnavailable)
            for write in (lambda: ns.delete("there"), lambda: ns.put_many([("a", b"1")])):
                with pytest.raises(LockTimeout):
                    write()
            # reads go on
            assert ns.get("there") == b"before"
            assert [i.key for i in ns.list()] == ["there"]
            # and so do writes to another namespace
            free = lake.namespace("free")
            free.put("new", b"fine")
            free.delete("there")
            assert free.get("new") == b"fine"
            # the holder dies (kill -9): the OS drops its lock
            holder.send_signal(signal.SIGKILL)
            holder.wait()
            ns.put("new", b"data")
            assert ns.get("new") == b"data"
            assert lake.fsck().ok
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
        for stream in (holder.stdin, holder.stdout, holder.stderr):
            if stream is not None:
                stream.close()


def test_another_process_opening_and_closing_the_lake_leaves_our_index_working(
    tmp_path: Path,
) -> None:
    """A process that opens a namespace and exits must not take the index's WAL away
    from a process still using it (found by the catalog benchmark: a prefetch that
    closed its own descriptor of index.sqlite dropped SQLite's POSIX locks)."""
    import threading

    root = tmp_path / "lake"
    script = (
        "import sys\n"
        "from lakeloop import Lake\n"
        "with Lake.open(sys.argv[1], background=False) as lake:\n"
        "    ns = lake.namespace('shared')\n"
        "    assert sum(1 for _ in ns.list()) >= 100\n"
    )
    with Lake.open(root, create=True, background=False) as lake:
        ns = lake.create_namespace("shared")
        ns.put_many((f"k{i}", b"x") for i in range(100))
        for round_ in range(3):
            proc = subprocess.run(
                [sys.executable, "-c", script, str(root)], capture_output=True, timeout=60
            )
            assert proc.returncode == 0, proc.stderr
            errors: list[BaseException] = []

            def write(t: int, r: int = round_, errors: list[BaseException] = errors) -> None:
                try:
                    for i in range(20):
                        ns.put(f"r{r}/t{t}/{i}", b"y" * 100)
                except BaseException as exc:
                    errors.append(exc)

            threads = [threading.Thread(target=write, args=(t,)) for t in range(4)]
            for th in threads:
                th.start()
            for th in threads:
                th.join()
            assert errors == []
            assert (root / "namespaces" / "shared" / "index.sqlite-wal").exists()
    with Lake.open(root, background=False) as lake:
        assert sum(1 for _ in lake.namespace("shared").list()) == 100 + 3 * 80


_ONE_WRITE_AT_A_TIME = r"""
import sys
from lakeloop import Lake

lake = Lake.open(sys.argv[1], background=False)
ns = lake.namespace("shared")
for line in sys.stdin:
    ns.put("hot", line.strip().encode())
    print("put", line.strip(), flush=True)  # acknowledged: every reader must see it now
"""


def test_a_reader_polling_during_a_write_sees_it_once_acknowledged(tmp_path: Path) -> None:
    """A reader looking a key up while another process writes it must not keep the old
    location after the write is acknowledged (its location cache is told of the commit)."""
    import threading

    lake_path = tmp_path / "lake"
    with Lake.open(lake_path, create=True, background=False) as lake:
        lake.create_namespace("shared").put("hot", b"v-1")
    writer = subprocess.Popen(
        [sys.executable, "-c", _ONE_WRITE_AT_A_TIME, str(lake_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")},
    )
    assert writer.stdin is not None and writer.stdout is not None
    stop = threading.Event()
    try:
        with Lake.open(lake_path, background=False) as lake:
            ns = lake.namespace("shared")

            def poll() -> None:  # look the key up as fast as possible, all through the writes
                while not stop.is_set():
                    ns.get("hot")

            poller = threading.Thread(target=poll, daemon=True)
            poller.start()
            stale = []
            for i in range(30):
                writer.stdin.write(f"v{i}\n")
                writer.stdin.flush()
                assert writer.stdout.readline().split() == ["put", f"v{i}"]
                deadline = time.monotonic() + 5
                while (got := ns.get("hot")) != f"v{i}".encode():
                    if time.monotonic() > deadline:
                        stale.append((i, got))
                        break
                    time.sleep(0.01)
            stop.set()
            poller.join(10)
        assert stale == []
    finally:
        stop.set()
        writer.stdin.close()
        writer.wait(30)
        writer.stdout.close()
