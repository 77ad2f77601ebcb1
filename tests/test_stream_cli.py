"""``lakeloop stream ls / info / tail``, run as real processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from lakeloop import Lake
from lakeloop.stream import open_stream


def run(*args: str, lake: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LAKELOOP_LAKE": str(lake), "COLUMNS": "200"}
    proc = subprocess.run(
        [sys.executable, "-m", "lakeloop", *args], capture_output=True, text=True, env=env,
        timeout=120,
    )  # fmt: skip
    if check and proc.returncode != 0:
        raise AssertionError(f"{args} exited {proc.returncode}: {proc.stderr}")
    return proc


def test_ls_info_tail(tmp_path: Path) -> None:
    root = tmp_path / "lake"
    with Lake.open(root, create=True, background=False) as lake:
        with open_stream(lake, "predictions") as s:
            s.publish_many([{"i": i} for i in range(25)], ids=[f"p{i}" for i in range(25)])
            s.consume("joiner", "c", max=5)
        open_stream(lake, "feedback").close()
    rows = json.loads(run("stream", "ls", "--json", lake=root).stdout)
    assert [(r["name"], r["length"]) for r in rows] == [("feedback", 0), ("predictions", 25)]
    assert rows[1]["groups"] == ["joiner"]
    table = run("stream", "ls", lake=root).stdout
    assert "predictions" in table and "joiner" in table
    info = json.loads(run("stream", "info", "predictions", lake=root).stdout)
    assert info["length"] == 25 and info["groups"]["joiner"] == {
        "committed": 0,
        "pending": 5,
        "lag": 20,
    }
    last = [
        json.loads(line)
        for line in run("stream", "tail", "predictions", lake=root).stdout.splitlines()
    ]
    assert [d["data"]["i"] for d in last] == list(range(15, 25))
    some = run("stream", "tail", "predictions", "--from", "3", "-n", "2", lake=root).stdout
    assert [json.loads(line)["id"] for line in some.splitlines()] == ["p4", "p5"]
    assert run("stream", "tail", "feedback", lake=root).stdout == ""


def test_bad_names_and_urls_exit_2_with_one_line(tmp_path: Path) -> None:
    root = tmp_path / "lake"
    Lake.open(root, create=True, background=False).close()
    for args in (
        ("stream", "info", "Bad_Name"),
        ("stream", "ls", "--url", "kafka://x"),
        ("stream", "tail", "ok", "--from", "nope"),
    ):
        proc = run(*args, lake=root, check=False)
        assert proc.returncode == 2, args
        assert proc.stderr.startswith("error: ") and "Traceback" not in proc.stderr


def test_redis_streams_are_listed_with_url(tmp_path: Path, redis_server: str) -> None:
    root = tmp_path / "lake"
    with (
        Lake.open(root, create=True, background=False) as lake,
        open_stream(lake, "on-redis", url=redis_server) as s,
    ):
        s.publish({"x": 1})
    rows = json.loads(run("stream", "ls", "--json", "--url", redis_server, lake=root).stdout)
    assert {"name": "on-redis", "backend": "redis"}.items() <= next(
        r for r in rows if r["name"] == "on-redis"
    ).items()


def test_importing_the_stream_package_loads_no_client_library() -> None:
    probe = subprocess.run(
        [sys.executable, "-c", "import sys, lakeloop.stream; print(sorted(m for m in sys.modules"
         " if m.split('.')[0] in ('redis', 'nats')))"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert probe.stdout.strip() == "[]", probe.stderr
