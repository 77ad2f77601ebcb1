"""One page of a prefix: its folders (keys cut at the next ``/``) and its objects.

Folders are found by listing: each time a key under a new folder turns up, the listing
restarts after everything that folder holds. Restarts read a few rows at a time (a
folder's first key is all that is needed), growing the read while plain objects follow,
so a page of 100 folders that each hold a million objects reads a few hundred rows.
"""

from __future__ import annotations

from typing import Any

__all__ = ["list_page"]

_AFTER_ALL = "\U0010ffff"  # sorts after every other character: skips a folder's keys
_FIRST_READ = 8


def list_page(
    ns: Any, prefix: str, after: str | None, max_keys: int
) -> tuple[list[Any], list[str], str | None]:
    """Up to *max_keys* objects and folders after *after*, in key order, and the cursor of
    the next page (None on the last page)."""
    objects: list[Any] = []
    folders: list[str] = []
    cursor = after
    read = max_keys + 1
    while True:
        batch = list(ns.list(prefix, start_after=cursor, limit=read))
        for info in batch:
            if len(objects) + len(folders) == max_keys:
                return objects, folders, cursor  # one more exists: there is a next page
            cut = info.key.find("/", len(prefix))
            if cut >= 0:
                folders.append(info.key[: cut + 1])
                cursor = info.key[: cut + 1] + _AFTER_ALL
                read = _FIRST_READ
                break
            objects.append(info)
            cursor = info.key
        else:
            if len(batch) < read:
                return objects, folders, None
            read = min(read * 4, 1000)
