"""Readers: a snapshot as NumPy batches, a ``tf.data.Dataset`` or a PyTorch
``IterableDataset``, read volume by volume.

A reader takes one split of one snapshot (``"digits@latest"``, ``split="train"``), plans
where each recorded version lies (volume, offset, length:
:meth:`~lakeloop.store.Namespace.extents`), and reads whole volumes in file order, a
window of records per read, so the disk sees sequential reads and Python does one short
loop per record (:meth:`~lakeloop.store.Namespace.read_extents`). Every example's bytes are
exactly those the snapshot recorded: the record's CRC32C and version are checked, and its
MD5 is computed and compared with the snapshot's; a record that compaction moved or
compressed is read by version, and damage raises ``ChecksumError``. A shuffle buffer
mixes examples across the stream; each epoch also visits the volumes in a new order. The
plan of a split is kept per open lake (the last few), while the namespace's volumes stay
the same, so building the same reader again costs little.

TensorFlow gets whole batches of bytes; ``tf_dataset(tf_decode=...)`` decodes them in
TensorFlow, a batch per call and several batches at once, so the Python side of the
pipeline stays a few microseconds per example.

Labels come from the snapshot: label names sorted, id = position (:func:`label_ids`),
over the whole snapshot so that both splits share ids. An entry without a label gets -1.

Sharding is by volume: ``shard=(i, n)`` reads the volumes whose position in the
snapshot's sorted list of volumes is ``i`` modulo ``n``, so each worker reads whole
volumes and the ``n`` shards are disjoint and together complete. (All workers must plan
from the same lake state: a compaction between their plans can move versions between
volumes.) The PyTorch reader splits its shard again among the DataLoader's worker
processes, by volume too.

The three readers share one core (:class:`SnapshotReader` and its batching); they differ
only in what they hand the framework.

Over a gateway (``Lake.open("http://...")``) the plan is the same (the gateway locates
the versions, so shards are the same volumes), but there is no local file to scan: the
examples, in plan order, are fetched at their exact versions in batches of
``remote_read_batch_items`` per request (``POST /api/v1/namespaces/NS/read``, which the
gateway serves as a forward sweep through the volume), with ``remote_read_workers``
batches in flight, so one round trip carries many examples and the next is on its way.

>>> for x, y in batches(lake, "digits@latest", decode=decode_image, batch_size=256):
...     pass                                                      # doctest: +SKIP
>>> ds = tf_dataset(lake, "digits@latest", batch_size=256, shuffle_buffer=4096,
...                 tf_decode=lambda b: tf.io.decode_png(b, channels=1),
...                 shard=(0, 2), seed=1)                         # doctest: +SKIP
>>> loader = torch.utils.data.DataLoader(
...     torch_dataset(lake, "digits@latest", decode=decode_image, batch_size=256),
...     batch_size=None, num_workers=2)                              # doctest: +SKIP
"""

from __future__ import annotations

import copy
import csv
import io
import itertools
import json
import operator
import random
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lakeloop.catalog import Entry
from lakeloop.errors import InvalidInput

if TYPE_CHECKING:
    from lakeloop.catalog import Snapshot
    from lakeloop.store import Lake

__all__ = [
    "SnapshotReader",
    "arrays",
    "batches",
    "decode_csv",
    "decode_image",
    "decode_json",
    "label_ids",
    "tf_dataset",
    "torch_dataset",
]

Decode = Callable[[bytes], Any]


def decode_image(data: bytes) -> Any:
    """PNG/JPEG/... bytes -> a uint8 array (H, W) for grey images, (H, W, C) otherwise."""
    import numpy as np
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im)


def decode_json(fields: Sequence[str], dtype: str = "float32") -> Decode:
    """A decoder of one JSON object per example -> an array of *fields*, in that order.

    >>> decode_json(["a", "b"])(b'{"a": 1, "b": 2.5}')
    array([1. , 2.5], dtype=float32)
    """
    import numpy as np

    names = list(fields)

    def decode(data: bytes) -> Any:
        row = json.loads(data)
        return np.asarray([row[f] for f in names], dtype=dtype)

    return decode


