"""The project file ``lakeloop.toml`` and its lock file ``lakeloop.lock``.

The project file sits at the root of a user's repository (not in the lake) and says
which lake, pipeline, dataset and model the project uses, which files count as its code,
and how the gate judges a new model. Every key is checked; an unknown or malformed key is
an :class:`~lakeloop.errors.InvalidProject` naming it. docs/project.md lists them all.

::

    [project]
    lake = "lake"                  # a folder, a gateway URL, or leave out and set LAKELOOP_LAKE
    pipeline = "pipeline.py"
    dataset = "digits"
    model = "digits"
    code = ["pipeline.py", "src"]  # default: the pipeline file's folder
    test = "pytest -q"             # optional unit tests run before training

    [gate]
    ratchet = 3                    # also compare with the best of the last 3 champions

    [[gate.policy]]
    metric = "accuracy"
    margin = 0.01

    [gate.acceptance]              # decides the first run, when there is no champion
    threshold = 0.9

The lock file records what the pipeline last ran on (code and data fingerprints, the
champion) so that ``lakeloop ci`` can do nothing when nothing changed.
"""

from __future__ import annotations

import math
import os
import subprocess
import threading
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from lakeloop.errors import InvalidPolicy, InvalidProject, NotFound

__all__ = [
    "LOCK_FILE",
    "PROJECT_FILE",
    "AcceptanceConfig",
    "GateConfig",
    "LakeLocation",
    "Lock",
    "Project",
    "find_project",
    "load_project",
    "read_lock",
    "resolve_lake",
    "write_lock",
]

PROJECT_FILE = "lakeloop.toml"
LOCK_FILE = "lakeloop.lock"
LOCK_VERSION = 1

# Every key of the project file with its help line (docs/project.md is checked against it).
PROJECT_KEYS: dict[str, str] = {
    "lake": "the lake: a folder (relative to this file) or a gateway URL (http/https); "
    "--lake and LAKELOOP_LAKE take precedence",
    "pipeline": "the Python file that builds and trains the model",
    "dataset": "the dataset the pipeline trains and evaluates on",
    "model": "the model's name in the registry",
    "code": "files and folders whose content is the code fingerprint "
    "(default: the pipeline file's folder)",
    "test": "an optional shell command (unit tests) run before training; failing stops the run",
}
GATE_KEYS: dict[str, str] = {
    "policy": "a list of [[gate.policy]] tables, each a Policy (metric, margin, confidence, ...)",
    "ratchet": "how many earlier champions the candidate is also compared with (0 = none)",
    "correction": "how several policies are combined: 'holm' (default) or 'none'",
    "acceptance": "the [gate.acceptance] table: an absolute claim (accuracy, NDCG@k ...) "
    "that decides the first run",
}
ACCEPTANCE_KEYS: dict[str, str] = {
    "metric": "the metric of the claim (default accuracy; any gate metric, e.g. 'ndcg@10')",
    "threshold": "the value the model must be shown to reach, e.g. 0.9 "
    "(at most this, for RMSE, MAE and log loss)",
    "confidence": "the confidence of the one-sided bound (default 0.95)",
    "method": "'clopper-pearson' (exact, default for accuracy), 'wilson', or 'bootstrap' "
    "(the default and only choice for other metrics)",
    "k": "the cut-off of a ranking metric (or write it in the metric: 'ndcg@10')",
}
TOP_LEVEL = {"project", "gate", "train"}


def _bad(message: str, key: str, path: Path | str, hint: str | None = None) -> InvalidProject:
    return InvalidProject(message, op=f"read {Path(path).name}", target=key, hint=hint)


@dataclass(frozen=True)
class AcceptanceConfig:
    threshold: float
    metric: str = "accuracy"
    confidence: float = 0.95
    method: str = "clopper-pearson"
    k: int | None = None


@dataclass(frozen=True)
class GateConfig:
    policies: tuple[Any, ...] = ()  # lakeloop.gate.Policy (imported lazily)
    ratchet: int = 3
    correction: str = "holm"
    acceptance: AcceptanceConfig | None = None


