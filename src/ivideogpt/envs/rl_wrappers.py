"""Gymnasium wrappers that turn a simulator into a pixel RL environment, and the env factory.

Every environment made by `make_rl_env` has actions in [-1, 1], observations that are uint8
frame stacks `(3 * frame_stack, H, W)`, and `info["success"]` (bool) plus `info["frame"]`
(the newest `(H, W, 3)` frame) after every step. One `step` is one agent step: the action is
repeated `action_repeat` times in the simulator.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

METAWORLD_TASKS = ("button-press-topdown-wall", "plate-slide", "hammer", "door-lock",
                   "handle-pull-side", "coffee-push")
NO_DEMO_TASKS = ("door-lock",)


class ActionRepeat(gym.Wrapper):
    """Repeat each action `repeat` times; `info["success"]` is true if the task was solved at any of
    the repeated steps (read from `info[success_key]`). Rewards are summed (`reward="sum"`), or the
    last one is kept (`reward="last"`: a reward that scores the state, e.g. Push-T's coverage, as its
    data generator records it)."""

    def __init__(self, env: gym.Env, repeat: int, success_key: str = "success", reward: str = "sum") -> None:
        super().__init__(env)
        if repeat < 1:
            raise ValueError(f"action repeat must be >= 1, got {repeat}")
        if reward not in ("sum", "last"):
            raise ValueError(f"reward must be 'sum' or 'last', got {reward!r}")
        self.repeat, self.success_key, self.reward = repeat, success_key, reward

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict]:
        total, success = 0.0, False
        for _ in range(self.repeat):
            obs, reward, terminated, truncated, info = self.env.step(action)
            total = float(reward) + (total if self.reward == "sum" else 0.0)
            success = success or bool(info.get(self.success_key, False))
            if terminated or truncated:
                break
        info = dict(info, success=success)
        return obs, total, terminated, truncated, info

    def reset(self, **kwargs: Any) -> tuple[Any, dict]:
        obs, info = self.env.reset(**kwargs)
        return obs, dict(info, success=bool(info.get(self.success_key, False)))


class SuccessBonus(gym.Wrapper):
    """Equation 7 of the paper: r' = r + bonus * 1[success], once per agent step."""

    def __init__(self, env: gym.Env, bonus: float) -> None:
        super().__init__(env)
        self.bonus = bonus

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        return obs, float(reward) + self.bonus * float(info.get("success", False)), terminated, truncated, info


class FrameStack(gym.Wrapper):
    """(H, W, 3) uint8 frames -> (3 * k, H, W) stacks, oldest first; the first frame fills the
    stack at reset. The newest frame is also returned as `info["frame"]`."""

    def __init__(self, env: gym.Env, k: int) -> None:
        super().__init__(env)
        if k < 1:
            raise ValueError(f"frame stack must be >= 1, got {k}")
        self.k = k
        self.frames: deque[np.ndarray] = deque(maxlen=k)
        h, w, _ = env.observation_space.shape
        self.observation_space = gym.spaces.Box(0, 255, (3 * k, h, w), np.uint8)

    def _obs(self) -> np.ndarray:
        return np.concatenate([f.transpose(2, 0, 1) for f in self.frames], axis=0)

    def reset(self, **kwargs: Any) -> tuple[np.ndarray, dict]:
        frame, info = self.env.reset(**kwargs)
        for _ in range(self.k):
            self.frames.append(frame)
        return self._obs(), dict(info, frame=frame)

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        frame, reward, terminated, truncated, info = self.env.step(action)
        self.frames.append(frame)
        return self._obs(), reward, terminated, truncated, dict(info, frame=frame)


@dataclass
class EnvConfig:
    """An RL environment. Lengths are in env (simulator) steps; one agent step is `action_repeat` of them."""

    name: str = "metaworld/button-press-topdown-wall"
    action_repeat: int = 2
    frame_stack: int = 3
    episode_length: int = 200
    success_bonus: float = 10.0
    image_size: int = 64
    camera: str = "corner2"
    num_demos: int = 5

    def __post_init__(self) -> None:
        if not (self.name == "pusht" or self.name.startswith("metaworld/")):
            raise ValueError(f"EnvConfig.name must be 'pusht' or 'metaworld/<task>', got {self.name!r}")
        for field in ("action_repeat", "frame_stack", "episode_length", "image_size"):
            if getattr(self, field) < 1:
                raise ValueError(f"EnvConfig.{field} must be >= 1, got {getattr(self, field)!r}")
        if self.episode_length % self.action_repeat:
            raise ValueError(f"EnvConfig.episode_length ({self.episode_length}) must be a multiple of "
                             f"action_repeat ({self.action_repeat})")
        if self.num_demos < 0 or self.success_bonus < 0:
            raise ValueError(f"EnvConfig.num_demos and success_bonus must be >= 0, got {self.num_demos}, {self.success_bonus}")

    @property
    def max_agent_steps(self) -> int:
        return self.episode_length // self.action_repeat

    @property
    def task(self) -> str:
        return self.name.split("/", 1)[1] if "/" in self.name else self.name

    @classmethod
    def for_env(cls, name: str, **overrides: Any) -> "EnvConfig":
        """Paper defaults for Meta-World (no demos for door-lock); Push-T: 300-step episodes, no bonus, no demos."""
        if name == "pusht":
            base: dict[str, Any] = dict(episode_length=300, success_bonus=0.0, num_demos=0)
        else:
            task = name.split("/", 1)[-1]
            base = dict(num_demos=0 if task in NO_DEMO_TASKS else 5)
        base.update(overrides)
        return cls(name=name, **base)


def make_rl_env(config: EnvConfig, seed: int | None = None) -> gym.Env:
    """Build the wrapped environment; the simulator packages are imported here, on demand."""
    if config.name == "pusht":
        from ivideogpt.envs.rl_pusht import make_pusht_pixels
        env = make_pusht_pixels(config.image_size, config.action_repeat)
    else:
        from ivideogpt.envs.rl_metaworld import make_metaworld_pixels
        env = make_metaworld_pixels(config.task, config.image_size, config.camera, config.action_repeat, seed)
    env = SuccessBonus(env, config.success_bonus)
    env = gym.wrappers.TimeLimit(env, max_episode_steps=config.max_agent_steps)
    env = FrameStack(env, config.frame_stack)
    if seed is not None:
        env.action_space.seed(seed)
    return env
