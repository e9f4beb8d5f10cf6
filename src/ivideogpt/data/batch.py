"""The batches models and objectives consume: frames (`Batch`) or pre-encoded token ids (`TokenBatch`)."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import TypeVar

import torch

MovableT = TypeVar("MovableT", bound="_Movable")


class _Movable:
    """`to(device)` for a dataclass of tensors: every tensor field is moved, everything else kept."""

    def to(self: MovableT, device: torch.device | str) -> MovableT:
        moved = {f.name: getattr(self, f.name) for f in fields(self)}
        for name, value in moved.items():
            if isinstance(value, torch.Tensor):
                moved[name] = value.to(device, non_blocking=True)
        return replace(self, **moved)


@dataclass
class Batch(_Movable):
    """A batch of video segments, context frames first.

    frames:  (B, T, 3, H, W) float in [-1, 1].
    actions: (B, T, A) float or None; `actions[:, t]` leads from frame t to frame t + 1.
    rewards: (B, T) float or None; `rewards[:, t]` is received on arriving at frame t.
    num_context: how many leading frames are context (given, never predicted).
    """

    frames: torch.Tensor
    actions: torch.Tensor | None = None
    rewards: torch.Tensor | None = None
    num_context: int = 1

    @property
    def context_frames(self) -> torch.Tensor:
        """(B, num_context, 3, H, W)."""
        return self.frames[:, : self.num_context]

    @property
    def future_frames(self) -> torch.Tensor:
        """(B, T - num_context, 3, H, W)."""
        return self.frames[:, self.num_context :]


@dataclass
class TokenBatch(_Movable):
    """A batch of segments already turned into codebook ids by a frozen tokenizer (see `train/token_cache.py`).

    context_ids: (B, Tc, g, g) long; future_ids: (B, Tf, f, f) long.
    actions, rewards: as in `Batch`, over all Tc + Tf frames.
    """

    context_ids: torch.Tensor
    future_ids: torch.Tensor
    actions: torch.Tensor | None = None
    rewards: torch.Tensor | None = None

    @property
    def num_context(self) -> int:
        return self.context_ids.shape[1]
