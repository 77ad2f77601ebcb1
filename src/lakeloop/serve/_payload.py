"""Request bodies -> NumPy batches, checked against the model's input signature first.

A predict body is TensorFlow Serving's REST form, ``{"instances": [...]}`` (one entry per
instance) or ``{"inputs": [...]}`` (the same batch, columnar), or the raw bytes of one
``.npy`` array (``Content-Type: application/x-npy``). Every check runs before the model
does: a body that fails one gets a 4xx answer with a JSON error and touches nothing.
"""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["NPY_TYPES", "InputSpec", "PayloadError", "dumps", "loads", "parse_feedback"]

NPY_TYPES = ("application/x-npy", "application/npy", "application/octet-stream")

try:  # orjson parses and writes JSON several times faster; plain json when it is missing
    import orjson

    def loads(data: bytes) -> Any:
        return orjson.loads(data)

    def dumps(value: Any) -> bytes:
        return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY)

except ImportError:  # pragma: no cover - orjson is a dependency; this is the fallback

    def loads(data: bytes) -> Any:
        return json.loads(data)

    def dumps(value: Any) -> bytes:
        return json.dumps(value, default=_jsonable).encode()


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.ndarray | np.generic):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


class PayloadError(Exception):
    """A bad request: ``status`` (400, 413, 415), ``code`` and a message for the client."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


_INSTANCES = re.compile(rb'\A\s*\{\s*"instances"\s*:\s*(\[.*\])\s*\}\s*\Z', re.S)
_NUMBER_CHARS = b"0123456789.-+eE \t\r\n"
_BRACKETS_TO_SPACE = bytes.maketrans(b"[]", b"  ")


@dataclass(frozen=True)
class InputSpec:
    """What one instance must look like: ``shape`` without the batch axis (``None``: any
    length on that axis) and ``dtype``; ``None`` for either means it is not checked."""

    shape: tuple[int | None, ...] | None
    dtype: str | None

    def _skeleton(self) -> bytes | None:
        """One instance's JSON with the numbers taken out: ``[[,],[,]]`` for (2, 2)."""
        shape = self.shape
        if shape is None or None in shape or self.dtype is None:
            return None
        if np.dtype(self.dtype).kind not in "fiu":
            return None
        skel = b""
        for dim in reversed(shape):
            assert dim is not None
            skel = b"[" + b",".join([skel] * dim) + b"]"
        return skel

    def fast_batch(self, body: bytes) -> np.ndarray | None:
        """The batch of an ``{"instances": [...]}`` body of numbers of exactly the model's
        shape, parsed without building a Python list per row; ``None`` when the body is
        anything else (the general parser then answers it, errors included).

        Nested JSON lists cost one Python object per number and per row to parse; here
        the bracket structure is checked by deleting the number characters and comparing
        what is left with the expected skeleton, and the numbers are parsed as one flat
        JSON list (which rejects anything that is not a JSON number)."""
        skel = _skeleton_of(self)
        if skel is None:
            return None
        m = _INSTANCES.match(body)
        if m is None:
            return None
        text = m.group(1)
        if np.dtype(self.dtype).kind in "iu" and any(c in text for c in (b".", b"e", b"E")):
            return None  # integers only; the general parser says what is wrong
        left = text.translate(None, _NUMBER_CHARS)
        n = (len(left) - 1) // (len(skel) + 1)
        if n < 1 or left != b"[" + b",".join([skel] * n) + b"]":
            return None
        try:
            flat = loads(b"[" + text.translate(_BRACKETS_TO_SPACE) + b"]")
            with np.errstate(over="ignore", invalid="ignore"):  # too large: inf, refused later
                arr = np.asarray(flat, dtype=self.dtype)
        except (ValueError, TypeError, OverflowError):
            return None
        assert self.shape is not None
        size = int(np.prod(self.shape))  # type: ignore[arg-type]
        if arr.ndim != 1 or arr.size != n * size:
            return None
        return arr.reshape((n, *self.shape))  # type: ignore[arg-type]

    def describe(self) -> dict[str, Any]:
        return {"shape": None if self.shape is None else list(self.shape), "dtype": self.dtype}

    def batch(self, instances: Any) -> np.ndarray:
        """*instances* (a list, one entry per instance, or an array) as one checked array."""
        if isinstance(instances, np.ndarray):
            arr = instances
            if self.dtype is not None and arr.dtype != np.dtype(self.dtype):
                if not np.can_cast(arr.dtype, self.dtype, casting="same_kind"):
                    raise PayloadError(
                        400,
                        "WrongDtype",
                        f"the array's dtype is {arr.dtype}; the model takes {self.dtype}",
                    )
                with np.errstate(over="ignore", invalid="ignore"):
                    arr = arr.astype(self.dtype)
        else:
            if not isinstance(instances, list):
                raise PayloadError(400, "WrongShape", "instances must be a JSON list")
            arr = _to_array(instances, self.dtype)
        if arr.ndim == 0:
            raise PayloadError(400, "WrongShape", "instances must be a list, one per instance")
        if len(arr) == 0:
            raise PayloadError(400, "WrongShape", "no instances")
        if arr.dtype.kind in "OUSV" and self.dtype is None:
            raise PayloadError(400, "WrongDtype", "instances must be numbers")
        if self.shape is not None:
            got = arr.shape[1:]
            if len(got) != len(self.shape) or any(
                want is not None and want != have
                for want, have in zip(self.shape, got, strict=True)
            ):
                raise PayloadError(
                    400,
                    "WrongShape",
                    f"each instance has shape {list(got)}; the model takes "
                    f"{['any' if d is None else d for d in self.shape]}",
                )
        return arr


