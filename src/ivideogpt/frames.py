"""The one place where pixel value ranges and layouts are converted.

Stored frames are uint8 `(..., H, W, 3)` in [0, 255]; models take float `(..., 3, H, W)` in [-1, 1].
"""

from __future__ import annotations

import numpy as np
import torch


def to_model(frames: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 `(..., H, W, 3)` -> float32 `(..., 3, H, W)` in [-1, 1]."""
    tensor = torch.as_tensor(frames)
    if tensor.dtype != torch.uint8:
        raise TypeError(f"expected uint8 frames (..., H, W, 3), got dtype {tensor.dtype}")
    if tensor.ndim < 3 or tensor.shape[-1] != 3:
        raise ValueError(f"expected frames shaped (..., H, W, 3), got {tuple(tensor.shape)}")
    return tensor.movedim(-1, -3).float().div(127.5).sub(1.0)


def to_uint8(frames: torch.Tensor) -> np.ndarray:
    """float `(..., 3, H, W)` in [-1, 1] -> uint8 `(..., H, W, 3)` numpy array (values clipped)."""
    if frames.ndim < 3 or frames.shape[-3] != 3:
        raise ValueError(f"expected frames shaped (..., 3, H, W), got {tuple(frames.shape)}")
    pixels = frames.detach().float().clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8)
    return pixels.movedim(-3, -1).cpu().numpy()
