"""A KV cache kept as contiguous parts, so one query reads it at full speed and forks share their context.

Per layer the keys and values are up to three parts, oldest first, each (rows, heads, tokens, D)
and contiguous:
- `shared`: tokens common to groups of `share` consecutive batch rows, stored once per group. A
  fork (`copy(repeats=n)`) moves the forked state's tokens here instead of copying them n times, so
  n candidates branched from one context read that context's keys once per step, not n times;
- `prefix`: each row's own older tokens;
- `tail`: each row's newest tokens, fewer than `FOLD_TOKENS`: a view of a `FOLD_TOKENS`-long buffer
  that a new token is written into; a full tail is folded into the prefix (one copy of the prefix
  every `FOLD_TOKENS` tokens, ~3% of what attention reads meanwhile).
Nothing a state can see is ever written in place: only the layer that made a tail buffer writes into
it, and only past its own tail, which every view handed out (to HF's forward, to a copy) ends before.
A copy (`select_rows()`) gets views, and its first append copies them into a buffer of its own.
Everything else (prefix, shared part) is replaced, never modified. There is no maximum length.

Why not one preallocated buffer: the filled part of a (B, heads, capacity, D) buffer is not
contiguous across rows, and CPU batched matmuls copy such inputs first; in bf16 that made a
single-query attention ~8x slower than on contiguous keys (measured with the rollout benchmark's
shapes). `transformers.DynamicCache` instead copies the whole cache at every token.

The HF model writes through `update` (a prefill, or per-frame re-processing); rollouts append and
attend through `append` (or `reserve`, for keys written in place by the CPU layer loop) and `parts`
(`transformer/decode.py`), which never concatenate the parts.
"""

from __future__ import annotations

import torch
from torch import Tensor
from transformers.cache_utils import Cache, DynamicCache, DynamicLayer

FOLD_TOKENS = 64  # 32 spent ~1 ms of a ~26 ms bf16 token step (transformer_small, batch 16) in folds


