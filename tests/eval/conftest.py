"""Fixtures for evaluation tests: a stand-in I3D detector file, tiny test videos."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Callable

import pytest
import torch
from torch import nn

from ivideogpt.eval import metrics
from ivideogpt.eval.videos import TestVideo
from ivideogpt.transformer.cpu_kernels import cpu_extension


class StandInI3D(nn.Module):
    """Tiny detector with the i3d_torchscript.pt calling convention: (B, 3, T, H, W) in [-1, 1] -> (B, 8)."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(12, 8)

    def forward(self, x: torch.Tensor, rescale: bool = False, resize: bool = False,
                return_features: bool = False) -> torch.Tensor:
        assert x.dim() == 5 and x.size(1) == 3, "expected (B, 3, T, H, W)"
        assert return_features and resize and not rescale
        assert bool(x.min() >= -1.0) and bool(x.max() <= 1.0)
        pooled = x.mean(dim=(3, 4))[:, :, :4].flatten(1)  # (B, 3 * 4)
        return torch.tanh(self.proj(pooled))


@pytest.fixture()
def i3d_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A scripted stand-in detector saved as $IVIDEOGPT_WEIGHTS_DIR/i3d_torchscript.pt."""
    weights = tmp_path / "weights"
    weights.mkdir()
    path = weights / metrics.I3D_FILENAME
    with warnings.catch_warnings():  # TorchScript is deprecated; the real detector ships in it
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.script(StandInI3D()).save(str(path))
    monkeypatch.setenv("IVIDEOGPT_WEIGHTS_DIR", str(weights))
    return path


@pytest.fixture()
def no_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No VGG16 or I3D file anywhere the loaders look."""
    cpu_extension()  # built or loaded from the real ~/.cache first: under the moved HOME it would be rebuilt
    monkeypatch.setenv("IVIDEOGPT_WEIGHTS_DIR", str(tmp_path / "no-weights"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))


def _make_videos(count: int = 3, frames: int = 6, size: int = 16, action_dim: int = 2) -> list[TestVideo]:
    """Smoothly drifting random clips with actions."""
    videos = []
    for i in range(count):
        start = torch.rand(1, 3, size, size) * 2 - 1
        drift = torch.linspace(0, 0.5, frames).view(frames, 1, 1, 1)
        clip = (start + drift * torch.randn(1, 3, size, size)).clamp(-1, 1)
        videos.append(TestVideo(f"video-{i}", clip, torch.randn(frames, action_dim)))
    return videos


@pytest.fixture()
def make_videos() -> Callable[..., list[TestVideo]]:
    """`make_videos(count=3, frames=6, size=16, action_dim=2)` -> tiny test clips with actions."""
    return _make_videos