@dataclass(frozen=True)
class LakeLocation:
    """Where the lake is: ``kind`` is "path" or "url"; ``source`` says who named it."""

    kind: str
    value: str
    source: str


@dataclass(frozen=True)
class Project:
    path: Path
    pipeline: Path
    dataset: str
    model: str
    code: tuple[Path, ...]
    lake: str | None = None
    test: str | None = None
    gate: GateConfig = field(default_factory=GateConfig)
    train: Mapping[str, Any] = field(default_factory=dict)  # checked by lakeloop.train

    @property
    def root(self) -> Path:
        return self.path.parent

    @property
    def lock_path(self) -> Path:
        return self.root / LOCK_FILE

    def code_fingerprint(self) -> Any:
        """The :class:`~lakeloop.loop.CodeFingerprint` of the project's code files."""
        from lakeloop.loop.fingerprint import code_fingerprint

        return code_fingerprint([str(p) for p in self.code], root=self.root)


def _git_root(start: Path) -> Path | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(start), "rev-parse", "--show-toplevel"],
            capture_output=True,
            check=False,
        )
    except OSError:
        return None
    return Path(out.stdout.decode().strip()) if out.returncode == 0 else None


def find_project(start: str | os.PathLike[str] = ".") -> Path:
    """The project file: at the root of the git work tree holding ``start``, else in
    ``start`` itself."""
    begin = Path(start).resolve()
    root = _git_root(begin) or begin
    candidate = root / PROJECT_FILE
    if not candidate.is_file():
        raise NotFound(
            f"no {PROJECT_FILE} at {root}",
            op="find project",
            target=str(root),
            hint=f"create {PROJECT_FILE} (see docs/project.md) or pass --project PATH",
        )
    return candidate


def _string(
    table: Mapping[str, Any], key: str, where: str, path: Path, *, required: bool
) -> str | None:
    value = table.get(key)
    if value is None:
        if required:
            raise _bad("missing required key", where, path, hint=PROJECT_KEYS.get(key))
        return None
    if not isinstance(value, str) or not value.strip():
        raise _bad(f"must be a non-empty string, not {value!r}", where, path)
    return value


def _unknown(
    table: Mapping[str, Any], known: Mapping[str, str] | set[str], where: str, path: Path
) -> None:
    for key in table:
        if key not in known:
            raise _bad(
                f"unknown key {key!r}",
                f"{where}.{key}" if where else key,
                path,
                hint="known keys: " + ", ".join(sorted(known)),
            )


