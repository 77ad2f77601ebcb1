"""The pipeline file: a plain Python module that says how to build, train and score a model.

Nothing is subclassed. The file (named by ``pipeline`` in ``lakeloop.toml``) defines::

    params = {"units": [16, 32], "epochs": [3]}   # every combination is one trial (a grid)
    search = "grid"          # or "random": `trials` draws; a value may then also be
    trials = 4               #   ("uniform", lo, hi), ("loguniform", lo, hi) or ("int", lo, hi)
    seed = 0
    folds = 1                # k > 1: k-fold cross-validation on the train split
    metric = "accuracy"      # the metric that picks the best trial ...
    goal = "max"             # ... and whether higher ("max") or lower ("min") is better

    def decode(data: bytes): ...          # optional; default: images -> uint8 arrays
    def build(params): ...                # required: a new (compiled) model
    def fit(model, data, params): ...     # required: train it (may return a new model)
    def evaluate(model, data, params): ...  # optional: -> {"accuracy": ..., ...}
    def groups(x): ...                    # optional: each decoded example's query/user id

``data`` is a :class:`TrialData`: ``data.train`` and ``data.eval`` (each with
``arrays()``, ``batches(...)`` and ``tf_dataset(...)``), ``data.labels``,
``data.num_classes``, ``data.callbacks`` (pass them to Keras ``fit``: they record every
epoch) and ``data.log(epoch, **metrics)`` for other frameworks. The default
``evaluate`` computes accuracy on ``data.eval`` from ``model.predict`` (class scores or
class ids).

``groups(x)`` receives the decoded evaluation examples (what ``decode`` made, stacked)
and returns one query or user id per row: ``lakeloop ci`` passes them to the gate, which
needs them for ranking metrics (NDCG@k, precision@k, recall@k) and otherwise resamples
whole groups. ``evaluate`` can call it too, with
:func:`lakeloop.gate.metric_value`, to pick the best trial by the gate's own metric.

Mistakes in the file are :class:`~lakeloop.errors.InvalidPipeline` errors whose target is
``file:line``.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import inspect
import itertools
import math
import random
import sys
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from lakeloop.errors import InvalidPipeline

if TYPE_CHECKING:
    from lakeloop.catalog import Entry, Snapshot
    from lakeloop.store import Lake
    from lakeloop.train.runs import Run

__all__ = ["Pipeline", "Split", "TrialData", "fold_of", "load_pipeline"]

_SETTINGS = {"params", "search", "trials", "seed", "folds", "metric", "goal"}
_FUNCTIONS = {"build", "fit", "evaluate", "decode", "groups"}


def fold_of(key: str, folds: int) -> int:
    """The cross-validation fold of *key*: a stable hash, the same in every process."""
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") % folds


def _line_of(path: Path, name: str) -> int:
    """The line where the pipeline file assigns or defines *name* (1 if not found)."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (SyntaxError, UnicodeDecodeError, OSError):
        return 1
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == name:
            return node.lineno
        targets = (
            node.targets
            if isinstance(node, ast.Assign)
            else [node.target]
            if isinstance(node, ast.AnnAssign)
            else []
        )
        if any(isinstance(t, ast.Name) and t.id == name for t in targets):
            return node.lineno
    return 1


def user_frame(path: Path, tb: Any) -> str | None:
    """``file:line`` of the deepest traceback frame inside the pipeline file."""
    where = None
    for frame in traceback.extract_tb(tb):
        if Path(frame.filename).resolve() == path.resolve():
            where = f"{path}:{frame.lineno}"
    return where


