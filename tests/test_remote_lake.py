"""Training, the registry and the gate over a gateway URL: a real gateway (uvicorn on a
loopback port), real clients (``Lake.open("http://...")``), the CLI as real processes."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lakeloop import Lake
from lakeloop.catalog import Catalog
from lakeloop.errors import AccessDenied, InvalidInput, NotFound, Refused
from lakeloop.registry import Registry
from lakeloop.train import Runs
from lakeloop.train.data import arrays, batches

ROOT = Path(__file__).resolve().parent.parent


def _uid() -> str:
    return uuid.uuid4().hex[:8]


def _remote(gw: Any, key: Any) -> Any:
    return Lake.open(gw.url, access_key=key.access, secret_key=key.secret)


def _digits(gw: Any, rows: slice = slice(0, 300)) -> tuple[str, str]:
    """Raw 8x8 digits under <label>/<index>.bin in a fresh bucket, put and snapshotted
    over the gateway -> (namespace, dataset)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    images = d.images.astype(np.uint8)
    ns_name, dataset = gw.bucket("digits"), f"digits-{_uid()}"
    with _remote(gw, gw.admin) as lake:
        ns = lake.namespace(ns_name)
        for i in range(len(images))[rows]:
            ns.put(f"{d.target[i]}/{i:05d}.bin", images[i].tobytes())
        Catalog(lake).snapshot(f"{ns_name}/", dataset=dataset, labels="{label}/{name}")
    return ns_name, dataset


# ----------------------------------------------------------------------------- exact reads
def test_a_snapshot_read_over_the_gateway_returns_its_pinned_bytes_after_an_overwrite(
    gateway: Any,
) -> None:
    gw = gateway
    ns_name, dataset = gw.bucket("pin"), f"pin-{_uid()}"
    with _remote(gw, gw.admin) as lake:
        ns = lake.namespace(ns_name)
        first = ns.put("a/1.bin", b"old bytes")
        ns.put("a/2.bin", b"x" * 300_000)  # above blob_threshold: streamed from a blob
        snap = Catalog(lake).snapshot(f"{ns_name}/", dataset=dataset, labels="{label}/{name}")
        entries = {e.key: e for e in snap.entries()}
        assert first.version == entries["a/1.bin"].version > 0
        ns.put("a/1.bin", b"new bytes")
        ns.put("a/2.bin", b"y" * 300_000)
        ns.delete("a/2.bin")
        assert ns.get("a/1.bin") == b"new bytes"
        assert snap.read(entries["a/1.bin"]) == b"old bytes"
        assert snap.read(entries["a/2.bin"]) == b"x" * 300_000
        v = entries["a/1.bin"].version
        assert ns.get("a/1.bin", version=v) == b"old bytes"
        assert ns.get_range("a/1.bin", 4, version=v) == b"bytes"
        assert ns.stat("a/1.bin", version=v).etag == hashlib.md5(b"old bytes").hexdigest()
        with ns.open("a/2.bin", version=entries["a/2.bin"].version) as f:
            assert f.read() == b"x" * 300_000
        # a version of another key, or one never written, is not this object's
        with pytest.raises(NotFound):
            ns.get("a/1.bin", version=entries["a/2.bin"].version)
        with pytest.raises(NotFound):
            ns.get("a/1.bin", version=10**9)
        with pytest.raises(InvalidInput):
            ns.get("a/1.bin", version=0)
        # the same read through an unmodified S3 client: VersionId is the lake version
        s3 = gw.boto3()
        got = s3.get_object(Bucket=ns_name, Key="a/1.bin", VersionId=str(v))
        assert got["Body"].read() == b"old bytes" and got["VersionId"] == str(v)
        # the whole reader sees the snapshot, not the current state
        x, _ = arrays(lake, snap, None)
        assert sorted(bytes(b) for b in x) == [b"old bytes", b"x" * 300_000]


