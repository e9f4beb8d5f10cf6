"""MBPO with the real world model (tiny presets): online training and batched, KV-cached imagination."""

import io

import numpy as np
import pytest
import torch

from ivideogpt.rl.mbpo import MBPO, MBPOConfig
from ivideogpt.rl.replay import SegmentReplay


@pytest.mark.slow
def test_mbpo_with_tiny_world_model():
    from ivideogpt.rl.world_models import build_world_model

    model = build_world_model(2, "tokenizer_tiny", "transformer_tiny", seed=0)
    real = SegmentReplay(10_000, 3, 3, 0.99, seed=0)
    rng = np.random.default_rng(0)
    for _ in range(2):
        real.add_episode(rng.integers(0, 256, (9, 64, 64, 3), dtype=np.uint8),
                         rng.uniform(-1, 1, (8, 2)).astype(np.float32), rng.random(8).astype(np.float32))
    cfg = MBPOConfig(init_rollout_batch=4, rollout_batch=4, horizon=2, init_model_train_steps=1, model_batch_size=2,
                     sequence_length=4, tokenizer_future_frames=2, start_env_steps=0)
    mbpo = MBPO(cfg, model, real, frame_stack=3, nstep=3, discount=0.99, seed=0)
    before = [p.clone() for p in model.world_model.transformer.parameters()]
    logs = mbpo.on_agent_step(0, lambda obs: torch.zeros(obs.shape[0], 2))
    assert {"tokenizer/loss", "transformer/loss", "transformer/reward_mse"} <= set(logs)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.world_model.transformer.parameters()))
    seg = mbpo.model_buffer.segments[0]
    assert len(mbpo.model_buffer.segments) == 4 and seg.frames.shape == (5, 64, 64, 3) and seg.history == 2
    assert np.isfinite(seg.rewards).all() and mbpo.sample(8)[1] == 4
    # A resumed run restores MBPO and the world model exactly: the next imagined rollouts are identical.
    twin_model = build_world_model(2, "tokenizer_tiny", "transformer_tiny", seed=5)
    twin = MBPO(cfg, twin_model, SegmentReplay(10_000, 3, 3, 0.99), frame_stack=3, nstep=3, discount=0.99, seed=1)
    saved = io.BytesIO()  # through bytes, as a checkpoint file: no tensor may stay shared with the original
    torch.save({"real": real.state_dict(), "mbpo": mbpo.state_dict()}, saved)
    saved.seek(0)
    state = torch.load(saved, weights_only=False)
    twin.real.load_state_dict(state["real"])
    twin.load_state_dict(state["mbpo"])
    for key, value in model.state_dict()["transformer_opt"]["state"].items():
        assert torch.equal(twin.model.state_dict()["transformer_opt"]["state"][key]["exp_avg"], value["exp_avg"])
    policy = lambda obs: torch.ones(obs.shape[0], 2) * 0.5  # noqa: E731
    for run in (mbpo, twin):
        torch.manual_seed(3)  # the global RNG, which the trainer's checkpoint restores on its own
        run.on_agent_step(cfg.rollout_interval, policy)
    assert len(twin.model_buffer.segments) == len(mbpo.model_buffer.segments) == 8
    for mine, theirs in zip(mbpo.model_buffer.segments, twin.model_buffer.segments):
        assert np.array_equal(mine.frames, theirs.frames) and np.array_equal(mine.rewards, theirs.rewards)


def test_branches_longer_than_the_training_clips_re_anchor_within_them(monkeypatch):
    from ivideogpt.rl.imagination import imagine
    from ivideogpt.rl.world_models import build_world_model
    from ivideogpt.world_model import WorldModel

    model = build_world_model(2, "tokenizer_tiny", "transformer_tiny", seed=0, window=4)  # MBPO's sequence_length
    held = []
    step = WorldModel.step

    def spy(self, actions=None, decode=True):
        result = step(self, actions, decode)
        held.append(self.state.num_context + self.state.num_future)
        return result

    monkeypatch.setattr(WorldModel, "step", spy)
    rng = np.random.default_rng(0)
    out = imagine(model, lambda obs: torch.zeros(obs.shape[0], 2), rng.integers(0, 256, (2, 3, 64, 64, 3), np.uint8),
                  rng.uniform(-1, 1, (2, 2, 2)).astype(np.float32), horizon=5, frame_stack=3)
    assert out.frames.shape == (2, 8, 64, 64, 3) and np.isfinite(out.rewards).all()
    assert held == [3, 4, 3, 4, 3]  # 2 context frames + 2 predicted at most: re-anchored before steps 3 and 5


def test_a_sampler_state_from_another_device_kind_reseeds_deterministically():
    from ivideogpt.rl.world_models import build_world_model

    model = build_world_model(2, "tokenizer_tiny", "transformer_tiny", seed=0)
    generator = model.world_model.generator
    state = dict(model.state_dict(), generator=torch.arange(16, dtype=torch.uint8))  # a CUDA generator's layout
    draws = []
    for saved in (state, state, dict(state, generator=torch.arange(1, 17, dtype=torch.uint8))):
        model.load_state_dict(saved)  # `--resume --device cpu` of a run saved on a GPU
        draws.append(torch.rand(4, generator=generator))
    assert torch.equal(draws[0], draws[1]) and not torch.equal(draws[0], draws[2])
    own = model.state_dict()["generator"]  # the same device kind: restored exactly
    expected = torch.rand(4, generator=generator)
    model.load_state_dict(dict(state, generator=own))
    assert torch.equal(torch.rand(4, generator=generator), expected)


@pytest.mark.cuda
def test_a_tokenizer_trained_with_a_discriminator_keeps_it_on_the_model_device():
    from ivideogpt.presets import get_preset
    from ivideogpt.rl.imagination import WorldModelAdapter
    from ivideogpt.rl.world_models import _rl_transformer_config
    from ivideogpt.tokenizer.objective import TokenizerObjectiveConfig

    tokenizer = get_preset("tokenizer_tiny").build().cuda()
    transformer = _rl_transformer_config(get_preset("transformer_tiny"), 2).build().cuda()
    adapter = WorldModelAdapter.from_modules(tokenizer, transformer,
                                             tokenizer_loss=TokenizerObjectiveConfig(discriminator=True))
    assert {p.device.type for p in adapter.tokenizer_objective.parameters()} == {"cuda"}