def decode_csv(columns: Sequence[int] | None = None, dtype: str = "float32") -> Decode:
    """A decoder of one CSV line per example -> an array of its *columns* (default: all).

    >>> decode_csv([0, 2])(b"1,x,3")
    array([1., 3.], dtype=float32)
    """
    import numpy as np

    def decode(data: bytes) -> Any:
        row = next(csv.reader([data.decode("utf-8").strip()]))
        picked = row if columns is None else [row[c] for c in columns]
        return np.asarray(picked, dtype=dtype)

    return decode


def label_ids(snapshot: Snapshot) -> dict[str, int]:
    """Label name -> integer id: the snapshot's label names sorted, numbered from 0."""
    return {name: i for i, name in enumerate(sorted(snapshot.labels))}


def _is_remote(lake: Lake) -> bool:
    return bool(getattr(lake, "remote", False))


def _fetch(lake: Lake, snap: Snapshot, entries: Sequence[Entry]) -> Iterator[bytes]:
    """The checked bytes of *entries* at their snapshot versions, in order: from a
    remote lake by a bounded pool of GETs, from a local one entry by entry."""
    if not _is_remote(lake):
        for e in entries:
            yield snap.read(e)
        return
    ns: Any = lake.namespace(snap.namespace)
    settings = lake.settings
    fetched = ns.read_batches(
        ((e.key, e.version, e.size) for e in entries),
        workers=int(settings["remote_read_workers"]),
        batch_items=int(settings["remote_read_batch_items"]),
    )
    for e, data in zip(entries, fetched, strict=True):
        yield snap.check(e, data)


def _resolve(lake: Lake, ref: str | Snapshot) -> Snapshot:
    if isinstance(ref, str):
        from lakeloop.catalog import Catalog

        return Catalog(lake).resolve(ref)
    return ref


@dataclass
class _VolumePlan:
    """What one volume holds of a reader's shard: its records in file order, as parallel
    lists (the bulk read and the batching walk them without per-example objects)."""

    entries: list[Entry]
    offsets: list[int]
    lengths: list[int]
    versions: list[int]
    md5s: list[bytes]  # raw digests: the snapshot's record of each example
    labels: list[int]

    def select(self, where: Callable[[Entry], bool]) -> _VolumePlan:
        """The plan of the examples *where* keeps, in the same order."""
        keep = [k for k, e in enumerate(self.entries) if where(e)]
        return _VolumePlan(
            entries=[self.entries[k] for k in keep],
            offsets=[self.offsets[k] for k in keep],
            lengths=[self.lengths[k] for k in keep],
            versions=[self.versions[k] for k in keep],
            md5s=[self.md5s[k] for k in keep],
            labels=[self.labels[k] for k in keep],
        )


_PLAN_CACHE_SIZE = 4  # split plans kept per open lake
_REMOTE_CHUNK = 1024  # examples per chunk of a read over a gateway
_Layout = tuple[tuple[int, str], ...]
_plans: weakref.WeakKeyDictionary[
    Any, OrderedDict[tuple[str, str | None], tuple[_Layout, dict[int, _VolumePlan]]]
] = weakref.WeakKeyDictionary()
_plans_lock = threading.Lock()


def _split_plan(
    lake: Lake, snapshot: Snapshot, split: str | None, labels: dict[str, int]
) -> dict[int, _VolumePlan]:
    """Volume -> plan of every example of *split*, in file order.

    Kept per open lake for the last few splits read (a snapshot never changes), while
    the namespace's volumes stay the same: only compaction moves records, and it always
    writes new volumes. A plan gone stale anyway is still safe, only slower: every read is
    verified, and a record not where the plan says is read by version.
    """
    ns: Any = lake.namespace(snapshot.namespace)
    remote = _is_remote(lake)
    # over a gateway the plan is not kept: there is no cheap sign of a compaction
    layout = () if remote else tuple((v.id, v.state) for v in ns.volumes())
    key = (snapshot.id, split)
    with _plans_lock:
        cache = _plans.get(lake)
        hit = None if cache is None else cache.get(key)
        if cache is not None and hit is not None and hit[0] == layout:
            cache.move_to_end(key)
            return hit[1]
    by_version = {e.version: e for e in snapshot.entries(split)}
    plan: dict[int, _VolumePlan] = {}
    if remote:  # the gateway locates versions; lengths are not needed to fetch them
        extents = [(v, vol, off, 0) for v, vol, off in ns.locate(by_version)]
    else:
        extents = ns.extents(by_version)
    for vol, group in itertools.groupby(extents, key=operator.itemgetter(1)):
        rows = list(group)
        es = [by_version[t[0]] for t in rows]
        plan[vol] = _VolumePlan(
            entries=es,
            offsets=[t[2] for t in rows],
            lengths=[t[3] for t in rows],
            versions=[t[0] for t in rows],
            md5s=[bytes.fromhex(e.etag) for e in es],
            labels=[-1 if e.label is None else labels[e.label] for e in es],
        )
    if remote:
        return plan
    with _plans_lock:
        cache = _plans.setdefault(lake, OrderedDict())
        cache[key] = (layout, plan)
        cache.move_to_end(key)
        while len(cache) > _PLAN_CACHE_SIZE:
            cache.popitem(last=False)
    return plan


