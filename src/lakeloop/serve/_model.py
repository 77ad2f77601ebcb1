"""A registry model made ready to serve: its input signature and one batch function.

Keras models run through one compiled ``tf.function`` whose input signature is fixed
(the model's instance shape and dtype, any batch size): it is traced once at load time,
so no request ever pays for tracing, and each call skips ``model.predict``'s per-call
machinery (a data adapter, callbacks, a fresh step function: tens of milliseconds).
scikit-learn and pyfunc models run through their flavor's ``predict``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lakeloop.errors import InvalidInput
from lakeloop.serve._payload import InputSpec

__all__ = ["ServedModel", "input_spec"]


def input_spec(loaded: Any) -> InputSpec:
    """The instance shape and dtype *loaded* (a ``LoadedModel``) takes, as far as known.

    Keras: its single input's shape without the batch axis and its dtype. scikit-learn:
    ``n_features_in_`` float features. pyfunc: an ``input_spec`` attribute
    ``{"shape": [...], "dtype": "..."}`` if the object has one, else nothing is checked.
    """
    model = loaded.model
    if loaded.flavor == "keras":
        inputs = getattr(model, "inputs", None)
        if not inputs:
            raise InvalidInput(
                "the Keras model has no defined input",
                op="serve",
                target=loaded.ref,
                hint="build the model with keras.Input(shape=...) before registering it",
            )
        if len(inputs) != 1:
            raise InvalidInput(
                f"the Keras model takes {len(inputs)} inputs; serving takes one",
                op="serve",
                target=loaded.ref,
            )
        shape = tuple(None if d is None else int(d) for d in inputs[0].shape[1:])
        return InputSpec(shape, str(np.dtype(inputs[0].dtype)))
    if loaded.flavor == "sklearn":
        n = getattr(model, "n_features_in_", None)
        return InputSpec(None if n is None else (int(n),), "float64")
    declared = getattr(model, "input_spec", None)
    if isinstance(declared, dict):
        dims = declared.get("shape")
        return InputSpec(None if dims is None else tuple(dims), declared.get("dtype"))
    return InputSpec(None, None)


class ServedModel:
    """One model version ready to predict batches: ``predict(batch) -> ndarray``.

    >>> served = ServedModel(Registry(lake).load("digits@champion"))   # doctest: +SKIP
    >>> served.warm(); served.predict(batch).shape                       # doctest: +SKIP
    (32, 10)
    """

    def __init__(self, loaded: Any, *, max_batch: int = 64) -> None:
        self.loaded = loaded
        self.name: str = loaded.name
        self.version: int = loaded.version
        self.flavor: str = loaded.flavor
        self.spec = input_spec(loaded)
        self.max_batch = max(1, max_batch)
        self._fn: Any = None
        if self.flavor == "keras":
            self._fn = self._compile()

    def _compile(self) -> Any:
        import tensorflow as tf

        model = self.loaded.model
        assert self.spec.shape is not None and self.spec.dtype is not None
        signature = tf.TensorSpec((None, *self.spec.shape), self.spec.dtype)

        @tf.function(input_signature=[signature], reduce_retracing=True)
        def run(x: Any) -> Any:
            return model(x, training=False)

        return run.get_concrete_function()

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """One output row per row of *batch* (already checked against ``spec``)."""
        if self._fn is not None:
            import tensorflow as tf

            out = self._fn(tf.constant(batch))
            if isinstance(out, dict | list | tuple):
                raise InvalidInput(
                    "the Keras model has several outputs; serving returns one",
                    op="serve",
                    target=self.loaded.ref,
                )
            return np.ascontiguousarray(out.numpy())
        out = np.ascontiguousarray(self.loaded.predict(batch))
        if out.ndim == 0 or len(out) != len(batch):
            raise InvalidInput(
                f"the model returned {out.shape} for {len(batch)} instances",
                op="serve",
                target=self.loaded.ref,
                hint="predict must return one output per instance",
            )
        return out

    def warm(self) -> None:
        """Run a batch of zeros of each size the server will use, so that the first real
        requests find everything traced, allocated and paged in."""
        if self.spec.shape is None or any(d is None for d in self.spec.shape):
            return  # no shape to make zeros of
        dtype = self.spec.dtype or "float32"
        shape = tuple(int(d) for d in self.spec.shape if d is not None)
        for n in sorted({1, self.max_batch}):
            self.predict(np.zeros((n, *shape), dtype=dtype))

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "flavor": self.flavor,
            "input": self.spec.describe(),
        }
