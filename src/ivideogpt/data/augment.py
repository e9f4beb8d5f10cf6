"""Segment-consistent image transforms: one crop and one colour jitter drawn per segment.

All frames of a segment get the same random resized crop (area relative to the largest
centred square, as in the paper's code) and the same brightness/contrast/saturation/hue
factors applied in one random order, so motion between frames is never an augmentation
artefact. Without augmentation frames are centre-cropped to a square and resized.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class AugmentParams:
    """One draw: crop box (top, left, height, width), jitter factors and their order."""

    crop: tuple[int, int, int, int]
    brightness: float
    contrast: float
    saturation: float
    hue: float
    order: tuple[int, ...]


def center_square(height: int, width: int) -> tuple[int, int, int, int]:
    """The largest centred square crop box."""
    side = min(height, width)
    return (height - side) // 2, (width - side) // 2, side, side


def random_crop_box(height: int, width: int, scale: tuple[float, float], ratio: tuple[float, float],
                    rng: np.random.Generator) -> tuple[int, int, int, int]:
    """A random box with area scale * min(H, W)^2 and aspect ratio (log-uniform); centre square if none fits."""
    area = min(height, width) ** 2
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(*log_ratio))
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            return int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1)), h, w
    return center_square(height, width)


def sample_params(height: int, width: int, rng: np.random.Generator, scale: tuple[float, float],
                  ratio: tuple[float, float], brightness: tuple[float, float], contrast: tuple[float, float],
                  saturation: tuple[float, float], hue: tuple[float, float]) -> AugmentParams:
    """Draw the crop and jitter of one segment from `rng`."""
    crop = random_crop_box(height, width, scale, ratio, rng)
    return AugmentParams(crop=crop, brightness=float(rng.uniform(*brightness)), contrast=float(rng.uniform(*contrast)),
                         saturation=float(rng.uniform(*saturation)), hue=float(rng.uniform(*hue)),
                         order=tuple(int(i) for i in rng.permutation(4)))


def crop_resize(frames: torch.Tensor, box: tuple[int, int, int, int], size: int) -> torch.Tensor:
    """uint8 (T, H, W, 3) -> float (T, 3, size, size) in [0, 1]: crop `box`, resize (bilinear, antialiased)."""
    top, left, height, width = box
    x = frames[:, top:top + height, left:left + width].permute(0, 3, 1, 2).float().div(255.0)  # (T, 3, h, w)
    if (height, width) != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return x.clamp(0.0, 1.0)


def _gray(x: torch.Tensor) -> torch.Tensor:
    """(T, 3, H, W) -> (T, 1, H, W) luma."""
    return (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3])


def _shift_hue(x: torch.Tensor, shift: float) -> torch.Tensor:
    """Rotate hue by `shift` (fraction of a turn) through HSV; (T, 3, H, W) in [0, 1]."""
    r, g, b = x.unbind(1)
    maxc, _ = x.max(1)
    minc, _ = x.min(1)
    delta = maxc - minc
    safe = torch.where(delta > 0, delta, torch.ones_like(delta))
    h = torch.where(maxc == r, ((g - b) / safe) % 6, torch.where(maxc == g, (b - r) / safe + 2, (r - g) / safe + 4))
    h = torch.where(delta > 0, h / 6.0, torch.zeros_like(h))
    s = torch.where(maxc > 0, delta / torch.where(maxc > 0, maxc, torch.ones_like(maxc)), torch.zeros_like(maxc))
    h = (h + shift) % 1.0
    i = torch.floor(h * 6.0)
    f = h * 6.0 - i
    p, q, t = maxc * (1 - s), maxc * (1 - s * f), maxc * (1 - s * (1 - f))
    i = i.long() % 6
    v = maxc
    channels = [torch.stack(c, 0) for c in ((v, t, p, p, q, v), (t, v, v, q, p, p), (p, p, t, v, v, q))]
    out = [torch.gather(c, 0, i[None]).squeeze(0) for c in channels]
    return torch.stack(out, 1)


def color_jitter(x: torch.Tensor, params: AugmentParams) -> torch.Tensor:
    """Apply the jitter of `params` to float (T, 3, H, W) in [0, 1]; contrast uses the segment's mean luma."""
    for op in params.order:
        if op == 0 and params.brightness != 1.0:
            x = (x * params.brightness).clamp(0, 1)
        elif op == 1 and params.contrast != 1.0:
            mean = _gray(x).mean()
            x = (params.contrast * x + (1 - params.contrast) * mean).clamp(0, 1)
        elif op == 2 and params.saturation != 1.0:
            x = (params.saturation * x + (1 - params.saturation) * _gray(x)).clamp(0, 1)
        elif op == 3 and params.hue != 0.0:
            x = _shift_hue(x, params.hue).clamp(0, 1)
    return x


def to_uint8_frames(x: torch.Tensor) -> torch.Tensor:
    """float (T, 3, H, W) in [0, 1] -> uint8 (T, H, W, 3), the layout `frames.to_model` takes."""
    return x.mul(255.0).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()
