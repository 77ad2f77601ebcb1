"""Model versions with lineage, and aliases that move atomically with a recorded history.

Everything lives in the reserved namespace ``_registry``::

    models/<name>/versions/<n>.json     one version: flavor, artifact checksum, lineage
    models/<name>/artifacts/<n><suffix> the file the flavor wrote (streamed in and out)
    models/<name>/aliases.json          alias -> version, and every move ever made
    models/<name>/decisions/<n>.json    a gate decision with its evidence (lakeloop ci)

Versions are numbered 1, 2, ... per model. Registering a version and moving an alias
both run under the model's lock file (``<lake>/registry/<name>.lock``, ``flock``), so
concurrent processes never hand out one number twice or lose a move; each change is one
``put`` of one object, so a reader sees the state before or after it, never between.

Over a gateway (``Registry(Lake.open("http://..."))``) the same methods work: reads run
this code over the gateway's reserved-area endpoint, and every change is sent to the
gateway, which runs it through a Registry of its own under its lock file (grants:
``@models`` read / write / admin).

``champion`` is special: :meth:`Registry.promote` moves it and needs the gate's decision
(stored with the move); :meth:`Registry.alias` moves it only with ``force=True`` and a
reason, recorded as an override. Anything else is refused.

A promotion is a compare-and-set: the decision names the champion the candidate was
compared with, and the move happens, under the model's lock, only while that is still the
champion. Two gates that both beat champion @1 cannot both promote: the second is
refused (nothing changes) and has to be compared with the new champion first.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
import re
import socket
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lakeloop._filelock import FileLock
from lakeloop.errors import InvalidInput, InvalidName, NotFound, Refused
from lakeloop.registry._flavors import FLAVORS, flavor_for

if TYPE_CHECKING:
    from lakeloop.store import Lake, Namespace

__all__ = [
    "CHAMPION",
    "AliasMove",
    "Lineage",
    "LoadedModel",
    "ModelVersion",
    "Registry",
    "parse_model_ref",
]

INTERNAL_NS = "_registry"
CHAMPION = "champion"
_LOCK_DIR = "registry"
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_ALIAS_RE = re.compile(r"[a-z][a-z0-9_-]{0,63}")


def _check_name(name: object) -> str:
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise InvalidName(
            f"bad model name {name!r}",
            op="registry",
            hint="letters, digits, '.', '_' and '-', starting with a letter or digit",
        )
    return name


def _check_alias(alias: object) -> str:
    if not isinstance(alias, str) or not _ALIAS_RE.fullmatch(alias) or alias == "latest":
        raise InvalidName(
            f"bad alias {alias!r}",
            op="alias",
            hint="aliases are lowercase letters, digits, '_' and '-', starting with a letter; "
            "'latest' is reserved",
        )
    return alias


def parse_model_ref(ref: str) -> tuple[str, str]:
    """``NAME@champion`` / ``NAME@3`` / ``NAME@latest`` / ``NAME`` -> (name, selector)."""
    if not isinstance(ref, str) or not ref:
        raise InvalidInput("a model reference is NAME@VERSION, NAME@ALIAS or NAME@latest")
    name, _, sel = ref.partition("@")
    _check_name(name)
    sel = sel or "latest"
    if not (sel == "latest" or sel.isdigit() or _ALIAS_RE.fullmatch(sel)):
        raise InvalidInput(
            f"bad selector {sel!r}",
            op="resolve model",
            target=ref,
            hint="use @3, @latest or @alias",
        )
    return name, sel


def _ref(name: str, version: int | None) -> str:
    return "no version" if version is None else f"{name}@{version}"


def _actor(actor: str | None) -> str:
    if actor:
        return actor
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"


@dataclass(frozen=True)
class Lineage:
    """Where a model came from: the data, the code, the parameters, the result.

    ``snapshots``: dataset -> snapshot id (SHA-256) it trained and was evaluated on;
    ``code``: the code fingerprint as a dict (``CodeFingerprint.to_dict()``);
    ``labels``: class names in the order of the model's output ids.
    """

    snapshots: dict[str, str] = field(default_factory=dict)
    code: dict[str, Any] | None = None
    params: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    run_id: str | None = None
    labels: list[str] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "snapshots": dict(self.snapshots),
            "code": self.code,
            "params": dict(self.params),
            "metrics": dict(self.metrics),
            "run_id": self.run_id,
            "labels": None if self.labels is None else list(self.labels),
            "extra": dict(self.extra),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Lineage:
        unknown = set(d) - {"snapshots", "code", "params", "metrics", "run_id", "labels", "extra"}
        if unknown:
            raise InvalidInput(f"unknown lineage fields {sorted(unknown)}", op="register")
        return cls(
            snapshots=dict(d.get("snapshots") or {}),
            code=d.get("code"),
            params=dict(d.get("params") or {}),
            metrics=dict(d.get("metrics") or {}),
            run_id=d.get("run_id"),
            labels=None if d.get("labels") is None else list(d["labels"]),
            extra=dict(d.get("extra") or {}),
        )


@dataclass(frozen=True)
class ModelVersion:
    """One registered version (its record; :meth:`Registry.load` gives the model)."""

    name: str
    version: int
    flavor: str
    created: float
    created_by: str
    sha256: str
    size: int
    lineage: Lineage
    aliases: tuple[str, ...] = ()

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "ref": self.ref,
            "flavor": self.flavor,
            "created": self.created,
            "created_by": self.created_by,
            "sha256": self.sha256,
            "size": self.size,
            "aliases": list(self.aliases),
            "lineage": self.lineage.to_dict(),
        }


@dataclass(frozen=True)
class AliasMove:
    """One move of an alias: ``kind`` is "move", "gate" (promote), "override" (forced
    champion move) or "remove"; ``decision`` is the gate's record for "gate" moves."""

    seq: int
    alias: str
    previous: int | None
    version: int | None
    kind: str
    who: str
    when: float
    why: str
    decision: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "alias": self.alias,
            "from": self.previous,
            "to": self.version,
            "kind": self.kind,
            "who": self.who,
            "when": self.when,
            "why": self.why,
            "decision": self.decision,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> AliasMove:
        return cls(
            d["seq"], d["alias"], d["from"], d["to"], d["kind"], d["who"], d["when"], d["why"],
            d.get("decision"),
        )  # fmt: skip


