"""The TensorFlow path: the keras flavor, tf.data readers, and a Keras study end to end.

TensorFlow is imported by this module only (it takes seconds to start)."""

from __future__ import annotations

import os
import textwrap
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from _traindata import make_digits
from lakeloop import Lake
from lakeloop.catalog import Catalog
from lakeloop.errors import InvalidInput
from lakeloop.registry import FLAVORS, Registry
from lakeloop.train import Runs
from lakeloop.train.data import decode_image, label_ids, tf_dataset
from lakeloop.train.pipeline import Split
from lakeloop.train.study import train_project
from test_registry import FlavorConformance

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Keras 3 on TensorFlow 2.21 converts variables with np.array(copy=False) internally.
pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"
)
keras = pytest.importorskip("keras")
tf = pytest.importorskip("tensorflow")


def _tiny_model() -> Any:
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(3, activation="relu"), keras.layers.Dense(2)]
    )
    model.compile(optimizer="adam", loss="mse")
    return model


class TestKerasFlavor(FlavorConformance):
    flavor = FLAVORS["keras"]

    def make(self) -> tuple[Any, Any]:
        return _tiny_model(), np.arange(12, dtype="float32").reshape(3, 4)

    def expected(self, model: Any, batch: Any) -> Any:
        return model.predict(batch, verbose=0)


@pytest.fixture
def lake(tmp_path: Path) -> Iterator[Lake]:
    settings = {"volume_size": "2KiB"}
    with Lake.open(tmp_path / "lake", create=True, settings=settings, background=False) as lk:
        yield lk


def _expected(lake: Lake) -> Counter[tuple[bytes, int]]:
    snap = Catalog(lake).resolve("digits@latest")
    ids = label_ids(snap)
    return Counter((snap.read(e), ids[e.label or ""]) for e in snap.entries("train"))


def test_tf_dataset_bytes_and_shards_equal_the_snapshot(lake: Lake) -> None:
    make_digits(lake, n=60)
    expected = _expected(lake)
    for n in (1, 3):
        merged: Counter[tuple[bytes, int]] = Counter()
        for i in range(n):
            ds = tf_dataset(lake, "digits@latest", batch_size=8, shard=(i, n), shuffle_buffer=5)
            for x, y in ds:
                merged.update(zip(x.numpy().tolist(), y.numpy().tolist(), strict=True))
        assert merged == expected


def test_tf_dataset_decoded_epochs(lake: Lake) -> None:
    make_digits(lake, n=60)
    ds = tf_dataset(
        lake, "digits@latest", decode=decode_image, batch_size=16, shuffle_buffer=10, seed=1
    )
    assert ds.element_spec[0].shape.as_list() == [None, 8, 8]
    assert ds.element_spec[0].dtype == tf.uint8
    epochs = []
    for _ in range(2):  # iterating again is the next epoch, shuffled anew
        ys = np.concatenate([y.numpy() for _, y in ds])
        epochs.append(ys)
        assert Counter(ys.tolist()) == Counter(y for _, y in _expected(lake).elements())
    assert epochs[0].tolist() != epochs[1].tolist()


def test_tf_dataset_decodes_whole_batches_in_tensorflow(lake: Lake) -> None:
    make_digits(lake, n=60)
    kw: dict[str, Any] = {"batch_size": 16, "shuffle_buffer": 10, "seed": 2}
    fast = tf_dataset(lake, "digits@latest", tf_decode=lambda b: tf.io.decode_png(b), **kw)
    slow = tf_dataset(lake, "digits@latest", decode=decode_image, **kw)
    assert fast.element_spec[0].shape.as_list() == [None, 8, 8, 1]
    assert fast.element_spec[0].dtype == tf.uint8
    assert int(fast.cardinality()) == int(slow.cardinality())
    for _ in range(2):  # epoch after epoch: the same examples, labels and order
        got = [(x.numpy(), y.numpy()) for x, y in fast]
        want = [(x.numpy(), y.numpy()) for x, y in slow]
        assert len(got) == len(want)
        for (gx, gy), (wx, wy) in zip(got, want, strict=True):
            assert (gx[..., 0] == wx).all() and (gy == wy).all()
    with pytest.raises(InvalidInput, match="not both"):
        tf_dataset(lake, "digits@latest", decode=decode_image, tf_decode=tf.io.decode_png)
    # a pipeline's data side: tf_decode takes the place of the pipeline's decode
    side = Split(lake, Catalog(lake).resolve("digits@latest"), "train", decode_image, seed=2)
    ds = side.tf_dataset(batch_size=16, shuffle_buffer=10, tf_decode=tf.io.decode_png)
    again = tf_dataset(lake, "digits@latest", tf_decode=tf.io.decode_png, **kw)
    for (sx, sy), (ax, ay) in zip(ds, again, strict=True):
        assert (sx.numpy() == ax.numpy()).all() and (sy.numpy() == ay.numpy()).all()


