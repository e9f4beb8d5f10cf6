from typing import Any

import gymnasium as gym
import numpy as np
import pytest

from ivideogpt.envs.rl_wrappers import EnvConfig, make_rl_env
from ivideogpt.envs.wrappers import ActionRepeat, FrameStack, SuccessBonus


class CountingEnv(gym.Env):
    """Frames show the step count; reward 1 per step; success from step 3 on."""

    observation_space = gym.spaces.Box(0, 255, (4, 4, 3), np.uint8)
    action_space = gym.spaces.Box(-1, 1, (2,), np.float32)

    def reset(self, *, seed: int | None = None, options: Any = None):
        self.t = 0
        return np.zeros((4, 4, 3), np.uint8), {"success": False}

    def step(self, action):
        self.t += 1
        return np.full((4, 4, 3), self.t, np.uint8), 1.0, False, False, {"success": self.t == 3}


def test_repeat_bonus_stack():
    env = FrameStack(SuccessBonus(ActionRepeat(CountingEnv(), 2), bonus=10.0), k=3)
    obs, info = env.reset()
    assert obs.shape == (9, 4, 4) and (obs == 0).all() and info["frame"].shape == (4, 4, 3)
    obs, reward, *_, info = env.step(np.zeros(2))
    assert reward == 2.0 and not info["success"] and obs[::3, 0, 0].tolist() == [0, 0, 2]
    obs, reward, *_, info = env.step(np.zeros(2))  # steps 3, 4: success seen inside the repeat
    assert info["success"] and reward == 2.0 + 10.0 and obs[::3, 0, 0].tolist() == [0, 2, 4]


def test_env_config():
    mw = EnvConfig.for_env("metaworld/hammer")
    assert (mw.action_repeat, mw.frame_stack, mw.episode_length, mw.num_demos, mw.max_agent_steps) == (2, 3, 200, 5, 100)
    assert mw.success_bonus == 10.0
    assert EnvConfig.for_env("metaworld/door-lock").num_demos == 0
    with pytest.raises(ValueError, match="multiple"):
        EnvConfig(episode_length=201)
    with pytest.raises(ValueError, match="name"):
        EnvConfig(name="atari")


def test_pusht_env():
    pytest.importorskip("gym_pusht")
    env = make_rl_env(EnvConfig.for_env("pusht", episode_length=8), seed=0)
    obs, info = env.reset(seed=0)
    assert obs.shape == (9, 64, 64) and obs.dtype == np.uint8 and env.action_space.shape == (2,)
    steps, done = 0, False
    while not done:
        obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
        steps, done = steps + 1, terminated or truncated
    assert steps == 4 and truncated and "success" in info


@pytest.mark.slow
def test_metaworld_env_and_demonstrations():
    pytest.importorskip("metaworld")
    from ivideogpt.envs.rl_metaworld import collect_demonstrations, scripted_policy

    assert type(scripted_policy("handle-pull-side")).__name__ == "SawyerHandlePullSideV3Policy"
    cfg = EnvConfig.for_env("metaworld/button-press-topdown-wall")
    env = make_rl_env(cfg, seed=0)
    demos = collect_demonstrations(env, cfg.task, 1)
    assert len(demos) == 1
    demo = demos[0]
    assert demo["frames"].shape == (101, 64, 64, 3) and demo["actions"].shape == (100, 4)
    assert demo["rewards"].max() >= 10.0  # success bonus