class LoadedModel:
    """A model ready to predict: ``predict(batch)``, ``version``, ``lineage``, ``model``."""

    def __init__(self, record: ModelVersion, model: Any) -> None:
        self.record = record
        self.model = model
        self.name = record.name
        self.version = record.version
        self.flavor = record.flavor
        self.lineage = record.lineage

    @property
    def ref(self) -> str:
        return self.record.ref

    def predict(self, batch: Any) -> Any:
        """The model's outputs for *batch* (one per row), through its flavor."""
        return FLAVORS[self.flavor].predict(self.model, batch)

    def __repr__(self) -> str:
        return f"<LoadedModel {self.ref} ({self.flavor})>"


def _decision_record(decision: Any) -> dict[str, Any]:
    """The gate's decision as a dict; it must say ``promote`` (or ``passed`` for an
    acceptance claim, which has no outcome)."""
    if hasattr(decision, "to_dict"):
        decision = decision.to_dict()
    if not isinstance(decision, Mapping):
        raise Refused(
            "promote needs the gate's decision record",
            op="promote",
            hint="pass decision=<a lakeloop.gate Decision, CombinedDecision or Acceptance>",
        )
    record = json.loads(json.dumps(dict(decision), default=str))
    outcome = record.get("outcome")
    ok = outcome == "promote" if outcome is not None else record.get("passed") is True
    if not ok:
        raise Refused(
            f"the gate's decision is {outcome or 'not passed'!r}, not 'promote'",
            op="promote",
            hint="only a promoting decision moves champion",
        )
    return record


_UNSET: Any = object()


def _compared_with(name: str, record: Mapping[str, Any], champion: Any) -> int | None:
    """The version the decision compared the candidate with (None: there was no
    champion): *champion* when given, else the record's ``champion`` field."""
    if champion is _UNSET:
        if "champion" not in record:
            raise Refused(
                "the decision does not name the champion it was compared with",
                op="promote",
                target=name,
                hint="pass champion='NAME@N' (None for a first promotion), or a decision "
                "record with a 'champion' field, as `lakeloop ci` stores them",
            )
        champion = record["champion"]
    if champion is None:
        return None
    if isinstance(champion, int) and not isinstance(champion, bool) and champion > 0:
        return champion
    if isinstance(champion, str):
        model, _, number = champion.rpartition("@")
        if model in ("", name) and number.isdigit() and int(number) > 0:
            return int(number)
    raise InvalidInput(
        f"bad champion {champion!r} for model {name!r}",
        op="promote",
        target=name,
        hint="the champion compared with is NAME@N, N, or None",
    )


