"""The PyTorch side of :func:`lakeloop.train.data.torch_dataset` (imports torch; only
that function imports this module)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import IterableDataset, get_worker_info

from lakeloop.train.data import TorchSource

__all__ = ["SnapshotIterableDataset"]


class SnapshotIterableDataset(IterableDataset):
    """One split of a snapshot as batches of tensors (see ``torch_dataset``)."""

    def __init__(self, source: TorchSource) -> None:
        super().__init__()
        self.source = source
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """The epoch the next iteration reads (it varies the shuffle)."""
        self.epoch = epoch

    def __iter__(self) -> Iterator[tuple[Any, Any]]:
        info = get_worker_info()
        worker = (0, 1) if info is None else (info.id, info.num_workers)
        epoch, self.epoch = self.epoch, self.epoch + 1
        for x, y in self.source.batches(epoch, worker):
            xs = list(x) if x.dtype == object else torch.from_numpy(x)
            yield xs, torch.from_numpy(y)