class SplitLayer(DynamicLayer):
    """One layer's keys and values: a part shared by groups of rows, then each row's prefix and tail."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.shared: tuple[Tensor, Tensor] | None = None  # keys, values (B / share, heads, S, D)
        self.share = 1  # batch rows per row of `shared`
        self.prefix: tuple[Tensor, Tensor] | None = None  # keys, values (B, heads, P, D)
        self.tail: tuple[Tensor, Tensor] | None = None  # keys, values (B, heads, t, D), t < FOLD_TOKENS
        self.tail_buffer: tuple[Tensor, Tensor] | None = None  # (B, heads, FOLD_TOKENS, D) under `tail`, if owned

    def lazy_initialization(self, key_states: Tensor, value_states: Tensor) -> None:
        self.device, self.dtype = key_states.device, key_states.dtype
        self.is_initialized = True

    def append(self, keys: Tensor, values: Tensor) -> None:
        """Add (B, heads, q, D) keys and values after the cached ones."""
        for slot, new in zip(self.reserve(keys.shape, keys.dtype, keys.device), (keys, values)):
            slot.copy_(new)

    def reserve(self, shape: torch.Size | tuple[int, ...], dtype: torch.dtype,
                device: torch.device) -> tuple[Tensor, Tensor]:
        """Room for (B, heads, q, D) keys and values after the cached ones: views to write them into.

        The cache counts them from now on, so the caller writes both before anything reads the cache
        (the CPU layer loop of `transformer/decode.py` writes them from C++).
        """
        if not self.is_initialized:
            self.lazy_initialization(torch.empty(0, dtype=dtype, device=device), None)
        count = shape[2]
        held = 0 if self.tail is None else self.tail[0].shape[2]
        if not self._can_write_tail(shape, dtype, held):  # else in place, past every view of the buffer handed out
            if held + count >= FOLD_TOKENS:  # fold: one new prefix, ending with the room for the new tokens
                room = torch.empty(*shape, dtype=dtype, device=device)
                parts = [part for part in (self.prefix, self.tail) if part is not None]
                self.prefix = tuple(torch.cat([part[i] for part in parts] + [room], 2) for i in (0, 1))
                self.tail, self.tail_buffer = None, None
                return self.prefix[0][:, :, -count:], self.prefix[1][:, :, -count:]
            none_held = torch.empty(shape[0], shape[1], 0, shape[3], dtype=dtype, device=device)
            self.tail_buffer = tuple(padded(none_held if self.tail is None else self.tail[i], FOLD_TOKENS)
                                     for i in (0, 1))  # this layer's own, the old tail copied into it
        self._view_tail(held + count)
        return self.tail[0][:, :, held:], self.tail[1][:, :, held:]

    def _view_tail(self, length: int) -> None:
        self.tail = (self.tail_buffer[0][:, :, :length], self.tail_buffer[1][:, :, :length])

    def _can_write_tail(self, shape: torch.Size | tuple[int, ...], dtype: torch.dtype, held: int) -> bool:
        """Whether `shape`'s tokens fit in the owned tail buffer (an inference tensor only takes writes in
        inference mode)."""
        buffer = None if self.tail_buffer is None else self.tail_buffer[0]
        return (buffer is not None and held + shape[2] < FOLD_TOKENS and buffer.shape[0] == shape[0]
                and buffer.dtype == dtype and (torch.is_inference_mode_enabled() or not buffer.is_inference()))

    def parts(self) -> list[tuple[Tensor, Tensor, int]]:
        """The non-empty (keys, values, rows sharing each stored row) parts, oldest first."""
        own = [(*part, 1) for part in (self.prefix, self.tail) if part is not None]
        return ([(*self.shared, self.share)] if self.shared is not None else []) + own

    def update(self, key_states: Tensor, value_states: Tensor, *args, **kwargs) -> tuple[Tensor, Tensor]:
        """HF's interface: append, then return all cached keys and values (one tensor each, a copy if in parts)."""
        self.append(key_states, value_states)
        return self.keys, self.values

    def _whole(self, index: int) -> Tensor | None:
        """All cached keys (index 0) or values (1) as one (B, heads, L, D) tensor."""
        parts = [part[index].repeat_interleave(share, 0) if share > 1 else part[index]
                 for *part, share in self.parts()]
        if not parts:
            return None
        return parts[0] if len(parts) == 1 else torch.cat(parts, 2)

    @property
    def keys(self) -> Tensor | None:
        return self._whole(0)

    @keys.setter
    def keys(self, value: Tensor | None) -> None:  # set to None by DynamicLayer.__init__
        if value is not None:
            raise AttributeError("SplitLayer keys are written through append/update")

    @property
    def values(self) -> Tensor | None:
        return self._whole(1)

    @values.setter
    def values(self, value: Tensor | None) -> None:
        if value is not None:
            raise AttributeError("SplitLayer values are written through append/update")

    def get_seq_length(self) -> int:
        return sum(part[0].shape[2] for part in self.parts())

    def reset(self) -> None:
        self.shared = self.prefix = self.tail = self.tail_buffer = None
        self.share = 1
        self.is_initialized = False

    def crop(self, tokens_to_remove: int) -> None:
        raise NotImplementedError("SplitLayer does not crop; fork the state before a step instead")

    def select_rows(self, indices: Tensor | None = None, repeats: int = 1) -> "SplitLayer":
        """A layer holding rows `indices` (default all), each repeated `repeats` times in a row.

        Repeating all rows shares what they hold so far (no copy); selected rows get their own copies.
        """
        new = SplitLayer()
        new.is_initialized = self.is_initialized
        if not self.is_initialized:
            return new
        new.device, new.dtype = self.device, self.dtype
        if indices is None and repeats == 1:  # share every tensor; the tail buffer stays this layer's
            new.shared, new.share, new.prefix, new.tail = self.shared, self.share, self.prefix, self.tail
            return new
        if indices is None:
            own = [part for part in (self.prefix, self.tail) if part is not None]
            if self.shared is None or not own:  # everything becomes shared by the repeated rows
                whole = (self.keys, self.values) if own else self.shared
                new.shared, new.share = (whole[0].contiguous(), whole[1].contiguous()), self.share * repeats
                return new
            new.shared, new.share = self.shared, self.share * repeats
            new.prefix, new.tail = [None if part is None else (part[0].repeat_interleave(repeats, 0),
                                                               part[1].repeat_interleave(repeats, 0))
                                    for part in (self.prefix, self.tail)]
            return new
        rows = indices.to(self.device)
        rows = rows.repeat_interleave(repeats) if repeats > 1 else rows
        if self.shared is not None:
            new.shared = (self.shared[0][rows // self.share], self.shared[1][rows // self.share])
        new.prefix, new.tail = [None if part is None else (part[0][rows], part[1][rows])
                                for part in (self.prefix, self.tail)]
        return new

    def batch_repeat_interleave(self, repeats: int) -> None:
        self.__dict__.update(self.select_rows(repeats=repeats).__dict__)

    def batch_select_indices(self, indices: Tensor) -> None:
        self.__dict__.update(self.select_rows(indices).__dict__)


def padded(tokens: Tensor, capacity: int) -> Tensor:
    """(B, heads, L, D) keys or values at the start of a zeroed (B, heads, capacity, D) buffer."""
    buffer = tokens.new_zeros(*tokens.shape[:2], capacity, tokens.shape[3])
    buffer[:, :, : tokens.shape[2]] = tokens
    return buffer


class GrowingCache(DynamicCache):
    """A `DynamicCache` made of `SplitLayer`s: appends cost only the new tokens, no fixed maximum length."""

    def __init__(self, num_layers: int) -> None:
        Cache.__init__(self, layers=[SplitLayer() for _ in range(num_layers)])

    def copy(self, repeats: int = 1, indices: Tensor | None = None) -> "GrowingCache":
        """An independent cache: rows `indices` (default all), each repeated `repeats` times in a row.

        Forking all rows (`repeats` > 1) shares the cached tokens between the copies of a row.
        """
        new = GrowingCache(len(self.layers))
        new.layers = [layer.select_rows(indices, repeats) for layer in self.layers]
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
