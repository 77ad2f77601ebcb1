"""The registry: versions, lineage round-trip, flavors, aliases and the champion rule."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from _registry_models import Doubler, negate
from lakeloop import Lake
from lakeloop.errors import InvalidInput, InvalidName, NotFound, Refused
from lakeloop.registry import (
    FLAVORS,
    Flavor,
    Lineage,
    Registry,
    flavor_for,
    parse_model_ref,
)


def _sklearn_model() -> Any:
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 3))
    y = (x[:, 0] > 0).astype(int)
    return LogisticRegression().fit(x, y), x


LINEAGE = Lineage(
    snapshots={"digits": "ab" * 32},
    code={"commit": "c" * 40, "dirty": None, "content": "d" * 64, "files": ["p.py"]},
    params={"C": 1.0, "layers": [8, 4]},
    metrics={"accuracy": 0.9},
    run_id="r-1",
    labels=["cat", "dog"],
    extra={"cv": {"folds": 3}},
)


# ---------------------------------------------------------------- flavor conformance
class FlavorConformance:
    """Every flavor: save -> load -> predict equals the original; one file is written."""

    flavor: Flavor

    def make(self) -> tuple[Any, Any]:
        raise NotImplementedError

    def expected(self, model: Any, batch: Any) -> Any:
        return model.predict(batch)

    def test_round_trip(self, tmp_path: Path) -> None:
        model, batch = self.make()
        assert self.flavor.accepts(model)
        path = tmp_path / f"m{self.flavor.suffix}"
        self.flavor.save(model, path)
        assert [p.name for p in tmp_path.iterdir()] == [path.name]
        again = self.flavor.load(path)
        np.testing.assert_allclose(
            np.asarray(self.flavor.predict(again, batch)),
            np.asarray(self.expected(model, batch)),
            rtol=1e-6,
        )

    def test_through_registry(self, lake: Lake) -> None:
        model, batch = self.make()
        reg = Registry(lake)
        v = reg.register("m", model, flavor=self.flavor.name, lineage=LINEAGE)
        loaded = reg.load("m@latest")
        assert loaded.version == v.version == 1 and loaded.flavor == self.flavor.name
        assert loaded.lineage == LINEAGE
        np.testing.assert_allclose(
            np.asarray(loaded.predict(batch)), np.asarray(self.expected(model, batch)), rtol=1e-6
        )


class TestSklearnFlavor(FlavorConformance):
    flavor = FLAVORS["sklearn"]

    def make(self) -> tuple[Any, Any]:
        return _sklearn_model()


class TestPyfuncObject(FlavorConformance):
    flavor = FLAVORS["pyfunc"]

    def make(self) -> tuple[Any, Any]:
        return Doubler(), [1.0, 2.5]


class TestPyfuncCallable(FlavorConformance):
    flavor = FLAVORS["pyfunc"]

    def make(self) -> tuple[Any, Any]:
        return negate, [1.0, 2.5]

    def expected(self, model: Any, batch: Any) -> Any:
        return model(batch)


def test_flavor_is_picked_from_the_model() -> None:
    assert flavor_for(_sklearn_model()[0]).name == "sklearn"
    assert flavor_for(Doubler()).name == "pyfunc"
    with pytest.raises(InvalidInput, match="no flavor"):
        flavor_for(object())
    with pytest.raises(InvalidInput, match="unknown flavor"):
        flavor_for(Doubler(), "onnx")


def test_pyfunc_refuses_what_it_cannot_pickle(lake: Lake) -> None:
    with pytest.raises(InvalidInput, match="cannot pickle"):
        Registry(lake).register("m", lambda b: b, flavor="pyfunc")
    assert Registry(lake).models() == []


# ---------------------------------------------------------------- versions and refs
def test_versions_refs_and_lineage(lake: Lake) -> None:
    reg = Registry(lake)
    for i in range(3):
        reg.register("digits", Doubler(), lineage={"params": {"i": i}, "run_id": f"r{i}"})
    reg.register("other", negate)
    assert reg.models() == ["digits", "other"]
    assert [v.version for v in reg.versions("digits")] == [1, 2, 3]
    assert reg.get("digits").version == 3 and reg.get("digits@latest").version == 3
    assert reg.get("digits@2").lineage.params == {"i": 1}
    assert reg.get("digits@2").lineage.run_id == "r1"
    doc = reg.get("digits@2").to_dict()
    assert json.loads(json.dumps(doc))["lineage"]["params"] == {"i": 1}
    with pytest.raises(NotFound, match="no version 9"):
        reg.get("digits@9")
    with pytest.raises(NotFound, match="no alias"):
        reg.load("digits@champion")
    with pytest.raises(NotFound, match="no such model"):
        reg.get("nope@latest")
    with pytest.raises(InvalidName):
        parse_model_ref("bad name@1")
    assert parse_model_ref("digits") == ("digits", "latest")


def test_lineage_round_trip_survives_reopening(tmp_path: Path) -> None:
    with Lake.open(tmp_path / "lake", create=True, background=False) as lake:
        Registry(lake).register("m", Doubler(), lineage=LINEAGE)
    with Lake.open(tmp_path / "lake", background=False) as lake:
        got = Registry(lake).get("m@1")
    assert got.lineage == LINEAGE and got.lineage.to_dict() == LINEAGE.to_dict()
    with pytest.raises(InvalidInput, match="unknown lineage"):
        Lineage.from_dict({"snapshot": {}})


def test_tampered_artifact_is_refused(lake: Lake) -> None:
    from lakeloop.errors import ChecksumError

    reg = Registry(lake)
    reg.register("m", Doubler())
    ns = lake.internal_namespace("_registry")
    ns.put("models/m/artifacts/00000001.pkl", b"not the model")
    with pytest.raises(ChecksumError, match="registered checksum"):
        reg.load("m@1")


# ---------------------------------------------------------------- aliases
def test_alias_moves_are_recorded(lake: Lake) -> None:
    reg = Registry(lake)
    reg.register("m", Doubler())
    reg.register("m", Doubler())
    reg.alias("m@1", "challenger", reason="first try", actor="ann")
    reg.alias("m@2", "challenger", reason="better", actor="bob")
    reg.alias("m@1", "stable")
    assert reg.aliases("m") == {"challenger": 2, "stable": 1}
    assert reg.load("m@challenger").version == 2
    assert reg.get("m@1").aliases == ("stable",)
    moves = reg.history("m")
    assert [(m.alias, m.previous, m.version, m.who, m.why) for m in moves[:2]] == [
        ("challenger", None, 1, "ann", "first try"),
        ("challenger", 1, 2, "bob", "better"),
    ]
    assert all(m.when > 0 and m.kind == "move" for m in moves)
    reg.remove_alias("m", "stable", reason="gone")
    assert reg.aliases("m") == {"challenger": 2}
    assert reg.history("m")[-1].kind == "remove"
    with pytest.raises(InvalidName):
        reg.alias("m@1", "latest")
    with pytest.raises(NotFound):
        reg.alias("m@7", "challenger")


def test_champion_moves_only_through_the_gate_or_a_forced_override(lake: Lake) -> None:
    reg = Registry(lake)
    reg.register("m", Doubler())
    reg.register("m", Doubler())
    with pytest.raises(Refused, match="only through the gate"):
        reg.alias("m@1", "champion", reason="I say so")
    with pytest.raises(Refused, match="needs a reason"):
        reg.alias("m@1", "champion", force=True)
    with pytest.raises(Refused, match="decision record"):
        reg.promote("m@1", decision=None)
    with pytest.raises(Refused, match="'hold'"):
        reg.promote("m@1", decision={"outcome": "hold", "passed": True})
    with pytest.raises(Refused, match="champion is removed only"):
        reg.remove_alias("m", "champion")
    assert reg.aliases("m") == {}

    from lakeloop.gate import Policy, compare

    labels = [0, 1] * 100
    decision = compare(labels, [1 - y for y in labels], labels, Policy(metric="accuracy"))
    move = reg.promote("m@1", decision=decision, reason="nightly gate", champion=None)
    assert move.kind == "gate" and move.decision is not None
    assert move.decision["outcome"] == "promote"
    # an acceptance claim, whose record names the champion it was compared with (m@1)
    reg.promote("m@2", decision={"passed": True, "estimate": 0.95, "champion": "m@1"})
    override = reg.alias("m@1", "champion", force=True, reason="roll back: bad canary")
    assert override.kind == "override" and override.previous == 2
    assert reg.load("m@champion").version == 1
    assert [m.kind for m in reg.history("m")] == ["gate", "gate", "override"]
    assert reg.history("m")[0].decision == json.loads(json.dumps(decision.to_dict()))


MOVER = textwrap.dedent(
    """
    import sys
    from lakeloop import Lake
    from lakeloop.registry import Registry
    lake_path, who, moves = sys.argv[1], sys.argv[2], int(sys.argv[3])
    with Lake.open(lake_path, background=False) as lake:
        reg = Registry(lake)
        for i in range(moves):
            reg.alias(f"m@{1 + (i % 3)}", "challenger", reason=f"{who} {i}", actor=who)
    """
)


def test_concurrent_alias_moves_from_several_processes(tmp_path: Path) -> None:
    path = tmp_path / "lake"
    with Lake.open(path, create=True, background=False) as lake:
        reg = Registry(lake)
        for _ in range(3):
            reg.register("m", Doubler())
    procs = [
        subprocess.Popen([sys.executable, "-c", MOVER, str(path), f"p{i}", "15"]) for i in range(4)
    ]
    assert all(p.wait(timeout=120) == 0 for p in procs)
    with Lake.open(path, background=False) as lake:
        moves = Registry(lake).history("m")
        final = Registry(lake).aliases("m")["challenger"]
    assert len(moves) == 60  # no move lost
    assert [m.seq for m in moves] == list(range(1, 61))
    # each move starts where the one before it ended: moves were serialized
    assert all(b.previous == a.version for a, b in itertools.pairwise(moves))
    assert moves[-1].version == final
    for who in ("p0", "p1", "p2", "p3"):
        assert [m.why for m in moves if m.who == who] == [f"{who} {i}" for i in range(15)]


def _cli(lake_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lakeloop", "--lake", str(lake_path), *args],
        capture_output=True,
        text=True,
    )


def test_models_cli(tmp_path: Path) -> None:
    path = tmp_path / "lake"
    with Lake.open(path, create=True, background=False) as lake:
        reg = Registry(lake)
        reg.register("digits", Doubler(), lineage=LINEAGE)
        reg.register("digits", Doubler(), lineage={"metrics": {"accuracy": 0.95}})
    out = _cli(path, "models", "alias", "digits@1", "challenger", "--reason", "try", "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["to"] == 1
    refused = _cli(path, "models", "alias", "digits@2", "champion")
    assert refused.returncode == 2
    assert refused.stderr.count("\n") == 1 and "only through the gate" in refused.stderr
    forced = _cli(path, "models", "alias", "digits@2", "champion", "--force", "--reason", "hotfix")
    assert forced.returncode == 0 and "[override]" in forced.stdout
    listed = json.loads(_cli(path, "models", "list", "--json").stdout)
    assert listed == [
        {"name": "digits", "versions": 2, "latest": 2, "aliases": {"challenger": 1, "champion": 2}}
    ]
    shown = json.loads(_cli(path, "models", "show", "digits", "--json").stdout)
    assert [m["kind"] for m in shown["history"]] == ["move", "override"]
    assert shown["history"][1]["why"] == "hotfix"
    one = json.loads(_cli(path, "models", "show", "digits@1", "--json").stdout)
    assert one["lineage"] == LINEAGE.to_dict() and one["aliases"] == ["challenger"]
    for args in (("models", "show", "digits"), ("models", "show", "digits@champion"),
                 ("models", "list")):  # fmt: skip
        text = _cli(path, *args)
        assert text.returncode == 0 and "digits" in text.stdout, text.stderr
    assert _cli(path, "models", "show", "nope").returncode == 2
