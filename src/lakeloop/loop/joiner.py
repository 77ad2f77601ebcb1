"""The feedback joiner: predictions + labels -> labelled examples in the lake.

It reads stream ``predictions`` (the server's inference log) and stream ``feedback``
(labels posted to ``/v1/feedback``) in consumer group ``joiner-<model>``, joins them by
prediction id, and lands each labelled example where the project's dataset will pick it
up: in the dataset's namespace, under its prefix, at a key its label pattern matches —
for ``{label}/{name}``, ``7/fb-<prediction id>.png``. The next snapshot of the dataset
then holds it, with the label taken from the key, like every other example.

- **Idempotent.** The key comes from the prediction id, so a redelivered event writes
  the same object again; a new label for the same prediction moves the example to the
  new label's key (the last label by feedback time wins; an older one arriving late is
  counted as ``stale`` and changes nothing). Messages are acknowledged only after the
  lake writes are durable and the joiner's state has committed, so a crash anywhere
  means redelivery, never loss, and redelivery gives the same result.
- **Several joiners of one model** (one group, the events split between them) apply
  their batches one at a time, under the model's joiner lock (``joiner.lock`` beside
  the state): reading a prediction's label, landing, deleting the old key and
  committing are one step, so the last label wins across processes too and a
  prediction id has one example in the lake.
- **Late labels.** Predictions wait (durably, in SQLite: :mod:`lakeloop.loop._joinstate`)
  for ``loop_join_window`` seconds; a label within the window joins however late, and
  feedback that arrives before its prediction was read joins once the prediction comes.
  The window is measured in event time — against how far the feedback stream has been
  read, not the wall clock — so a joiner restarting on a backlog still joins it. An
  empty read does not move that clock; only after the joiner has read no feedback for
  longer than the window plus ``stream_ack_timeout`` does it fall back to the wall clock.
- **Nothing dropped silently.** Feedback that joins nothing — an unknown id, one past
  the window, a malformed event, a label that cannot be a key segment — is landed as
  JSON in the reserved namespace ``_loop`` (``unmatched/<model>/<event id>.json``, with
  the reason) and counted.
- **Live accuracy.** Each joined prediction is scored against its label (the model's
  class: the argmax of its scores, named by the version's labels), per version and for
  shadow answers too; see :func:`lakeloop.loop.live_accuracy`.

Inputs become bytes by their form: an array of integers 0..255 shaped like an image
(H x W, or H x W x 1/3/4) becomes a PNG; anything else is stored as JSON (``.json``), for
a pipeline whose ``decode`` reads it. A ``{"ref": "ns/key"}`` input (the server stores
big instances in ``_inference`` and logs a reference) is read back first: a JSON
instance is then landed as above, any other object copied as it is.

>>> with Joiner("lakeloop.toml") as joiner:            # doctest: +SKIP
...     joiner.drain()
{'predictions': 120, 'joined': 100, 'unmatched': 2, ...}
"""

from __future__ import annotations

import io
import json
import math
import os
import socket
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lakeloop._filelock import FileLock
from lakeloop.errors import InvalidInput, LakeloopError, NotFound
from lakeloop.loop._joinstate import JoinState, state_path
from lakeloop.loop.turns import INTERNAL_NS

# where `lakeloop serve` stores an input too big to log inline (serve's INPUTS_NS)
INFERENCE_NS = "_inference"

if TYPE_CHECKING:
    from lakeloop.project import Project
    from lakeloop.store import Lake

__all__ = ["Joiner", "land_form", "predicted_label"]

GROUP = "joiner"
PREDICTIONS = "predictions"
FEEDBACK = "feedback"
_MAX_LABEL = 200

# join state path -> when a joiner of this process last read a feedback event (monotonic;
# the first opening counts as one). Per process, not per Joiner: `lakeloop loop run` and
# `loop join --follow` open a new Joiner every round, and the expiry clock falls back
# to the wall clock only after a silence longer than the window (see Joiner._stream_time).
_LAST_READ: dict[str, float] = {}


@dataclass(frozen=True)
class _Feedback:
    event_id: str
    pid: str | None
    label: Any
    time: float
    raw: Any
    order: int


