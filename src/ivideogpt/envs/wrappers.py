"""Gymnasium wrappers that turn a simulator into a pixel RL environment: action repeat, success bonus, frame stack."""

from __future__ import annotations

from collections import deque
from typing import Any

import gymnasium as gym
import numpy as np


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
