"""The world model as a gymnasium environment: observations are predicted frames, rewards predicted rewards.

`WorldModelEnv` is a single `gymnasium.Env`; `WorldModelVectorEnv` runs `num_envs` imagined
episodes as one batch through the same KV-cached engine (a `gymnasium.vector.VectorEnv` with
next-step autoreset). Episodes start from context frames drawn from a given pool (or passed in
`reset(options={"context": ...})`) and are truncated after `horizon` steps.

A horizon may be longer than the clips the model was trained on (`window` frames, context included;
by default `world_model.window`, which `load_model` reads from the run's `data.segment_length`).
At a full window the next step first re-anchors by default: it restarts from the newest Tc frames, the
model's own predictions encoded afresh as context (`WindowedRollout`, as `ivideogpt evaluate
--reanchor-every` and `ivideogpt play` do), so the transformer never reads a position it was not
trained on. `past_window="refuse"` raises there instead; "extend" lets the token sequence grow.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from ivideogpt.frames import to_model, to_uint8
from ivideogpt.world_model import PastWindow, WindowedRollout, WorldModel


def _as_model_frames(frames: torch.Tensor | np.ndarray, what: str, axes: str) -> torch.Tensor:
    """uint8 (*axes, H, W, 3) or float (*axes, 3, H, W) in [-1, 1] -> float (*axes, 3, H, W), refused with what was
    expected when shaped otherwise (e.g. one frame where `axes` = "N, Tc" asks for a pool of clips)."""
    tensor = torch.as_tensor(frames)
    uint8 = tensor.dtype == torch.uint8
    leading = len(axes.split(", "))
    channels = tensor.shape[-1] if uint8 else tensor.shape[-3] if tensor.ndim >= 3 else None
    if tensor.ndim != leading + 3 or channels != 3 or 0 in tensor.shape[:leading]:
        raise ValueError(f"{what} must be ({axes}, 3, H, W) float in [-1, 1] or ({axes}, H, W, 3) uint8 "
                         f"with {axes} >= 1, got {tuple(tensor.shape)} {tensor.dtype}")
    return to_model(tensor) if uint8 else tensor.float()


def _check_options(options: dict[str, Any], allowed: tuple[str, ...]) -> None:
    """Refuse reset options the env does not read: a misspelt key would otherwise start from a random context."""
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(f"unknown reset options {unknown}; this env reads {list(allowed)}")


class _Pool:
    """Context frames (N, Tc, 3, H, W) and optional context actions (N, Tc-1, A) to start episodes from."""

    def __init__(self, world_model: WorldModel, contexts: torch.Tensor | np.ndarray,
                 context_actions: torch.Tensor | np.ndarray | None) -> None:
        self.frames = _as_model_frames(contexts, "contexts", "N, Tc")
        self.actions = None if context_actions is None else torch.as_tensor(context_actions).float()
        n, tc = self.frames.shape[:2]
        expected = (n, tc - 1, world_model.action_dim)
        if world_model.action_dim and tc > 1 and self.actions is None:
            raise ValueError(f"an action-conditioned world model with {tc} context frames needs context_actions "
                             f"{expected} (N, Tc-1, A)")
        if self.actions is not None and tuple(self.actions.shape) != expected:
            raise ValueError(f"context_actions must be {expected} (N, Tc-1, A), one row per context, "
                             f"got {tuple(self.actions.shape)}")

    def pick(self, rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor | None]:
        index = torch.as_tensor(rows, dtype=torch.long)
        return self.frames[index], None if self.actions is None else self.actions[index]


def _as_actions(actions: Any, space: spaces.Space) -> torch.Tensor:
    """`actions` as a float32 tensor of exactly `space`'s shape within its bounds; any other shape is refused, never
    reshaped (a transposed (A, N) batch would scramble its rows), and so are values outside the bounds (the model
    was trained within them: it would extrapolate silently)."""
    array = np.asarray(actions, dtype=np.float32)
    if array.shape != space.shape:
        raise ValueError(f"actions must have the action space's shape {space.shape}, got {array.shape}")
    if not np.all((array >= space.low) & (array <= space.high)):
        raise ValueError(f"actions must lie in the action space's bounds [{space.low.min():g}, {space.high.max():g}], "
                         f"got values in [{array.min():g}, {array.max():g}] (gymnasium.wrappers.ClipAction clips them)")
    return torch.from_numpy(array)


def _action_space(world_model: WorldModel, low: float, high: float) -> spaces.Space:
    if world_model.action_dim == 0:
        return spaces.Discrete(1)  # action-free model: the only action is "continue"
    return spaces.Box(low, high, shape=(world_model.action_dim,), dtype=np.float32)


def _windowed(world_model: WorldModel, window: int | None, past_window: PastWindow) -> WindowedRollout:
    """The env's rollout, kept within `window` frames (None: the world model's own training window)."""
    return WindowedRollout(world_model, world_model.window if window is None else window, past_window)


class WorldModelEnv(gym.Env):
    """One imagined episode at a time. Observation: predicted frame, uint8 (H, W, 3).

    window / past_window: the training clip length and what a step at a full window does (module docstring).
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(self, world_model: WorldModel, contexts: torch.Tensor | np.ndarray,
                 context_actions: torch.Tensor | np.ndarray | None = None, horizon: int = 50,
                 action_low: float = -1.0, action_high: float = 1.0, render_mode: str | None = None,
                 window: int | None = None, past_window: PastWindow = "reanchor") -> None:
        if horizon < 1:
            raise ValueError(f"horizon must be >= 1, got {horizon}")
        self.world_model, self.horizon, self.render_mode = world_model, horizon, render_mode
        self.rollout = _windowed(world_model, window, past_window)
        self.pool = _Pool(world_model, contexts, context_actions)
        h, w = self.pool.frames.shape[-2:]
        self.observation_space = spaces.Box(0, 255, shape=(h, w, 3), dtype=np.uint8)
        self.action_space = _action_space(world_model, action_low, action_high)
        self._obs: np.ndarray | None = None
        self._t = 0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[np.ndarray, dict[str, Any]]:
        """Start from `options["context"]` (Tc frames) or a context drawn from the pool."""
        super().reset(seed=seed)
        options = options or {}
        _check_options(options, ("context", "context_actions"))
        if "context" in options:
            frames = _as_model_frames(options["context"], "options['context']", "Tc")[None]
            actions = options.get("context_actions")
            actions = None if actions is None else torch.as_tensor(actions).float()[None]
        else:
            frames, actions = self.pool.pick(self.np_random.integers(len(self.pool.frames), size=1))
        self.rollout.reset(frames, actions, seed=int(self.np_random.integers(2**62)))
        self._t = 0
        self._obs = to_uint8(frames[0, -1])
        return self._obs.copy(), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self._obs is None:
            raise RuntimeError("call reset() before step()")
        actions = None
        if self.world_model.action_dim:
            actions = _as_actions(action, self.action_space)[None]
        frames, rewards = self.rollout.step(actions)
        self._t += 1
        self._obs = to_uint8(frames[0])
        reward = 0.0 if rewards is None else float(rewards[0])
        return self._obs.copy(), reward, False, self._t >= self.horizon, {}

    def render(self) -> np.ndarray | None:
        return None if self._obs is None else self._obs.copy()


