"""A KV cache kept as a contiguous prefix plus a short recent tail, so one query reads it at full speed.

Per layer the keys and values are two contiguous tensors each: `prefix` (B, heads, P, D), and `tail`
(B, heads, t, D) with t < `FOLD_TOKENS`. A new token is appended to the tail (a copy of at most
`FOLD_TOKENS` tokens); when the tail is full it is folded into the prefix (one copy of the prefix
every `FOLD_TOKENS` tokens, ~6% of what attention reads meanwhile). There is no maximum length.

Why not one preallocated buffer: the filled part of a (B, heads, capacity, D) buffer is not
contiguous across rows, and CPU batched matmuls copy such inputs first; in bf16 that made a
single-query attention ~8x slower than on contiguous keys (measured with the rollout benchmark's
shapes). `transformers.DynamicCache` instead copies the whole cache at every token.

The HF model writes through `update` (a prefill, or per-frame re-processing); rollouts append and
attend through `append` / `attend` (`transformer/decode.py`), which never concatenate the two parts.
"""

from __future__ import annotations

import torch
from torch import Tensor
from transformers.cache_utils import Cache, DynamicCache, DynamicLayer

FOLD_TOKENS = 32


class SplitLayer(DynamicLayer):
    """One layer's keys and values: a contiguous prefix and a short contiguous tail."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.prefix: tuple[Tensor, Tensor] | None = None  # keys, values (B, heads, P, D)
        self.tail: tuple[Tensor, Tensor] | None = None  # keys, values (B, heads, t, D), t < FOLD_TOKENS

    def lazy_initialization(self, key_states: Tensor, value_states: Tensor) -> None:
        self.device, self.dtype = key_states.device, key_states.dtype
        self.is_initialized = True

    def append(self, keys: Tensor, values: Tensor) -> None:
        """Add (B, heads, q, D) keys and values after the cached ones."""
        if not self.is_initialized:
            self.lazy_initialization(keys, values)
        if self.tail is not None:
            keys, values = torch.cat([self.tail[0], keys], 2), torch.cat([self.tail[1], values], 2)
        if keys.shape[2] < FOLD_TOKENS:
            self.tail = (keys.contiguous(), values.contiguous())
            return
        if self.prefix is not None:
            keys, values = torch.cat([self.prefix[0], keys], 2), torch.cat([self.prefix[1], values], 2)
        self.prefix, self.tail = (keys.contiguous(), values.contiguous()), None

    def parts(self) -> list[tuple[Tensor, Tensor]]:
        """The non-empty (keys, values) parts, oldest first."""
        return [part for part in (self.prefix, self.tail) if part is not None]

    def update(self, key_states: Tensor, value_states: Tensor, *args, **kwargs) -> tuple[Tensor, Tensor]:
        """HF's interface: append, then return all cached keys and values (a concatenated copy)."""
        self.append(key_states, value_states)
        parts = self.parts()
        if len(parts) == 1:
            return parts[0]
        return torch.cat([p[0] for p in parts], 2), torch.cat([p[1] for p in parts], 2)

    @property
    def keys(self) -> Tensor | None:
        parts = self.parts()
        return torch.cat([p[0] for p in parts], 2) if parts else None

    @keys.setter
    def keys(self, value: Tensor | None) -> None:  # set to None by DynamicLayer.__init__
        if value is not None:
            raise AttributeError("SplitLayer keys are written through append/update")

    @property
    def values(self) -> Tensor | None:
        parts = self.parts()
        return torch.cat([p[1] for p in parts], 2) if parts else None

    @values.setter
    def values(self, value: Tensor | None) -> None:
        if value is not None:
            raise AttributeError("SplitLayer values are written through append/update")

    def get_seq_length(self) -> int:
        return sum(p[0].shape[2] for p in self.parts())

    def reset(self) -> None:
        self.prefix = self.tail = None
        self.is_initialized = False

    def crop(self, tokens_to_remove: int) -> None:
        raise NotImplementedError("SplitLayer does not crop; fork the state before a step instead")

    def map_rows(self, function) -> None:
        """Apply `function` to the batch dimension of every stored tensor (index, repeat)."""
        self.prefix, self.tail = [None if p is None else (function(p[0]), function(p[1]))
                                  for p in (self.prefix, self.tail)]

    def batch_repeat_interleave(self, repeats: int) -> None:
        self.map_rows(lambda t: t.repeat_interleave(repeats, 0))

    def batch_select_indices(self, indices: Tensor) -> None:
        self.map_rows(lambda t: t[indices].contiguous())


class GrowingCache(DynamicCache):
    """A `DynamicCache` made of `SplitLayer`s: appends cost only the new tokens, no fixed maximum length."""

    def __init__(self, num_layers: int) -> None:
        Cache.__init__(self, layers=[SplitLayer() for _ in range(num_layers)])

    def copy(self, repeats: int = 1, indices: Tensor | None = None) -> "GrowingCache":
        """An independent cache: rows `indices` (default all), each repeated `repeats` times in a row."""
        new = GrowingCache(len(self.layers))
        for old, layer in zip(self.layers, new.layers):
            layer.prefix, layer.tail, layer.is_initialized = old.prefix, old.tail, old.is_initialized
            if old.is_initialized:
                layer.device, layer.dtype = old.device, old.dtype
            layer.map_rows(lambda t: _select_rows(t, indices, repeats))
        return new

    @staticmethod
    def concat(caches: list["GrowingCache"]) -> "GrowingCache":
        """One cache holding the batch rows of `caches` one after another (all of equal length)."""
        new = GrowingCache(len(caches[0].layers))
        for i, layer in enumerate(new.layers):
            parts = [cache.layers[i] for cache in caches]
            if parts[0].is_initialized:
                layer.append(torch.cat([p.keys for p in parts]), torch.cat([p.values for p in parts]))
        return new


def _select_rows(tensor: Tensor, indices: Tensor | None, repeats: int) -> Tensor:
    """A new tensor of rows `indices` (default all) of `tensor`, each repeated `repeats` times in a row."""
    tensor = tensor if indices is None else tensor[indices]
    if repeats != 1:
        return tensor.repeat_interleave(repeats, 0)
    return tensor.clone() if indices is None else tensor
