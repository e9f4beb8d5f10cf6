"""Meta-World (v3 tasks) as a pixel RL environment, and scripted-policy demonstrations.

Frames are rendered once per agent step (after the action repeat), with shadows and
multisampling off (~6x faster at 64x64), and flipped upright (MuJoCo renders them upside down).
Episodes end only by the time limit: Meta-World has no terminal states.
"""

from __future__ import annotations

import os
from typing import Any

import gymnasium as gym
import numpy as np

from ivideogpt.envs.wrappers import ActionRepeat


class MetaWorldPixels(gym.Wrapper):
    """State observations -> upright rendered frames (H, W, 3); the state goes to `info["state"]`."""

    def __init__(self, env: gym.Env, image_size: int) -> None:
        super().__init__(env)
        self.observation_space = gym.spaces.Box(0, 255, (image_size, image_size, 3), np.uint8)

    def _frame(self) -> np.ndarray:
        return np.ascontiguousarray(self.env.render()[::-1])

    def reset(self, **kwargs: Any) -> tuple[np.ndarray, dict]:
        state, info = self.env.reset(**kwargs)
        return self._frame(), dict(info, state=state)

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        state, reward, _, truncated, info = self.env.step(np.asarray(action, np.float32))
        return self._frame(), float(reward), False, truncated, dict(info, state=state)


def make_metaworld_pixels(task: str, image_size: int, camera: str, action_repeat: int,
                          seed: int | None = None) -> gym.Env:
    """A Meta-World MT1 task (`task` without the -v3 suffix), rendered at image_size x image_size."""
    os.environ.setdefault("MUJOCO_GL", "egl")
    import metaworld  # noqa: F401  (registers Meta-World/MT1)

    name = task if task.endswith("-v3") else f"{task}-v3"
    env = gym.make("Meta-World/MT1", env_name=name, render_mode="rgb_array", camera_name=camera,
                   width=image_size, height=image_size, seed=seed, disable_env_checker=True)
    model = env.unwrapped.model
    model.vis.quality.shadowsize = 0
    model.vis.quality.offsamples = 0
    env = ActionRepeat(env, action_repeat, success_key="success")
    return MetaWorldPixels(env, image_size)


def scripted_policy(task: str) -> Any:
    """The `metaworld.policies` expert for a task, e.g. 'door-lock' -> SawyerDoorLockV3Policy()."""
    import metaworld.policies as policies

    base = task[:-3] if task.endswith("-v3") else task
    name = "Sawyer" + "".join(part.capitalize() for part in base.split("-")) + "V3Policy"
    if not hasattr(policies, name):
        raise ValueError(f"Meta-World has no scripted policy {name} for task {task!r}")
    return getattr(policies, name)()


def collect_demonstrations(env: gym.Env, task: str, count: int, max_tries: int | None = None,
                           seed: int = 0) -> list[dict[str, np.ndarray]]:
    """Run the scripted policy in a wrapped env (from `make_rl_env`) and keep `count` successful
    episodes as dicts of frames (T + 1, H, W, 3), actions (T, A), rewards (T,)."""
    policy = scripted_policy(task)
    episodes: list[dict[str, np.ndarray]] = []
    tries = 0
    while len(episodes) < count and tries < (max_tries or 4 * count):
        _, info = env.reset(seed=seed + tries)
        tries += 1
        frames, actions, rewards, solved, done = [info["frame"]], [], [], False, False
        while not done:
            action = np.clip(policy.get_action(info["state"]), -1.0, 1.0).astype(np.float32)
            _, reward, terminated, truncated, info = env.step(action)
            frames.append(info["frame"])
            actions.append(action)
            rewards.append(reward)
            solved = solved or bool(info["success"])
            done = terminated or truncated
        if solved:
            episodes.append({"frames": np.stack(frames), "actions": np.stack(actions),
                             "rewards": np.asarray(rewards, np.float32)})
    return episodes