class SnapshotReader:
    """One split of one snapshot, planned volume by volume (see the module docstring).

    ``examples(epoch)`` yields ``(entry, bytes)`` for every example of the shard exactly
    once, in physical order (or shuffled through the buffer when ``shuffle_buffer`` > 0).
    The plan holds each example's volume, offset and length, so reading is one
    sequential read per window of a volume and one verification per record
    (:meth:`~lakeloop.store.Namespace.read_extents`: CRC32C, version, and the MD5 the
    record carries against the snapshot's); a record compaction moved, or one stored
    compressed, is read by version instead, and damage raises ``ChecksumError``.
    """

    def __init__(
        self,
        lake: Lake,
        ref: str | Snapshot,
        split: str | None = "train",
        *,
        shard: tuple[int, int] = (0, 1),
        shuffle_buffer: int = 0,
        seed: int = 0,
        where: Callable[[Entry], bool] | None = None,
    ) -> None:
        i, n = shard
        if not (isinstance(i, int) and isinstance(n, int) and n >= 1 and 0 <= i < n):
            raise InvalidInput(
                f"shard must be (i, n) with 0 <= i < n, not {shard!r}", op="read snapshot"
            )
        if shuffle_buffer < 0:
            raise InvalidInput("shuffle_buffer must be >= 0", op="read snapshot")
        self.lake = lake
        self.snapshot = _resolve(lake, ref)
        self.split = split
        self.shard = (i, n)
        self.shuffle_buffer = shuffle_buffer
        self.seed = seed
        self.labels = label_ids(self.snapshot)
        plan = _split_plan(lake, self.snapshot, split, self.labels)
        if where is not None:
            plan = {vol: kept for vol, p in plan.items() if (kept := p.select(where)).entries}
        mine = sorted(plan)[i::n]
        plan = {vol: plan[vol] for vol in mine}
        self._plan = plan
        self.volumes = sorted(plan)
        self.count = sum(len(p.entries) for p in plan.values())

    def subshard(self, i: int, n: int) -> SnapshotReader:
        """Part *i* of *n* of this shard, by volume (every n-th of its volumes from i):
        the same as ``shard=(si + sn * i, sn * n)`` for this reader's ``shard=(si, sn)``."""
        if not (0 <= i < n):
            raise InvalidInput(
                f"subshard must be (i, n) with 0 <= i < n, not {(i, n)!r}", op="read snapshot"
            )
        part = copy.copy(self)
        part.volumes = self.volumes[i::n]
        part._plan = {vol: self._plan[vol] for vol in part.volumes}
        part.count = sum(len(p.entries) for p in part._plan.values())
        si, sn = self.shard
        part.shard = (si + sn * i, sn * n)
        return part

    def __len__(self) -> int:
        return self.count

    def first(self) -> Entry:
        """The shard's first example in file order (to look at one before reading)."""
        return self._plan[self.volumes[0]].entries[0]

    def label_of(self, entry: Entry) -> int:
        return -1 if entry.label is None else self.labels[entry.label]

    def _windows(self, epoch: int) -> Iterator[tuple[_VolumePlan, int, list[bytes]]]:
        """``(volume plan, first index, verified bytes)`` per read window, volume after
        volume (in a new order each epoch when shuffling), each in file order."""
        ns = self.lake.namespace(self.snapshot.namespace)
        vols = list(self.volumes)
        if self.shuffle_buffer:
            random.Random(f"{self.seed}:{epoch}:volumes").shuffle(vols)
        if _is_remote(self.lake):
            yield from self._fetched(vols)
            return
        check = self.snapshot.check
        for vol in vols:
            p = self._plan[vol]
            first = 0
            for got in ns.read_extents(vol, p.offsets, p.lengths, p.versions, p.md5s):
                if None in got:
                    for k, data in enumerate(got):
                        if data is None:  # moved, compressed or damaged: the general path
                            e = p.entries[first + k]
                            got[k] = check(e, ns.get(e.key, version=e.version))
                yield p, first, got  # type: ignore[misc]  # no None is left
                first += len(got)

    def _fetched(self, vols: list[int]) -> Iterator[tuple[_VolumePlan, int, list[bytes]]]:
        """``_windows`` over a gateway: the examples of *vols* in plan order, fetched at
        their versions in pipelined batches (no local file to read), a chunk at a time."""
        order = [e for vol in vols for e in self._plan[vol].entries]
        fetched = _fetch(self.lake, self.snapshot, order)
        for vol in vols:
            p = self._plan[vol]
            for first in range(0, len(p.entries), _REMOTE_CHUNK):
                k = min(_REMOTE_CHUNK, len(p.entries) - first)
                yield p, first, list(itertools.islice(fetched, k))

    def _pairs(self, epoch: int, labels: bool) -> Iterator[tuple[list[Any], list[bytes]]]:
        """``(entries or label ids, bytes)`` per window, shuffled through the buffer when
        ``shuffle_buffer`` > 1 (the same draws for either kind of tag)."""
        stream = (
            ((p.labels if labels else p.entries)[i : i + len(got)], got)
            for p, i, got in self._windows(epoch)
        )
        size = self.shuffle_buffer
        if size <= 1:
            return stream
        return _shuffle(stream, size, random.Random(f"{self.seed}:{epoch}:buffer"))

    def examples(self, epoch: int = 0) -> Iterator[tuple[Entry, bytes]]:
        """Every example of the shard once; *epoch* varies the shuffle."""
        for tags, datas in self._pairs(epoch, labels=False):
            yield from zip(tags, datas, strict=True)


