"""The batch every model and objective consumes."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import torch


@dataclass
class Batch:
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

    def to(self, device: torch.device | str) -> "Batch":
        moved = {f.name: getattr(self, f.name) for f in fields(self)}
        for name, value in moved.items():
            if isinstance(value, torch.Tensor):
                moved[name] = value.to(device, non_blocking=True)
        return replace(self, **moved)

    @property
    def context_frames(self) -> torch.Tensor:
        """(B, num_context, 3, H, W)."""
        return self.frames[:, : self.num_context]

    @property
    def future_frames(self) -> torch.Tensor:
        """(B, T - num_context, 3, H, W)."""
        return self.frames[:, self.num_context :]
