"""Datasets of a remote lake: the same calls as :class:`Datasets`, run by the gateway.

Taking a snapshot lists a prefix, pins every version and appends to the dataset's
series under a lock: that must happen where the store is, so ``create`` and ``drop``
are requests to the gateway's dataset endpoints, which run the local
:class:`~lakeloop.catalog._snapshot.Datasets` code there. What comes back is an ordinary
:class:`Snapshot` bound to the remote lake: its manifest is read through the gateway
(SHA-256 checked as locally) and its entries at their exact versions (``versionId``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lakeloop.catalog._snapshot import (
    Diff,
    Snapshot,
    check_create_args,
    check_dataset_name,
    parse_ref,
)
from lakeloop.errors import InvalidInput, NotFound, Refused

if TYPE_CHECKING:
    from lakeloop.store import Lake

__all__ = ["RemoteDatasets"]


def _snapshot(lake: Lake, d: dict[str, Any]) -> Snapshot:
    return Snapshot(
        dataset=d["dataset"],
        id=d["id"],
        number=d["number"],
        namespace=d["namespace"],
        prefix=d["prefix"],
        created=d["created"],
        count=d["count"],
        size=d["bytes"],
        labels=dict(d.get("labels") or {}),
        splits=dict(d.get("splits") or {}),
        _lake=lake,
    )


class RemoteDatasets:
    """``Catalog(remote_lake).datasets``: dataset calls answered by the gateway."""

    def __init__(self, lake: Lake) -> None:
        self.lake = lake

    def _api(self, method: str, path: str, **kw: Any) -> Any:
        return self.lake.api(method, path, **kw)  # type: ignore[attr-defined]

    def names(self) -> list[str]:
        """The datasets over namespaces the caller may read."""
        return [d["name"] for d in self._api("GET", "/datasets")["datasets"]]

    def _doc(self, name: str) -> dict[str, Any]:
        check_dataset_name(name)
        try:
            doc: dict[str, Any] = self._api("GET", f"/datasets/{name}")
        except NotFound:
            raise NotFound(
                "no such dataset",
                op="dataset",
                target=name,
                hint="create it with `lakeloop snapshot create NS/PREFIX --dataset NAME`",
            ) from None
        return doc

    def definition(self, name: str) -> dict[str, Any]:
        return dict(self._doc(name)["definition"])

    def list(self, name: str) -> list[Snapshot]:
        return [_snapshot(self.lake, s) for s in self._doc(name)["snapshots"]]

    def resolve(self, ref: str) -> Snapshot:
        name, sel = parse_ref(ref)
        doc = self._api("GET", f"/datasets/{name}/snapshots/{sel}", query={"limit": 1})
        return _snapshot(self.lake, doc)

    def create(
        self,
        namespace: str,
        prefix: str,
        dataset: str,
        *,
        labels: str | None = None,
        labels_table: str | None = None,
        eval_fraction: float | None = None,
        split_seed: str | None = None,
    ) -> tuple[Snapshot, bool]:
        check_create_args(dataset, labels, labels_table)
        body = {
            "dataset": dataset,
            "prefix": prefix,
            "labels": labels,
            "labels_table": labels_table,
            "eval_fraction": eval_fraction,
            "split_seed": split_seed,
        }
        doc = self._api(
            "POST",
            f"/namespaces/{namespace}/snapshots",
            body={k: v for k, v in body.items() if v is not None},
        )
        return _snapshot(self.lake, doc), bool(doc["created_now"])

    def drop(self, ref: str) -> Snapshot:
        name, sel = parse_ref(ref)
        doc = self._api("DELETE", f"/datasets/{name}/snapshots/{sel}")
        return _snapshot(self.lake, doc["dropped"])

    def delete(self, name: str) -> int:
        snaps = self.list(name)
        for s in snaps:
            self.drop(f"{name}@{s.id}")
        return len(snaps)

    def gc(self) -> dict[str, int]:
        raise Refused(
            "gc of snapshot pins runs where the lake is",
            op="snapshot gc",
            target=str(getattr(self.lake, "url", "")),
            hint="run `lakeloop --lake PATH snapshot gc` on the gateway's machine",
        )

    def diff(self, old_ref: str, new_ref: str) -> Diff:
        name, old = parse_ref(old_ref)
        name2, new = parse_ref(new_ref)
        if name2 != name:
            raise InvalidInput("a diff compares two snapshots of one dataset", op="diff")
        d = self._api("GET", f"/datasets/{name}/diff", query={"old": old, "new": new})
        return Diff(d["old"], d["new"], d["added"], d["removed"], d["changed"])