def _shuffle(
    stream: Iterator[tuple[list[Any], list[bytes]]], size: int, rng: random.Random
) -> Iterator[tuple[list[Any], list[bytes]]]:
    """The shuffle buffer over a stream of ``(tags, datas)`` chunks: the first *size*
    items fill it, then each new item takes the place of a random one, which goes out;
    the rest goes out shuffled at the end."""
    buf_t: list[Any] = []
    buf_d: list[bytes] = []
    draw = rng.randrange
    for tags, datas in stream:
        k = min(size - len(buf_t), len(tags))
        if k > 0:
            buf_t += tags[:k]
            buf_d += datas[:k]
        out_t: list[Any] = []
        out_d: list[bytes] = []
        for t, d in zip(tags[max(k, 0) :], datas[max(k, 0) :], strict=True):
            j = draw(size)
            out_t.append(buf_t[j])
            out_d.append(buf_d[j])
            buf_t[j] = t
            buf_d[j] = d
        if out_t:
            yield out_t, out_d
    order = list(range(len(buf_t)))
    rng.shuffle(order)
    if order:
        yield [buf_t[j] for j in order], [buf_d[j] for j in order]


def _stack(xs: list[Any]) -> Any:
    import numpy as np

    if xs and isinstance(xs[0], bytes):
        out = np.empty(len(xs), dtype=object)
        out[:] = xs
        return out
    return np.stack([np.asarray(x) for x in xs])


def batches(
    lake: Lake,
    ref: str | Snapshot,
    split: str | None = "train",
    *,
    decode: Decode | None = None,
    batch_size: int = 32,
    shuffle_buffer: int = 0,
    shard: tuple[int, int] = (0, 1),
    seed: int = 0,
    epoch: int = 0,
    drop_remainder: bool = False,
    where: Callable[[Entry], bool] | None = None,
) -> Iterator[tuple[Any, Any]]:
    """NumPy batches ``(x, y)`` of one pass over the split: ``x`` stacks the decoded
    examples (an object array of bytes without *decode*), ``y`` the int64 label ids."""
    if batch_size < 1:
        raise InvalidInput("batch_size must be >= 1", op="read snapshot")
    reader = SnapshotReader(
        lake, ref, split, shard=shard, shuffle_buffer=shuffle_buffer, seed=seed, where=where
    )
    return _batches(reader, decode, batch_size, epoch, drop_remainder)


