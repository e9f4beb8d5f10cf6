"""A KV cache of fixed shape, so a whole frame's decode can be captured once as a CUDA graph and replayed.

Per layer the keys and values are one preallocated (B, heads, capacity, D) buffer; the first `length`
tokens are filled. The write position also lives on the device (`position`), so one captured graph
serves every frame: nothing about a step depends on a Python number that changes between frames.

Why a second cache kind: on a GPU a batch-16 token step of the small preset is launch-bound (~170
kernels whose arithmetic takes microseconds), and only a captured graph of fixed-address buffers
removes the launches. On CPU the contiguous `GrowingCache` stays faster (`transformer/cache.py`):
attention there reads only the filled tokens, this one masks the whole capacity.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ivideogpt.transformer.cache import GrowingCache, padded

CAPACITY_STEP = 256  # capacities are multiples of this, so rollouts of similar length share one captured graph


def round_capacity(tokens: int) -> int:
    """The smallest multiple of CAPACITY_STEP that holds `tokens`."""
    return -(-tokens // CAPACITY_STEP) * CAPACITY_STEP


class StaticCache:
    """Keys and values of every layer in fixed buffers, filled up to `length` (also on the device as `position`)."""

    def __init__(self, keys: list[Tensor], values: list[Tensor], length: int) -> None:
        if length > keys[0].shape[2]:
            raise ValueError(f"{length} tokens do not fit a capacity of {keys[0].shape[2]}")
        self.keys, self.values, self.length = keys, values, length
        self.position = torch.tensor(length, dtype=torch.long, device=keys[0].device)

    @classmethod
    def from_growing(cls, cache: GrowingCache, capacity: int) -> "StaticCache":
        """The tokens of a `GrowingCache` (e.g. a prefill's) copied into buffers of `capacity` tokens."""
        return cls([padded(layer.keys, capacity) for layer in cache.layers],
                   [padded(layer.values, capacity) for layer in cache.layers], cache.get_seq_length())

    @property
    def batch_size(self) -> int:
        return self.keys[0].shape[0]

    @property
    def capacity(self) -> int:
        return self.keys[0].shape[2]

    def get_seq_length(self) -> int:
        return self.length

    def advance(self, tokens: int) -> None:
        """Count `tokens` more as filled (their keys and values were written at the old length)."""
        if self.length + tokens > self.capacity:
            raise ValueError(f"{self.length} + {tokens} tokens exceed the capacity of {self.capacity}")
        self.length += tokens
        self.position.add_(tokens)

    def grown(self, capacity: int) -> "StaticCache":
        """A copy of the filled tokens in buffers of a larger `capacity`."""
        return StaticCache([padded(k[:, :, : self.length], capacity) for k in self.keys],
                           [padded(v[:, :, : self.length], capacity) for v in self.values], self.length)

    def copy(self, repeats: int = 1, indices: Tensor | None = None) -> "StaticCache":
        """An independent cache: rows `indices` (default all), each repeated `repeats` times in a row."""
        def pick(buffer: Tensor) -> Tensor:
            if indices is not None:
                rows = indices.to(buffer.device)
                return buffer[rows.repeat_interleave(repeats) if repeats > 1 else rows]
            return buffer.repeat_interleave(repeats, 0) if repeats > 1 else buffer.clone()
        return StaticCache([pick(k) for k in self.keys], [pick(v) for v in self.values], self.length)

    def assign(self, other: "StaticCache") -> None:
        """Copy `other`'s contents into this cache's own buffers (same shapes): how a captured graph is fed."""
        for mine, theirs in zip(self.keys + self.values, other.keys + other.values):
            mine.copy_(theirs)
        self.length = other.length
        self.position.fill_(other.length)

    @staticmethod
    def concat(caches: list["StaticCache"]) -> "StaticCache":
        """One cache holding the batch rows of `caches` one after another (equal lengths; the largest capacity)."""
        capacity = max(cache.capacity for cache in caches)
        caches = [cache if cache.capacity == capacity else cache.grown(capacity) for cache in caches]
        return StaticCache([torch.cat(parts) for parts in zip(*(c.keys for c in caches))],
                           [torch.cat(parts) for parts in zip(*(c.values for c in caches))], caches[0].length)
