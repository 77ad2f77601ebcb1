"""Importable models for the registry tests (pyfunc pickles them by reference)."""

from __future__ import annotations

from typing import Any


class Doubler:
    """An object with ``predict``."""

    def predict(self, batch: Any) -> list[float]:
        return [2 * x for x in batch]


def negate(batch: Any) -> list[float]:
    """A plain callable."""
    return [-x for x in batch]
