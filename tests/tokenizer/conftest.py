"""Fixtures for tokenizer tests: tiny configs and synthetic clips (a moving square on a gradient)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import pytest
import torch

from ivideogpt.tokenizer import TokenizerConfig, tokenizer_tiny


def moving_square_clip(batch: int = 2, frames: int = 3, resolution: int = 64) -> torch.Tensor:
    """(B, T, 3, R, R) in [-1, 1]: a red square sliding diagonally over a fixed colour gradient."""
    ramp = torch.linspace(-1, 1, resolution)
    background = torch.stack([ramp[None, :].expand(resolution, -1), ramp[:, None].expand(-1, resolution),
                              -ramp[None, :] * ramp[:, None]])  # (3, R, R)
    clip = background.expand(batch, frames, 3, resolution, resolution).clone()
    side = resolution // 5
    for b in range(batch):
        for t in range(frames):
            start = (resolution // 8 + (resolution // 16) * t + (resolution // 10) * b) % (resolution - side)
            clip[b, t, :, start:start + side, start:start + side] = torch.tensor([1.0, -1.0, -1.0])[:, None, None]
    return clip


@pytest.fixture
def tiny_config() -> TokenizerConfig:
    return tokenizer_tiny()


@pytest.fixture
def small_config() -> TokenizerConfig:
    """32x32 frames, two blocks: 16x16 context / 4x4 future tokens at a fraction of tiny's cost."""
    return replace(tokenizer_tiny(), resolution=32, down_channels=(16, 32))


@pytest.fixture
def clip() -> torch.Tensor:
    return moving_square_clip()


@pytest.fixture
def make_clip() -> Callable[..., torch.Tensor]:
    return moving_square_clip
