"""Tiny synthetic episodes for the data tests: frame t is filled with value 10 * t (mod 250)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ivideogpt.data.episode import Episode


def make_episode(length: int = 12, size: int = 8, action_dim: int | None = 2, rewards: bool = True,
                 offset: int = 0) -> Episode:
    """Frames whose value encodes the frame index; actions[t] = (t, -t, ...); rewards[t] = t."""
    values = (10 * (np.arange(length) + offset)) % 250
    frames = np.broadcast_to(values[:, None, None, None], (length, size, size, 3)).astype(np.uint8).copy()
    actions = None
    if action_dim is not None:
        actions = np.stack([np.arange(length) * (1 if d % 2 == 0 else -1) for d in range(action_dim)], 1)
    return Episode(frames=frames, actions=actions, rewards=np.arange(length, dtype=np.float32) if rewards else None,
                   success=np.arange(length) >= length - 2)


def write_episodes(folder: Path, count: int, length: int = 12, **kwargs) -> list[Path]:
    """`count` episodes `episode_000.npz`... under `folder`."""
    paths = []
    for number in range(count):
        path = folder / f"episode_{number:03d}.npz"
        make_episode(length, offset=number, **kwargs).save(path)
        paths.append(path)
    return paths


def frame_index(frames) -> np.ndarray:
    """Recover the encoded frame values from model frames (T, 3, H, W) in [-1, 1]."""
    pixels = ((frames[:, 0, 0, 0].numpy() + 1.0) * 127.5).round().astype(int)
    return pixels // 10


@pytest.fixture
def npz_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "episodes"
    write_episodes(folder, 6)
    return folder


@pytest.fixture(name="make_episode")
def _make_episode_fixture():
    return make_episode


@pytest.fixture(name="write_episodes")
def _write_episodes_fixture():
    return write_episodes


@pytest.fixture(name="frame_index")
def _frame_index_fixture():
    return frame_index