def load_project(path: str | os.PathLike[str] | None = None) -> Project:
    """Read and check a project file (default: :func:`find_project` from the current folder).

    ``path`` may be the file or the folder holding it.
    """
    from lakeloop.gate.policy import Policy

    file = find_project() if path is None else Path(path)
    if file.is_dir():
        file = file / PROJECT_FILE
    file = file.resolve()
    if not file.is_file():
        raise NotFound(
            f"no such file {file}",
            op="read project",
            target=str(file),
            hint="pass the path of lakeloop.toml or of its folder",
        )
    try:
        data = tomllib.loads(file.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise _bad(f"not valid TOML: {exc}", "", file) from exc
    _unknown(data, TOP_LEVEL, "", file)
    for key in TOP_LEVEL:
        if key in data and not isinstance(data[key], dict):
            raise _bad("must be a table", key, file, hint=f"write it as [{key}]")
    table = data.get("project")
    if table is None:
        raise _bad("missing [project] table", "project", file)
    _unknown(table, PROJECT_KEYS, "project", file)
    root = file.parent
    pipeline = _string(table, "pipeline", "project.pipeline", file, required=True)
    assert pipeline is not None
    pipeline_path = Path(pipeline)
    if pipeline_path.is_absolute() or not (root / pipeline_path).is_file():
        raise _bad(
            f"no such file {pipeline!r} beside {PROJECT_FILE}",
            "project.pipeline",
            file,
            hint="give the pipeline file's path relative to lakeloop.toml",
        )
    dataset = _string(table, "dataset", "project.dataset", file, required=True)
    model = _string(table, "model", "project.model", file, required=True)
    lake = _string(table, "lake", "project.lake", file, required=False)
    test = _string(table, "test", "project.test", file, required=False)
    raw_code = table.get("code")
    if raw_code is None:
        code: tuple[Path, ...] = (pipeline_path.parent,)
    else:
        if isinstance(raw_code, str):
            raw_code = [raw_code]
        if (
            not isinstance(raw_code, list)
            or not raw_code
            or not all(isinstance(c, str) and c for c in raw_code)
        ):
            raise _bad("must be a non-empty list of paths", "project.code", file)
        for c in raw_code:
            if Path(c).is_absolute() or not (root / c).exists():
                raise _bad(
                    f"no such file or folder {c!r}",
                    "project.code",
                    file,
                    hint="code paths are relative to lakeloop.toml",
                )
            if not (root / c).resolve().is_relative_to(root):
                raise _bad(f"{c!r} is outside the project", "project.code", file)
        code = tuple(Path(c) for c in raw_code)
    gate_table = data.get("gate", {})
    _unknown(gate_table, GATE_KEYS, "gate", file)
    policies = []
    raw_policies = gate_table.get("policy", [])
    if not isinstance(raw_policies, list) or not all(isinstance(p, dict) for p in raw_policies):
        raise _bad("must be a list of tables", "gate.policy", file, hint="write [[gate.policy]]")
    for i, entry in enumerate(raw_policies):
        try:
            policies.append(Policy.from_dict(entry, where=f"gate.policy[{i}]"))
        except (InvalidPolicy, TypeError) as exc:
            raise _bad(str(exc), f"gate.policy[{i}]", file, hint="see docs/gate.md") from exc
    ratchet = gate_table.get("ratchet", 3)
    if isinstance(ratchet, bool) or not isinstance(ratchet, int) or ratchet < 0:
        raise _bad(f"must be an integer >= 0, not {ratchet!r}", "gate.ratchet", file)
    correction = gate_table.get("correction", "holm")
    if correction not in ("holm", "none"):
        raise _bad(f"must be 'holm' or 'none', not {correction!r}", "gate.correction", file)
    accept = None
    if "acceptance" in gate_table:
        acc = gate_table["acceptance"]
        if not isinstance(acc, dict):
            raise _bad("must be a table", "gate.acceptance", file)
        _unknown(acc, ACCEPTANCE_KEYS, "gate.acceptance", file)
        threshold = acc.get("threshold")
        confidence = acc.get("confidence", 0.95)
        try:
            claim = Policy(metric=acc.get("metric", "accuracy"), k=acc.get("k"))
        except (InvalidPolicy, TypeError) as exc:
            raise _bad(str(exc), "gate.acceptance.metric", file, hint="see docs/gate.md") from exc
        proportion = claim.metric == "accuracy"
        for key, value in (("threshold", threshold), ("confidence", confidence)):
            in_range = key == "confidence" or proportion
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
                or (in_range and not 0 < value < 1)
            ):
                what = "a number in (0, 1)" if in_range else "a finite number"
                raise _bad(f"must be {what}, not {value!r}", f"gate.acceptance.{key}", file)
        method = acc.get("method", "clopper-pearson" if proportion else "bootstrap")
        allowed = ("clopper-pearson", "wilson", "bootstrap") if proportion else ("bootstrap",)
        if method not in allowed:
            raise _bad(
                f"must be {' or '.join(repr(m) for m in allowed)} for {claim.label}, "
                f"not {method!r}",
                "gate.acceptance.method",
                file,
            )
        assert isinstance(threshold, int | float)
        accept = AcceptanceConfig(
            float(threshold), claim.metric, float(confidence), method, claim.k
        )
    confidences = {p.confidence for p in policies}
    if correction == "holm" and len(confidences) > 1:
        raise _bad(
            "policies combined with Holm's correction must share one confidence",
            "gate.policy",
            file,
        )
    return Project(
        path=file,
        pipeline=pipeline_path,
        dataset=dataset or "",
        model=model or "",
        code=code,
        lake=lake,
        test=test,
        gate=GateConfig(tuple(policies), ratchet, correction, accept),
        train=data.get("train", {}),
    )