def test_the_reader_over_the_gateway_equals_the_local_reader(gateway: Any) -> None:
    gw = gateway
    _, dataset = _digits(gw, slice(0, 200))
    with _remote(gw, gw.admin) as remote:
        snap = Catalog(remote).resolve(f"{dataset}@latest")
        local_snap = Catalog(gw.lake).resolve(f"{dataset}@{snap.id}")
        assert snap.entries() == local_snap.entries()
        for split in ("train", "eval"):
            rx, ry = arrays(remote, snap, split)
            lx, ly = arrays(gw.lake, local_snap, split)
            assert list(rx) == list(lx) and list(ry) == list(ly)
        seen: list[bytes] = []
        for i in range(3):
            r = [(bytes(x), int(y)) for xb, yb in batches(remote, snap, shard=(i, 3),
                 batch_size=16) for x, y in zip(xb, yb, strict=True)]  # fmt: skip
            loc = [(bytes(x), int(y)) for xb, yb in batches(gw.lake, local_snap, shard=(i, 3),
                   batch_size=16) for x, y in zip(xb, yb, strict=True)]  # fmt: skip
            assert r == loc  # same volumes per shard, same physical order
            seen += [x for x, _ in r]
        assert sorted(seen) == sorted(bytes(x) for x in arrays(gw.lake, local_snap, "train")[0])


# ------------------------------------------------------------------------ grants, registry
def test_the_registry_over_the_gateway_and_the_models_grant(gateway: Any, tmp_path: Path) -> None:
    from sklearn.linear_model import LogisticRegression

    gw = gateway
    name = f"m-{_uid()}"
    model = LogisticRegression().fit(np.eye(4), [0, 1, 0, 1])
    writer = gw.user(f"writer-{_uid()}", {"@models": "write"})
    reader = gw.user(f"reader-{_uid()}", {"@models": "read", "@runs": "write"})
    with _remote(gw, writer) as lake:
        reg = Registry(lake)
        v1 = reg.register(name, model, lineage={"params": {"C": 1.0}, "run_id": "r1"})
        assert v1.version == 1 and v1.created_by.startswith(f"{writer.name} (")
        v2 = reg.register(name, model)
        assert [v.version for v in reg.versions(name)] == [1, 2]
        loaded = reg.load(f"{name}@1")
        assert loaded.lineage.params == {"C": 1.0} and list(loaded.predict(np.eye(4))) == [
            0,
            1,
            0,
            1,
        ]
        reg.alias(v2.ref, "challenger", reason="try it")
        with pytest.raises(Refused):
            reg.alias(v1.ref, "champion")  # champion moves only through the gate
        with pytest.raises(AccessDenied):  # a forced override needs admin on @models
            reg.alias(v1.ref, "champion", force=True, reason="baseline")
        with pytest.raises(Refused):
            reg.promote(v1.ref, decision={"outcome": "block"})
        rec = reg.record_decision(
            name, {"outcome": "promote", "candidate": v1.ref, "champion": None, "delta": 0.01}
        )
        assert rec["id"] == 1
        reg.promote(v1.ref, decision=rec, reason="gate")
    # the server's own registry shows exactly what the client did
    local = Registry(gw.lake)
    assert local.aliases(name) == {"challenger": 2, "champion": 1}
    assert [m.kind for m in local.history(name)] == ["move", "gate"]
    assert local.history(name)[1].decision == local.decisions(name)[0]
    before = (local.versions(name), local.history(name), local.decisions(name))
    # a principal without write on @models reads, but changes nothing
    with _remote(gw, reader) as lake:
        reg = Registry(lake)
        assert reg.get(f"{name}@champion").version == 1
        with pytest.raises(AccessDenied):
            reg.register(name, model)
        with pytest.raises(AccessDenied):
            reg.alias(f"{name}@2", "challenger")
        with pytest.raises(AccessDenied):
            reg.record_decision(name, {"outcome": "block"})
        with pytest.raises(AccessDenied):
            reg.promote(f"{name}@2", decision={"outcome": "promote", "champion": f"{name}@1"})
    assert (local.versions(name), local.history(name), local.decisions(name)) == before
    # no grant on @models at all: not even a look
    stranger = gw.user(f"stranger-{_uid()}", {"@runs": "write"})
    with _remote(gw, stranger) as lake:
        with pytest.raises(AccessDenied):
            Registry(lake).versions(name)
        with pytest.raises(AccessDenied):
            Registry(lake).register(name, model)
    assert local.versions(name) == before[0]


