"""Test clips: first frames of each episode, actions normalised like the training data."""

from __future__ import annotations

import numpy as np
import torch

from ivideogpt.data.actions import write_metadata
from ivideogpt.data.episode import Episode
from ivideogpt.eval.videos import load_test_videos


def test_actions_are_normalised_with_the_folder_bounds(tmp_path) -> None:
    frames = np.zeros((6, 8, 8, 3), np.uint8)
    actions = np.array([[0.0, 512.0], [256.0, 128.0]] * 3, np.float32)
    Episode(frames, actions).save(tmp_path / "episode_000000.npz")
    Episode(frames[:2], actions[:2]).save(tmp_path / "episode_000001.npz")  # too short: skipped
    write_metadata(tmp_path, {"action_space": {"low": [0, 0], "high": [512, 512]}})
    videos = load_test_videos(tmp_path, clip_length=4)
    assert [v.id for v in videos] == ["episode_000000"]
    assert torch.allclose(videos[0].actions[:2], torch.tensor([[-1.0, 1.0], [0.0, -0.5]]))
    assert videos[0].frames.shape == (4, 3, 8, 8)