_SKELETONS: dict[InputSpec, bytes | None] = {}


def _skeleton_of(spec: InputSpec) -> bytes | None:
    try:
        return _SKELETONS[spec]
    except KeyError:
        skel = _SKELETONS[spec] = spec._skeleton()
        return skel


def _to_array(instances: list[Any], dtype: str | None) -> np.ndarray:
    try:
        with np.errstate(over="ignore", invalid="ignore"):  # too large: inf, refused later
            arr = np.asarray(instances) if dtype is None else np.asarray(instances, dtype=dtype)
    except OverflowError as exc:
        raise PayloadError(400, "WrongDtype", f"instances must be {dtype} numbers: {exc}") from None
    except (ValueError, TypeError) as exc:
        text = str(exc)
        if "inhomogeneous" in text or "sequence" in text:
            raise PayloadError(
                400, "WrongShape", "instances have different shapes (ragged lists)"
            ) from None
        raise PayloadError(
            400, "WrongDtype", f"instances must be {dtype or 'numbers'}: {text}"
        ) from None
    if dtype is not None and np.dtype(dtype).kind in "fiu":
        # numpy turns true/false into 1/0 and 1.5 into 1 for an integer dtype, silently
        kind = np.asarray(instances).dtype.kind
        want = np.dtype(dtype).kind
        if kind in "bOUS" or (want in "iu" and kind == "f") or _has_bool(instances):
            raise PayloadError(400, "WrongDtype", f"instances must be {dtype} numbers")
    return arr


def _has_bool(value: list[Any]) -> bool:
    """Whether a JSON boolean hides among numbers (numpy would take it as 0 or 1)."""
    stack = [value]
    while stack:
        for x in stack.pop():
            if isinstance(x, list):
                stack.append(x)
            elif isinstance(x, bool):
                return True
    return False


