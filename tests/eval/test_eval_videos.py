"""Test clips: first frames of each episode, actions normalised like the training data."""

from __future__ import annotations

import numpy as np
import torch

from ivideogpt.data.actions import write_metadata
from ivideogpt.data.episode import Episode
from ivideogpt.eval.videos import load_test_videos


def test_actions_are_normalised_with_the_folder_bounds(tmp_path, caplog) -> None:
    frames = np.zeros((6, 8, 8, 3), np.uint8)
    actions = np.array([[0.0, 512.0], [256.0, 128.0]] * 3, np.float32)
    Episode(frames, actions).save(tmp_path / "episode_000000.npz")
    Episode(frames[:2], actions[:2]).save(tmp_path / "episode_000001.npz")  # too short: skipped
    write_metadata(tmp_path, {"action_space": {"low": [0, 0], "high": [512, 512]}})
    videos = load_test_videos(tmp_path, clip_length=4)
    assert [v.id for v in videos] == ["episode_000000"]
    assert "shorter than 4 frames: episode_000001.npz (2)" in caplog.text  # named, with its length
    assert torch.allclose(videos[0].actions[:2], torch.tensor([[-1.0, 1.0], [0.0, -0.5]]))
    assert videos[0].frames.shape == (4, 3, 8, 8)


def test_a_glob_picks_episodes_and_clips_spread_over_each(tmp_path) -> None:
    frames = np.arange(10, dtype=np.uint8)[:, None, None, None].repeat(8, 1).repeat(8, 2).repeat(3, 3)
    actions = np.arange(10, dtype=np.float32)[:, None]
    for number in range(3):
        Episode(frames, actions).save(tmp_path / f"episode_{number:06d}.npz")
    videos = load_test_videos(tmp_path, clip_length=4, pattern="episode_00000[12].npz", clips_per_episode=3)
    assert [v.id for v in videos] == ["episode_000001", "episode_000001@3", "episode_000001@6",
                                      "episode_000002", "episode_000002@3", "episode_000002@6"]
    assert torch.equal(videos[2].actions[:, 0], torch.tensor([6.0, 7.0, 8.0, 9.0]))  # the last 4 frames
    assert len(load_test_videos(tmp_path, clip_length=4, clips_per_episode=3, max_videos=4)) == 4
