"""The training data loaders of the tasks' LightningModules (their ``train_dataloader``)."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader, IterableDataset, Sampler, TensorDataset


class _Forever(IterableDataset):
    """Yields an empty batch forever: full-batch modules keep their data on the module, so
    Lightning's per-step data cost is nil and ``max_steps`` / ``should_stop`` end training."""

    def __iter__(self) -> Iterator[tuple]:
        while True:
            yield ()


def full_batch_loader() -> DataLoader:
    return DataLoader(_Forever(), batch_size=None)


class EpochShuffle(Sampler[int]):
    """A permutation of range(n) that depends on (seed, epoch) alone: Lightning calls ``set_epoch``
    before each epoch, so a run's batch order does not depend on how often its loader was iterated."""

    def __init__(self, n: int, seed: int):
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[int]:
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return iter(torch.randperm(self.n, generator=gen).tolist())


def minibatch_loader(x: torch.Tensor, y: torch.Tensor, batch_size: int, seed: int) -> DataLoader:
    """Mini-batches of (x, y) in the :class:`EpochShuffle` order of ``seed``."""
    return DataLoader(TensorDataset(x, y), batch_size=batch_size, sampler=EpochShuffle(len(x), seed))
