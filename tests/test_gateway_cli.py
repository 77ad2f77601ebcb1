"""``lakeloop user`` and ``lakeloop gateway`` from the command line, on a fresh lake."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest


def _run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lakeloop", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def cli_env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["LAKELOOP_CREDENTIALS"] = str(tmp_path / "conf" / "credentials.json")
    env["LAKELOOP_LAKE"] = str(tmp_path / "lake")
    return env


def test_user_commands(cli_env: dict[str, str], tmp_path: Path) -> None:
    made = _run(cli_env, "user", "create", "alice", "--json")
    assert made.returncode == 0, made.stderr
    doc = json.loads(made.stdout)
    assert doc["name"] == "alice" and doc["access_key"] and doc["secret_key"]
    path = Path(cli_env["LAKELOOP_CREDENTIALS"])
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert _run(cli_env, "user", "create", "alice").returncode == 2  # exists: one line, exit 2
    assert _run(cli_env, "user", "grant", "alice", "photos", "write", "--json").returncode == 0
    listed = json.loads(_run(cli_env, "user", "list", "--json").stdout)
    assert listed == [
        {"name": "alice", "access_keys": [doc["access_key"]], "grants": {"photos": "write"}}
    ]
    assert doc["secret_key"] not in _run(cli_env, "user", "list", "--json").stdout
    revoked = json.loads(_run(cli_env, "user", "revoke", "alice", "photos", "--json").stdout)
    assert revoked["revoked"] is True
    bad = _run(cli_env, "user", "grant", "bob", "photos", "read")
    assert bad.returncode == 2 and "no such user" in bad.stderr
    assert _run(cli_env, "user", "delete", "alice").returncode == 0
    assert json.loads(_run(cli_env, "user", "list", "--json").stdout) == []


@pytest.mark.parametrize("workers", [1, 2])
def test_gateway_command_serves_a_fresh_lake(cli_env: dict[str, str], workers: int) -> None:
    import boto3
    from botocore.config import Config

    assert _run(cli_env, "init").returncode == 0
    keys = json.loads(_run(cli_env, "user", "create", "ops", "--json").stdout)
    assert _run(cli_env, "user", "grant", "ops", "*", "admin").returncode == 0
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "lakeloop", "gateway", "--host", "127.0.0.1"),
            *("--port", str(port), "--workers", str(workers)),
        ],
        env=cli_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
                assert time.monotonic() < deadline, "the gateway did not start"
                time.sleep(0.1)
        clients = [
            boto3.client(
                "s3",
                endpoint_url=f"http://127.0.0.1:{port}",
                aws_access_key_id=keys["access_key"],
                aws_secret_access_key=keys["secret_key"],
                region_name="us-east-1",
                config=Config(s3={"addressing_style": "path"}),
            )
            for _ in range(4)
        ]
        clients[0].create_bucket(Bucket="fresh")
        # four connections: with several workers, writes and reads meet in other processes
        for i in range(20):
            clients[i % 4].put_object(Bucket="fresh", Key=f"hello-{i}.txt", Body=b"hi %d" % i)
        for i in range(20):
            got = clients[(i + 1) % 4].get_object(Bucket="fresh", Key=f"hello-{i}.txt")
            assert got["Body"].read() == b"hi %d" % i
        assert len(clients[3].list_objects_v2(Bucket="fresh")["Contents"]) == 20
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        if proc.stderr:
            proc.stderr.close()
