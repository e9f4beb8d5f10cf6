"""Step-indexed sampling: the data position is a pure function of (seed, step), so resume is exact.

Global sample number `n = step * batch_size + (micro * world + rank) * micro_batch + j` is
mapped to a dataset index through a per-epoch seeded permutation (epoch = n // len(dataset)).
One process with global batch G and two processes with G/2 each draw the same G samples
at every step; a resumed run restarts at `n = start_step * batch_size` and sees the same data.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler


class StepSampler(Sampler[int]):
    """Yields this process's dataset indices for updates `start_step .. max_steps - 1`, micro-batch by micro-batch."""

    def __init__(self, dataset_len: int, batch_size: int, micro_batch: int, grad_accum: int,
                 world_size: int, rank: int, seed: int, start_step: int, max_steps: int,
                 shuffle: bool = True) -> None:
        if dataset_len <= 0:
            raise ValueError("the dataset is empty: nothing to train on")
        if micro_batch * grad_accum * world_size != batch_size:
            raise ValueError(f"micro_batch {micro_batch} x grad_accum {grad_accum} x world {world_size} "
                             f"!= batch_size {batch_size}")
        self.dataset_len, self.batch_size, self.micro_batch = dataset_len, batch_size, micro_batch
        self.grad_accum, self.world_size, self.rank = grad_accum, world_size, rank
        self.seed, self.start_step, self.max_steps, self.shuffle = seed, start_step, max_steps, shuffle
        self._epoch, self._perm = -1, torch.empty(0, dtype=torch.long)

    def __len__(self) -> int:
        return max(0, self.max_steps - self.start_step) * self.grad_accum * self.micro_batch

    def sample_number(self, step: int, micro: int, j: int) -> int:
        """Global position in the (endless, epoch-shuffled) data stream of item j of a micro-batch."""
        return step * self.batch_size + (micro * self.world_size + self.rank) * self.micro_batch + j

    def index(self, number: int) -> int:
        """Dataset index of global sample `number`."""
        epoch, offset = divmod(number, self.dataset_len)
        if not self.shuffle:
            return offset
        if epoch != self._epoch:
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._perm, self._epoch = torch.randperm(self.dataset_len, generator=generator), epoch
        return int(self._perm[offset])

    def __iter__(self) -> Iterator[int]:
        for step in range(self.start_step, self.max_steps):
            for micro in range(self.grad_accum):
                for j in range(self.micro_batch):
                    yield self.index(self.sample_number(step, micro, j))


class FixedSampler(Sampler[int]):
    """This process's share of the first `count` indices (validation: same batches every time)."""

    def __init__(self, dataset_len: int, count: int, micro_batch: int, world_size: int, rank: int) -> None:
        self.indices = []
        for start in range(0, count, micro_batch * world_size):
            first = start + rank * micro_batch
            self.indices.extend(i % dataset_len for i in range(first, first + micro_batch))

    def __len__(self) -> int:
        return len(self.indices)

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)
