"""A KV cache that grows by doubling, so appending a token costs only that token.

`transformers.DynamicCache` concatenates the whole cache on every update: for a 138M model at
batch 16 and ~700 cached tokens that copies ~1.6 GB per generated token, more than the matmuls
cost. `GrowingCache` keeps per-layer buffers `(B, heads, capacity, head_dim)`, writes new keys and
values in place and returns views of the filled part. Capacity doubles when full (or can be
reserved up front), so there is no maximum length; memory grows linearly with the rollout.
"""

from __future__ import annotations

import torch
from torch import Tensor
from transformers.cache_utils import Cache, DynamicCache, DynamicLayer


class GrowingLayer(DynamicLayer):
    """One layer's keys and values in a buffer with spare capacity."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.length = 0
        self.reserve_tokens = 0
        self._k: Tensor | None = None  # (B, heads, capacity, head_dim)
        self._v: Tensor | None = None

    def lazy_initialization(self, key_states: Tensor, value_states: Tensor) -> None:
        self.device = key_states.device
        self.is_initialized = True

    def _grow(self, needed: int, like: Tensor) -> None:
        capacity = 0 if self._k is None else self._k.shape[2]
        if needed <= capacity:
            return
        new_capacity = max(needed + self.reserve_tokens, 2 * capacity)
        shape = (like.shape[0], like.shape[1], new_capacity, like.shape[3])
        new_k, new_v = like.new_empty(shape), like.new_empty(shape)
        if self._k is not None and self.length:
            new_k[:, :, : self.length] = self._k[:, :, : self.length]
            new_v[:, :, : self.length] = self._v[:, :, : self.length]
        self._k, self._v = new_k, new_v

    def update(self, key_states: Tensor, value_states: Tensor, *args, **kwargs) -> tuple[Tensor, Tensor]:
        """Append (B, heads, q, head_dim) keys/values; return views of all cached ones."""
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        end = self.length + key_states.shape[2]
        self._grow(end, key_states)
        self._k[:, :, self.length : end] = key_states
        self._v[:, :, self.length : end] = value_states
        self.length = end
        self.keys, self.values = self._k[:, :, :end], self._v[:, :, :end]
        return self.keys, self.values

    def get_seq_length(self) -> int:
        return self.length

    def reset(self) -> None:
        self._k = self._v = self.keys = self.values = None
        self.length = 0
        self.is_initialized = False

    def crop(self, tokens_to_remove: int) -> None:
        if tokens_to_remove > 0:
            raise ValueError(f"crop takes a negative token count, got {tokens_to_remove}")
        self.length = max(0, self.length + tokens_to_remove)
        if self._k is not None:
            self.keys, self.values = self._k[:, :, : self.length], self._v[:, :, : self.length]

    def _replace(self, keys: Tensor, values: Tensor, spare: int) -> None:
        self._k = self._v = None
        self.length = 0
        self.reserve_tokens, saved = spare, self.reserve_tokens
        self.update(keys, values)
        self.reserve_tokens = saved

    def batch_repeat_interleave(self, repeats: int) -> None:
        if self.length:
            spare = self._k.shape[2] - self.length
            self._replace(self.keys.repeat_interleave(repeats, 0), self.values.repeat_interleave(repeats, 0), spare)

    def batch_select_indices(self, indices: Tensor) -> None:
        if self.length:
            spare = self._k.shape[2] - self.length
            self._replace(self.keys[indices], self.values[indices], spare)


class GrowingCache(DynamicCache):
    """A `DynamicCache` made of `GrowingLayer`s: in-place appends, no fixed maximum length."""

    def __init__(self, num_layers: int, reserve_tokens: int = 0) -> None:
        layers = [GrowingLayer() for _ in range(num_layers)]
        for layer in layers:
            layer.reserve_tokens = reserve_tokens
        Cache.__init__(self, layers=layers)

    def reserve(self, tokens: int) -> None:
        """Make room for `tokens` more tokens now, so later appends never reallocate."""
        for layer in self.layers:
            layer.reserve_tokens = max(layer.reserve_tokens, tokens)
            if layer._k is not None:
                layer._grow(layer.length + tokens, layer._k)

    def copy(self, repeats: int = 1, indices: Tensor | None = None, spare: int | None = None) -> "GrowingCache":
        """An independent cache: rows `indices` (default all), each repeated `repeats` times in a row."""
        new = GrowingCache(len(self.layers))
        for old, layer in zip(self.layers, new.layers):
            if not old.length:
                continue
            keys, values = old.keys, old.values
            if indices is not None:
                keys, values = keys[indices], values[indices]
            if repeats != 1:
                keys, values = keys.repeat_interleave(repeats, 0), values.repeat_interleave(repeats, 0)
            room = old._k.shape[2] - old.length if spare is None else spare
            layer._replace(keys, values, room)  # copies into the new layer's own buffer
            layer.reserve_tokens = old.reserve_tokens
        return new

    @staticmethod
    def concat(caches: list["GrowingCache"]) -> "GrowingCache":
        """One cache holding the batch rows of `caches` one after another (all of equal length)."""
        new = GrowingCache(len(caches[0].layers))
        for i, layer in enumerate(new.layers):
            parts = [cache.layers[i] for cache in caches]
            if parts[0].length:
                layer._replace(torch.cat([p.keys for p in parts]), torch.cat([p.values for p in parts]), spare=0)
        return new
