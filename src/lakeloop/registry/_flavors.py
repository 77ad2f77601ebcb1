"""Model flavors: how one kind of model is saved to one file, loaded, and asked to predict.

A flavor is one small class (:class:`Flavor`); the registry stores the file it writes as
the version's artifact. Built in:

- ``keras``: a Keras 3 model, saved as a ``.keras`` file (architecture, weights and
  optimizer state, no code); loaded ready to predict, without compiling.
- ``sklearn``: a scikit-learn estimator (or any picklable object with ``predict``),
  pickled. **Trust model**: loading a pickle runs code chosen by whoever wrote it. The
  registry checks the artifact's SHA-256 against the version's record before unpickling,
  which proves the bytes are the ones registered, not that the registrant is honest:
  load sklearn and pyfunc models only from lakes whose writers you trust.
- ``pyfunc``: a plain Python callable, or an object with a ``predict`` method, pickled by
  reference: its module must be importable where the model is loaded. Same trust model.

Every flavor passes the conformance suite in ``tests/test_registry_flavors.py``:
save -> load -> predict gives the same outputs as the original model.
"""

from __future__ import annotations

import pickle
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

from lakeloop.errors import InvalidInput

__all__ = ["FLAVORS", "Flavor", "KerasFlavor", "PyfuncFlavor", "SklearnFlavor", "flavor_for"]


class Flavor(ABC):
    """One kind of model.

    Contract: ``save(model, path)`` writes exactly one file at *path*; ``load(path)``
    returns a model equal in behaviour; ``predict(model, batch)`` returns one output per
    row of *batch* (a NumPy array or anything the model takes); ``accepts(model)`` says
    whether this flavor can save *model* (used to pick a flavor when none is named).
    Flavors import their framework lazily.
    """

    name: str = ""
    suffix: str = ""

    @abstractmethod
    def accepts(self, model: Any) -> bool: ...

    @abstractmethod
    def save(self, model: Any, path: Path) -> None: ...

    @abstractmethod
    def load(self, path: Path) -> Any: ...

    def predict(self, model: Any, batch: Any) -> Any:
        return model.predict(batch)


class KerasFlavor(Flavor):
    """Keras 3 models (``.keras`` files)."""

    name = "keras"
    suffix = ".keras"

    def accepts(self, model: Any) -> bool:
        return any(c.__module__.startswith("keras") for c in type(model).__mro__)

    def save(self, model: Any, path: Path) -> None:
        model.save(str(path))

    def load(self, path: Path) -> Any:
        import keras

        # Loaded to predict: without the optimizer (compile it again to train further).
        return keras.saving.load_model(str(path), compile=False)

    def predict(self, model: Any, batch: Any) -> Any:
        kind = getattr(getattr(batch, "dtype", None), "kind", None)
        if kind in ("U", "S", "O"):
            # Text models: Keras refuses NumPy string arrays, TensorFlow takes them as strings
            import keras

            if keras.backend.backend() == "tensorflow":
                import tensorflow as tf

                batch = tf.constant(batch)
        return model.predict(batch, verbose=0)


class SklearnFlavor(Flavor):
    """scikit-learn estimators, pickled (see the trust model in the module docstring)."""

    name = "sklearn"
    suffix = ".pkl"

    def accepts(self, model: Any) -> bool:
        return any(c.__module__.startswith("sklearn") for c in type(model).__mro__)

    def save(self, model: Any, path: Path) -> None:
        with open(path, "wb") as f:
            pickle.dump(model, f, protocol=pickle.HIGHEST_PROTOCOL)

    def load(self, path: Path) -> Any:
        with open(path, "rb") as f:
            return pickle.load(f)  # trusted: see the module docstring


class PyfuncFlavor(Flavor):
    """A plain Python callable or an object with ``predict``, pickled by reference."""

    name = "pyfunc"
    suffix = ".pkl"

    def accepts(self, model: Any) -> bool:
        return callable(model) or callable(getattr(model, "predict", None))

    def save(self, model: Any, path: Path) -> None:
        try:
            data = pickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL)
        except (pickle.PicklingError, AttributeError, TypeError) as exc:
            raise InvalidInput(
                f"cannot pickle {type(model).__name__}: {exc}",
                op="register",
                hint="pyfunc models must be defined at module level in an importable module",
            ) from None
        path.write_bytes(data)

    def load(self, path: Path) -> Any:
        return pickle.loads(path.read_bytes())  # trusted: see the module docstring

    def predict(self, model: Any, batch: Any) -> Any:
        method = getattr(model, "predict", None)
        return method(batch) if callable(method) else model(batch)


FLAVORS: dict[str, Flavor] = {f.name: f for f in (KerasFlavor(), SklearnFlavor(), PyfuncFlavor())}


def flavor_for(model: Any, name: str | None = None) -> Flavor:
    """The flavor called *name*, or the first that accepts *model* (keras, sklearn, pyfunc)."""
    if name is not None:
        try:
            return FLAVORS[name]
        except KeyError:
            raise InvalidInput(
                f"unknown flavor {name!r}",
                op="register",
                hint=f"flavors: {', '.join(sorted(FLAVORS))}",
            ) from None
    for flavor in FLAVORS.values():
        if flavor.accepts(model):
            return flavor
    raise InvalidInput(
        f"no flavor can save a {type(model).__name__}",
        op="register",
        hint="pass a Keras model, a scikit-learn estimator, or a callable",
    )
