"""Controllability: per-step PSNR under true / shuffled / zero actions and the "ignores its actions" flag."""

from __future__ import annotations

import pytest
import torch

from ivideogpt.eval.controllability import controllability, controllability_markdown, shuffled
from ivideogpt.tokenizer import tokenizer_tiny
from ivideogpt.transformer import transformer_tiny
from ivideogpt.world_model import WorldModel


class FollowsActions:
    """Predicts the true future exactly under the true actions and copies the context under any others."""

    action_dim = 2

    def __init__(self, truth: torch.Tensor, actions: torch.Tensor) -> None:
        self.truth, self.actions = truth, actions

    def rollout(self, context, actions, seed=0, context_actions=None):
        if torch.equal(actions, self.actions):
            return self.truth, None
        return context[:, -1:].expand_as(self.truth), None


def _clips(batch: int = 3, horizon: int = 4):
    generator = torch.Generator().manual_seed(0)
    frames = torch.rand(batch, 1 + horizon, 3, 64, 64, generator=generator) * 2 - 1
    actions = torch.rand(batch, horizon, 2, generator=generator) * 2 - 1
    return frames[:, :1], actions, frames[:, 1:]


def test_a_model_that_follows_its_actions_is_not_flagged() -> None:
    context, actions, truth = _clips()
    result = controllability(FollowsActions(truth, actions), context, actions, truth)
    assert len(result["true"]["psnr"]) == 4 and result["true"]["psnr_mean"] == pytest.approx(80.0)
    assert result["gap_over_shuffled_db"] > 50 and result["gap_over_zero_db"] > 50
    assert not result["ignores_actions"]
    assert "follows its actions" in controllability_markdown(result)


def test_a_model_that_ignores_its_actions_is_flagged() -> None:
    torch.manual_seed(0)
    transformer = transformer_tiny(action_dim=2).build()  # a fresh action projection is zero: actions change nothing
    world_model = WorldModel(tokenizer_tiny().build(), transformer, temperature=0.0)
    context, actions, truth = _clips(horizon=2)
    result = controllability(world_model, context, actions, truth, batch_size=2)
    assert result["true"] == result["shuffled"] == result["zero"]
    assert result["ignores_actions"] and "WARNING" in controllability_markdown(result)


def test_shuffling_and_bad_shapes() -> None:
    actions = torch.arange(12.0).reshape(2, 3, 2)
    assert torch.equal(shuffled(actions), actions.flip(0))
    assert torch.equal(shuffled(actions[:1]), actions[:1].flip(1))  # one clip: its own actions reversed
    context, actions, truth = _clips()
    with pytest.raises(ValueError, match="must match truth"):
        controllability(FollowsActions(truth, actions), context, actions[:, :2], truth)


def test_evaluate_controllability_command(tmp_path, monkeypatch, capsys) -> None:
    import json

    import numpy as np

    from ivideogpt import cli
    from ivideogpt.commands import evaluate
    from ivideogpt.data.episode import Episode
    from ivideogpt.eval.predictors import WorldModelPredictor

    rng = np.random.default_rng(0)
    for number in range(3):
        Episode(frames=rng.integers(0, 255, (4, 64, 64, 3), dtype=np.uint8),
                actions=rng.uniform(-1, 1, (4, 2)).astype(np.float32)).save(tmp_path / "data" / f"ep{number}.npz")
    world_model = WorldModel(tokenizer_tiny().build(), transformer_tiny(action_dim=2).build())  # ignores actions
    monkeypatch.setattr(evaluate, "load_world_model", lambda path, device: WorldModelPredictor(world_model))
    out = tmp_path / "out"
    argv = ["evaluate", "--checkpoint", str(tmp_path / "model"), "--data", str(tmp_path / "data"), "--protocol",
            "custom", "--context-frames", "1", "--horizon", "2", "--controllability", "--output", str(out)]
    assert cli.main(argv) == 0
    result = json.loads((out / "controllability.json").read_text())
    assert result["clips"] == 3 and len(result["zero"]["psnr"]) == 2 and result["ignores_actions"]
    assert "WARNING: the model ignores its actions" in capsys.readouterr().out
    assert cli.main(["evaluate", "--baseline", "copy-last-frame", *argv[3:]]) == 2
    assert "needs --checkpoint" in capsys.readouterr().err


def test_true_frames_given_are_scored_not_rolled_out_again() -> None:
    context, actions, truth = _clips()
    model = FollowsActions(truth, actions)
    calls = []
    rollout = model.rollout
    model.rollout = lambda *args, **kwargs: calls.append(args[1]) or rollout(*args, **kwargs)
    given = context[:, -1:].expand_as(truth)  # as if the true actions had rolled out a copy
    result = controllability(model, context, actions, truth, true_frames=given)
    assert len(calls) == 2 and not any(torch.equal(chosen, actions) for chosen in calls)
    assert result["true"] == result["shuffled"] and result["ignores_actions"]
