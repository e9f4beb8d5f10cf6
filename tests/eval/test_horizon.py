"""Past the training horizon: extended, re-anchored and true-history rollouts scored by step beside copying."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ivideogpt.eval.horizon import horizon_curve, horizon_markdown, reanchored_rollout, true_history_rollout
from ivideogpt.tokenizer import tokenizer_tiny
from ivideogpt.transformer import transformer_tiny
from ivideogpt.world_model import RolloutState, WorldModel


class ShiftsBrightness:
    """Each action adds its value to every pixel of the last frame: a world whose dynamics are known exactly."""

    action_dim = 1

    def __init__(self) -> None:
        self.calls: list[dict[str, torch.Tensor | None]] = []
        self.state: RolloutState | None = None

    def reset(self, context, context_actions=None, seed=None):
        self.calls.append({"context": context.clone(), "context_actions": context_actions})
        self.last = context[:, -1]
        self.state = RolloutState(ids=torch.zeros(len(context), 0), actions=context_actions,
                                  num_context=context.shape[1], num_future=0, cache=None, decoder_features=None)
        return self.state

    def step(self, actions):
        self.last = self.last + actions[..., None, None]  # (B, 1) -> (B, 1, 1, 1) over (B, 3, h, w)
        self.state.actions = torch.cat([self.state.actions, actions[:, None]], dim=1)
        self.state.num_future += 1
        return self.last, None

    def rollout(self, context, actions, seed=0, context_actions=None):
        self.reset(context, context_actions, seed)
        return torch.stack([self.step(actions[:, t])[0] for t in range(actions.shape[1])], dim=1), None


def _world(batch: int = 3, context: int = 2, horizon: int = 6) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    start = torch.rand(batch, 1, 3, 16, 16, generator=generator) * 0.2 - 0.4
    actions = torch.rand(batch, context - 1 + horizon, 1, generator=generator) * 0.1
    levels = torch.cat([torch.zeros(batch, 1, 1), actions.cumsum(1)], dim=1)[..., None, None]
    frames = start + levels  # (B, Tc + H, 3, 16, 16)
    return {"context": frames[:, :context], "actions": actions[:, context - 1 :], "truth": frames[:, context:],
            "context_actions": actions[:, : context - 1]}


def test_a_model_with_exact_dynamics_beats_copying_at_every_step_both_ways() -> None:
    world = _world()
    result = horizon_curve(ShiftsBrightness(), **world, reanchor_every=4, batch_size=2)
    assert len(result["extended"]["psnr"]) == 6 and result["reanchor_every"] == 4
    assert result["extended"]["psnr_mean"] == pytest.approx(result["reanchored"]["psnr_mean"], abs=1e-3)
    assert all(gain > 10 for gain in result["gain_over_copy_db"]["extended"])
    assert all(gain > 10 for gain in result["gain_over_copy_db"]["reanchored"])
    table = horizon_markdown(result, every=2)
    assert "re-anchored every 4" in table and "| +2 | +4 | +6 | mean |" in table


def test_reanchoring_restarts_from_the_models_own_frames_with_the_actions_between_them() -> None:
    world, model = _world(batch=2), ShiftsBrightness()
    frames = reanchored_rollout(model, world["context"], world["actions"], 4, world["context_actions"])
    assert frames.shape == world["truth"].shape and len(model.calls) == 2  # windows of 4 and 2 frames
    second = model.calls[1]
    assert torch.allclose(second["context"], frames[:, 2:4])  # the last Tc = 2 predicted frames
    assert torch.equal(second["context_actions"], world["actions"][:, 3:4])  # the action between them
    with pytest.raises(ValueError, match="reanchor_every"):
        reanchored_rollout(model, world["context"], world["actions"], 0, world["context_actions"])


def test_a_real_world_model_rolls_out_past_any_horizon() -> None:
    torch.manual_seed(0)
    world_model = WorldModel(tokenizer_tiny().build(), transformer_tiny(action_dim=2).build(), temperature=0.0)
    frames = torch.rand(2, 1 + 5, 3, 64, 64) * 2 - 1
    actions = torch.rand(2, 5, 2) * 2 - 1
    result = horizon_curve(world_model, frames[:, :1], actions, frames[:, 1:], reanchor_every=2, true_history=True)
    assert {len(result[name]["psnr"]) for name in ("extended", "reanchored", "true_history")} == {5}
    assert "each frame from the true frames before it" in horizon_markdown(result)
    with pytest.raises(ValueError, match="must match truth"):
        horizon_curve(world_model, frames[:, :1], actions[:, :3], frames[:, 1:])


def test_true_history_feeds_the_given_codes_after_each_one_step_prediction() -> None:
    torch.manual_seed(0)
    world_model = WorldModel(tokenizer_tiny().build(), transformer_tiny(action_dim=2).build(), temperature=0.0)
    torch.nn.init.normal_(world_model.transformer.lm_head.weight, std=1.0)  # codes that depend on the history
    context, actions = torch.rand(2, 1, 3, 64, 64) * 2 - 1, torch.rand(2, 4, 2) * 2 - 1
    greedy, _ = world_model.rollout(context, actions)
    own_codes = world_model.layout.split_future(world_model.state.ids, 1)  # (B, 4, h', w')
    # fed its own greedy codes, every one-step prediction is the greedy rollout's frame
    torch.testing.assert_close(true_history_rollout(world_model, context, actions, own_codes), greedy.float())
    other = true_history_rollout(world_model, context, actions, torch.randint_like(own_codes, 16))
    torch.testing.assert_close(other[:, 0], greedy[:, 0].float())  # the first step reads only the context
    assert not torch.allclose(other[:, 1:], greedy[:, 1:].float())


def test_evaluate_horizon_curve_command(tmp_path, monkeypatch, capsys) -> None:
    from ivideogpt import cli
    from ivideogpt.commands import evaluate
    from ivideogpt.data.episode import Episode
    from ivideogpt.eval.predictors import WorldModelPredictor

    rng = np.random.default_rng(0)
    for number in range(3):
        Episode(frames=rng.integers(0, 255, (9, 64, 64, 3), dtype=np.uint8),
                actions=rng.uniform(-1, 1, (9, 2)).astype(np.float32)).save(tmp_path / "data" / f"ep{number}.npz")
    world_model = WorldModel(tokenizer_tiny().build(), transformer_tiny(action_dim=2).build())
    monkeypatch.setattr(evaluate, "load_world_model", lambda path, device: WorldModelPredictor(world_model))
    out = tmp_path / "out"
    argv = ["evaluate", "--checkpoint", str(tmp_path / "model"), "--data", str(tmp_path / "data"), "--protocol",
            "custom", "--context-frames", "1", "--horizon", "4", "--horizon-curve", "--reanchor-every", "2",
            "--true-history", "--episodes", "ep[12].npz", "--clips-per-episode", "2", "--output", str(out)]
    assert cli.main(argv) == 0
    result = json.loads((out / "horizon.json").read_text())
    assert result["clips"] == 4 and len(result["reanchored"]["psnr"]) == len(result["true_history"]["psnr"]) == 4
    assert "copy last frame" in capsys.readouterr().out
    assert cli.main(["evaluate", "--baseline", "copy-last-frame", *argv[3:]]) == 2
    assert "--horizon-curve needs --checkpoint" in capsys.readouterr().err


def test_an_action_free_model_gets_a_horizon_curve_on_videos_without_actions(tmp_path, monkeypatch, capsys) -> None:
    from ivideogpt import cli
    from ivideogpt.commands import evaluate
    from ivideogpt.data.episode import Episode
    from ivideogpt.eval.predictors import WorldModelPredictor

    rng = np.random.default_rng(0)
    for number in range(2):
        Episode(frames=rng.integers(0, 255, (8, 64, 64, 3), dtype=np.uint8)).save(tmp_path / "data" / f"ep{number}.npz")
    world_model = WorldModel(tokenizer_tiny().build(), transformer_tiny().build())  # action-free
    world_model.num_context = 1  # trained with 1 context frame; the run below gives it 2
    monkeypatch.setattr(evaluate, "load_world_model", lambda path, device: WorldModelPredictor(world_model))
    argv = ["evaluate", "--checkpoint", str(tmp_path / "model"), "--data", str(tmp_path / "data"), "--protocol",
            "custom", "--context-frames", "2", "--horizon", "4", "--clips-per-episode", "1"]
    assert cli.main([*argv, "--horizon-curve", "--reanchor-every", "2", "--true-history",
                     "--output", str(tmp_path / "curve")]) == 0
    result = json.loads((tmp_path / "curve" / "horizon.json").read_text())
    assert result["clips"] == 2 and len(result["reanchored"]["psnr"]) == len(result["true_history"]["psnr"]) == 4
    assert "trained with 1 context frame(s); this protocol gives it 2" in capsys.readouterr().err
    assert cli.main([*argv, "--controllability", "--output", str(tmp_path / "control")]) == 2
    assert "this one is action-free" in capsys.readouterr().err  # no actions to follow or ignore
