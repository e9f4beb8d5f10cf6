"""What the evaluation protocol evaluates: the predictor interface, the world model adapter, a baseline."""

from __future__ import annotations

from typing import Any, Protocol

import torch


class Predictor(Protocol):
    """Anything with `predict`; an optional `name` labels results, `deterministic = True` means one sample suffices."""

    def predict(self, context: torch.Tensor, actions: torch.Tensor | None, horizon: int,
                generator: torch.Generator | None = None) -> torch.Tensor:
        """`context` (B, Tc, 3, H, W) in [-1, 1]; `actions` (B, Tc + horizon, A) or None, where
        `actions[:, t]` leads from frame t to t + 1 -> predicted frames (B, horizon, 3, H, W) in [-1, 1]."""
        ...


class CopyLastFrame:
    """Baseline: every future frame is the last context frame."""

    name = "copy-last-frame"
    deterministic = True

    def predict(self, context: torch.Tensor, actions: torch.Tensor | None, horizon: int,
                generator: torch.Generator | None = None) -> torch.Tensor:
        return context[:, -1:].expand(-1, horizon, -1, -1, -1).clone()


class WorldModelPredictor:
    """Adapts `ivideogpt.world_model.WorldModel` to `Predictor`.

    The protocol repeats one test video's context along the batch; the context is then prefilled
    once and forked (`reset` + `fork`) instead of once per sample. Each call draws the world
    model's sampling seed from `generator`, so results are reproducible and resumable.
    """

    deterministic = False

    def __init__(self, world_model: Any, name: str = "world-model") -> None:
        self.world_model = world_model
        self.name = name

    @torch.no_grad()
    def predict(self, context: torch.Tensor, actions: torch.Tensor | None, horizon: int,
                generator: torch.Generator | None = None) -> torch.Tensor:
        seed = int(torch.randint(0, 2**62, (1,), generator=generator))
        model, batch, num_context = self.world_model, context.shape[0], context.shape[1]
        context = context.to(model.device)
        context_actions = future_actions = None
        if actions is not None:
            actions = actions.to(model.device)
            context_actions = actions[:, : num_context - 1] if num_context > 1 else None
            future_actions = actions[:, num_context - 1 : num_context - 1 + horizon]  # (B, horizon, A)
        if _same_rows(context) and (context_actions is None or _same_rows(context_actions)):
            model.reset(context[:1], None if context_actions is None else context_actions[:1])
            state = model.fork(batch)  # one prefill shared by every sample
            frames, _ = model.rollout(state, future_actions, horizon=horizon, seed=seed)
        else:
            frames, _ = model.rollout(context, future_actions, horizon=horizon, context_actions=context_actions, seed=seed)
        return frames.float().cpu()  # (B, horizon, 3, H, W)


def _same_rows(tensor: torch.Tensor) -> bool:
    return bool(torch.equal(tensor, tensor[:1].expand_as(tensor)))