@dataclass
class Pipeline:
    """A loaded and checked pipeline file."""

    path: Path
    module: ModuleType
    params: dict[str, Any]
    search: str = "grid"
    trials: int | None = None
    seed: int = 0
    folds: int = 1
    metric: str = "accuracy"
    goal: str = "max"

    def fn(self, name: str) -> Callable[..., Any] | None:
        value = getattr(self.module, name, None)
        return value if callable(value) else None

    def param_sets(self, max_trials: int) -> list[dict[str, Any]]:
        """The parameter sets to try: the grid, or ``trials`` random draws."""
        names = sorted(self.params)
        if self.search == "grid":
            sets = [
                dict(zip(names, combo, strict=True))
                for combo in itertools.product(*(self.params[n] for n in names))
            ]
        else:
            rng = random.Random(self.seed)
            sets = [{n: _draw(self.params[n], rng) for n in names} for _ in range(self.trials or 1)]
        if len(sets) * self.folds > max_trials:
            raise InvalidPipeline(
                f"{len(sets)} parameter sets x {self.folds} folds = "
                f"{len(sets) * self.folds} trials, more than train_max_trials={max_trials}",
                op="load pipeline",
                target=f"{self.path}:{_line_of(self.path, 'params')}",
                hint="shrink the grid, use search = 'random' with fewer trials, "
                "or raise train_max_trials",
            )
        return sets

    def better(self, a: float, b: float) -> bool:
        """Whether metric value *a* beats *b* (NaN never wins)."""
        if math.isnan(a):
            return False
        if math.isnan(b):
            return True
        return a > b if self.goal == "max" else a < b


def _draw(spec: Any, rng: random.Random) -> Any:
    if isinstance(spec, list):
        return rng.choice(spec)
    kind, lo, hi = spec
    if kind == "uniform":
        return rng.uniform(lo, hi)
    if kind == "loguniform":
        return math.exp(rng.uniform(math.log(lo), math.log(hi)))
    return rng.randint(lo, hi)


def _bad(path: Path, name: str, message: str, hint: str | None = None) -> InvalidPipeline:
    return InvalidPipeline(
        message, op="load pipeline", target=f"{path}:{_line_of(path, name)}", hint=hint
    )


def _import(path: Path) -> ModuleType:
    name = f"lakeloop_pipeline_{hashlib.sha256(str(path).encode()).hexdigest()[:12]}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise InvalidPipeline("not a Python file", op="load pipeline", target=str(path))
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # pickling the user's classes and functions needs this
    try:
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        sys.modules.pop(name, None)
        raise InvalidPipeline(
            f"syntax error: {exc.msg}", op="load pipeline", target=f"{path}:{exc.lineno}"
        ) from None
    except Exception as exc:
        sys.modules.pop(name, None)
        where = user_frame(path, exc.__traceback__) or str(path)
        raise InvalidPipeline(
            f"importing it raised {type(exc).__name__}: {exc}",
            op="load pipeline",
            target=where,
        ) from exc
    return module


def load_pipeline(path: str | Path) -> Pipeline:
    """Import the pipeline file at *path* and check it against the contract."""
    file = Path(path).resolve()
    if not file.is_file():
        raise InvalidPipeline("no such file", op="load pipeline", target=str(file))
    module = _import(file)
    for name in ("build", "fit"):
        fn = getattr(module, name, None)
        if fn is None:
            raise InvalidPipeline(
                f"defines no function {name}()",
                op="load pipeline",
                target=f"{file}:1",
                hint="a pipeline defines build(params) and fit(model, data, params)",
            )
    arity = {"build": 1, "fit": 3, "evaluate": 3, "decode": 1, "groups": 1}
    for name, n in arity.items():
        fn = getattr(module, name, None)
        if fn is None:
            continue
        if not callable(fn):
            raise _bad(file, name, f"{name} must be a function")
        try:
            inspect.signature(fn).bind(*range(n))
        except TypeError:
            raise _bad(file, name, f"{name}() must take {n} positional argument(s)") from None
        except ValueError:  # builtins without a signature
            pass
    params = getattr(module, "params", {})
    search = getattr(module, "search", "grid")
    if search not in ("grid", "random"):
        raise _bad(file, "search", f"search must be 'grid' or 'random', not {search!r}")
    if not isinstance(params, Mapping) or not all(isinstance(k, str) for k in params):
        raise _bad(file, "params", "params must be a dict of parameter name -> values")
    for k, v in params.items():
        ok = isinstance(v, list) and len(v) > 0
        if search == "random" and isinstance(v, tuple):
            ok = (
                len(v) == 3
                and v[0] in ("uniform", "loguniform", "int")
                and all(isinstance(x, int | float) for x in v[1:])
                and v[1] <= v[2]
                and (v[0] != "loguniform" or v[1] > 0)
            )
        if not ok:
            raise _bad(
                file,
                "params",
                f"params[{k!r}] must be a non-empty list of values"
                + (" or ('uniform'|'loguniform'|'int', lo, hi)" if search == "random" else ""),
            )
    ints = {}
    for name, default, lo in (("trials", None, 1), ("seed", 0, 0), ("folds", 1, 1)):
        value = getattr(module, name, default)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise _bad(file, name, f"{name} must be an integer, not {value!r}")
        if value is not None and value < lo:
            raise _bad(file, name, f"{name} must be >= {lo}")
        ints[name] = value
    if search == "random" and ints["trials"] is None:
        raise _bad(file, "search", "search = 'random' needs trials = N")
    metric = getattr(module, "metric", "accuracy")
    goal = getattr(module, "goal", "max")
    if not isinstance(metric, str) or not metric:
        raise _bad(file, "metric", "metric must be a metric name such as 'accuracy'")
    if goal not in ("max", "min"):
        raise _bad(file, "goal", f"goal must be 'max' or 'min', not {goal!r}")
    return Pipeline(
        path=file,
        module=module,
        params=dict(params),
        search=search,
        trials=ints["trials"],
        seed=ints["seed"] or 0,
        folds=ints["folds"] or 1,
        metric=metric,
        goal=goal,
    )