def test_runs_over_the_gateway_need_the_runs_grant(gateway: Any) -> None:
    from sklearn.linear_model import LogisticRegression

    gw = gateway
    model = LogisticRegression().fit(np.eye(2), [0, 1])
    runner = gw.user(f"runner-{_uid()}", {"@runs": "write"})
    with _remote(gw, runner) as lake:
        runs = Runs(lake)
        run = runs.start(params={"C": 1})
        run.log_epoch(1, {"loss": 0.5})
        rec = run.finish({"accuracy": 1.0}, model=model)
        got = runs.get(run.id)
        assert got.status == "finished" and got.epochs[0]["loss"] == 0.5 and got.tensorboard
        assert list(runs.load_model(run.id).predict(np.eye(2))) == [0, 1]
        assert rec.id in [r.id for r in runs.list()]
    viewer = gw.user(f"viewer-{_uid()}", {"@runs": "read"})
    with _remote(gw, viewer) as lake:
        assert Runs(lake).get(rec.id).metrics == {"accuracy": 1.0}
        with pytest.raises(AccessDenied):
            Runs(lake).start(params={})
    assert Runs(gw.lake).get(rec.id).status == "finished"


# --------------------------------------------------------------------- train, ci over a URL
def _env(gw: Any, key: Any) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LAKELOOP_", "AWS_"))}
    env.update(
        LAKELOOP_ACCESS_KEY=key.access,
        LAKELOOP_SECRET_KEY=key.secret,
        GIT_AUTHOR_NAME="t",
        GIT_AUTHOR_EMAIL="t@example.com",
        GIT_COMMITTER_NAME="t",
        GIT_COMMITTER_EMAIL="t@example.com",
        GIT_CONFIG_GLOBAL=os.devnull,
        PYTHONPATH=str(ROOT / "src"),
    )
    return env


