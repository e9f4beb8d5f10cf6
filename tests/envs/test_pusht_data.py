"""Push-T data generation: the scripted policy pushes the block; files, metadata, determinism."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("gym_pusht")

from ivideogpt.cli import main  # noqa: E402
from ivideogpt.data import load_episode  # noqa: E402
from ivideogpt.data.actions import new_dataset_folder  # noqa: E402
from ivideogpt.envs.pusht_data import PUSHT_ID, PushTScriptedPolicy, make_pusht_env, rollout_pusht  # noqa: E402


def test_generate_command_writes_episodes_and_metadata(tmp_path):
    out = tmp_path / "pusht"
    assert main(["data", "generate", "pusht", "--episodes", "2", "--steps", "10", "--out", str(out), "--quiet"]) == 0
    metadata = json.loads((out / "metadata.json").read_text())
    assert metadata["action_repeat"] == 1 and metadata["fps"] == 10
    assert metadata["episodes"] == 2 and metadata["action_space"] == {"low": [0.0, 0.0], "high": [512.0, 512.0]}
    episodes = [load_episode(out / f"episode_{n:06d}.npz") for n in range(2)]
    for episode in episodes:
        assert episode.frames.shape == (11, 64, 64, 3) and episode.actions.shape == (11, 2)
        assert episode.rewards.shape == (11,) and episode.rewards[0] == 0 and episode.success.shape == (11,)
        assert np.all((episode.actions >= 0) & (episode.actions <= 512))
        assert np.abs(np.diff(episode.actions, axis=0)).max() < 60  # smooth targets
    moved = [np.abs(e.states[-1, 2:] - e.states[0, 2:]).max() for e in episodes]
    assert max(moved) > 1.0, f"the block never moved: {moved}"
    again = tmp_path / "again"
    main(["data", "generate", "pusht", "--episodes", "1", "--steps", "10", "--out", str(again), "--quiet"])
    np.testing.assert_array_equal(load_episode(again / "episode_000000.npz").frames, episodes[0].frames)
    parallel = tmp_path / "parallel"  # two worker processes write the same episodes
    main(["data", "generate", "pusht", "--episodes", "2", "--steps", "10", "--out", str(parallel), "--quiet",
          "--workers", "2"])
    for number, episode in enumerate(episodes):
        written = load_episode(parallel / f"episode_{number:06d}.npz")
        np.testing.assert_array_equal(written.frames, episode.frames)
        np.testing.assert_array_equal(written.actions, episode.actions)
    assert json.loads((parallel / "metadata.json").read_text())["stats"]["episodes"] == 2
    # generating again replaces generated data whole (no stale episode is left), and refuses other data
    assert main(["data", "generate", "pusht", "--episodes", "1", "--steps", "10", "--out", str(parallel),
                 "--quiet"]) == 0
    assert sorted(p.name for p in parallel.iterdir()) == ["episode_000000.npz", "metadata.json"]
    interrupted = tmp_path / "interrupted"  # a generation stopped halfway leaves its marker, not final metadata
    new_dataset_folder(interrupted, generated_for=PUSHT_ID)
    episodes[1].save(interrupted / "episode_000005.npz")
    assert "incomplete" in json.loads((interrupted / "metadata.json").read_text())
    assert main(["data", "generate", "pusht", "--episodes", "1", "--steps", "10", "--out", str(interrupted),
                 "--quiet"]) == 0
    assert sorted(p.name for p in interrupted.iterdir()) == ["episode_000000.npz", "metadata.json"]
    converted = tmp_path / "converted"
    assert main(["data", "convert", "npz", str(parallel), "--out", str(converted), "--quiet"]) == 0
    assert main(["data", "generate", "pusht", "--episodes", "1", "--steps", "10", "--out", str(converted),
                 "--quiet"]) == 2
    assert json.loads((converted / "metadata.json").read_text())["converted_from"] == "npz"


def test_scripted_policy_pushes_the_block_in_every_episode():
    env = make_pusht_env(64)
    for number in range(2):
        rng = np.random.default_rng([0, number])
        episode = rollout_pusht(env, PushTScriptedPolicy(rng), steps=40, seed=int(rng.integers(2**31 - 1)))
        path = np.linalg.norm(np.diff(episode.states[:, 2:4], axis=0), axis=1).sum()
        turned = np.abs(np.diff(episode.states[:, 4])).sum()
        assert path > 10.0 or turned > 0.2, f"episode {number}: block path {path:.1f} px, turn {turned:.2f} rad"
        pixels_changed = (episode.frames[1:] != episode.frames[:-1]).any(-1).mean()
        assert pixels_changed > 0.001
    env.close()


def test_action_repeat_holds_each_action_for_k_env_steps():
    env = make_pusht_env(64)
    rng = np.random.default_rng([0, 0])
    seed = int(rng.integers(2**31 - 1))
    repeated = rollout_pusht(env, PushTScriptedPolicy(np.random.default_rng(1)), steps=6, seed=seed, action_repeat=3)
    assert env.unwrapped.obs_type == "pixels_agent_pos"  # the undrawn in-between steps leave it as it was
    env.reset(seed=seed)  # by hand: the same actions, each stepped 3 times and drawn, every third frame kept
    bare = env.unwrapped
    for t, action in enumerate(repeated.actions[:-1]):
        for _ in range(3):
            observation, *_ = bare.step(action)
        np.testing.assert_array_equal(observation["pixels"], repeated.frames[t + 1])
    np.testing.assert_allclose(repeated.states[-1], np.asarray([*bare.agent.position, *bare.block.position,
                                                                bare.block.angle], np.float32), rtol=1e-6)
    # Held for 3 env steps, the agent ends nearer each target: the action fixes more of where it is.
    single = rollout_pusht(env, PushTScriptedPolicy(np.random.default_rng(1)), steps=6, seed=seed)

    def lag(episode):
        return np.median(np.linalg.norm(episode.states[1:, :2] - episode.actions[:-1], axis=1))

    assert lag(repeated) < 0.6 * lag(single), (lag(repeated), lag(single))
    with pytest.raises(ValueError, match="action_repeat"):
        rollout_pusht(env, PushTScriptedPolicy(rng), steps=2, seed=0, action_repeat=0)
    env.close()
