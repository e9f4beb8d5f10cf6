import numpy as np
import pytest
import torch

from ivideogpt.rl.imagination import ImaginationModel, imagine
from ivideogpt.rl.mbpo import MBPO, MBPOConfig
from ivideogpt.rl.replay import SegmentReplay


def test_table5_defaults():
    c = MBPOConfig.paper()
    assert (c.init_rollout_batch, c.rollout_interval, c.rollout_batch, c.horizon) == (640, 200, 32, 10)
    assert (c.init_model_train_steps, c.tokenizer_interval, c.transformer_interval) == (1000, 40, 10)
    assert (c.model_batch_size, c.sequence_length, c.num_context, c.tokenizer_future_frames) == (16, 12, 2, 5)
    assert (c.model_lr, c.model_weight_decay, c.real_ratio) == (1e-4, 0.0, 0.5)
    with pytest.raises(ValueError, match="real_ratio"):
        MBPOConfig(real_ratio=1.5)
    with pytest.raises(ValueError, match="sequence_length"):
        MBPOConfig(sequence_length=2)
    with pytest.raises(ValueError, match="action_repeat"):
        MBPOConfig(transformer_interval=5).check_action_repeat(2)


def _real_buffer(episodes: int = 3, steps: int = 20) -> SegmentReplay:
    buf = SegmentReplay(10_000, 3, 3, 0.99, seed=0)
    rng = np.random.default_rng(0)
    for _ in range(episodes):
        buf.add_episode(rng.integers(0, 256, (steps + 1, 8, 8, 3), dtype=np.uint8),
                        rng.uniform(-1, 1, (steps, 2)).astype(np.float32), rng.random(steps).astype(np.float32))
    return buf


def test_imagine_shapes_and_rewards(stub_model):
    assert isinstance(stub_model, ImaginationModel)
    real = _real_buffer()
    frames, actions = real.sample_frames(5, 3)
    seen = []

    def policy(obs: torch.Tensor) -> torch.Tensor:
        seen.append(obs.shape)
        return torch.full((obs.shape[0], 2), 0.25)

    out = imagine(stub_model, policy, frames, actions, horizon=4, frame_stack=3)
    assert out.frames.shape == (5, 7, 8, 8, 3) and out.frames.dtype == np.uint8
    assert out.actions.shape == (5, 6, 2) and out.rewards.shape == (5, 6) and out.history == 2
    assert seen == [(5, 9, 8, 8)] * 4
    assert stub_model.reset_shapes == [((5, 2, 3, 8, 8), (5, 1, 2))]
    np.testing.assert_allclose(out.rewards[:, 2:], 0.5)  # the stub's reward: sum of the action
    np.testing.assert_array_equal(out.rewards[:, :2], 0.0)
    np.testing.assert_array_equal(out.frames[:, :3], frames)  # real branch points kept as history
    np.testing.assert_array_equal(out.frames[:, 3], np.roll(frames[:, -1], 1, axis=2))


def test_mbpo_schedule_buffers_and_mix(stub_model):
    cfg = MBPOConfig(init_rollout_batch=6, rollout_interval=20, rollout_batch=4, horizon=3, init_model_train_steps=2,
                     tokenizer_interval=8, transformer_interval=4, model_batch_size=2, sequence_length=6,
                     num_context=2, tokenizer_future_frames=3, start_env_steps=10)
    real = _real_buffer()
    mbpo = MBPO(cfg, stub_model, real, frame_stack=3, nstep=3, discount=0.99, seed=0)
    policy = lambda obs: torch.zeros(obs.shape[0], 2)  # noqa: E731
    batch, n_real = mbpo.sample(8)
    assert n_real == 8  # no imagined data before MBPO starts
    for env_step in range(0, 62, 2):
        mbpo.on_agent_step(env_step, policy)
    assert mbpo.events["rollout"] == [10, 20, 40, 60]
    assert mbpo.events["transformer"] == [10, 10, 12, 16, 20, 24, 28, 32, 36, 40, 44, 48, 52, 56, 60]
    assert mbpo.events["tokenizer"] == [10, 10, 16, 24, 32, 40, 48, 56]
    assert len(mbpo.model_buffer.segments) == 6 + 3 * 4 and len(mbpo.model_buffer) == 18 * 3
    shapes = {kind: shape for kind, _, shape in stub_model.trained}
    assert shapes == {"tokenizer": (2, 5, 3, 8, 8), "transformer": (2, 6, 3, 8, 8)}
    batch, n_real = mbpo.sample(8)
    assert n_real == 4 and batch.obs.shape == (8, 9, 8, 8)
    assert (batch.reward[4:] == 0).all()  # imagined rewards of the zero policy under the stub
