"""Push-T (gym-pusht) as a pixel RL environment: actions in [-1, 1] scaled to target positions in Box(0, 512)."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from ivideogpt.envs.wrappers import ActionRepeat


class PushTPixels(gym.Wrapper):
    """Keeps only the rendered `pixels` of gym-pusht's observation dict; state goes to `info["state"]`."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.observation_space = env.observation_space["pixels"]

    def reset(self, **kwargs: Any) -> tuple[np.ndarray, dict]:
        obs, info = self.env.reset(**kwargs)
        return obs["pixels"], dict(info, state=obs["agent_pos"])

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        return obs["pixels"], float(reward), terminated, truncated, dict(info, state=obs["agent_pos"])


def make_pusht_pixels(image_size: int, action_repeat: int) -> gym.Env:
    """gym-pusht with pixels, [-1, 1] actions and action repeat; terminates on success (a true terminal)."""
    import gym_pusht  # noqa: F401  (registers the environment)

    env = gym.make("gym_pusht/PushT-v0", obs_type="pixels_agent_pos", render_mode="rgb_array",
                   observation_width=image_size, observation_height=image_size, disable_env_checker=True)
    env = gym.wrappers.RescaleAction(env, min_action=-1.0, max_action=1.0)
    env = ActionRepeat(env, action_repeat, success_key="is_success")
    return PushTPixels(env)
