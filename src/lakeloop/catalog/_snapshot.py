"""Datasets and their immutable snapshots.

A **snapshot** is a manifest — one JSON line per object (key, version, size, MD5,
content type, label, split) after a header line — named by the SHA-256 of its bytes.
Its objects' versions are pinned in their namespace (holder ``snapshot:<id>``), so
overwrites, deletes and compaction never take their bytes away; reading an entry
returns exactly the bytes recorded (the store checks its CRC, the reader checks the MD5).

A **dataset** is a named series of snapshots of one ``namespace/prefix`` with a fixed
definition: where labels come from (a key pattern such as ``{label}/{name}``, or a
labels table in the lake) and which share of keys is held out for evaluation. The split
is a stable hash of the key, so an example never moves between splits as data grows.

Both live in the reserved namespace ``_catalog``: ``datasets/<name>.json`` (definition
and series) and ``snapshots/<id>.jsonl`` (manifests). Series updates are serialized by a
lock file, so concurrent ``snapshot create`` calls from several processes are safe.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lakeloop._filelock import FileLock
from lakeloop.errors import ChecksumError, InvalidInput, InvalidName, NotFound

if TYPE_CHECKING:
    from lakeloop.store import Lake, Namespace

FORMAT = "lakeloop-snapshot/1"
INTERNAL_NS = "_catalog"
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_PIN_RETRIES = 5
_MANIFEST_CHUNK = 1 << 20  # bytes of manifest lines parsed at once


def check_dataset_name(name: object) -> str:
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise InvalidName(
            f"bad dataset name {name!r}",
            op="dataset",
            hint="letters, digits, '.', '_' and '-', starting with a letter or digit",
        )
    return name


def check_create_args(dataset: str, labels: str | None, labels_table: str | None) -> None:
    """What every ``create`` (local or over a gateway) checks first: the dataset's name, and
    at most one label source."""
    check_dataset_name(dataset)
    if labels is not None and labels_table is not None:
        raise InvalidInput("give labels (a key pattern) or labels_table, not both")


def parse_ref(ref: str) -> tuple[str, str]:
    """``NAME@latest`` / ``NAME@<n>`` / ``NAME@<hash prefix>`` / ``NAME`` -> (name, selector)."""
    if not isinstance(ref, str) or not ref:
        raise InvalidInput("a snapshot reference is NAME@latest, NAME@<n> or NAME@<hash>")
    name, _, sel = ref.partition("@")
    check_dataset_name(name)
    sel = sel or "latest"
    if sel != "latest" and not re.fullmatch(r"[0-9]+|[0-9a-f]{4,64}", sel):
        raise InvalidInput(
            f"bad snapshot selector {sel!r}",
            op="resolve",
            target=ref,
            hint="use @latest, @<n> (1 is the first) or @<hash prefix of 4+ hex digits>",
        )
    return name, sel


def split_of(key: str, eval_fraction: float, seed: str = "") -> str:
    """``"eval"`` or ``"train"``: a stable hash of the key, independent of everything else."""
    h = hashlib.sha256(f"{seed}\x00{key}".encode()).digest()
    return "eval" if int.from_bytes(h[:8], "big") < eval_fraction * 2**64 else "train"


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """``{label}/{name}`` -> a regex with a ``label`` group; ``{name}``/``{*}`` match anything."""
    out = []
    pos = 0
    has_label = False
    for m in re.finditer(r"\{(\w+|\*)\}", pattern):
        out.append(re.escape(pattern[pos : m.start()]))
        field_name = m.group(1)
        if field_name == "label":
            if has_label:
                raise InvalidInput("{label} appears twice in the pattern", target=pattern)
            has_label = True
            out.append("(?P<label>[^/]+)")
        else:
            out.append(".+?" if field_name != "*" else ".*?")
        pos = m.end()
    out.append(re.escape(pattern[pos:]))
    if not has_label:
        raise InvalidInput(
            "a label pattern needs {label}", target=pattern, hint="e.g. '{label}/{name}'"
        )
    return re.compile("".join(out) + r"\Z")


@dataclass(frozen=True)
class Entry:
    """One object of a snapshot."""

    key: str
    version: int
    size: int
    etag: str
    content_type: str | None
    label: str | None
    split: str


@dataclass
class Snapshot:
    """One immutable snapshot of a dataset (see the module docstring)."""

    dataset: str
    id: str
    number: int
    namespace: str
    prefix: str
    created: float
    count: int
    size: int
    labels: dict[str, int] = field(default_factory=dict)
    splits: dict[str, int] = field(default_factory=dict)
    _lake: Lake | None = field(default=None, repr=False, compare=False)
    _entries: list[Entry] | None = field(default=None, repr=False, compare=False)

    @property
    def ref(self) -> str:
        return f"{self.dataset}@{self.id[:12]}"

    def _ns(self) -> Namespace:
        assert self._lake is not None
        return self._lake.namespace(self.namespace)

    def manifest(self) -> bytes:
        assert self._lake is not None
        raw = self._lake.internal_namespace(INTERNAL_NS).get(f"snapshots/{self.id}.jsonl")
        if hashlib.sha256(raw).hexdigest() != self.id:
            raise ChecksumError(
                "manifest does not match its name", op="read snapshot", target=self.ref
            )
        return raw

    def entries(self, split: str | None = None) -> list[Entry]:
        """Every entry (or those of one split), in key order."""
        if self._entries is None:
            # streamed line by line and hashed on the way: a manifest can be large
            assert self._lake is not None
            digest = hashlib.sha256()
            entries: list[Entry] = []
            with self._lake.internal_namespace(INTERNAL_NS).open(f"snapshots/{self.id}.jsonl") as f:
                digest.update(f.readline())  # the header
                while True:
                    # a few thousand lines per json.loads: one parse per chunk, not per line
                    lines = f.readlines(_MANIFEST_CHUNK)
                    if not lines:
                        break
                    for line in lines:
                        digest.update(line)
                    rows = json.loads(b"[" + b",".join(lines) + b"]")
                    entries += [
                        Entry(
                            key=d["key"],
                            version=d["version"],
                            size=d["size"],
                            etag=d["md5"],
                            content_type=d.get("content_type"),
                            label=d.get("label"),
                            split=d["split"],
                        )
                        for d in rows
                    ]
            if digest.hexdigest() != self.id:
                raise ChecksumError(
                    "manifest does not match its name", op="read snapshot", target=self.ref
                )
            self._entries = entries
        if split is None:
            return list(self._entries)
        if split not in ("train", "eval"):
            raise InvalidInput("split is 'train' or 'eval'", op="entries", target=self.ref)
        return [e for e in self._entries if e.split == split]

    def read(self, entry: Entry) -> bytes:
        """The exact bytes the snapshot recorded for *entry* (MD5 checked)."""
        return self.check(entry, self._ns().get(entry.key, version=entry.version))

    def check(self, entry: Entry, data: bytes) -> bytes:
        """*data* if it is what the snapshot recorded for *entry*, else ``ChecksumError``
        (readers that fetch bytes their own way, in volume order, check them here)."""
        if hashlib.md5(data).hexdigest() != entry.etag:
            raise ChecksumError(
                "object differs from the snapshot's record",
                op="read snapshot",
                target=f"{self.ref}:{entry.key}",
            )
        return data

    def iter_bytes(self, split: str | None = None) -> Iterator[tuple[Entry, bytes]]:
        for e in self.entries(split):
            yield e, self.read(e)

    def to_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "id": self.id,
            "ref": self.ref,
            "number": self.number,
            "namespace": self.namespace,
            "prefix": self.prefix,
            "created": self.created,
            "count": self.count,
            "bytes": self.size,
            "labels": self.labels,
            "splits": self.splits,
        }


@dataclass
class Diff:
    """What changed between two snapshots of a dataset."""

    old: str
    new: str
    added: list[str]
    removed: list[str]
    changed: list[str]

    def to_dict(self) -> dict[str, Any]:
        return {
            "old": self.old,
            "new": self.new,
            "added": self.added,
            "removed": self.removed,
            "changed": self.changed,
        }


class Datasets:
    """Datasets of one lake (``Catalog.datasets``)."""

    def __init__(self, lake: Lake, lock_path: Path) -> None:
        self.lake = lake
        self._lock_path = lock_path

    @property
    def _store(self) -> Namespace:
        return self.lake.internal_namespace(INTERNAL_NS)

    def _record(self, name: str) -> dict[str, Any] | None:
        try:
            return dict(json.loads(self._store.get(f"datasets/{name}.json")))
        except NotFound:
            return None

    def _save(self, record: dict[str, Any]) -> None:
        self._store.put(
            f"datasets/{record['name']}.json",
            json.dumps(record, indent=1, sort_keys=True).encode(),
            content_type="application/json",
        )

    def names(self) -> list[str]:
        return [
            info.key[len("datasets/") : -len(".json")]
            for info in self._store.list(prefix="datasets/")
            if info.key.endswith(".json")
        ]

    def definition(self, name: str) -> dict[str, Any]:
        record = self._record(check_dataset_name(name))
        if record is None:
            raise NotFound("no such dataset", op="dataset", target=name)
        return dict(record["definition"])

    def list(self, name: str) -> list[Snapshot]:
        record = self._record(check_dataset_name(name))
        if record is None:
            raise NotFound(
                "no such dataset",
                op="dataset",
                target=name,
                hint="create it with `lakeloop snapshot create NS/PREFIX --dataset NAME`",
            )
        return [self._snapshot(record, i, s) for i, s in enumerate(record["snapshots"])]

    def _snapshot(self, record: dict[str, Any], index: int, s: dict[str, Any]) -> Snapshot:
        d = record["definition"]
        return Snapshot(
            dataset=record["name"],
            id=s["id"],
            number=s["number"],
            namespace=d["namespace"],
            prefix=d["prefix"],
            created=s["created"],
            count=s["count"],
            size=s["bytes"],
            labels=dict(s.get("labels", {})),
            splits=dict(s.get("splits", {})),
            _lake=self.lake,
        )

    def resolve(self, ref: str) -> Snapshot:
        """``NAME@latest`` / ``NAME@<n>`` / ``NAME@<hash prefix>`` -> the snapshot."""
        name, sel = parse_ref(ref)
        snaps = self.list(name)
        if not snaps:
            raise NotFound("the dataset has no snapshots", op="resolve", target=ref)
        if sel == "latest":
            return snaps[-1]
        if sel.isdigit() and len(sel) < 7:
            for s in snaps:
                if s.number == int(sel):
                    return s
            raise NotFound(
                f"no snapshot number {sel} (numbers: {snaps[0].number}..{snaps[-1].number})",
                op="resolve",
                target=ref,
            )
        found = [s for s in snaps if s.id.startswith(sel)]
        if not found:
            raise NotFound("no snapshot with that hash", op="resolve", target=ref)
        if len(found) > 1:
            raise InvalidInput(
                "the hash prefix matches several snapshots",
                op="resolve",
                target=ref,
                hint="give more hex digits",
            )
        return found[0]

    # ------------------------------------------------------------------ create
    def _labels_table(self, spec: str) -> dict[str, str]:
        ns_name, _, key = spec.partition("/")
        raw = self.lake.namespace(ns_name).get(key)
        text = raw.decode("utf-8-sig")
        if key.endswith(".json"):
            table = json.loads(text)
            if not isinstance(table, dict):
                raise InvalidInput("a JSON labels table maps keys to labels", target=spec)
            return {str(k): str(v) for k, v in table.items()}
        rows = list(csv.reader(io.StringIO(text)))
        if rows and [c.strip().lower() for c in rows[0][:2]] == ["key", "label"]:
            rows = rows[1:]
        out = {}
        for n, row in enumerate(rows, 1):
            if len(row) < 2:
                raise InvalidInput(
                    f"labels table row {n} has {len(row)} fields, expected key,label",
                    target=spec,
                )
            out[row[0]] = row[1]
        return out

    def create(
        self,
        namespace: str,
        prefix: str,
        dataset: str,
        *,
        labels: str | None = None,
        labels_table: str | None = None,
        eval_fraction: float | None = None,
        split_seed: str | None = None,
    ) -> tuple[Snapshot, bool]:
        """Snapshot ``namespace/prefix`` into *dataset*; -> (snapshot, created).

        The first snapshot fixes the dataset's definition (label source, eval fraction,
        split seed); later calls may omit them, and must not contradict them. When nothing
        changed since the latest snapshot, that snapshot is returned with created=False.
        """
        check_create_args(dataset, labels, labels_table)
        if eval_fraction is not None and not (0.0 <= float(eval_fraction) < 1.0):
            raise InvalidInput("eval_fraction must be in [0, 1)", target=str(eval_fraction))
        regex = _pattern_regex(labels) if labels else None
        ns = self.lake.namespace(namespace)  # NotFound for a missing namespace
        with FileLock(self._lock_path):
            record = self._record(dataset)
            # what this call asks for; None: not given (a later call may leave it out)
            given = {
                "namespace": namespace,
                "prefix": prefix,
                "labels": labels,
                "labels_table": labels_table,
                "eval_fraction": None if eval_fraction is None else float(eval_fraction),
                "split_seed": split_seed,
            }
            if record is None:
                defaults = {"eval_fraction": 0.2, "split_seed": ""}
                definition = {k: defaults.get(k) if v is None else v for k, v in given.items()}
                record = {"name": dataset, "definition": definition, "snapshots": []}
            for k, v in given.items():
                if v is not None and v != record["definition"].get(k):
                    raise InvalidInput(
                        f"dataset {dataset} has {k} = {record['definition'].get(k)!r}, not {v!r}",
                        op="snapshot create",
                        target=dataset,
                        hint="a dataset's definition is fixed; use a new dataset name",
                    )
            d = record["definition"]
            if d["labels"]:
                regex = _pattern_regex(d["labels"])
            table = self._labels_table(d["labels_table"]) if d["labels_table"] else None
            header = json.dumps(
                {
                    "format": FORMAT,
                    "dataset": dataset,
                    "namespace": d["namespace"],
                    "prefix": d["prefix"],
                    "labels": d["labels"],
                    "labels_table": d["labels_table"],
                    "eval_fraction": d["eval_fraction"],
                    "split_seed": d["split_seed"],
                },
                sort_keys=True,
            )
            # The manifest is streamed to a temporary file and hashed as it is written,
            # so a snapshot of millions of objects never holds its manifest in memory.
            with tempfile.TemporaryFile() as spool:
                for _attempt in range(_PIN_RETRIES):
                    spool.seek(0)
                    spool.truncate()
                    digest = hashlib.sha256()

                    def write(line: str, digest: Any = digest) -> None:
                        raw = (line + "\n").encode()
                        digest.update(raw)
                        spool.write(raw)

                    write(header)
                    label_counts: Counter[str] = Counter()
                    split_counts: Counter[str] = Counter()
                    total = 0
                    versions: list[int] = []
                    for info in ns.list(prefix=d["prefix"]):
                        rel = info.key[len(d["prefix"]) :]
                        label: str | None = None
                        if regex is not None:
                            m = regex.match(rel)
                            label = m.group("label") if m else None
                        elif table is not None:
                            label = table.get(info.key, table.get(rel))
                        split = split_of(info.key, d["eval_fraction"], d["split_seed"])
                        if label is not None:
                            label_counts[label] += 1
                        split_counts[split] += 1
                        total += info.size
                        versions.append(info.version)
                        write(
                            json.dumps(
                                {
                                    "key": info.key,
                                    "version": info.version,
                                    "size": info.size,
                                    "md5": info.etag,
                                    "content_type": info.content_type,
                                    "label": label,
                                    "split": split,
                                },
                                sort_keys=True,
                                ensure_ascii=False,
                            )
                        )
                    sid = digest.hexdigest()
                    if record["snapshots"] and record["snapshots"][-1]["id"] == sid:
                        last = record["snapshots"][-1]
                        return self._snapshot(record, len(record["snapshots"]) - 1, last), False
                    try:
                        # pins first: once the series names the snapshot its bytes are held
                        ns.pin(f"snapshot:{sid}", versions)
                        break
                    except NotFound:
                        continue  # an object was overwritten between listing and pinning
                else:
                    raise InvalidInput(
                        "objects kept changing while the snapshot was taken",
                        op="snapshot create",
                        target=f"{namespace}/{prefix}",
                        hint="retry, or snapshot a prefix that is not being rewritten",
                    )
                spool.seek(0)
                self._store.put_stream(
                    f"snapshots/{sid}.jsonl", spool, content_type="application/x-ndjson"
                )
            count = len(versions)
            number = record["snapshots"][-1]["number"] + 1 if record["snapshots"] else 1
            entry = {
                "id": sid,
                "number": number,
                "created": time.time(),
                "count": count,
                "bytes": total,
                "labels": dict(sorted(label_counts.items())),
                "splits": dict(sorted(split_counts.items())),
            }
            record["snapshots"].append(entry)
            self._save(record)
            return self._snapshot(record, len(record["snapshots"]) - 1, entry), True

    def drop(self, ref: str) -> Snapshot:
        """Forget one snapshot and release its pins (its bytes may then be compacted away)."""
        snap = self.resolve(ref)
        with FileLock(self._lock_path):
            record = self._record(snap.dataset)
            assert record is not None
            record["snapshots"] = [s for s in record["snapshots"] if s["id"] != snap.id]
            self._save(record)
            self.lake.namespace(snap.namespace).unpin(f"snapshot:{snap.id}")
            self._store.delete(f"snapshots/{snap.id}.jsonl", missing_ok=True)
        return snap

    def delete(self, name: str) -> int:
        """Drop every snapshot of a dataset and the dataset itself; -> snapshots dropped."""
        snaps = self.list(name)
        for s in snaps:
            self.drop(f"{name}@{s.id}")
        with FileLock(self._lock_path):
            self._store.delete(f"datasets/{name}.json", missing_ok=True)
        return len(snaps)

    def gc(self) -> dict[str, int]:
        """Release pins and manifests that no dataset names (left by a crash between
        pinning and recording a snapshot); -> {namespace: pins released}."""
        released: dict[str, int] = {}
        with FileLock(self._lock_path):
            live = set()
            for name in self.names():
                record = self._record(name)
                if record is not None:
                    live |= {s["id"] for s in record["snapshots"]}
            for ns_name in self.lake.namespaces():
                ns = self.lake.namespace(ns_name)
                for holder in ns.pins():
                    if holder.startswith("snapshot:") and holder[9:] not in live:
                        ns.unpin(holder)
                        released[ns_name] = released.get(ns_name, 0) + 1
            for info in list(self._store.list(prefix="snapshots/")):
                sid = info.key[len("snapshots/") :].removesuffix(".jsonl")
                if sid not in live:
                    self._store.delete(info.key, missing_ok=True)
        return released

    def diff(self, old_ref: str, new_ref: str) -> Diff:
        old, new = self.resolve(old_ref), self.resolve(new_ref)
        a = {e.key: e for e in old.entries()}
        b = {e.key: e for e in new.entries()}
        return Diff(
            old=old.ref,
            new=new.ref,
            added=sorted(set(b) - set(a)),
            removed=sorted(set(a) - set(b)),
            changed=sorted(
                k
                for k in set(a) & set(b)
                if (a[k].etag, a[k].label, a[k].split) != (b[k].etag, b[k].label, b[k].split)
            ),
        )
