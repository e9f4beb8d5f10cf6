"""The pixel RL environments: `EnvConfig` and the factory `make_rl_env` (its wrappers: `envs/wrappers.py`).

Every environment made by `make_rl_env` has actions in [-1, 1], observations that are uint8
frame stacks `(3 * frame_stack, H, W)`, and `info["success"]` (bool) plus `info["frame"]`
(the newest `(H, W, 3)` frame) after every step. One `step` is one agent step: the action is
repeated `action_repeat` times in the simulator.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gymnasium as gym

from ivideogpt.envs.wrappers import FrameStack, SuccessBonus

METAWORLD_TASKS = ("button-press-topdown-wall", "plate-slide", "hammer", "door-lock",
                   "handle-pull-side", "coffee-push")
NO_DEMO_TASKS = ("door-lock",)


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
