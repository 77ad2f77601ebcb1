"""lakeloop: a data lake for billions of small files, and the loop around it.

>>> from lakeloop import Lake
>>> lake = Lake.open("/tmp/demo-lake", create=True)     # doctest: +SKIP
"""

from lakeloop.errors import LakeloopError
from lakeloop.store import Lake, Namespace, ObjectInfo

__all__ = ["Lake", "LakeloopError", "Namespace", "ObjectInfo", "__version__"]

__version__ = "0.1.0"