def _lakeloop(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lakeloop", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


@pytest.mark.slow
def test_lakeloop_train_of_the_digits_example_over_the_gateway(
    gateway: Any, tmp_path: Path
) -> None:
    """The example project as shipped (a Keras CNN on PNGs), trimmed to one short trial."""
    sys.path.insert(0, str(ROOT / "examples" / "digits"))
    try:
        import prepare
    finally:
        sys.path.pop(0)
    gw = gateway
    project = tmp_path / "digits"
    shutil.copytree(ROOT / "examples" / "digits", project, ignore=shutil.ignore_patterns("lake"))
    pipeline = project / "pipeline.py"
    text = pipeline.read_text()
    start = text.index("params = {")
    end = text.index("\n", start)
    pipeline.write_text(
        text[:start] + 'params = {"filters": [4], "dropout": [0.0], "epochs": [1]}' + text[end:]
    )
    model = f"digits-cnn-{_uid()}"
    toml = (project / "lakeloop.toml").read_text().replace('"digits-cnn"', f'"{model}"')
    dataset = f"digits-{_uid()}"
    (project / "lakeloop.toml").write_text(
        toml.replace('dataset = "digits"', f'dataset = "{dataset}"')
    )
    user = gw.user(
        f"trainer-{_uid()}", {"@models": "write", "@runs": "write", "digits-png": "write"}
    )
    gw.lake.create_namespace(prepare.NAMESPACE, exist_ok=True)
    with _remote(gw, gw.admin) as lake:
        ns = lake.namespace(prepare.NAMESPACE)
        from sklearn.datasets import load_digits

        d = load_digits()
        images = (d.images * (255 / 16)).round().astype(np.uint8)
        import io

        from PIL import Image

        for i in range(160):
            buf = io.BytesIO()
            Image.fromarray(images[i]).save(buf, format="PNG")
            ns.put(f"{d.target[i]}/{i:05d}.png", buf.getvalue(), content_type="image/png")
    with _remote(gw, user) as lake:
        Catalog(lake).snapshot(f"{prepare.NAMESPACE}/", dataset=dataset, labels="{label}/{name}")
    done = _lakeloop(
        ["--lake", gw.url, "train", "--workers", "1", "--json"], project, _env(gw, user)
    )
    assert done.returncode == 0, done.stderr
    study = json.loads(done.stdout)
    assert study["version"]["ref"] == f"{model}@1"
    version = Registry(gw.lake).get(f"{model}@1")
    snap = Catalog(gw.lake).resolve(f"{dataset}@latest")
    assert version.lineage.snapshots == {dataset: snap.id}
    assert version.lineage.code and version.lineage.code["files"]
    assert version.lineage.run_id == study["best_run"] and version.lineage.labels == sorted(
        snap.labels
    )
    run = Runs(gw.lake).get(study["best_run"])
    assert run.status == "finished" and run.epochs and run.artifact
    assert version.created_by.startswith(user.name)


PIPELINE = """\
import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.tree import DecisionTreeClassifier

params = {"C": [1.0]}


def decode(data):
    return np.frombuffer(data, dtype=np.uint8).astype(np.float64) / 16.0


def build(params):
    return MODEL


def fit(model, data, params):
    model.fit(*data.train.arrays())


MODEL = LogisticRegression(C=1.0, max_iter=300)
"""
GOOD = "MODEL = LogisticRegression(C=1.0, max_iter=300)"
BAD = "MODEL = DecisionTreeClassifier(max_depth=2, random_state=0)"


def test_lakeloop_ci_end_to_end_over_the_gateway(gateway: Any, tmp_path: Path) -> None:
    gw = gateway
    ns_name, dataset = _digits(gw, slice(0, 700))
    model = f"digits-{_uid()}"
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "pipeline.py").write_text(PIPELINE)
    (repo / "lakeloop.toml").write_text(
        f'[project]\nlake = "{gw.url}"\npipeline = "pipeline.py"\ndataset = "{dataset}"\n'
        f'model = "{model}"\ncode = ["pipeline.py"]\n\n[[gate.policy]]\nmetric = "accuracy"\n'
        "margin = 0.03\n\n[gate.acceptance]\nthreshold = 0.8\n\n[train]\nworkers = 1\n"
    )
    ci_user = gw.user(f"ci-{_uid()}", {ns_name: "write", "@models": "write", "@runs": "write"})
    env = _env(gw, ci_user)
    for args in (["init", "-q", "-b", "main"], ["add", "."], ["commit", "-q", "-m", "p"]):
        subprocess.run(["git", "-C", str(repo), *args], check=True, env=env, capture_output=True)
    local = Registry(gw.lake)

    first = _lakeloop(["ci", "--report", "json"], repo, env)
    assert first.returncode == 0, first.stderr
    doc = json.loads(first.stdout)
    assert doc["outcome"] == "promote" and doc["candidate"] == f"{model}@1"
    assert doc["decision"]["kind"] == "acceptance"
    assert local.aliases(model) == {"champion": 1}
    assert local.history(model)[0].who.startswith(ci_user.name)

    again = _lakeloop(["ci"], repo, env)  # untouched repo, unchanged data: nothing to do
    assert again.returncode == 0, again.stderr
    assert "nothing changed" in again.stdout and len(local.versions(model)) == 1

    text = (repo / "pipeline.py").read_text()
    (repo / "pipeline.py").write_text(text.replace(GOOD, BAD))
    blocked = _lakeloop(["ci", "--report", "md"], repo, env)
    assert blocked.returncode == 1, blocked.stderr
    assert "lakeloop ci: block" in blocked.stdout
    assert local.aliases(model) == {"champion": 1} and len(local.versions(model)) == 2
    record = local.decisions(model)[-1]
    assert record["outcome"] == "block" and record["candidate"] == f"{model}@2"
    assert record["champion"] == f"{model}@1"
    # readable from the command line over the URL
    shown = _lakeloop(["--lake", gw.url, "models", "show", model, "--json"], repo, env)
    assert shown.returncode == 0, shown.stderr
    doc = json.loads(shown.stdout)
    assert [d["outcome"] for d in doc["decisions"]] == ["promote", "block"]
    assert doc["aliases"] == {"champion": 1} and len(doc["versions"]) == 2

    # without write on @models, CI trains nothing it could register and changes nothing
    no_models = gw.user(f"nomodels-{_uid()}", {ns_name: "write", "@runs": "write"})
    (repo / "pipeline.py").write_text(text)
    refused = _lakeloop(["ci"], repo, _env(gw, no_models))
    assert refused.returncode == 2 and "@models" in refused.stderr
    assert len(local.versions(model)) == 2 and local.aliases(model) == {"champion": 1}
    assert len(local.decisions(model)) == 2  # refused before training: nothing recorded


def test_an_upload_that_does_not_match_its_signed_hash_registers_nothing(tmp_path: Path) -> None:
    """In process (httpx's ASGI transport), in addition to the real gateway above."""
    from _gateway import InProcess

    gw = InProcess(tmp_path)
    head = json.dumps({"flavor": "pyfunc", "lineage": {}}).encode() + b"\n"
    body = head + b"artifact bytes"
    path = "/api/v1/models/m/versions"
    lie = {"x-amz-content-sha256-override": hashlib.sha256(body + b"!").hexdigest()}
    resp = gw.request("POST", path, body, headers=lie)
    assert resp.status_code == 400 and "SHA256Mismatch" in resp.text
    bad_head = gw.request("POST", path, b"not json\nbytes")
    assert bad_head.status_code == 400
    assert Registry(gw.lake).models() == []
    gw.lake.close()