def parse_predict(body: bytes, content_type: str, spec: InputSpec) -> tuple[np.ndarray, Any, str]:
    """A predict request's body -> (checked batch, the instances as JSON or None, the key
    the answer's outputs go under: ``predictions`` or ``outputs``)."""
    ctype = content_type.split(";", 1)[0].strip().lower()
    if ctype in NPY_TYPES:
        _check_npy_size(body)
        try:
            arr = np.load(io.BytesIO(body), allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise PayloadError(
                400, "MalformedNpy", f"the body is not a .npy array: {exc}"
            ) from None
        return _finite(spec.batch(arr)), None, "predictions"
    if ctype not in ("", "application/json", "text/json"):
        raise PayloadError(
            415,
            "UnsupportedMediaType",
            f"send application/json or application/x-npy, not {ctype!r}",
        )
    fast = spec.fast_batch(body)
    if fast is not None:
        return _finite(fast), None, "predictions"
    try:
        doc = loads(body)
    except ValueError:
        raise PayloadError(400, "MalformedJSON", "the body is not JSON") from None
    if not isinstance(doc, dict):
        raise PayloadError(400, "MalformedRequest", 'the body is {"instances": [...]}')
    extra = set(doc) - {"instances", "inputs", "signature_name"}
    if extra or ("instances" in doc) == ("inputs" in doc):
        raise PayloadError(
            400,
            "MalformedRequest",
            'the body has exactly one of "instances" or "inputs" (and optionally'
            f' "signature_name"){"; unknown: " + ", ".join(sorted(extra)) if extra else ""}',
        )
    if "instances" in doc:
        instances = doc["instances"]
        return _finite(spec.batch(instances)), instances, "predictions"
    inputs = doc["inputs"]
    if isinstance(inputs, dict):
        if len(inputs) != 1:
            raise PayloadError(400, "WrongShape", "the model takes one input tensor")
        inputs = next(iter(inputs.values()))
    return _finite(spec.batch(inputs)), inputs, "outputs"


def _finite(arr: np.ndarray) -> np.ndarray:
    """*arr*, C-contiguous, after refusing NaN and infinity: they cannot be logged as JSON,
    and a number too large for the model's float dtype arrives as infinity."""
    if arr.dtype.kind in "fc" and not np.isfinite(arr).all():
        raise PayloadError(
            400,
            "NotFinite",
            "instances hold NaN or infinity (or numbers too large for the model's dtype)",
        )
    return np.ascontiguousarray(arr)


def _check_npy_size(body: bytes) -> None:
    """Refuse a .npy whose header promises more data than the body holds, before numpy
    allocates the array it declares."""
    f = io.BytesIO(body)
    try:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, _, dtype = np.lib.format.read_array_header_2_0(f)
        else:  # np.load reads (and checks) the rarer versions itself
            return
        need = int(np.prod(shape, dtype=np.float64)) * dtype.itemsize
    except Exception as exc:  # any header numpy cannot read is a malformed body
        raise PayloadError(400, "MalformedNpy", f"the body is not a .npy array: {exc}") from None
    if need > len(body):
        raise PayloadError(
            400, "MalformedNpy", f"the .npy header declares {need:,} bytes; the body is shorter"
        )


# a label is at most this much JSON: feedback events must fit the stream's event limit
MAX_LABEL_BYTES = 64 * 1024


def parse_feedback(body: bytes, max_items: int) -> list[dict[str, Any]]:
    """A feedback body -> its items ``{"prediction_id": <32 hex>, "label": <JSON>}``."""
    try:
        doc = loads(body)
    except ValueError:
        raise PayloadError(400, "MalformedJSON", "the body is not JSON") from None
    items = doc if isinstance(doc, list) else [doc]
    if not items:
        raise PayloadError(400, "MalformedFeedback", "no feedback items")
    if len(items) > max_items:
        raise PayloadError(
            413, "TooManyItems", f"{len(items)} feedback items; at most {max_items} per request"
        )
    out = []
    for n, item in enumerate(items):
        where = f"item {n}: " if isinstance(doc, list) else ""
        if not isinstance(item, dict):
            raise PayloadError(
                400, "MalformedFeedback", f'{where}expected {{"prediction_id", "label"}}'
            )
        unknown = set(item) - {"prediction_id", "label"}
        if unknown or "label" not in item or "prediction_id" not in item:
            raise PayloadError(
                400,
                "MalformedFeedback",
                f'{where}a feedback item has exactly "prediction_id" and "label"'
                + (f" (unknown: {', '.join(sorted(unknown))})" if unknown else ""),
            )
        pid = item["prediction_id"]
        if not _is_prediction_id(pid):
            raise PayloadError(
                400, "MalformedFeedback", f"{where}prediction_id must be 32 lowercase hex digits"
            )
        if item["label"] is None:
            raise PayloadError(400, "MalformedFeedback", f"{where}label must not be null")
        if len(dumps(item["label"])) > MAX_LABEL_BYTES:
            raise PayloadError(
                413, "LabelTooLarge", f"{where}a label is at most {MAX_LABEL_BYTES:,} bytes of JSON"
            )
        out.append({"prediction_id": pid, "label": item["label"]})
    return out


def _is_prediction_id(value: object) -> bool:
    return (
        isinstance(value, str) and len(value) == 32 and all(c in "0123456789abcdef" for c in value)
    )