def predicted_label(output: Any, labels: Sequence[str] | None) -> str | None:
    """The class a prediction names: a scalar as it is (an index is named by *labels*),
    a list of scores by its argmax, a dict by its ``label``/``class`` field."""
    if isinstance(output, Mapping):
        for name in ("label", "class", "classes"):
            if name in output:
                return predicted_label(output[name], labels)
        return None
    if isinstance(output, bool):
        return None
    if isinstance(output, int):
        return labels[output] if labels and 0 <= output < len(labels) else str(output)
    if isinstance(output, str):
        return output
    if isinstance(output, float):
        return str(int(output)) if output.is_integer() else None
    if isinstance(output, list) and output:
        flat = output
        while len(flat) == 1 and isinstance(flat[0], list):
            flat = flat[0]
        if all(isinstance(v, int | float) and not isinstance(v, bool) for v in flat):
            if len(flat) == 1:
                return predicted_label(flat[0], labels)
            best = max(range(len(flat)), key=lambda i: flat[i])
            return labels[best] if labels and best < len(labels) else str(best)
    return None


def land_form(given: Any) -> tuple[bytes, str, str]:
    """(bytes, file suffix, content type) for a JSON instance: a PNG for image-like
    integer arrays in 0..255, else the instance as JSON."""
    import numpy as np

    if isinstance(given, list):
        try:
            arr = np.asarray(given)
        except ValueError:  # ragged
            arr = None
        if (
            arr is not None
            and arr.dtype.kind in "iuf"
            and (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[-1] in (1, 3, 4)))
            and arr.size
            and np.all(np.isfinite(arr))
            and np.all(arr == np.round(arr))
            and arr.min() >= 0
            and arr.max() <= 255
        ):
            from PIL import Image

            pixels = arr.astype(np.uint8)
            if pixels.ndim == 3 and pixels.shape[-1] == 1:
                pixels = pixels[..., 0]
            buf = io.BytesIO()
            Image.fromarray(pixels).save(buf, format="PNG")
            return buf.getvalue(), ".png", "image/png"
    data = json.dumps(given, sort_keys=True, separators=(",", ":")).encode()
    return data, ".json", "application/json"


def _event_time(data: Mapping[str, Any], stream_time: float) -> float:
    """An event's own ``time`` (when it happened), else when it was published."""
    when = data.get("time")
    if isinstance(when, int | float) and not isinstance(when, bool) and math.isfinite(when):
        return float(when)
    return stream_time


def _check_label(label: Any) -> str | None:
    """The label as a key segment, or None when it cannot be one."""
    if isinstance(label, bool) or not isinstance(label, int | str):
        return None
    text = str(label)
    if (
        not text
        or len(text) > _MAX_LABEL
        or "/" in text
        or text in (".", "..")
        or not text.isprintable()
    ):
        return None
    return text


