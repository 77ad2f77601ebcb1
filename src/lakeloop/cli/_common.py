"""Helpers every CLI module shares: the lake held for one command, output formatting."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lakeloop.store import Lake


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


class _State:
    def __init__(self, lake_path: str, debug: bool) -> None:
        self.lake_path = lake_path
        self.debug = debug
        self._lake: Lake | None = None

    def lake(self) -> Lake:
        if self._lake is None:
            from lakeloop.store import Lake

            self._lake = Lake.open(self.lake_path, background=False)
        return self._lake

    def close(self) -> None:
        if self._lake is not None:
            self._lake.close()
            self._lake = None


def _console(stderr: bool = False) -> Any:
    from rich.console import Console

    return Console(stderr=stderr, highlight=False)


def _info_doc(info: Any) -> dict[str, Any]:
    """An ObjectInfo as JSON-ready fields (``ls --json`` and ``stat``)."""
    return {
        "key": info.key,
        "size": info.size,
        "etag": info.etag,
        "version": info.version,
        "mtime": info.mtime,
        "content_type": info.content_type,
        "metadata": info.metadata,
    }


def _split_target(target: str) -> tuple[str, str]:
    """``ns/some/key`` -> ("ns", "some/key"); ``ns`` -> ("ns", "")."""
    name, _, rest = target.partition("/")
    return name, rest
