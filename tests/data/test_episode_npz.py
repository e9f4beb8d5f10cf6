"""load_episode: the project layout and the npz layouts other code writes."""

from __future__ import annotations

import numpy as np
import pytest

from ivideogpt.data.config import SourceConfig
from ivideogpt.data import Episode, EpisodeError, load_episode
from ivideogpt.data.report import DataReport
from ivideogpt.data.sources.npz import NpzReader


def test_round_trip_keeps_every_array(tmp_path, make_episode):
    episode = make_episode(7)
    episode.states = np.ones((7, 3), np.float32)
    episode.save(tmp_path / "a.npz")
    loaded = load_episode(tmp_path / "a.npz")
    for name in ("frames", "actions", "rewards", "success", "states"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(episode, name))


def test_paper_bair_layout_with_camera_choice(tmp_path):
    main = np.zeros((30, 64, 64, 3), np.uint8)
    aux = np.full((30, 64, 64, 3), 7, np.uint8)
    np.savez_compressed(tmp_path / "traj.npz", image=main, action=np.ones((30, 4)), aux1_image=aux)
    assert load_episode(tmp_path / "traj.npz").frames.max() == 0
    episode = load_episode(tmp_path / "traj.npz", image_key="aux1_image")
    assert episode.frames.max() == 7 and episode.actions.shape == (30, 4)


def test_transition_actions_are_padded_and_camera_only_files_are_action_free(tmp_path):
    steps = np.arange(1.0, 5.0)[:, None] * np.ones((1, 5))  # 4 transitions, rows 1..4: none of them 0
    np.savez_compressed(tmp_path / "robonet.npz", image=np.zeros((5, 8, 8, 3), np.uint8), action=steps)
    episode = load_episode(tmp_path / "robonet.npz")
    assert episode.actions.shape == (5, 5) and np.all(episode.actions[:4] == steps)
    assert np.all(episode.actions[-1] == 4)  # the unused last row repeats a real one: no 0 enters the bounds
    np.savez_compressed(tmp_path / "oxe.npz", rgb_static=np.zeros((5, 8, 8, 3), np.uint8))
    assert load_episode(tmp_path / "oxe.npz").actions is None


def test_replay_buffer_layout_is_shifted_and_unstacked(tmp_path):
    length = 6
    observation = np.zeros((length, 9, 8, 8), np.uint8)
    observation[:, 6:] = np.arange(length)[:, None, None, None]  # newest frame of the stack
    action = np.arange(length, dtype=np.float32)[:, None].repeat(4, 1)  # row t led to frame t
    np.savez_compressed(tmp_path / "demo.npz", observation=observation, action=action,
                        reward=np.arange(length, dtype=np.float32)[:, None], discount=np.ones((length, 1)))
    episode = load_episode(tmp_path / "demo.npz")
    assert episode.frames.shape == (length, 8, 8, 3)
    np.testing.assert_array_equal(episode.frames[:, 0, 0, 0], np.arange(length))
    np.testing.assert_array_equal(episode.actions[:-1, 0], np.arange(1, length))  # actions[t] leads to t + 1
    np.testing.assert_array_equal(episode.rewards, np.arange(length))


@pytest.mark.parametrize("frames", [
    np.zeros((4, 3, 8, 8), np.uint8),  # channel-first
    np.zeros((4, 8, 8), np.uint8),  # grayscale
    np.full((4, 8, 8, 3), 0.5, np.float32),  # floats in [0, 1]
    np.full((4, 8, 8, 3), 200, np.int64),  # integers in range
    np.zeros((4, 8, 8, 4), np.uint8),  # RGBA
])
def test_frame_layouts_are_coerced(tmp_path, frames):
    np.savez_compressed(tmp_path / "x.npz", obs=frames)
    episode = load_episode(tmp_path / "x.npz")
    assert episode.frames.shape == (4, 8, 8, 3) and episode.frames.dtype == np.uint8


@pytest.mark.parametrize("channel_first", [True, False])
def test_four_channels_are_rgba_with_an_opaque_alpha_else_a_grayscale_stack(tmp_path, channel_first):
    gray = (np.arange(7, dtype=np.uint8) * 10)[:, None, None] * np.ones((1, 8, 8), np.uint8)  # frame t: 10 t
    stack = np.stack([gray[t : t + 4] for t in range(4)])  # (T=4, 4, 8, 8): DQN's last 4 frames, newest last
    rgba = np.concatenate([np.full((4, 3, 8, 8), 7, np.uint8), np.full((4, 1, 8, 8), 255, np.uint8)], 1)
    for name, frames in (("stack", stack), ("rgba", rgba)):
        np.savez(tmp_path / f"{name}.npz", observation=frames if channel_first else np.moveaxis(frames, 1, -1))
    np.testing.assert_array_equal(load_episode(tmp_path / "stack.npz").frames[:, 0, 0], [[30] * 3, [40] * 3,
                                                                                          [50] * 3, [60] * 3])
    assert np.all(load_episode(tmp_path / "rgba.npz").frames == 7)