class Joiner:
    """Joins the project's predictions with their feedback into its dataset's folder.

    Open it as a context manager; :meth:`poll` does one round (predictions, then
    feedback, then expiry), :meth:`drain` rounds until both streams have nothing new.
    *url* picks the stream backend (default: the lake's ``stream_url``).
    """

    def __init__(
        self,
        project: Project | str | os.PathLike[str] | None = None,
        *,
        lake: str | None = None,
        url: str | None = None,
        group: str | None = None,
        consumer: str | None = None,
    ) -> None:
        from lakeloop.project import Project, load_project

        self.project = project if isinstance(project, Project) else load_project(project)
        self._lake_arg = lake
        self.url = url
        # one group per model: the streams are lake-wide, and a shared group would hand one
        # model's events to another model's joiner
        self.group = group or f"{GROUP}-{self.project.model}"
        self.consumer = consumer or f"{socket.gethostname()}-{os.getpid()}"
        self.model = self.project.model
        self._labels: dict[int, list[str] | None] = {}

    # ---------------------------------------------------------------- lifecycle
    def __enter__(self) -> Joiner:
        from lakeloop.catalog import Catalog
        from lakeloop.catalog._snapshot import _pattern_regex
        from lakeloop.loop.controller import _lake_folder
        from lakeloop.store import Lake
        from lakeloop.stream import open_stream

        folder = _lake_folder(self.project, self._lake_arg)
        self.lake: Lake = Lake.open(folder, background=False)
        try:
            try:
                definition = Catalog(self.lake).dataset(self.project.dataset).definition
            except NotFound:
                raise NotFound(
                    f"no dataset {self.project.dataset!r} in the lake",
                    op="join",
                    target=self.project.dataset,
                    hint="the joiner lands examples where the dataset's first snapshot "
                    "says: make it first (`lakeloop snapshot create NS/PREFIX --dataset "
                    "NAME --labels '{label}/{name}'`)",
                ) from None
            pattern = definition.get("labels")
            if not pattern:
                raise InvalidInput(
                    f"dataset {self.project.dataset!r} takes its labels from a table, and "
                    "the joiner needs a key pattern to land labelled examples",
                    op="join",
                    target=self.project.dataset,
                    hint="define the dataset with --labels '{label}/{name}'",
                )
            self.pattern = str(pattern)
            self._regex = _pattern_regex(self.pattern)
            self.prefix = str(definition["prefix"])
            self.ns = self.lake.namespace(str(definition["namespace"]))
            self.settings = self.lake.settings
            self.state = JoinState(state_path(folder, self.model))
            # the silence is measured from the process's first joiner of this state on
            _LAST_READ.setdefault(str(self.state.path), time.monotonic())
            self.predictions = open_stream(self.lake, PREDICTIONS, url=self.url)
            self.feedback = open_stream(self.lake, FEEDBACK, url=self.url)
        except BaseException:
            self.lake.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        for closing in (self.predictions.close, self.feedback.close, self.state.close):
            try:
                closing()
            except LakeloopError:
                pass
        self.lake.close()

    # ---------------------------------------------------------------- helpers
    def key_for(self, pid: str, label: str, suffix: str) -> str:
        """The lake key of prediction *pid*'s example under *label*: the dataset's
        pattern with ``{label}`` filled in and every other field named after the id."""
        import re

        fields = re.findall(r"\{(\w+|\*)\}", self.pattern)
        others = [f for f in fields if f != "label"]
        rel = self.pattern
        for i, name in enumerate(others):
            value = f"fb-{pid}{suffix}" if i == len(others) - 1 else "feedback"
            rel = rel.replace("{" + name + "}", value, 1)
        if not others:
            rel += f"/fb-{pid}{suffix}"
        rel = rel.replace("{label}", label, 1)
        match = self._regex.match(rel)
        if match is None or match.group("label") != label:
            raise InvalidInput(
                f"the dataset's pattern {self.pattern!r} cannot carry label {label!r}",
                op="join",
                target=rel,
            )
        return self.prefix + rel

    def _version_labels(self, version: int | None) -> list[str] | None:
        if version is None:
            return None
        if version not in self._labels:
            from lakeloop.registry import Registry

            try:
                lineage = Registry(self.lake).get(f"{self.model}@{version}").lineage
                self._labels[version] = list(lineage.labels) if lineage.labels else None
            except LakeloopError:
                self._labels[version] = None
        return self._labels[version]

    def _example(self, given: Any) -> tuple[bytes, str, str]:
        if isinstance(given, Mapping) and set(given) == {"ref"}:
            ns_name, _, key = str(given["ref"]).partition("/")
            if ns_name != INFERENCE_NS or not key.startswith(f"{self.model}/"):
                # only what the server stored for this model: a client's own {"ref": ...}
                # instance must not copy other objects of the lake into the training data
                raise InvalidInput(
                    "an input reference outside the server's inference store",
                    op="join",
                    target=str(given["ref"]),
                )
            ns = self.lake.internal_namespace(ns_name)
            info = ns.stat(key)
            data = ns.get(key)
            if key.endswith(".json") or info.content_type == "application/json":
                # an instance the server stored rather than logged inline (too big)
                try:
                    return land_form(json.loads(data))
                except ValueError as exc:
                    raise InvalidInput(
                        f"not JSON: {exc}", op="join", target=str(given["ref"])
                    ) from None
            suffix = os.path.splitext(key)[1][:16]
            return data, suffix, info.content_type or "application/octet-stream"
        return land_form(given)

    # ---------------------------------------------------------------- one round
    def poll(self, block: float = 0.0) -> dict[str, int]:
        """One round: read predictions, then feedback, then expire old predictions.
        -> counts of what this round did.

        Reading and acknowledging happen outside the model's joiner lock; applying a
        batch (its state reads, lake writes and commit) happens inside it, so joiners
        of one model in several processes apply their batches one at a time."""
        batch = max(1, int(self.settings["loop_join_batch"]))
        done = {"predictions": 0, "feedback": 0, "joined": 0, "unmatched": 0, "stale": 0}
        msgs = self.predictions.consume(self.group, self.consumer, max=batch, block=block)
        if msgs:
            done["predictions"] = len(msgs)
            with self._exclusive():
                rejoin = self._record_predictions(msgs)
                if rejoin:
                    self._join(rejoin, done, retry=True)
            self.predictions.ack(self.group, [m.offset for m in msgs])
        msgs = self.feedback.consume(self.group, self.consumer, max=batch, block=0.0)
        window = float(self.settings["loop_join_window"])
        seen = self._stream_time(msgs, window)
        with self._exclusive():
            if msgs:
                done["feedback"] = len(msgs)
                items = self._feedback_items(msgs)
                self._join(items, done)
            if window:
                self.state.begin()
                try:
                    now = self.state.advance_clock(seen) if seen is not None else self.state.clock()
                    if now is not None:
                        self.state.expire(now - window)
                    self.state.commit()
                except BaseException:
                    self.state.rollback()
                    raise
        if msgs:
            self.feedback.ack(self.group, [m.offset for m in msgs])
        return done

    def _exclusive(self) -> FileLock:
        """The model's joiner lock, beside its state file."""
        return FileLock(self.state.path.with_name("joiner.lock"))

    def _feedback_items(self, msgs: Sequence[Any]) -> list[_Feedback]:
        """The batch's feedback events not applied yet (checked under the lock)."""
        already = self.state.seen([m.id for m in msgs])
        items = []
        for order, m in enumerate(msgs):
            if m.id in already:
                continue
            data = m.data if isinstance(m.data, Mapping) else {}
            pid = data.get("prediction_id")
            items.append(
                _Feedback(
                    event_id=m.id,
                    pid=pid if isinstance(pid, str) and pid else None,
                    label=data.get("label"),
                    time=_event_time(data, m.time),
                    raw=m.data,
                    order=order,
                )
            )
        return items

    def _stream_time(self, feedback: Sequence[Any], window: float) -> float | None:
        """How far the feedback stream has been read, in event time: the newest event's
        time in *feedback* (never ahead of the wall clock), or None (the clock stays).

        An empty read does not mean the stream is drained: another joiner of the model
        may be working through a backlog, a short fetch can come back empty under load,
        and a batch left unacknowledged by a killed joiner comes back only after
        ``stream_ack_timeout``. So the wall clock is used only once this process has
        read no feedback for longer than the window plus ``stream_ack_timeout`` (since
        its first joiner of this state opened): by then anything still waiting would
        have been delivered."""
        wall = time.time()
        key = str(self.state.path)
        if feedback:
            _LAST_READ[key] = time.monotonic()
            data = [m.data if isinstance(m.data, Mapping) else {} for m in feedback]
            newest = max(_event_time(d, m.time) for d, m in zip(data, feedback, strict=True))
            return min(wall, newest)
        idle = time.monotonic() - _LAST_READ.get(key, time.monotonic())
        if idle > window + float(self.settings["stream_ack_timeout"]):
            return wall
        return None

    def drain(self, max_rounds: int | None = None) -> dict[str, int]:
        """Poll until a round reads nothing; -> the summed counts."""
        total: dict[str, int] = {}
        rounds = 0
        while True:
            done = self.poll()
            for k, v in done.items():
                total[k] = total.get(k, 0) + v
            rounds += 1
            if not (done["predictions"] or done["feedback"]):
                return total
            if max_rounds is not None and rounds >= max_rounds:
                return total

    def counters(self) -> dict[str, int]:
        return self.state.counters()

    # ---------------------------------------------------------------- predictions
    def _record_predictions(self, msgs: Sequence[Any]) -> list[_Feedback]:
        """Store this model's predictions; -> feedback that waited for one of them."""
        rows = []
        other = 0
        for m in msgs:
            d = m.data if isinstance(m.data, Mapping) else {}
            pid = d.get("prediction_id")
            if d.get("model") != self.model or not isinstance(pid, str) or not pid:
                other += 1
                continue
            version = d.get("version")
            rows.append(
                (
                    pid,
                    bool(d.get("shadow")),
                    _event_time(d, m.time),
                    version if isinstance(version, int) else None,
                    d.get("input"),
                    d.get("output"),
                )
            )
        self.state.begin()
        try:
            self.state.add_predictions(rows)
            self.state.bump("other_model", other)
            waiting = self.state.db.execute(
                "SELECT event_id FROM unmatched WHERE reason = 'unknown prediction id' AND pid IN "
                f"({','.join('?' * len(rows))})",
                [r[0] for r in rows],
            ).fetchall()
            self.state.commit()
        except BaseException:
            self.state.rollback()
            raise
        out: list[_Feedback] = []
        for (event_id,) in waiting:
            try:
                raw = json.loads(
                    self.lake.internal_namespace(INTERNAL_NS).get(self._unmatched_key(event_id))
                )
            except NotFound:
                continue
            event = raw.get("event") if isinstance(raw, Mapping) else None
            if not isinstance(event, Mapping):
                continue
            when = event.get("time", raw.get("time"))
            out.append(
                _Feedback(
                    event_id=event_id,
                    pid=event.get("prediction_id"),
                    label=event.get("label"),
                    time=float(when) if isinstance(when, int | float) else time.time(),
                    raw=event,
                    order=len(out),
                )
            )
        return out

    # ---------------------------------------------------------------- feedback
    def _unmatched_key(self, event_id: str) -> str:
        return f"unmatched/{self.model}/{event_id}.json"

    def _join(self, items: Sequence[_Feedback], done: dict[str, int], retry: bool = False) -> None:
        """Land the winning label of each prediction, keep the rest as unmatched, then
        commit the state; the caller acks after this returns."""
        window = float(self.settings["loop_join_window"])
        unmatched: list[tuple[_Feedback, str]] = []
        winners: dict[str, tuple[_Feedback, str, dict[str, Any]]] = {}
        for item in sorted(items, key=lambda f: (f.time, f.order)):
            if item.pid is None or "label" not in (
                item.raw if isinstance(item.raw, Mapping) else {}
            ):
                unmatched.append((item, "malformed feedback (needs prediction_id and label)"))
                continue
            label = _check_label(item.label)
            if label is None:
                unmatched.append((item, "the label is not a non-empty string or integer "
                                  "usable as a key segment"))  # fmt: skip
                continue
            pred = self.state.prediction(item.pid)
            if pred is None:
                reason = (
                    "the prediction expired (past loop_join_window)"
                    if self.state.was_expired(item.pid)
                    else "unknown prediction id"
                )
                if not retry:
                    unmatched.append((item, reason))
                continue
            if window and item.time - float(pred["time"]) > window:
                unmatched.append((item, "the label came after loop_join_window"))
                continue
            winners[item.pid] = (item, label, pred)  # sorted by time: the last one wins
        landings: list[tuple[str, bytes, dict[str, Any]]] = []
        moves: list[str] = []
        labelled: list[tuple[str, str, float, str, dict[str, Any]]] = []
        stale = 0
        for pid, (item, label, pred) in winners.items():
            before = self.state.label(pid)
            if before is not None and before["feedback_time"] > item.time:
                stale += 1
                continue
            try:
                data, suffix, ctype = self._example(pred["input"])
            except LakeloopError as exc:
                unmatched.append((item, f"the prediction's input cannot be read: {exc}"))
                continue
            try:
                key = self.key_for(pid, label, suffix)
            except LakeloopError as exc:  # a label the dataset's key pattern cannot hold
                unmatched.append((item, f"the label cannot be landed: {exc}"))
                continue
            meta = {
                "prediction_id": pid,
                "model": f"{self.model}@{pred['version']}",
                "feedback_time": repr(item.time),
                "source": "feedback",
            }
            landings.append((key, data, {"content_type": ctype, "metadata": meta}))
            if before is not None and before["key"] != key:
                moves.append(before["key"])
            labelled.append((pid, label, item.time, key, pred))
        # 1. the lake, durably: examples, then the unmatched records, then old keys
        if landings:
            self.ns.put_many(landings)
        if unmatched:
            loop_ns = self.lake.internal_namespace(INTERNAL_NS)
            loop_ns.put_many(
                [
                    (
                        self._unmatched_key(item.event_id),
                        json.dumps(
                            {"reason": reason, "event": item.raw, "time": item.time},
                            sort_keys=True,
                        ).encode(),
                        {"content_type": "application/json"},
                    )
                    for item, reason in unmatched
                ]
            )
        for old in moves:
            self.ns.delete(old, missing_ok=True)
        # 2. the state, in one transaction
        self.state.begin()
        try:
            for pid, label, when, key, pred in labelled:
                self.state.set_label(pid, label, when, key)
                for shadow in (False, True):
                    scored = pred if not shadow else self.state.prediction(pid, True)
                    if scored is None:
                        continue
                    guess = predicted_label(
                        scored["output"], self._version_labels(scored["version"])
                    )
                    self.state.set_score(
                        pid, shadow, scored["version"], None if guess is None else guess == label
                    )
            for item, reason in unmatched:
                self.state.add_unmatched(
                    item.event_id, item.pid, reason, self._unmatched_key(item.event_id)
                )
            if retry:
                joined = {pid for pid, *_ in labelled}
                for item in items:
                    if item.pid in joined:
                        self.state.db.execute(
                            "DELETE FROM unmatched WHERE event_id = ?", (item.event_id,)
                        )
                        self.state.bump("unmatched", -1)
            self.state.bump("stale", stale)
            self.state.mark_seen(item.event_id for item in items)
            self.state.commit()
        except BaseException:
            self.state.rollback()
            raise
        if retry:
            loop_ns = self.lake.internal_namespace(INTERNAL_NS)
            for pid, *_ in labelled:
                for item in items:
                    if item.pid == pid:
                        loop_ns.delete(self._unmatched_key(item.event_id), missing_ok=True)
        done["joined"] += len(labelled)
        done["unmatched"] += len(unmatched)
        done["stale"] += stale
