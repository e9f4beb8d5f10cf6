"""The interactive world model as planning `Dynamics`: one prefill per plan, batched KV-cached steps.

A plan calls `rollout` once per CEM iteration with the same `ModelContext`. The first call resets
the world model from the context frames (one prefill, batch 1); every call then forks that state
to the N candidates and steps all of them together H times, one frame per step through the kept
KV cache (`WorldModel.rollout(state, actions)`). Later iterations reuse the prefilled state.

An objective that reads only predicted rewards needs no frames: with `decode=False` the tokenizer's
decode (most of a step's cost for small models) is skipped and `rollout` returns rewards only;
`imagined` decodes just the chosen candidate afterwards, for videos.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
from torch import Tensor

from ivideogpt.frames import to_model
from ivideogpt.planning.cem import PlanResult


@dataclass(eq=False)
class ModelContext:
    """The planner's start state for a world model: recent real frames and the actions between them."""

    frames: Tensor
    """(Tc, 3, h, w) in [-1, 1], oldest first."""
    actions: Tensor | None = None
    """(Tc - 1, A) raw env actions, `actions[i]` leading from `frames[i]` to `frames[i + 1]`."""


def context_from_history(frames: list[np.ndarray], actions: list[np.ndarray], context_frames: int,
                         fill_action: np.ndarray | None = None) -> ModelContext:
    """The last `context_frames` real uint8 frames and their actions.

    At an episode's start there are fewer: the context is shorter, or, given `fill_action` (an action
    that keeps the scene still), the first frame is repeated with that action between the copies, for
    models that need an exact context count (the released tokenizers).
    """
    if fill_action is not None and len(frames) < context_frames:
        missing = context_frames - len(frames)
        frames = [frames[0]] * missing + list(frames)
        actions = [np.asarray(fill_action, dtype=np.float32)] * missing + list(actions)
    tc = min(context_frames, len(frames))
    recent = to_model(np.stack(frames[-tc:]))
    between = actions[len(actions) - (tc - 1):] if tc > 1 else []
    return ModelContext(recent, torch.as_tensor(np.stack(between), dtype=torch.float32) if between else None)


class WorldModelDynamics:
    """Adapts `ivideogpt.world_model.WorldModel` (reset / rollout from a forked state) to `Dynamics`.

    `action_low`/`action_high`: the raw bounds the training data's actions were normalised with
    (the model sees `2 (a - low) / (high - low) - 1`); None passes actions unchanged.
    `reward_transform` maps predicted rewards to the objective's scale if needed. Token sampling is
    seeded per call from the adapter's own generator, so plans are reproducible. `decode=False`
    returns no frames (rewards only); sampling does not depend on it, so scores are the same.
    """

    def __init__(self, model: Any, *, action_low: np.ndarray | None = None, action_high: np.ndarray | None = None,
                 reward_transform: Callable[[Tensor], Tensor] | None = None, seed: int = 0,
                 decode: bool = True) -> None:
        self.model = model
        self.decode = decode
        self.low = _action_bound(action_low, "action_low", model.action_dim)
        self.high = _action_bound(action_high, "action_high", model.action_dim)
        self.reward_transform = reward_transform
        self.generator = torch.Generator().manual_seed(seed)
        self.batch_sizes: list[int] = []
        self.prefills = 0
        self._context: ModelContext | None = None
        self._base: Any = None
        self._last: Any = None  # the state after the latest rollout: its codes decode on demand

    def to_model_actions(self, actions: Tensor) -> Tensor:
        """Raw env actions (..., A) -> the model's action scale."""
        if self.low is None or self.high is None:
            return actions.float()
        span = (self.high - self.low).clamp_min(1e-8)
        return 2 * (actions.float() - self.low) / span - 1

    def _base_state(self, context: ModelContext) -> Any:
        """Prefill once per context object (a plan's iterations share it)."""
        if context is not self._context:
            device = self.model.device
            actions = None if context.actions is None else self.to_model_actions(context.actions)[None].to(device)
            self._base = self.model.reset(context.frames[None].to(device), actions)  # batch 1
            self._context = context
            self.prefills += 1
        return self._base

    @torch.inference_mode()
    def rollout(self, context: ModelContext, actions: Tensor) -> tuple[Tensor | None, Tensor | None]:
        """actions (N, H, A) raw -> frames (N, H, 3, h, w) in [-1, 1] (None unless `decode`), rewards (N, H) or None."""
        self.batch_sizes.append(actions.shape[0])
        base = self._base_state(context)
        seed = int(torch.randint(0, 2**62, (1,), generator=self.generator))
        model_actions = self.to_model_actions(actions).to(self.model.device)
        frames, rewards = self.model.rollout(base, model_actions, seed=seed, decode=self.decode)  # forks base to N rows
        self._last = self.model.state
        if frames is not None:
            frames = frames.float().cpu()
        if rewards is not None:
            rewards = rewards.float().cpu()
            if self.reward_transform is not None:
                rewards = self.reward_transform(rewards)
        return frames, rewards

    def imagined(self, result: PlanResult, steps: int | None = None) -> Tensor:
        """(steps or H, 3, h, w) frames imagined for a plan's best candidate: kept from the rollout, or decoded now."""
        if result.best_frames is not None:
            return result.best_frames[:steps]
        if self._last is None:
            raise RuntimeError("imagined() needs a plan made with this dynamics first")
        return self.model.decode_frames(self._last, [result.best_index], steps)[0].float().cpu()


def _action_bound(bound: np.ndarray | None, name: str, action_dim: int) -> Tensor | None:
    """A raw action bound as float32, one value or one per action dimension; refused otherwise, where it would
    fail as a broadcast inside the first plan (or, for one action dimension, silently stretch the actions)."""
    if bound is None:
        return None
    tensor = torch.as_tensor(np.asarray(bound), dtype=torch.float32)
    if tensor.shape not in ((), (action_dim,)):
        raise ValueError(f"{name} must be one value or ({action_dim},), one per action dimension, "
                         f"got {tuple(tensor.shape)}")
    return tensor
