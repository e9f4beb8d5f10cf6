"""Closed-loop control in the real simulator: plan, execute a few actions, observe, plan again.

A `Controller` maps the episode so far to the next actions (and, for a world-model planner, the
frames it imagined for them). `run_episode` drives one episode and records real and imagined
frames for the side-by-side video; `summarize` turns episodes into success rate and coverage.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

import numpy as np
import torch

from ivideogpt.frames import to_uint8
from ivideogpt.planning.cem import CEMPlanner, PlanResult


class Controller(Protocol):
    """Chooses the next actions of an episode from what was observed so far."""

    name: str

    def reset(self, env: Any) -> None: ...

    def act(self, env: Any, frames: list[np.ndarray], actions: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray | None]:
        """Observed uint8 frames and the actions between them -> (next actions (k, A), imagined uint8
        frames (k, h, w, 3) for them, or None)."""


class RandomController:
    """Uniform random actions within the bounds: the floor every planner must beat."""

    def __init__(self, low: np.ndarray, high: np.ndarray, seed: int = 0, name: str = "random") -> None:
        self.low, self.high = np.asarray(low, np.float32), np.asarray(high, np.float32)
        self.rng = np.random.default_rng(seed)
        self.name = name

    def reset(self, env: Any) -> None:
        pass

    def act(self, env: Any, frames: list[np.ndarray], actions: list[np.ndarray]) -> tuple[np.ndarray, None]:
        return self.rng.uniform(self.low, self.high)[None].astype(np.float32), None


class HoldStillController:
    """The action is the agent's current position (`position_fn(env)`): the agent stays, the block with it."""

    def __init__(self, position_fn: Callable[[Any], np.ndarray], name: str = "hold-still") -> None:
        self.position_fn, self.name = position_fn, name

    def reset(self, env: Any) -> None:
        pass

    def act(self, env: Any, frames: list[np.ndarray], actions: list[np.ndarray]) -> tuple[np.ndarray, None]:
        return np.asarray(self.position_fn(env), dtype=np.float32)[None], None


class PlannerController:
    """CEM MPC: `state_fn(env, frames, actions)` builds the planner's start state (context frames for
    a world model, a simulator snapshot for the oracle); `init_mean_fn(env)` seeds the first plan;
    `imagine(result, k)` gives the frames a model imagined for the plan's first k steps (None: nothing imagined)."""

    def __init__(self, planner: CEMPlanner, state_fn: Callable[[Any, list[np.ndarray], list[np.ndarray]], Any],
                 init_mean_fn: Callable[[Any], np.ndarray] | None = None, name: str = "planner",
                 imagine: Callable[[PlanResult, int], torch.Tensor] | None = None) -> None:
        self.planner, self.state_fn, self.init_mean_fn = planner, state_fn, init_mean_fn
        self.name, self.imagine = name, imagine
        self.plan_seconds = 0.0

    def reset(self, env: Any) -> None:
        self.planner.reset()

    def act(self, env: Any, frames: list[np.ndarray], actions: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray | None]:
        start = time.perf_counter()
        init = None if self.init_mean_fn is None else torch.as_tensor(self.init_mean_fn(env))
        result = self.planner.plan(self.state_fn(env, frames, actions), init_mean=init)
        self.plan_seconds += time.perf_counter() - start
        k = result.execute.shape[0]
        imagined = None
        if self.imagine is not None:
            imagined = to_uint8(self.imagine(result, k))  # the best candidate's imagination of these steps
        return result.execute.numpy(), imagined


@dataclass
class EpisodeResult:
    """One closed-loop episode in the real simulator."""

    controller: str
    success: bool
    initial_coverage: float
    final_coverage: float
    max_coverage: float
    total_reward: float
    final_reward: float
    steps: int
    seconds: float
    real: np.ndarray = field(repr=False)
    """(T + 1, h, w, 3) uint8 observed frames, the initial one first."""
    imagined: np.ndarray | None = field(default=None, repr=False)
    """(T + 1, h, w, 3) uint8 imagined frame for each step (frame 0 is the real start), or None."""

    def metrics(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("success", "initial_coverage", "final_coverage", "max_coverage", "total_reward",
                                              "final_reward", "steps", "seconds")}


def run_episode(env: Any, controller: Controller, *, seed: int, max_steps: int, options: dict | None = None,
                pixels: Callable[[Any], np.ndarray] = lambda obs: obs["pixels"],
                coverage: Callable[[Any], float] | None = None) -> EpisodeResult:
    """Run `controller` for up to `max_steps` env steps (or until success / termination).

    `options` go to `env.reset` (e.g. Push-T's `reset_to_state`); `pixels` picks the frame from an
    observation; `coverage(env)` measures the start (steps report it in `info["coverage"]`).
    """
    start = time.perf_counter()
    obs, info = env.reset(seed=seed, options=options)
    controller.reset(env)
    real = [pixels(obs)]
    imagined: list[np.ndarray] = [real[0]]
    any_imagined = False
    rewards: list[float] = []
    taken: list[np.ndarray] = []
    cover = coverage(env) if coverage is not None else float(info.get("coverage", 0.0))
    success, initial, max_cover = False, cover, cover
    done = False
    while not done and len(rewards) < max_steps:
        actions, dreamt = controller.act(env, real, taken)
        any_imagined |= dreamt is not None
        for i, action in enumerate(actions[: max_steps - len(rewards)]):
            obs, reward, terminated, truncated, info = env.step(action)
            taken.append(np.asarray(action, dtype=np.float32))
            real.append(pixels(obs))
            imagined.append(dreamt[i] if dreamt is not None and i < len(dreamt) else np.zeros_like(real[0]))
            rewards.append(float(reward))
            cover = float(info.get("coverage", reward))
            max_cover = max(max_cover, cover)
            success = success or bool(info.get("is_success", False))
            done = terminated or truncated
            if done:
                break
    return EpisodeResult(controller=controller.name, success=success, initial_coverage=initial, final_coverage=cover,
                         max_coverage=max_cover, total_reward=float(sum(rewards)),
                         final_reward=rewards[-1] if rewards else 0.0, steps=len(rewards),
                         seconds=time.perf_counter() - start, real=np.stack(real),
                         imagined=np.stack(imagined) if any_imagined else None)


def summarize(results: list[EpisodeResult]) -> dict[str, float]:
    """Mean metrics over episodes of one controller, with the spread of the coverage gain across them."""
    if not results:
        return {}
    gains = np.asarray([r.final_coverage - r.initial_coverage for r in results])
    return {
        "episodes": len(results),
        "success_rate": float(np.mean([r.success for r in results])),
        "initial_coverage": float(np.mean([r.initial_coverage for r in results])),
        "final_coverage": float(np.mean([r.final_coverage for r in results])),
        "coverage_gain": float(gains.mean()),
        "coverage_gain_std": float(gains.std()),
        "max_coverage": float(np.mean([r.max_coverage for r in results])),
        "final_reward": float(np.mean([r.final_reward for r in results])),
        "total_reward": float(np.mean([r.total_reward for r in results])),
        "steps": float(np.mean([r.steps for r in results])),
        "seconds_per_episode": float(np.mean([r.seconds for r in results])),
    }
