"""Real stream servers for the tests: redis-server and nats-server -js on free ports.

Each is started with its data in a temporary folder and killed at the end of the
session. Redis runs with ``appendonly yes`` and ``appendfsync always``, so a publish
it acknowledged is on disk, as the stream backend documents.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, proc: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"{what} did not listen on {port}")


def _require(binary: str) -> str:
    path = shutil.which(binary)
    if path is None:
        pytest.fail(f"{binary} is not installed (make installs it: apt-get install {binary})")
    return path


def start_redis(folder: Path) -> tuple[str, Callable[[], None]]:
    port = free_port()
    folder.mkdir(parents=True, exist_ok=True)
    args = [
        *("--port", str(port), "--bind", "127.0.0.1", "--dir", str(folder)),
        *("--appendonly", "yes", "--appendfsync", "always", "--save", ""),
        *("--daemonize", "no", "--loglevel", "warning"),
    ]
    proc = subprocess.Popen(
        [_require("redis-server"), *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    _wait_port(port, proc, "redis-server")
    return f"redis://127.0.0.1:{port}/0", lambda: _stop(proc)


def start_nats(folder: Path) -> tuple[str, Callable[[], None]]:
    port = free_port()
    folder.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [_require("nats-server"), "-js", "-a", "127.0.0.1", "-p", str(port), "-sd", str(folder)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    _wait_port(port, proc, "nats-server")
    return f"nats://127.0.0.1:{port}", lambda: _stop(proc)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