def _batches(
    reader: SnapshotReader,
    decode: Decode | None,
    batch_size: int,
    epoch: int,
    drop_remainder: bool,
) -> Iterator[tuple[Any, Any]]:
    xs: list[bytes] = []
    ys: list[int] = []
    for labels, datas in reader._pairs(epoch, labels=True):
        xs += datas
        ys += labels
        if len(xs) < batch_size:
            continue
        cut = len(xs) - len(xs) % batch_size
        for s in range(0, cut, batch_size):
            yield _batch(xs[s : s + batch_size], ys[s : s + batch_size], decode)
        xs, ys = xs[cut:], ys[cut:]
    if xs and not drop_remainder:
        yield _batch(xs, ys, decode)


def _batch(xs: list[bytes], ys: list[int], decode: Decode | None) -> tuple[Any, Any]:
    import numpy as np

    x = _stack(xs if decode is None else [decode(d) for d in xs])
    return x, np.asarray(ys, dtype=np.int64)


def arrays(
    lake: Lake,
    ref: str | Snapshot,
    split: str | None = "train",
    *,
    decode: Decode | None = None,
    where: Callable[[Entry], bool] | None = None,
) -> tuple[Any, Any]:
    """The whole split in memory as ``(x, y)`` in key order (for small data, scikit-learn)."""
    import numpy as np

    snap = _resolve(lake, ref)
    ids = label_ids(snap)
    xs, ys = [], []
    entries = [e for e in snap.entries(split) if where is None or where(e)]
    for entry, data in zip(entries, _fetch(lake, snap, entries), strict=True):
        xs.append(decode(data) if decode is not None else data)
        ys.append(-1 if entry.label is None else ids[entry.label])
    if not xs:
        return np.empty((0,)), np.empty((0,), dtype=np.int64)
    return _stack(xs), np.asarray(ys, dtype=np.int64)


def tf_dataset(
    lake: Lake,
    ref: str | Snapshot,
    split: str | None = "train",
    *,
    decode: Decode | None = None,
    tf_decode: Callable[[Any], Any] | None = None,
    batch_size: int = 32,
    shuffle_buffer: int = 0,
    shard: tuple[int, int] = (0, 1),
    seed: int = 0,
    drop_remainder: bool = False,
    prefetch: int = 2,
    where: Callable[[Entry], bool] | None = None,
) -> Any:
    """A ``tf.data.Dataset`` of ``(x, y)`` batches; iterating it again is the next epoch
    (a new shuffle). Batches are built in NumPy, so Python hands TensorFlow one batch at
    a time, not one example.

    *decode* runs in Python, one example after another; *tf_decode* (a TensorFlow
    function of one ``tf.string`` scalar, e.g. ``lambda b: tf.io.decode_png(b,
    channels=1)``) runs in TensorFlow over each batch (``tf.map_fn``), on several batches
    at once (parallel calls, in order) -- the fast path for images. With neither, ``x`` is
    a batch of ``tf.string``."""
    import numpy as np
    import tensorflow as tf

    if batch_size < 1:
        raise InvalidInput("batch_size must be >= 1", op="read snapshot")
    if decode is not None and tf_decode is not None:
        raise InvalidInput(
            "give decode (Python) or tf_decode (TensorFlow), not both", op="tf_dataset"
        )
    reader = SnapshotReader(
        lake, ref, split, shard=shard, shuffle_buffer=shuffle_buffer, seed=seed, where=where
    )
    if reader.count == 0:
        raise InvalidInput("the shard holds no examples", op="tf_dataset", target=str(ref))
    if decode is None:
        x_spec = tf.TensorSpec((None,), tf.string)
    else:
        sample = np.asarray(decode(reader.snapshot.read(reader.first())))
        x_spec = tf.TensorSpec((None, *sample.shape), tf.as_dtype(sample.dtype))
    epochs = iter(range(1 << 62))

    def generate() -> Iterator[tuple[Any, Any]]:
        epoch = next(epochs)
        yield from _batches(reader, decode, batch_size, epoch, drop_remainder)

    ds = tf.data.Dataset.from_generator(
        generate, output_signature=(x_spec, tf.TensorSpec((None,), tf.int64))
    )
    # a known length lets Keras size its epochs instead of running into the end
    n_batches = reader.count // batch_size if drop_remainder else -(-reader.count // batch_size)
    ds = ds.apply(tf.data.experimental.assert_cardinality(n_batches))
    if tf_decode is not None:
        sample = tf_decode(tf.constant(reader.snapshot.read(reader.first())))
        spec = tf.TensorSpec(sample.shape, sample.dtype)

        def decode_batch(x: Any, y: Any) -> tuple[Any, Any]:
            return tf.map_fn(tf_decode, x, fn_output_signature=spec), y

        ds = ds.map(decode_batch, num_parallel_calls=tf.data.AUTOTUNE)
    if prefetch:
        ds = ds.prefetch(prefetch)
    return ds