class Registry:
    """Model versions, lineage and aliases of one lake.

    >>> reg = Registry(lake)                                            # doctest: +SKIP
    >>> v = reg.register("digits", model, lineage=Lineage(params={"units": 32}))  # doctest: +SKIP
    >>> reg.alias("digits@1", "challenger", reason="nightly run")       # doctest: +SKIP
    >>> reg.promote("digits@1", decision=gate_decision, reason="gate")  # doctest: +SKIP
    >>> m = reg.load("digits@champion"); m.predict(batch); m.version   # doctest: +SKIP
    1
    """

    def __init__(self, lake: Lake) -> None:
        self.lake = lake
        # Over a gateway (``Lake.open("http://...")``) reads run this same code through
        # the gateway's reserved-area endpoint; changes are sent to the gateway, which
        # runs them through a Registry of its own, under its own locks.
        self._remote = getattr(lake, "remote", False)
        self._lock_dir = None if self._remote else Path(lake.root) / _LOCK_DIR

    @property
    def _ns(self) -> Namespace:
        return self.lake.internal_namespace(INTERNAL_NS)

    def _lock(self, name: str) -> FileLock:
        assert self._lock_dir is not None
        return FileLock(self._lock_dir / f"{name}.lock")

    def _call(self, method: str, path: str, body: Any) -> Any:
        """One registry change on the gateway (``/api/v1/models/...``) -> its JSON."""
        return self.lake.api(method, path, body=body)  # type: ignore[attr-defined]

    # ------------------------------------------------------------------ reading
    def models(self) -> list[str]:
        """Names of the registered models, sorted."""
        names = set()
        for info in self._ns.list(prefix="models/"):
            names.add(info.key.split("/", 2)[1])
        return sorted(names)

    def _numbers(self, name: str) -> list[int]:
        prefix = f"models/{name}/versions/"
        return sorted(int(i.key[len(prefix) : -5]) for i in self._ns.list(prefix=prefix))

    def _state(self, name: str) -> dict[str, Any]:
        try:
            return dict(json.loads(self._ns.get(f"models/{name}/aliases.json")))
        except NotFound:
            return {"aliases": {}, "moves": []}

    def aliases(self, name: str) -> dict[str, int]:
        """alias -> version of model *name*."""
        _check_name(name)
        return {k: int(v) for k, v in self._state(name)["aliases"].items()}

    def history(self, name: str) -> list[AliasMove]:
        """Every alias move of model *name*, oldest first."""
        _check_name(name)
        return [AliasMove.from_dict(m) for m in self._state(name)["moves"]]

    def _record(self, name: str, version: int, aliases: dict[str, int]) -> ModelVersion:
        try:
            d = json.loads(self._ns.get(f"models/{name}/versions/{version:08d}.json"))
        except NotFound:
            raise NotFound(
                f"no version {version} of model {name!r}",
                op="resolve model",
                target=f"{name}@{version}",
                hint=f"list them with `lakeloop models show {name}`",
            ) from None
        return ModelVersion(
            name=name,
            version=version,
            flavor=d["flavor"],
            created=d["created"],
            created_by=d["created_by"],
            sha256=d["sha256"],
            size=d["size"],
            lineage=Lineage.from_dict(d["lineage"]),
            aliases=tuple(sorted(a for a, v in aliases.items() if v == version)),
        )

    def versions(self, name: str) -> list[ModelVersion]:
        """Every version of model *name*, oldest first."""
        _check_name(name)
        aliases = self.aliases(name)
        return [self._record(name, n, aliases) for n in self._numbers(name)]

    def get(self, ref: str) -> ModelVersion:
        """The record of ``NAME@VERSION`` / ``NAME@ALIAS`` / ``NAME@latest`` (no artifact)."""
        name, sel = parse_model_ref(ref)
        aliases = self.aliases(name)
        if sel == "latest":
            numbers = self._numbers(name)
            if not numbers:
                raise NotFound(
                    "no such model", op="resolve model", target=name,
                    hint="list models with `lakeloop models list`",
                )  # fmt: skip
            return self._record(name, numbers[-1], aliases)
        if sel.isdigit():
            return self._record(name, int(sel), aliases)
        if sel not in aliases:
            raise NotFound(
                f"model {name!r} has no alias {sel!r}",
                op="resolve model",
                target=ref,
                hint=f"aliases: {', '.join(sorted(aliases)) or 'none yet'}",
            )
        return self._record(name, aliases[sel], aliases)

    def load(self, ref: str) -> LoadedModel:
        """Load ``NAME@champion`` / ``NAME@3`` / ``NAME@latest`` -> a :class:`LoadedModel`.

        The artifact's SHA-256 is checked against the version's record before the flavor
        reads it.
        """
        from lakeloop.errors import ChecksumError

        record = self.get(ref)
        flavor = FLAVORS[record.flavor]
        key = f"models/{record.name}/artifacts/{record.version:08d}{flavor.suffix}"
        with tempfile.TemporaryDirectory(prefix="lakeloop-model-") as tmp:
            path = Path(tmp) / f"model{flavor.suffix}"
            digest = hashlib.sha256()
            with self._ns.open(key) as src, open(path, "wb") as dst:
                while chunk := src.read(1 << 20):
                    digest.update(chunk)
                    dst.write(chunk)
            if digest.hexdigest() != record.sha256:
                raise ChecksumError(
                    "model artifact differs from its registered checksum",
                    op="load model",
                    target=record.ref,
                )
            model = flavor.load(path)
        return LoadedModel(record, model)

    # ------------------------------------------------------------------ writing
    def register(
        self,
        name: str,
        model: Any = None,
        *,
        flavor: str | None = None,
        lineage: Lineage | Mapping[str, Any] | None = None,
        artifact: str | os.PathLike[str] | None = None,
        actor: str | None = None,
    ) -> ModelVersion:
        """Store *model* (or an ``artifact`` file a flavor wrote) as the next version.

        The flavor is *flavor* or the first that accepts the model (keras, sklearn,
        pyfunc); an ``artifact`` needs ``flavor``. Returns the new version's record.
        """
        _check_name(name)
        if isinstance(lineage, Mapping):
            lineage = Lineage.from_dict(lineage)
        lineage = lineage or Lineage()
        if artifact is not None:
            if flavor is None:
                raise InvalidInput("an artifact file needs its flavor", op="register")
            chosen = flavor_for(None, flavor)
        else:
            if model is None:
                raise InvalidInput("nothing to register: pass a model or an artifact")
            chosen = flavor_for(model, flavor)
        with tempfile.TemporaryDirectory(prefix="lakeloop-model-") as tmp:
            path = Path(tmp) / f"model{chosen.suffix}"
            if artifact is not None:
                path = Path(artifact)
            else:
                chosen.save(model, path)
            digest = hashlib.sha256()
            with open(path, "rb") as f:
                while chunk := f.read(1 << 20):
                    digest.update(chunk)
            size = path.stat().st_size
            if self._remote:
                return self._register_remote(name, path, chosen.name, lineage, actor)
            ns = self._ns
            with self._lock(name):
                numbers = self._numbers(name)
                version = (numbers[-1] if numbers else 0) + 1
                with open(path, "rb") as f:
                    ns.put_stream(
                        f"models/{name}/artifacts/{version:08d}{chosen.suffix}",
                        f,
                        size=size,
                        content_type="application/octet-stream",
                    )
                doc = {
                    "name": name,
                    "version": version,
                    "flavor": chosen.name,
                    "created": time.time(),
                    "created_by": _actor(actor),
                    "sha256": digest.hexdigest(),
                    "size": size,
                    "lineage": lineage.to_dict(),
                }
                # the version record is written last: it is what makes the version exist
                ns.put(
                    f"models/{name}/versions/{version:08d}.json",
                    json.dumps(doc, indent=1, sort_keys=True, default=str).encode(),
                    content_type="application/json",
                )
        return self._record(name, version, self.aliases(name))

    def _register_remote(
        self, name: str, path: Path, flavor: str, lineage: Lineage, actor: str | None
    ) -> ModelVersion:
        """Send the artifact with its record: one JSON line, then the file's bytes."""
        head = {"flavor": flavor, "lineage": lineage.to_dict(), "actor": _actor(actor)}
        body = json.dumps(head, default=str).encode() + b"\n" + path.read_bytes()
        raw = self.lake.api_bytes(  # type: ignore[attr-defined]
            "POST", f"/models/{name}/versions", body=body
        )
        d = json.loads(raw)
        return ModelVersion(
            name=d["name"], version=d["version"], flavor=d["flavor"], created=d["created"],
            created_by=d["created_by"], sha256=d["sha256"], size=d["size"],
            lineage=Lineage.from_dict(d["lineage"]), aliases=tuple(d["aliases"]),
        )  # fmt: skip

    def _move_remote(
        self,
        ref: str,
        alias: str,
        *,
        kind: str,
        why: str,
        actor: str | None,
        decision: dict[str, Any] | None,
        expect: int | None,
    ) -> AliasMove:
        name, sel = parse_model_ref(ref)
        body: dict[str, Any] = {"reason": why, "actor": _actor(actor)}
        if kind == "remove":
            body["force"] = True  # remove_alias checked force and reason already
            d = self._call("DELETE", f"/models/{name}/aliases/{alias}", body)
        elif kind == "gate":
            body |= {
                "version": sel,
                "alias": alias,
                "decision": decision,
                "champion": None if expect is None else f"{name}@{expect}",
            }
            d = self._call("POST", f"/models/{name}/promote", body)
        else:
            body |= {"version": sel, "alias": alias, "force": kind == "override"}
            d = self._call("POST", f"/models/{name}/aliases", body)
        return AliasMove.from_dict(d)

    def _move(
        self,
        ref: str,
        alias: str,
        *,
        kind: str,
        why: str,
        actor: str | None,
        decision: dict[str, Any] | None = None,
        expect: int | None = None,
    ) -> AliasMove:
        """Move (or remove) *alias*; a ``gate`` move only while ``champion`` still points
        at *expect*, the version the decision compared with (checked under the lock),
        whichever alias it moves: the decision is evidence against that champion."""
        if self._remote:
            return self._move_remote(
                ref, alias, kind=kind, why=why, actor=actor, decision=decision, expect=expect
            )
        name, _ = parse_model_ref(ref)
        with self._lock(name):
            target = None if kind == "remove" else self.get(ref).version
            state = self._state(name)
            previous = state["aliases"].get(alias)
            current = state["aliases"].get(CHAMPION)
            if kind == "gate" and current != expect:
                raise Refused(
                    f"champion moved: champion is {_ref(name, current)}, and the decision "
                    f"compared {name}@{target} with {_ref(name, expect)}",
                    op="promote",
                    target=f"{name}@{target}",
                    hint=f"compare {name}@{target} with {_ref(name, current)} first "
                    "(`lakeloop ci --candidate` runs the gate again)",
                )
            if kind == "remove":
                if previous is None:
                    raise NotFound(f"model {name!r} has no alias {alias!r}", op="remove alias")
                del state["aliases"][alias]
            else:
                state["aliases"][alias] = target
            move = AliasMove(
                seq=len(state["moves"]) + 1,
                alias=alias,
                previous=previous,
                version=target,
                kind=kind,
                who=_actor(actor),
                when=time.time(),
                why=why,
                decision=decision,
            )
            state["moves"].append(move.to_dict())
            self._ns.put(
                f"models/{name}/aliases.json",
                json.dumps(state, indent=1, sort_keys=True).encode(),
                content_type="application/json",
            )
        return move

    def alias(
        self,
        ref: str,
        alias: str,
        *,
        reason: str = "",
        force: bool = False,
        actor: str | None = None,
    ) -> AliasMove:
        """Point *alias* at the version *ref* names (``digits@3``), recording who, when, why.

        ``champion`` is refused unless ``force=True`` with a non-empty *reason*; such a
        move is recorded as an ``override``. The gate moves champion with :meth:`promote`.
        """
        _check_alias(alias)
        if alias == CHAMPION:
            if not force:
                raise Refused(
                    "champion moves only through the gate",
                    op="alias",
                    target=f"{ref} -> {alias}",
                    hint="run the gate, or override with "
                    "`lakeloop models alias NAME@VERSION champion --force --reason '...'`",
                )
            if not reason.strip():
                raise Refused(
                    "a forced champion move needs a reason",
                    op="alias",
                    target=f"{ref} -> {alias}",
                    hint="add --reason '...': it is stored with the override",
                )
            return self._move(ref, alias, kind="override", why=reason, actor=actor)
        return self._move(ref, alias, kind="move", why=reason, actor=actor)

    def remove_alias(
        self,
        name: str,
        alias: str,
        *,
        reason: str = "",
        force: bool = False,
        actor: str | None = None,
    ) -> AliasMove:
        """Take *alias* off model *name* (``champion`` only with ``force`` and a reason)."""
        _check_name(name)
        _check_alias(alias)
        if alias == CHAMPION and not (force and reason.strip()):
            raise Refused(
                "champion is removed only with force and a reason",
                op="remove alias",
                target=f"{name}@{alias}",
            )
        return self._move(name, alias, kind="remove", why=reason, actor=actor)

    def record_decision(self, name: str, record: Mapping[str, Any]) -> dict[str, Any]:
        """Store one gate decision about model *name* (whatever its outcome) with its
        evidence; returns the stored record with its ``id`` (1, 2, ... per model).

        ``lakeloop ci`` stores every decision it makes here, promote, hold or block, so
        that each champion move and each refusal can be traced to its evidence.

        >>> rec = reg.record_decision("digits", {"outcome": "block"})   # doctest: +SKIP
        >>> rec["id"], reg.decisions("digits")[-1]["outcome"]          # doctest: +SKIP
        (3, 'block')
        """
        _check_name(name)
        if not isinstance(record, Mapping):
            raise InvalidInput("a decision record is a mapping", op="record decision", target=name)
        doc = json.loads(json.dumps(dict(record), default=str))
        if self._remote:
            return dict(self._call("POST", f"/models/{name}/decisions", doc))
        with self._lock(name):
            prefix = f"models/{name}/decisions/"
            numbers = [int(i.key[len(prefix) : -5]) for i in self._ns.list(prefix=prefix)]
            doc["id"] = max(numbers, default=0) + 1
            doc.setdefault("recorded", time.time())
            self._ns.put(
                f"{prefix}{doc['id']:08d}.json",
                json.dumps(doc, indent=1, sort_keys=True).encode(),
                content_type="application/json",
            )
        return dict(doc)

    def decision(self, name: str, decision_id: int) -> dict[str, Any]:
        """The decision recorded about model *name* under *decision_id*."""
        _check_name(name)
        if isinstance(decision_id, bool) or not isinstance(decision_id, int) or decision_id < 1:
            raise InvalidInput(f"bad decision id {decision_id!r}", op="decision", target=name)
        try:
            raw = self._ns.get(f"models/{name}/decisions/{decision_id:08d}.json")
        except NotFound:
            raise NotFound(
                f"no decision {decision_id} recorded for model {name!r}",
                op="decision",
                target=name,
                hint=f"list them with `lakeloop models show {name}`",
            ) from None
        return dict(json.loads(raw))

    def decisions(self, name: str) -> list[dict[str, Any]]:
        """Every decision recorded about model *name*, oldest first."""
        _check_name(name)
        prefix = f"models/{name}/decisions/"
        keys = sorted(i.key for i in self._ns.list(prefix=prefix))
        return [dict(json.loads(self._ns.get(k))) for k in keys]

    def promote(
        self,
        ref: str,
        *,
        decision: Any,
        reason: str = "",
        alias: str = CHAMPION,
        actor: str | None = None,
        champion: Any = _UNSET,
    ) -> AliasMove:
        """Move ``champion`` (or *alias*) to *ref* on the gate's *decision*, stored with
        the move.

        *decision* is a :mod:`lakeloop.gate` decision (anything with ``to_dict()``) or
        its dict; it must have ``outcome == "promote"`` (an acceptance claim:
        ``passed``), or the move is refused.

        Compare-and-set: *champion* (``NAME@N``, ``N``, or None for a first promotion;
        default: the record's ``champion`` field, which ``lakeloop ci`` fills in) is the
        version the candidate was compared with; a *champion* that contradicts the
        record's own field is refused. When ``champion`` points elsewhere by the time
        the move runs (under the model's lock) -- whichever *alias* is moved, since the
        decision is evidence against the champion -- it raises
        :class:`~lakeloop.errors.Refused` ("champion moved") and changes nothing. Over a
        gateway, *decision* must be a record stored by :meth:`record_decision`: the
        gateway checks it against its copy (see docs/registry.md).
        """
        _check_alias(alias)
        record = _decision_record(decision)
        name, _ = parse_model_ref(ref)
        expect = _compared_with(name, record, champion)
        if champion is not _UNSET and "champion" in record:
            recorded = _compared_with(name, record, _UNSET)
            if recorded != expect:
                raise Refused(
                    f"the decision compared with {_ref(name, recorded)}, not "
                    f"{_ref(name, expect)} as champion= says",
                    op="promote",
                    target=ref,
                    hint="leave champion= out to use the record's own, or pass the same one",
                )
        return self._move(
            ref,
            alias,
            kind="gate",
            why=reason or "gate",
            actor=actor,
            decision=record,
            expect=expect,
        )