@pytest.mark.parametrize("arrays, message", [
    ({"frames": np.full((4, 8, 8, 3), 2.0, np.float32)}, "float frames"),
    ({"frames": np.full((4, 8, 8, 3), 300, np.int32)}, "integer frames"),
    ({"frames": np.zeros((4, 8, 8, 3), np.uint8), "actions": np.zeros((2, 2))}, "rows"),
    ({"frames": np.zeros((4, 8, 8, 3), np.uint8), "actions": np.full((4, 2), np.nan)}, "NaN"),
    ({"frames": np.zeros((4, 8, 8, 5), np.uint8)}, "colour channels"),
    ({"video": np.zeros((4, 8, 8, 3), np.uint8)}, "no frame array"),
])
def test_bad_arrays_raise_episode_error(tmp_path, arrays, message):
    np.savez_compressed(tmp_path / "bad.npz", **arrays)
    with pytest.raises(EpisodeError, match=message):
        load_episode(tmp_path / "bad.npz")


def test_scan_reads_headers_and_reports_bad_files(tmp_path, make_episode):
    make_episode(6).save(tmp_path / "good.npz")
    (tmp_path / "empty.npz").write_bytes(b"")
    (tmp_path / "junk.npz").write_bytes(b"not a zip at all")
    good = (tmp_path / "good.npz").read_bytes()
    (tmp_path / "truncated.npz").write_bytes(good[: len(good) // 2])
    np.savez_compressed(tmp_path / "mismatch.npz", frames=np.zeros((5, 8, 8, 3), np.uint8), rewards=np.zeros(3))
    np.savez_compressed(tmp_path / "text.npz", frames=np.array(["a", "b"]))
    report = DataReport()
    infos = NpzReader(tmp_path).scan(report)
    assert [i.episode_id for i in infos] == ["good"]
    assert infos[0].length == 6 and infos[0].action_dim == 2 and infos[0].has_rewards
    assert report.found == 6 and len(report.skipped) == 5
    assert {w.split("/")[-1] for w, _, _ in report.skipped} == {"empty.npz", "junk.npz", "truncated.npz",
                                                                "mismatch.npz", "text.npz"}
    assert "mismatch.npz" in report.summary()


def test_episode_validates_states(tmp_path):
    with pytest.raises(EpisodeError, match="states"):
        Episode(frames=np.zeros((3, 4, 4, 3), np.uint8), states=np.zeros((2, 1)))


def test_reward_alignment_option(tmp_path):
    """`rewards[t]` of the action at frame t (after_action) arrive with frame t + 1; T - 1 rows mean the same."""
    frames = np.zeros((5, 8, 8, 3), np.uint8)
    np.savez(tmp_path / "a.npz", frames=frames, rewards=np.arange(1, 6.0), success=[0, 0, 0, 1, 1])
    np.savez(tmp_path / "b.npz", frames=frames, rewards=np.arange(1, 5.0))
    assert load_episode(tmp_path / "a.npz").rewards.tolist() == [1, 2, 3, 4, 5]  # default: on arrival
    shifted = load_episode(tmp_path / "a.npz", alignment="after_action")
    assert shifted.rewards.tolist() == [0, 1, 2, 3, 4] and shifted.success.tolist() == [0, 0, 0, 0, 1]
    for alignment in ("on_arrival", "after_action"):
        assert load_episode(tmp_path / "b.npz", alignment=alignment).rewards.tolist() == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="alignment must be one of"):
        load_episode(tmp_path / "a.npz", alignment="before")
    with pytest.raises(ValueError, match="option alignment must be one of"):
        NpzReader(tmp_path, {"alignment": "shifted"})
    for source in ({"name": "a", "path": ".", "options": {"alignment": "shifted"}},
                   {"name": "b", "path": ".", "format": "rlds", "options": {"alignment": "on_arrival"}}):
        with pytest.raises(ValueError, match=f"source {source['name']}: options.alignment"):
            SourceConfig(**source)
    np.savez(tmp_path / "c.npz", frames=frames, rewards=np.arange(3.0))
    with pytest.raises(EpisodeError, match="rewards: 3 entries for 5 frames"):
        load_episode(tmp_path / "c.npz", alignment="after_action")


def test_a_video_given_as_an_episode_is_named_as_such(tmp_path):
    from ivideogpt.media import write_video

    video = write_video(tmp_path / "clip.mp4", np.zeros((3, 16, 16, 3), np.uint8))
    with pytest.raises(EpisodeError, match=r"not an \.npz archive \(videos become episodes with `ivideogpt data "
                                           r"convert video"):
        load_episode(video)
    with pytest.raises(EpisodeError, match="cannot read npz: FileNotFoundError"):
        load_episode(tmp_path / "missing.npz")
