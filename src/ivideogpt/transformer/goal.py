"""Goal-conditioned prediction (paper Sec. 3.2): the goal frame is simply placed first, as context.

The sequence `x_goal, x_0, ..., x_T` is modelled with the same architecture and loss; the goal
and the first observation are the context frames (so the tokenizer sees one more context frame).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ivideogpt.data.batch import Batch


def goal_conditioned_frames(frames: Tensor, goal: Tensor | None = None) -> Tensor:
    """(B, T, 3, H, W) frames and a (B, 3, H, W) goal (default: the last frame) -> (B, T + 1, 3, H, W)."""
    if frames.ndim != 5:
        raise ValueError(f"frames must be (B, T, 3, H, W), got {tuple(frames.shape)}")
    goal = frames[:, -1] if goal is None else goal
    if goal.shape != frames[:, 0].shape:
        raise ValueError(f"goal must be shaped {tuple(frames[:, 0].shape)} (B, 3, H, W), got {tuple(goal.shape)}")
    return torch.cat([goal[:, None], frames], dim=1)


def goal_conditioned_batch(batch: Batch, goal: Tensor | None = None) -> Batch:
    """`batch` with the goal prepended as an extra context frame.

    The goal -> x_0 "transition" gets a zero action and a zero reward, so `actions[:, t]` still leads
    from frame t to t + 1 and rewards stay aligned with their frames.
    """
    frames = goal_conditioned_frames(batch.frames, goal)
    actions = rewards = None
    if batch.actions is not None:
        actions = torch.cat([torch.zeros_like(batch.actions[:, :1]), batch.actions], dim=1)
    if batch.rewards is not None:
        rewards = torch.cat([torch.zeros_like(batch.rewards[:, :1]), batch.rewards], dim=1)
    return Batch(frames=frames, actions=actions, rewards=rewards, num_context=batch.num_context + 1)
