"""The shipped reference world model (checkpoints/pusht) loads from the repository as committed, and steps."""

from __future__ import annotations

from pathlib import Path

import torch

from ivideogpt.train import load_model
from ivideogpt.world_model import WorldModel

SHIPPED = Path(__file__).resolve().parents[1] / "checkpoints" / "pusht"


def test_the_shipped_model_is_small_loads_and_rolls_out() -> None:
    size = sum(path.stat().st_size for path in SHIPPED.rglob("*") if path.is_file())
    assert 0 < size <= 25 * 2**20, f"{SHIPPED} holds {size / 2**20:.1f} MB"
    model = load_model(SHIPPED)
    assert isinstance(model, WorldModel) and model.action_dim == 2 and model.predicts_reward
    model.temperature = 0.0
    context = torch.ones(2, 1, 3, 64, 64)  # a white board; the agent sent towards two opposite corners
    actions = torch.tensor([[[-0.8, -0.8]], [[0.8, 0.8]]]).expand(2, 3, 2)
    frames, rewards = model.rollout(context, actions, seed=0)
    assert frames.shape == (2, 3, 3, 64, 64) and rewards.shape == (2, 3)
    assert bool(frames.isfinite().all()) and bool(rewards.isfinite().all())
