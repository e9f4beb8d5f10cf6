"""Planning objectives: turn batched rollouts into one score per candidate (higher is better).

Two families, selectable by name in `make_objective`:
- `reward`: the sum (optionally discounted) of the rewards the dynamics predicts over the horizon;
- `goal`: the negative distance between predicted frames and a goal image (the paper's VP2 setting):
  pixel MSE, LPIPS, or both (`GOAL_METRICS`); LPIPS weights come from local files only.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

OBJECTIVES = ("reward", "goal")
GOAL_METRICS = ("pixel", "lpips", "pixel+lpips")

Perceptual = Callable[[Tensor, Tensor], Tensor]  # (M, 3, h, w) x2 in [-1, 1] -> (M,) distances


class RewardObjective:
    """Score = sum_t discount^t * reward_t over the planned horizon."""

    needs_frames = False

    def __init__(self, discount: float = 1.0) -> None:
        if not 0 < discount <= 1:
            raise ValueError(f"discount must be in (0, 1], got {discount}")
        self.discount = discount

    def __call__(self, frames: Tensor | None, rewards: Tensor | None) -> Tensor:
        if rewards is None:
            raise ValueError("the reward objective needs predicted rewards, but the dynamics returned none "
                             "(a world model without a reward head? use the goal-image objective)")
        weights = self.discount ** torch.arange(rewards.shape[1], dtype=rewards.dtype, device=rewards.device)
        return (rewards * weights).sum(dim=1)  # (N,)


class GoalImageObjective:
    """Score = -(pixel_weight * MSE + perceptual_weight * LPIPS) between predicted frames and a goal.

    Distances are averaged over the horizon (a dense signal while the goal is still far), or taken
    on the final frame only with `final_only=True`. The perceptual term is used only when a
    `perceptual` callable (e.g. `ivideogpt.perceptual.LPIPS`) is given.
    """

    needs_frames = True

    def __init__(self, goal: Tensor, *, pixel_weight: float = 1.0, perceptual: Perceptual | None = None,
                 perceptual_weight: float = 1.0, final_only: bool = False, chunk: int = 256) -> None:
        if goal.ndim != 3 or goal.shape[0] != 3:
            raise ValueError(f"goal must be one (3, h, w) frame in [-1, 1], got {tuple(goal.shape)}")
        if pixel_weight < 0 or perceptual_weight < 0 or pixel_weight + perceptual_weight * (perceptual is not None) == 0:
            raise ValueError("goal objective needs a positive pixel_weight or a perceptual model with positive weight")
        self.goal = goal.float()
        self.pixel_weight = pixel_weight
        self.perceptual = perceptual
        self.perceptual_weight = perceptual_weight
        self.final_only = final_only
        self.chunk = chunk

    def cost(self, frames: Tensor) -> Tensor:
        """(N, H, 3, h, w) -> (N, H) per-frame distance to the goal (lower is closer)."""
        if frames.shape[-3:] != self.goal.shape:
            raise ValueError(f"predicted frames {tuple(frames.shape[-3:])} and goal {tuple(self.goal.shape)} differ in size")
        goal = self.goal.to(frames.device)
        cost = self.pixel_weight * (frames.float() - goal).square().mean(dim=(-3, -2, -1))  # (N, H)
        if self.perceptual is not None and self.perceptual_weight > 0:
            flat = frames.flatten(0, 1).float()  # (N*H, 3, h, w)
            if isinstance(self.perceptual, torch.nn.Module):
                self.perceptual.to(frames.device)  # no-op after the first call
            with torch.no_grad():
                dist = torch.cat([self.perceptual(part, goal.expand_as(part)) for part in flat.split(self.chunk)])
            cost = cost + self.perceptual_weight * dist.view(frames.shape[:2]).to(cost.dtype)
        return cost

    def __call__(self, frames: Tensor | None, rewards: Tensor | None) -> Tensor:
        if frames is None:
            raise ValueError("the goal-image objective needs predicted frames, but the dynamics returned none")
        if self.final_only:
            frames = frames[:, -1:]
        return -self.cost(frames).mean(dim=1)  # (N,)


def make_objective(name: str, *, goal: Tensor | None = None, goal_metric: str = "pixel", lpips_path: str | None = None,
                   perceptual_weight: float = 1.0, discount: float = 1.0,
                   final_only: bool = False) -> RewardObjective | GoalImageObjective:
    """Build an objective by name (`reward` or `goal`).

    For `goal`, `goal_metric` picks the distance: `pixel` (MSE), `lpips`, or `pixel+lpips` (their sum,
    LPIPS scaled by `perceptual_weight`). LPIPS weights are read from `lpips_path` or the default local
    locations of `ivideogpt.perceptual`; FileNotFoundError says where to put them when they are missing.
    """
    if name == "reward":
        return RewardObjective(discount=discount)
    if name == "goal":
        if goal is None:
            raise ValueError("the goal objective needs a goal image")
        if goal_metric not in GOAL_METRICS:
            raise ValueError(f"unknown goal metric {goal_metric!r}; choose one of {GOAL_METRICS}")
        perceptual = None
        if "lpips" in goal_metric:
            from ivideogpt.perceptual import load_lpips

            perceptual = load_lpips(lpips_path, required=True)
        return GoalImageObjective(goal, pixel_weight=float("pixel" in goal_metric), perceptual=perceptual,
                                  perceptual_weight=perceptual_weight, final_only=final_only)
    raise ValueError(f"unknown objective {name!r}; choose one of {OBJECTIVES}")