def test_tf_dataset_honours_where(lake: Lake) -> None:
    make_digits(lake, n=60)
    ds = tf_dataset(lake, "digits@latest", batch_size=8, where=lambda e: e.label == "dog")
    ys = np.concatenate([y.numpy() for _, y in ds])
    assert len(ys) > 0 and set(ys.tolist()) == {1}
    assert Counter(ys.tolist())[1] == sum(1 for _, y in _expected(lake).elements() if y == 1)


KERAS_PIPELINE = textwrap.dedent(
    """\
    import keras

    from lakeloop.train.data import decode_image

    params = {"units": [4, 16], "epochs": [2]}


    def decode(data):
        return decode_image(data)[..., None]


    def build(params):
        keras.utils.set_random_seed(0)
        model = keras.Sequential([
            keras.Input((8, 8, 1)),
            keras.layers.Rescaling(1 / 255),
            keras.layers.Conv2D(4, 3, activation="relu"),
            keras.layers.Flatten(),
            keras.layers.Dense(params["units"], activation="relu"),
            keras.layers.Dense(3, activation="softmax"),
        ])
        model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
        return model


    def fit(model, data, params):
        train = data.train.tf_dataset(batch_size=16, shuffle_buffer=64)
        model.fit(train, epochs=params["epochs"], callbacks=data.callbacks, verbose=0)


    def evaluate(model, data, params):
        loss, accuracy = model.evaluate(data.eval.tf_dataset(batch_size=64), verbose=0)
        return {"accuracy": accuracy, "loss": loss}
    """
)


def test_keras_study_end_to_end(tmp_path: Path) -> None:
    root = tmp_path / "proj"
    root.mkdir()
    (root / "pipeline.py").write_text(KERAS_PIPELINE)
    (root / "lakeloop.toml").write_text(
        '[project]\nlake = "../lake"\npipeline = "pipeline.py"\ndataset = "digits"\n'
        'model = "digits-cnn"\n'
    )
    with Lake.open(tmp_path / "lake", create=True, background=False) as lake:
        make_digits(lake, n=150)
    result = train_project(root, workers=2)
    assert [t.ok for t in result.trials] == [True, True], [t.error for t in result.trials]
    assert result.version is not None and result.version.flavor == "keras"
    with Lake.open(tmp_path / "lake", background=False) as lake:
        loaded = Registry(lake).load("digits-cnn@latest")
        x = np.zeros((2, 8, 8, 1), dtype="uint8")
        assert loaded.predict(x).shape == (2, 3)
        rec = Runs(lake).get(result.version.lineage.run_id or "")
        assert [e["epoch"] for e in rec.epochs] == [1, 2]
        assert {"loss", "accuracy"} <= set(rec.epochs[0])
        assert rec.system["versions"].get("tensorflow") and rec.tensorboard
        assert rec.metrics["accuracy"] == result.best_score


def test_tf_dataset_knows_its_length(lake: Lake) -> None:
    make_digits(lake, n=60)
    n = len(Catalog(lake).resolve("digits@latest").entries("train"))
    ds = tf_dataset(lake, "digits@latest", batch_size=8)
    assert int(ds.cardinality()) == -(-n // 8) == len(list(ds))
    dropped = tf_dataset(lake, "digits@latest", batch_size=8, drop_remainder=True)
    assert int(dropped.cardinality()) == n // 8 == len(list(dropped))
