"""Snapshots: immutable under overwrites, deletes and compaction; stable splits; refs."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lakeloop import Lake
from lakeloop.catalog import Catalog, parse_ref, split_of
from lakeloop.errors import InvalidInput, InvalidName, NotFound


def _fill(ns, n: int, start: int = 0, tag: bytes = b"") -> dict[str, bytes]:  # type: ignore[no-untyped-def]
    data = {}
    for i in range(start, start + n):
        key = f"{'cat' if i % 3 else 'dog'}/{i:05d}.bin"
        data[key] = hashlib.sha256(tag + key.encode()).digest() * 40
        ns.put(key, data[key])
    return data


def test_snapshot_survives_overwrites_deletes_compaction_and_reopen(tmp_path: Path) -> None:
    settings = {"volume_size": "64KiB", "blob_threshold": "4KiB", "blob_chunk_size": "1KiB"}
    path = tmp_path / "lake"
    with Lake.open(path, create=True, settings=settings, background=False) as lake:
        ns = lake.create_namespace("pets")
        original = _fill(ns, 300)
        ns.put("big/blob.bin", os.urandom(20_000))  # a blob, pinned too
        original["big/blob.bin"] = ns.get("big/blob.bin")
        cat = Catalog(lake)
        snap = cat.snapshot("pets/", dataset="pets", labels="{label}/{name}")
        assert snap.count == 301 and snap.number == 1
        keys = sorted(original)
        for key in keys[::2]:
            ns.delete(key)
        for key in keys[1::2]:
            ns.put(key, b"overwritten")
        report = ns.compact()
        assert report.records_copied > 0  # the pinned records were moved, not left in place
        got = {e.key: snap.read(e) for e in snap.entries()}
        assert got == original
    # pins and manifests are durable: a reopened lake reads the same bytes
    with Lake.open(path, background=False) as lake:
        cat = Catalog(lake)
        again = cat.resolve("pets@1")
        assert again.id == snap.id
        assert {e.key: again.read(e) for e in again.entries()} == original
        assert hashlib.sha256(again.manifest()).hexdigest() == again.id
        # dropping releases the pins; compaction may then reclaim the bytes
        cat.dataset("pets").drop("1")
        assert lake.namespace("pets").pins() == {}
        with pytest.raises(NotFound):
            cat.resolve("pets@1")


def test_labels_splits_and_unchanged_data(lake: Lake) -> None:
    ns = lake.create_namespace("pets")
    _fill(ns, 60)
    cat = Catalog(lake)
    s1 = cat.snapshot("pets/", dataset="pets", labels="{label}/{name}", eval_fraction=0.25)
    assert s1.labels == {"cat": 40, "dog": 20}
    assert s1.splits["eval"] + s1.splits["train"] == 60
    for e in s1.entries():
        assert e.label == e.key.split("/")[0]
        assert e.split == split_of(e.key, 0.25)
    # nothing changed: the same snapshot, no new number
    s_same = cat.snapshot("pets/", dataset="pets")
    assert (s_same.id, s_same.number) == (s1.id, 1)
    assert [s.number for s in cat.dataset("pets").snapshots()] == [1]
    # a dataset's definition is fixed
    with pytest.raises(InvalidInput, match="eval_fraction"):
        cat.snapshot("pets/", dataset="pets", eval_fraction=0.5)
    with pytest.raises(InvalidInput, match="prefix"):
        cat.snapshot("pets/cat/", dataset="pets")


def test_splits_are_stable_as_data_grows(lake: Lake) -> None:
    ns = lake.create_namespace("pets")
    _fill(ns, 200)
    cat = Catalog(lake)
    s1 = cat.snapshot("pets/", dataset="grow", eval_fraction=0.2)
    _fill(ns, 300, start=200)
    s2 = cat.snapshot("pets/", dataset="grow")
    assert s2.number == 2 and s2.count == 500
    eval1 = {e.key for e in s1.entries("eval")}
    eval2 = {e.key for e in s2.entries("eval")}
    train1 = {e.key for e in s1.entries("train")}
    assert eval1 <= eval2 and train1 <= {e.key for e in s2.entries("train")}
    assert 0.12 < len(eval2) / 500 < 0.28
    d = cat.dataset("grow").diff("1", "2")
    assert len(d.added) == 300 and d.removed == [] and d.changed == []


def test_labels_from_a_table(lake: Lake) -> None:
    ns = lake.create_namespace("imgs")
    for i in range(5):
        ns.put(f"img/{i}.bin", bytes([i]))
    meta = lake.create_namespace("meta")
    meta.put("labels.csv", b"key,label\nimg/0.bin,zero\n1.bin,one\n")
    cat = Catalog(lake)
    s = cat.snapshot("imgs/img/", dataset="imgs", labels_table="meta/labels.csv")
    labels = {e.key: e.label for e in s.entries()}
    assert labels == {
        "img/0.bin": "zero",
        "img/1.bin": "one",
        "img/2.bin": None,
        "img/3.bin": None,
        "img/4.bin": None,
    }
    meta.put("bad.csv", b"onlyonefield\n")
    with pytest.raises(InvalidInput, match="key,label"):
        cat.snapshot("imgs/img/", dataset="imgs2", labels_table="meta/bad.csv")


def test_references(lake: Lake) -> None:
    ns = lake.create_namespace("pets")
    cat = Catalog(lake)
    snaps = []
    for i in range(3):
        ns.put(f"k{i}", b"x")
        snaps.append(cat.snapshot("pets/", dataset="pets"))
    assert cat.resolve("pets@latest").id == snaps[-1].id
    assert cat.resolve("pets").id == snaps[-1].id
    assert cat.resolve("pets@1").id == snaps[0].id
    assert cat.resolve(f"pets@{snaps[1].id[:8]}").number == 2
    assert cat.resolve(f"pets@{snaps[1].id}").number == 2
    for bad, err in (
        ("pets@9", NotFound),
        ("pets@ffffffff", NotFound),
        ("nope@latest", NotFound),
        ("pets@zz", InvalidInput),
        ("pets@", None),
        ("bad name@1", InvalidName),
        ("", InvalidInput),
    ):
        if err is None:
            assert cat.resolve(bad).number == 3
            continue
        with pytest.raises(err):
            cat.resolve(bad)
    assert parse_ref("a@latest") == ("a", "latest")


def test_snapshot_of_missing_namespace_changes_nothing(lake: Lake) -> None:
    cat = Catalog(lake)
    with pytest.raises(NotFound):
        cat.snapshot("nope/", dataset="x")
    with pytest.raises(InvalidInput):
        cat.snapshot("pets/", dataset="x", labels="{name}")  # no {label}
    assert cat.dataset_names() == []


def test_the_cli_finds_previews_and_snapshots(tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    env = {**os.environ, "LAKELOOP_LAKE": str(lake), "COLUMNS": "200"}

    def run(*args: str, rc: int = 0) -> str:
        p = subprocess.run(
            [sys.executable, "-m", "lakeloop", *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
        assert p.returncode == rc, (args, p.stdout, p.stderr)
        return p.stdout + p.stderr

    data = tmp_path / "data"
    for label in ("cat", "dog"):
        (data / label).mkdir(parents=True)
        for i in range(4):
            (data / label / f"{i}.csv").write_text(f"x,y\n{i},{label}\n")
    run("init")
    run("ns", "create", "pets")
    run("put", "-q", str(data), "pets/")
    found = json.loads(run("search", "dog", "--type", "text/csv", "--json"))
    assert found["total"] == 4 and {i["key"][:3] for i in found["items"]} == {"dog"}
    assert (
        "x" in json.loads(run("preview", "pets/cat/1.csv", "--json"))["data"]["columns"][0]["name"]
    )
    out = json.loads(
        run(
            "snapshot",
            "create",
            "pets/",
            "--dataset",
            "pets",
            "--labels",
            "{label}/{name}",
            "--json",
        )
    )
    assert out["count"] == 8 and out["labels"] == {"cat": 4, "dog": 4}
    shown = json.loads(run("dataset", "show", "pets@1", "--json"))
    assert shown["id"] == out["id"] and len(shown["entries"]) == 8
    stats = json.loads(run("stats", "pets@latest", "--columns", "--json"))
    assert stats["table"]["rows"] == 8
    assert "pets" in run("dataset", "list")
    run("rm", "pets/cat/0.csv")
    run("snapshot", "create", "pets/", "--dataset", "pets")
    diff = json.loads(run("dataset", "diff", "pets@1", "--json"))
    assert diff["removed"] == ["cat/0.csv"]
    assert "error:" in run("dataset", "show", "pets@7", rc=2)
    assert "error:" in run("search", "--min-size", "lots", rc=2)
    assert "error:" in run(
        "snapshot", "create", "pets/", "--dataset", "pets", "--eval-fraction", "2", rc=2
    )


_SNAPSHOT_LOOP = """
import sys
from lakeloop import Lake
from lakeloop.catalog import Catalog
root = sys.argv[1]
with Lake.open(root, background=False) as lake:
    ns = lake.namespace("pets")
    cat = Catalog(lake)
    i = 0
    while True:
        i += 1
        ns.put(f"new/{i:06d}", b"v" * (i % 97))
        ns.put(f"cat/{i % 50:05d}.bin", b"over" * i)  # overwrite: old versions need pins
        cat.snapshot("pets/", dataset="pets", labels="{label}/{name}")
        print(i, flush=True)
