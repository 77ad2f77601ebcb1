"""Who is looking, and what of the lake they may see: the gateway's grants, page by page.

A namespace is visible with a ``read`` grant on it (or on ``*``), exactly as for S3 and
the JSON API; reserved namespaces (``_...``) never are. Runs, model versions and gate
decisions live in reserved namespaces, so they borrow the grants of the data they were
made from: a run or a model version is visible when its principal may read every
namespace its lineage's snapshots come from, and one that names no snapshot only with a
read grant on ``*``. A decision is visible when its evaluation snapshot is.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from lakeloop.catalog import Catalog
from lakeloop.errors import LakeloopError, NotFound
from lakeloop.gateway import Principal
from lakeloop.gateway._credentials import MODELS, RUNS
from lakeloop.store import Lake

__all__ = ["OWNER", "Hidden", "Viewer"]

#: The principal of ``lakeloop ui`` run locally by the lake's owner: everything.
OWNER = Principal("owner", {"*": "admin"})


class Hidden(NotFound):
    """What a page answers for something that does not exist *or* is not granted: the
    two are indistinguishable, so nothing leaks about other principals' data."""


class Viewer:
    """One request's principal over the lake, with the checks every page makes."""

    def __init__(self, lake: Lake, catalog: Catalog, principal: Principal) -> None:
        self.lake = lake
        self.catalog = catalog
        self.principal = principal
        self._dataset_ns: dict[str, str | None] = {}

    def can_read(self, namespace: str) -> bool:
        return not namespace.startswith("_") and self.principal.can(namespace, "read")

    def namespaces(self) -> list[str]:
        """The namespaces this principal may read, sorted."""
        return [n for n in self.lake.namespaces() if self.can_read(n)]

    def require(self, namespace: str) -> None:
        """Raise :class:`Hidden` unless *namespace* exists and may be read."""
        if not self.can_read(namespace) or not self.lake.has_namespace(namespace):
            raise Hidden("no such namespace, or no read grant on it", op="ui", target=namespace)

    def dataset_namespace(self, dataset: str) -> str | None:
        if dataset not in self._dataset_ns:
            try:
                ns = self.catalog.datasets.definition(dataset)["namespace"]
            except (LakeloopError, KeyError):
                ns = None
            self._dataset_ns[dataset] = ns
        return self._dataset_ns[dataset]

    def can_see_dataset(self, dataset: str) -> bool:
        ns = self.dataset_namespace(dataset)
        return ns is not None and self.can_read(ns)

    def require_dataset(self, dataset: str) -> None:
        if not self.can_see_dataset(dataset):
            raise Hidden("no such dataset, or no read grant on it", op="ui", target=dataset)

    def can_see_lineage(self, datasets: Iterable[str]) -> bool:
        """True when every dataset is readable; no dataset at all needs ``*``."""
        names = list(datasets)
        if not names:
            return self.principal.can("*", "read")
        return all(self.can_see_dataset(d) for d in names)

    # Runs and models need their own grant (``@runs`` / ``@models`` read, as on the JSON
    # API) and, on top of it, read on every dataset of their lineage.
    def can_see_run(self, record: Any) -> bool:
        return self.principal.can(RUNS, "read") and self.can_see_lineage(
            (record.snapshots or {}).keys()
        )

    def can_see_version(self, version: Any) -> bool:
        return self.principal.can(MODELS, "read") and self.can_see_lineage(
            version.lineage.snapshots.keys()
        )

    def can_see_decision(self, record: Mapping[str, Any]) -> bool:
        if not self.principal.can(MODELS, "read"):
            return False
        snap = record.get("snapshot")
        if isinstance(snap, Mapping) and isinstance(snap.get("dataset"), str):
            return self.can_see_lineage([snap["dataset"]])
        return self.can_see_lineage([])