@dataclass
class Split:
    """One side of a trial's data (``data.train`` or ``data.eval``)."""

    lake: Lake
    snapshot: Snapshot
    split: str
    decode: Callable[[bytes], Any] | None
    where: Callable[[Entry], bool] | None = None
    seed: int = 0
    threads: int | None = None  # the trial's thread budget, applied to tf.data too
    _arrays: tuple[Any, Any] | None = field(default=None, repr=False)

    def arrays(self) -> tuple[Any, Any]:
        """``(x, y)`` in memory (cached): decoded examples and int64 label ids."""
        if self._arrays is None:
            from lakeloop.train.data import arrays

            self._arrays = arrays(
                self.lake, self.snapshot, self.split, decode=self.decode, where=self.where
            )
        return self._arrays

    def batches(self, batch_size: int = 32, **kw: Any) -> Any:
        """NumPy batches, streamed volume by volume (see :func:`lakeloop.train.data.batches`)."""
        from lakeloop.train.data import batches

        kw.setdefault("seed", self.seed)
        return batches(
            self.lake, self.snapshot, self.split, decode=self.decode,
            batch_size=batch_size, where=self.where, **kw,
        )  # fmt: skip

    def tf_dataset(self, batch_size: int = 32, **kw: Any) -> Any:
        """A ``tf.data.Dataset`` of batches (see :func:`lakeloop.train.data.tf_dataset`);
        with ``tf_decode=`` the batches are decoded in TensorFlow instead of by the
        pipeline's ``decode``."""
        from lakeloop.train.data import tf_dataset

        kw.setdefault("seed", self.seed)
        if kw.get("tf_decode") is None:  # decoding in TensorFlow replaces the Python decode
            kw["decode"] = self.decode
        ds = tf_dataset(
            self.lake, self.snapshot, self.split, batch_size=batch_size, where=self.where, **kw
        )
        if self.threads:
            import tensorflow as tf

            options = tf.data.Options()
            options.threading.private_threadpool_size = self.threads
            options.threading.max_intra_op_parallelism = 1
            ds = ds.with_options(options)
        return ds

    def __len__(self) -> int:
        entries = self.snapshot.entries(self.split)
        return sum(1 for e in entries if self.where is None or self.where(e))


@dataclass
class TrialData:
    """What ``fit`` and ``evaluate`` get (see the module docstring)."""

    train: Split
    eval: Split
    labels: list[str]
    run: Run
    fold: int | None = None

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    @property
    def callbacks(self) -> list[Any]:
        """Keras callbacks that record each epoch's metrics in the run (and TensorBoard)."""
        return [self.run.keras_callback()]

    def log(self, epoch: int, **metrics: float) -> None:
        """Record one epoch's metrics (for frameworks without Keras callbacks)."""
        self.run.log_epoch(epoch, metrics)
