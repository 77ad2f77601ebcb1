"""The `lakeloop` command, run as a real process the way a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

LAKELOOP = [sys.executable, "-m", "lakeloop"]


def run(
    *args: str, lake: Path, check: bool = True, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "LAKELOOP_LAKE": str(lake), "COLUMNS": "200", **(env or {})}
    proc = subprocess.run(
        [*LAKELOOP, *args], capture_output=True, text=True, env=full_env, timeout=120
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"{args} exited {proc.returncode}: {proc.stderr}")
    return proc


@pytest.fixture
def files(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    (root / "sub" / "deeper").mkdir(parents=True)
    for i in range(50):
        (root / "sub" / f"f{i}.txt").write_text(f"file {i}\n")
    (root / "sub" / "deeper" / "x.json").write_text('{"a": 1}')
    (root / "big.bin").write_bytes(os.urandom(300_000))
    return root


def test_full_tour(tmp_path: Path, files: Path) -> None:
    lake = tmp_path / "lake"
    assert "created lake" in run("init", "--set", "blob_threshold=100KiB", lake=lake).stdout
    run("ns", "create", "photos", lake=lake)
    out = run("put", "-q", str(files), "photos/imp", lake=lake).stdout
    assert "stored 52 objects" in out
    listing = run("ls", "photos/imp/sub/", "--json", lake=lake).stdout.splitlines()
    keys = [json.loads(line)["key"] for line in listing]
    assert len(keys) == 51 and keys == sorted(keys)
    assert run("get", "photos/imp/sub/f7.txt", lake=lake).stdout == "file 7\n"
    target = tmp_path / "back.bin"
    run("get", "photos/imp/big.bin", "-o", str(target), lake=lake)
    assert target.read_bytes() == (files / "big.bin").read_bytes()
    st = json.loads(run("stat", "photos/imp/sub/deeper/x.json", lake=lake).stdout)
    assert st["size"] == 8 and st["content_type"] == "application/json"
    single = tmp_path / "one.txt"
    single.write_text("single")
    run("put", "-q", str(single), "photos/exact/key.txt", lake=lake)
    assert run("get", "photos/exact/key.txt", lake=lake).stdout == "single"
    assert "deleted 1" in run("rm", "photos/imp/sub/f1.txt", lake=lake).stdout
    # f2 and f20..f29: eleven keys under the prefix
    assert "deleted 11 objects" in run("rm", "-r", "photos/imp/sub/f2", lake=lake).stdout
    du = json.loads(run("du", "--json", lake=lake).stdout)
    assert du[0]["namespace"] == "photos" and du[0]["blobs"] == 1
    report = json.loads(run("compact", "--json", lake=lake).stdout)
    assert report[0]["records_dropped"] >= 1
    assert "fsck ok" in run("fsck", lake=lake).stdout
    ns_list = json.loads(run("ns", "list", "--json", lake=lake).stdout)
    assert [r["namespace"] for r in ns_list] == ["photos"]
    assert json.loads(run("ns", "stat", "photos", lake=lake).stdout)["usage"]["objects"] > 0


def test_errors_are_one_line_and_exit_2(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    proc = run("ls", "photos", lake=lake, check=False)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert "lakeloop init" in proc.stderr
    run("init", lake=lake)
    for args in (("ns", "create", "Bad_Name"), ("get", "nope/k"), ("init",)):
        proc = run(*args, lake=lake, check=False)
        assert proc.returncode == 2, args
        assert proc.stderr.startswith("error: ") and "Traceback" not in proc.stderr
    run("ns", "create", "photos", lake=lake)
    proc = run("get", "photos/missing", lake=lake, check=False)
    assert proc.returncode == 2 and "no such object" in proc.stderr
    debug = run("--debug", "get", "photos/missing", lake=lake, check=False)
    assert "Traceback" in debug.stderr


def test_fsck_exits_1_on_damage(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    run("init", lake=lake)
    run("ns", "create", "photos", lake=lake)
    src = tmp_path / "f.txt"
    src.write_bytes(b"precious bytes " * 20)
    run("put", "-q", str(src), "photos/f.txt", lake=lake)
    vol = lake / "namespaces" / "photos" / "volumes" / "0000000001.vol"
    raw = bytearray(vol.read_bytes())
    raw[-40] ^= 0xFF
    vol.write_bytes(bytes(raw))
    proc = run("fsck", lake=lake, check=False)
    assert proc.returncode == 1 and "damaged-record" in proc.stdout
    get = run("get", "photos/f.txt", lake=lake, check=False)
    assert get.returncode == 2 and "crc32c" in get.stderr and get.stdout == ""
    repaired = run("fsck", "--repair", lake=lake, check=False)
    assert repaired.returncode == 0, repaired.stdout
    assert run("fsck", lake=lake).returncode == 0


def test_config_shows_sources(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    run("init", "--set", "volume_size=32MiB", lake=lake)
    rows = json.loads(run("config", "--json", lake=lake, env={"LAKELOOP_SYNC": "batch"}).stdout)
    by_name = {r["name"]: r for r in rows}
    assert by_name["volume_size"]["value"] == 32 * 1024**2
    assert by_name["volume_size"]["source"] == "lake.toml"
    assert by_name["sync"] == {**by_name["sync"], "value": "batch", "source": "LAKELOOP_SYNC"}
    assert by_name["blob_threshold"]["source"] == "default"
    assert all(r["help"] for r in rows)
    bad = run("config", lake=lake, check=False, env={"LAKELOOP_SYNC": "sometimes"})
    assert bad.returncode == 2 and "LAKELOOP_SYNC" in bad.stderr


def test_help_is_fast_and_lists_commands(tmp_path: Path) -> None:
    out = run("--help", lake=tmp_path).stdout
    for cmd in ("init", "ns", "put", "get", "ls", "rm", "stat", "compact", "fsck", "du", "config"):
        assert cmd in out
    probe = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "lakeloop", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    # the store (sqlite3, zstandard) is not imported just to print help
    assert "zstandard" not in probe.stderr and "sqlite3" not in probe.stderr
