"""Input validation for the tokenizers: clear ValueErrors naming the expected shape."""

from __future__ import annotations

import torch

_RANGE_SLACK = 1e-3  # tolerate rounding just outside [-1, 1]


def is_integer(tensor: torch.Tensor) -> bool:
    """Whether `tensor` holds integers: not float, complex or bool (which indexing would cast silently)."""
    return not (tensor.is_floating_point() or tensor.is_complex() or tensor.dtype == torch.bool)


def value_range(tensor: torch.Tensor) -> tuple[int, int]:
    """(min, max) of a non-empty integer tensor, read with one device sync."""
    low, high = torch.stack([tensor.min(), tensor.max()]).tolist()
    return low, high


def check_frames(name: str, frames: torch.Tensor, resolution: int, batch: int | None = None,
                 count: int | None = None) -> None:
    """Frames must be float (B, T, 3, R, R), finite, in [-1, 1] (and have batch `batch`, T = `count` when given)."""
    expected = f"{name} must be (B, T, 3, {resolution}, {resolution}) float in [-1, 1]"
    if not isinstance(frames, torch.Tensor):
        raise ValueError(f"{expected}; got {type(frames).__name__}")
    shape = tuple(frames.shape)
    if frames.ndim != 5 or shape[2] != 3 or shape[3:] != (resolution, resolution) or 0 in shape[:2]:
        raise ValueError(f"{expected}; got {shape}")
    if not frames.is_floating_point():
        raise ValueError(f"{expected}; got dtype {frames.dtype} (convert uint8 with ivideogpt.frames.to_model)")
    if batch is not None and shape[0] != batch:
        raise ValueError(f"{expected} with B = {batch} (the context batch); got {shape}")
    if count is not None and shape[1] != count:
        raise ValueError(f"{expected} with T = {count} (one frame per context id grid); got {shape}")
    if frames.device.type == "meta":
        return
    finite, low, high = torch.stack([frames.isfinite().all().float(), frames.min().float(),
                                     frames.max().float()]).tolist()  # one device sync
    if not finite:
        raise ValueError(f"{name} holds NaN or infinite pixels")
    if low < -1 - _RANGE_SLACK or high > 1 + _RANGE_SLACK:
        raise ValueError(f"{expected}; got values in [{low:.3g}, {high:.3g}] "
                         "(convert uint8 with ivideogpt.frames.to_model)")


def check_ids(name: str, ids: torch.Tensor, grid: int, codebook_size: int, batch: int | None = None) -> None:
    """Ids must be integer (B, T, grid, grid) in [0, codebook_size) (and have batch `batch` when given)."""
    expected = f"{name} must be (B, T, {grid}, {grid}) integer ids in [0, {codebook_size})"
    if not isinstance(ids, torch.Tensor):
        raise ValueError(f"{expected}; got {type(ids).__name__}")
    shape = tuple(ids.shape)
    if ids.ndim != 4 or shape[2:] != (grid, grid) or 0 in shape[:2]:
        raise ValueError(f"{expected}; got {shape}")
    if not is_integer(ids):
        raise ValueError(f"{expected}; got dtype {ids.dtype}")
    if batch is not None and shape[0] != batch:
        raise ValueError(f"{expected} with B = {batch} (the context batch); got {shape}")
    if ids.device.type == "meta":
        return
    low, high = value_range(ids)
    if low < 0 or high >= codebook_size:
        raise ValueError(f"{expected}; got ids in [{low}, {high}]")