"""


@pytest.mark.parametrize("delay", [0.3, 0.7, 1.1])
def test_kill_9_while_snapshotting_leaves_every_recorded_snapshot_whole(
    tmp_path: Path, delay: float
) -> None:
    import time

    root = tmp_path / "lake"
    with Lake.open(root, create=True, background=False) as lake:
        _fill(lake.create_namespace("pets"), 300)
    proc = subprocess.Popen(
        [sys.executable, "-c", _SNAPSHOT_LOOP, str(root)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None
    proc.stdout.readline()  # at least one snapshot finished
    time.sleep(delay)
    proc.kill()
    proc.communicate()
    with Lake.open(root, background=False) as lake:
        cat = Catalog(lake)
        snaps = cat.dataset("pets").snapshots()
        assert snaps and [s.number for s in snaps] == list(range(1, len(snaps) + 1))
        ns = lake.namespace("pets")
        for s in snaps:
            assert hashlib.sha256(s.manifest()).hexdigest() == s.id
            for e in s.entries():
                s.read(e)  # every recorded version is still there, MD5 checked
        cat.gc()
        assert set(ns.pins()) == {f"snapshot:{s.id}" for s in snaps}
        manifests = {i.key for i in lake.internal_namespace("_catalog").list(prefix="snapshots/")}
        assert manifests == {f"snapshots/{s.id}.jsonl" for s in snaps}
        assert lake.fsck().ok


def test_a_manifest_that_does_not_match_its_name_is_refused(lake: Lake) -> None:
    from lakeloop.errors import ChecksumError

    ns = lake.create_namespace("pets")
    ns.put("a", b"1")
    cat = Catalog(lake)
    snap = cat.snapshot("pets/", dataset="pets")
    store = lake.internal_namespace("_catalog")
    raw = store.get(f"snapshots/{snap.id}.jsonl")
    store.put(f"snapshots/{snap.id}.jsonl", raw.replace(b'"a"', b'"b"'))
    with pytest.raises(ChecksumError):
        cat.resolve("pets@latest").entries()
    with pytest.raises(ChecksumError):
        cat.resolve("pets@latest").manifest()
