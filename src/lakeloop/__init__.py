"""lakeloop: a data lake for billions of small files, and the loop around it.

>>> from lakeloop import Lake
>>> lake = Lake.open("/tmp/demo-lake", create=True)     # doctest: +SKIP

The names below are imported on first use, so ``import lakeloop`` (and the CLI) start
fast; heavy optional parts (TensorFlow, Ray) are never imported here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lakeloop.errors import LakeloopError
    from lakeloop.store import Lake, Namespace, ObjectInfo

__all__ = ["Lake", "LakeloopError", "Namespace", "ObjectInfo", "__version__"]

__version__ = "0.1.0"

_LAZY = {
    "Lake": "lakeloop.store",
    "Namespace": "lakeloop.store",
    "ObjectInfo": "lakeloop.store",
    "LakeloopError": "lakeloop.errors",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'lakeloop' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
