"""Trial engines: one conformance suite that every engine passes."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from _engine_tasks import square, task
from lakeloop.errors import InvalidInput
from lakeloop.train.engines import (
    LocalEngine,
    RayEngine,
    SparkEngine,
    TrialEngine,
    engine_for,
)


class EngineConformance:
    """Subclasses set ``make(workers, timeout)``."""

    def make(self, workers: int, timeout: float = 0.0) -> TrialEngine:
        raise NotImplementedError

    def test_every_task_once_with_its_result(self) -> None:
        engine = self.make(2)
        try:
            got = dict(engine.map(square, list(range(5))))
        finally:
            engine.close()
        assert sorted(got) == [0, 1, 2, 3, 4]
        assert all(r.ok and r.value == i * i and r.seconds >= 0 for i, r in got.items())

    def test_failures_are_contained(self) -> None:
        specs = [
            {"kind": "ok", "n": 1},
            {"kind": "raise", "n": 2},
            {"kind": "exit"},
            {"kind": "ok", "n": 4},
        ]
        engine = self.make(2)
        try:
            got = dict(engine.map(task, specs))
        finally:
            engine.close()
        assert got[0].ok and got[0].value == 10 and got[3].ok and got[3].value == 40
        assert not got[1].ok and "ValueError: boom 2" in (got[1].error or "")
        assert not got[2].ok and got[2].error

    def test_tasks_run_in_parallel(self, tmp_path: Path) -> None:
        specs = [
            {"kind": "rendezvous", "folder": str(tmp_path), "me": "a", "other": "b"},
            {"kind": "rendezvous", "folder": str(tmp_path), "me": "b", "other": "a"},
        ]
        engine = self.make(2)
        try:
            got = dict(engine.map(task, specs))
        finally:
            engine.close()
        assert got[0].ok and got[1].ok, (got[0].error, got[1].error)

    # Long enough for the quick task to start on a loaded 2-core machine (a Spark task
    # starts a Python worker first); the sleeping task still runs far past it.
    timeout_s = 1.0

    def test_timeout(self) -> None:
        engine = self.make(2, timeout=self.timeout_s)
        try:
            got = dict(engine.map(task, [{"kind": "sleep", "seconds": 60}, {"kind": "ok"}]))
        finally:
            engine.close()
        assert got[1].ok
        assert not got[0].ok and "timed out" in (got[0].error or "")


class TestLocalEngine(EngineConformance):
    def make(self, workers: int, timeout: float = 0.0) -> TrialEngine:
        return LocalEngine(workers, timeout=timeout)


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    """One local Ray for the module: no token file in ~/.ray, sessions in a temp dir."""
    ray = pytest.importorskip("ray")
    before = os.environ.get("RAY_AUTH_MODE")
    os.environ["RAY_AUTH_MODE"] = "disabled"
    tmp = tempfile.mkdtemp(prefix="ray-", dir="/tmp")  # Ray's socket paths must be short
    ray.init(
        num_cpus=2, include_dashboard=False, log_to_driver=False, _temp_dir=tmp,
        runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join(
            [str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")])}},
    )  # fmt: skip
    try:
        yield
    finally:
        ray.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)
        if before is None:
            os.environ.pop("RAY_AUTH_MODE", None)
        else:
            os.environ["RAY_AUTH_MODE"] = before


@pytest.mark.usefixtures("local_ray")
class TestRayEngine(EngineConformance):
    def make(self, workers: int, timeout: float = 0.0) -> TrialEngine:
        return RayEngine(workers, timeout=timeout)


@pytest.fixture(scope="module")
def local_spark() -> Iterator[None]:
    """One local Spark for the module (Java 17+), its Python workers this interpreter."""
    pytest.importorskip("pyspark")
    if shutil.which("java") is None:
        pytest.skip("the spark engine needs Java")
    before = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(Path(__file__).parent), before) if p
    )  # the workers import the task functions from tests/
    local_ip = os.environ.get("SPARK_LOCAL_IP")
    os.environ["SPARK_LOCAL_IP"] = local_ip or "127.0.0.1"
    engine = SparkEngine(2)
    engine._context()  # start the session once for every test of the module
    try:
        yield
    finally:
        engine.close()
        for name, value in (("PYTHONPATH", before), ("SPARK_LOCAL_IP", local_ip)):
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@pytest.mark.usefixtures("local_spark")
class TestSparkEngine(EngineConformance):
    timeout_s = 10.0

    def make(self, workers: int, timeout: float = 0.0) -> TrialEngine:
        return SparkEngine(workers, timeout=timeout)


def test_engine_for() -> None:
    assert isinstance(engine_for("local", 3), LocalEngine)
    assert engine_for("local", 3).workers == 3 and engine_for("local").workers >= 1
    with pytest.raises(InvalidInput, match="unknown trial engine"):
        engine_for("dask")
    with pytest.raises(InvalidInput):
        LocalEngine(-1)


@pytest.mark.usefixtures("local_ray")
def test_a_study_on_ray(tmp_path: Path) -> None:
    from lakeloop.train.study import train_project
    from test_train_pipeline import CRASH_LINE, _project

    root = _project(tmp_path)
    result = train_project(root, engine=RayEngine(2))
    assert len(result.trials) == 3 and len(result.failed) == 1
    assert result.failed[0].where == f"{root / 'pipeline.py'}:{CRASH_LINE}"
    assert result.version is not None and result.version.lineage.extra["engine"] == "ray"


@pytest.mark.usefixtures("local_spark")
def test_a_study_on_spark(tmp_path: Path) -> None:
    from lakeloop.train.study import train_project
    from test_train_pipeline import CRASH_LINE, _project

    root = _project(tmp_path)
    result = train_project(root, engine=SparkEngine(2))
    assert len(result.trials) == 3 and len(result.failed) == 1
    assert result.failed[0].where == f"{root / 'pipeline.py'}:{CRASH_LINE}"
    assert result.version is not None and result.version.lineage.extra["engine"] == "spark"
