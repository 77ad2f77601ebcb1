"""The store: namespaces of small objects packed into checksummed, append-only volumes.

Public surface::

    Lake.open(path, create=True) -> Lake
    lake.create_namespace(name) / lake.namespace(name) / lake.namespaces()
    ns.put / put_stream / put_many / get / get_range / open / stat / delete / list
    ns.scan / locate / volumes / changes / pin / unpin / compact
    lake.fsck(repair=False) / lake.close()
"""

from lakeloop.store._compact import CompactionReport
from lakeloop.store._fsck import FsckReport
from lakeloop.store.lake import Lake, check_namespace_name
from lakeloop.store.namespace import Change, Namespace, ObjectInfo, VolumeInfo

__all__ = [
    "Change",
    "CompactionReport",
    "FsckReport",
    "Lake",
    "Namespace",
    "ObjectInfo",
    "VolumeInfo",
    "check_namespace_name",
]
