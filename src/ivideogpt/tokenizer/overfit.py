"""Minimal tokenizer training loop (AdamW over `compute_loss`): a smoke test that the tokenizer learns."""

from __future__ import annotations

import torch
from torch import nn

from ivideogpt.data.batch import Batch
from ivideogpt.tokenizer.config import TokenizerConfig
from ivideogpt.tokenizer.objective import TokenizerObjective


def overfit(config: TokenizerConfig, frames: torch.Tensor, steps: int, lr: float, *, num_context: int = 1,
            perceptual: nn.Module | None = None, grad_clip: float = 1.0) -> list[float]:
    """Train a fresh tokenizer on one fixed batch `frames` (B, T, 3, H, W) in [-1, 1]; the loss at each step.

    Not the project's trainer (no checkpoints, schedules or devices): it exists to show, on CPU in
    seconds, that reconstruction loss falls when the model sees the same clip repeatedly.
    """
    if steps < 1 or lr <= 0:
        raise ValueError(f"steps must be >= 1 and lr > 0; got steps={steps}, lr={lr}")
    if not 1 <= num_context < frames.shape[1]:
        raise ValueError(f"num_context must be in [1, T - 1] = [1, {frames.shape[1] - 1}]; got {num_context}")
    objective = TokenizerObjective(config, perceptual=perceptual)
    optimizer = torch.optim.AdamW(objective.parameters(), lr=lr, weight_decay=0.0)
    batch = Batch(frames=frames, num_context=num_context)
    losses = []
    for step in range(steps):
        loss, _ = objective.compute_loss(batch, step)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(objective.parameters(), grad_clip)
        optimizer.step()
        losses.append(float(loss.detach()))
    return losses