@dataclass(frozen=True)
class TorchSource:
    """What a PyTorch reader needs to plan and read in any process: plain values only, so
    DataLoader workers (forked or spawned) open the lake themselves and never share its
    open files or index connections with the parent."""

    lake: str
    snapshot: str  # pinned: "DATASET@ID", so every worker and epoch reads the same data
    split: str | None
    decode: Decode | None
    batch_size: int
    shuffle_buffer: int
    shard: tuple[int, int]
    seed: int
    drop_remainder: bool
    where: Callable[[Entry], bool] | None
    count: int  # examples in the whole shard (all workers together)

    def batches(self, epoch: int, worker: tuple[int, int] = (0, 1)) -> Iterator[tuple[Any, Any]]:
        """NumPy batches of worker ``(i, n)``'s part of the shard for *epoch*."""
        from lakeloop.store import Lake

        with Lake.open(self.lake, background=False) as lake:
            reader = SnapshotReader(
                lake, self.snapshot, self.split, shard=self.shard,
                shuffle_buffer=self.shuffle_buffer, seed=self.seed, where=self.where,
            )  # fmt: skip
            if worker[1] > 1:
                reader = reader.subshard(*worker)
            yield from _batches(reader, self.decode, self.batch_size, epoch, self.drop_remainder)


def torch_dataset(
    lake: Lake,
    ref: str | Snapshot,
    split: str | None = "train",
    *,
    decode: Decode | None = None,
    batch_size: int = 32,
    shuffle_buffer: int = 0,
    shard: tuple[int, int] = (0, 1),
    seed: int = 0,
    drop_remainder: bool = False,
    where: Callable[[Entry], bool] | None = None,
) -> Any:
    """A PyTorch ``IterableDataset`` of ``(x, y)`` batches (``torch.Tensor``; ``x`` stays
    a list of ``bytes`` without *decode*), with the same reading, shuffling and sharding
    as :func:`batches`. Batches are built in NumPy, so give the loader
    ``batch_size=None``::

        loader = DataLoader(torch_dataset(lake, "digits@latest", decode=decode_image,
                                          batch_size=256), batch_size=None, num_workers=2)

    Each DataLoader worker reads its own whole volumes of the shard
    (``torch.utils.data.get_worker_info()``); a worker with no volume yields nothing. Each
    new iteration is the next epoch (a new shuffle) in the process that iterates, so with
    ``num_workers > 0`` and workers that are not persistent, call ``set_epoch(e)`` before
    each epoch (as with PyTorch's ``DistributedSampler``). Needs PyTorch
    (``pip install torch``); lakeloop does not install it.
    """
    if batch_size < 1:
        raise InvalidInput("batch_size must be >= 1", op="read snapshot")
    # a folder or a gateway URL; DataLoader workers open it themselves (a remote lake
    # with the keys in LAKELOOP_ACCESS_KEY / LAKELOOP_SECRET_KEY of their environment)
    root = getattr(lake, "root", None)
    if root is None:
        raise InvalidInput(
            "the PyTorch reader needs a lake opened by its folder or URL",
            op="torch_dataset", target=str(ref),
        )  # fmt: skip
    try:
        from lakeloop.train._torch import SnapshotIterableDataset
    except ImportError:
        raise InvalidInput(
            "the PyTorch reader needs PyTorch", op="torch_dataset", hint="pip install torch"
        ) from None
    reader = SnapshotReader(
        lake, ref, split, shard=shard, shuffle_buffer=shuffle_buffer, seed=seed, where=where
    )
    source = TorchSource(
        lake=str(root), snapshot=f"{reader.snapshot.dataset}@{reader.snapshot.id}",
        split=split, decode=decode, batch_size=batch_size, shuffle_buffer=shuffle_buffer,
        shard=reader.shard, seed=seed, drop_remainder=drop_remainder, where=where,
        count=reader.count,
    )  # fmt: skip
    return SnapshotIterableDataset(source)