def resolve_lake(
    cli: str | None = None,
    project: Project | None = None,
    env: Mapping[str, str] | None = None,
) -> LakeLocation:
    """The lake to use: ``--lake``, then ``LAKELOOP_LAKE``, then the project file.

    A value starting with ``http://`` or ``https://`` is a gateway URL (its keys come from
    the environment); anything else is a folder, relative to the project file when it
    comes from there.
    """
    environ = os.environ if env is None else env
    for value, source in ((cli, "--lake"), (environ.get("LAKELOOP_LAKE"), "LAKELOOP_LAKE")):
        if value:
            return _location(value, source, None)
    if project is not None and project.lake:
        return _location(project.lake, PROJECT_FILE, project.root)
    raise InvalidProject(
        "no lake given",
        op="resolve lake",
        target="lake",
        hint=f"pass --lake, set LAKELOOP_LAKE, or set lake in [project] of {PROJECT_FILE}",
    )


def _location(value: str, source: str, base: Path | None) -> LakeLocation:
    if value.startswith(("http://", "https://")):
        return LakeLocation("url", value.rstrip("/"), source)
    if "://" in value:
        raise InvalidProject(
            f"unsupported lake URL {value!r}",
            op="resolve lake",
            target=source,
            hint="use a folder or an http(s):// gateway URL",
        )
    path = Path(value).expanduser()
    if base is not None and not path.is_absolute():
        path = base / path
    return LakeLocation("path", str(path), source)


# --------------------------------------------------------------------------------- lock file
@dataclass(frozen=True)
class Lock:
    """What the pipeline last ran on. ``code`` is the code fingerprint's content hash,
    ``data`` the dataset's snapshot hash; ``commit`` and ``dirty`` are kept for people."""

    code: str
    data: str | None = None
    commit: str | None = None
    dirty: str | None = None
    champion: str | None = None
    outcome: str | None = None
    updated: str | None = None


_LOCK_HEADER = (
    "# Written by lakeloop ci: the code and data the pipeline last ran on. Commit it;\n"
    "# an unchanged lock on unchanged code and data means there is nothing to do.\n"
)


def read_lock(path: str | os.PathLike[str]) -> Lock | None:
    """The lock at ``path`` (the file or its folder), or None when there is none yet."""
    file = Path(path)
    if file.is_dir():
        file = file / LOCK_FILE
    if not file.exists():
        return None
    try:
        data = tomllib.loads(file.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise _bad(f"not valid TOML: {exc}", "", file, hint="delete it to start afresh") from exc
    version = data.pop("version", None)
    if version != LOCK_VERSION:
        raise _bad(
            f"unsupported lock version {version!r}",
            "version",
            file,
            hint="delete it; the next lakeloop ci run writes a new one",
        )
    known = {f.name for f in fields(Lock)}
    _unknown(data, known, "", file)
    for key, value in data.items():
        if not isinstance(value, str):
            raise _bad(f"must be a string, not {value!r}", key, file)
    if "code" not in data:
        raise _bad("missing key", "code", file)
    return Lock(**data)


def write_lock(path: str | os.PathLike[str], lock: Lock) -> Path:
    """Write the lock atomically (a temporary file renamed over the old one)."""
    import tomli_w

    file = Path(path)
    if file.is_dir():
        file = file / LOCK_FILE
    body: dict[str, Any] = {"version": LOCK_VERSION}
    body.update(
        {f.name: getattr(lock, f.name) for f in fields(Lock) if getattr(lock, f.name) is not None}
    )
    # a temporary name of this process's own: two runs writing the lock of one checkout
    # at once (ci and the loop) must not rename each other's file away
    tmp = file.with_name(f"{file.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        tmp.write_text(_LOCK_HEADER + tomli_w.dumps(body), encoding="utf-8")
        os.replace(tmp, file)
    finally:
        tmp.unlink(missing_ok=True)
    return file