class WorldModelVectorEnv(VectorEnv):
    """`num_envs` imagined episodes stepped as one batch (one KV cache, one decode per step).

    All episodes share the horizon, so they truncate together; with next-step autoreset the call
    after truncation resets every episode and returns the new first observations (reward 0).
    window / past_window: as for `WorldModelEnv` (module docstring).
    """

    metadata = {"render_modes": [], "autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(self, world_model: WorldModel, contexts: torch.Tensor | np.ndarray, num_envs: int,
                 context_actions: torch.Tensor | np.ndarray | None = None, horizon: int = 50,
                 action_low: float = -1.0, action_high: float = 1.0, window: int | None = None,
                 past_window: PastWindow = "reanchor") -> None:
        if num_envs < 1 or horizon < 1:
            raise ValueError(f"num_envs and horizon must be >= 1, got {num_envs} and {horizon}")
        self.world_model, self.num_envs, self.horizon = world_model, num_envs, horizon
        self.rollout = _windowed(world_model, window, past_window)
        self.pool = _Pool(world_model, contexts, context_actions)
        h, w = self.pool.frames.shape[-2:]
        self.single_observation_space = spaces.Box(0, 255, shape=(h, w, 3), dtype=np.uint8)
        self.single_action_space = _action_space(world_model, action_low, action_high)
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self._t = 0
        self._needs_reset = True

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[np.ndarray, dict[str, Any]]:
        """Start every episode from contexts drawn from the pool (or `options["contexts"]`, (num_envs, Tc, ...))."""
        if seed is not None:
            self._np_random, self._np_random_seed = gym.utils.seeding.np_random(seed)
        options = options or {}
        _check_options(options, ("contexts", "context_actions"))
        if "contexts" in options:
            frames = _as_model_frames(options["contexts"], "options['contexts']", "num_envs, Tc")
            actions = options.get("context_actions")
            actions = None if actions is None else torch.as_tensor(actions).float()
        else:
            frames, actions = self.pool.pick(self.np_random.integers(len(self.pool.frames), size=self.num_envs))
        if frames.shape[0] != self.num_envs:
            raise ValueError(f"need {self.num_envs} contexts, got {frames.shape[0]}")
        self.rollout.reset(frames, actions, seed=int(self.np_random.integers(2**62)))
        self._t, self._needs_reset = 0, False
        return to_uint8(frames[:, -1]), {}

    def step(self, actions: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        n = self.num_envs
        if self._needs_reset:  # next-step autoreset (or a step before the first reset)
            obs, info = self.reset()
            return obs, np.zeros(n, np.float32), np.zeros(n, bool), np.zeros(n, bool), info
        batch = None
        if self.world_model.action_dim:
            batch = _as_actions(actions, self.action_space)
        frames, rewards = self.rollout.step(batch)
        self._t += 1
        truncated = np.full(n, self._t >= self.horizon)
        self._needs_reset = bool(truncated[0])
        reward = np.zeros(n, np.float32) if rewards is None else rewards.float().cpu().numpy().astype(np.float32)
        return to_uint8(frames), reward, np.zeros(n, bool), truncated, {}
