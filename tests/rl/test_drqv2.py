import pytest
import torch

from ivideogpt.rl.drqv2 import DrQV2Agent, DrQV2Config
from ivideogpt.rl.replay import TransitionBatch


def test_paper_defaults_and_validation():
    c = DrQV2Config.paper()
    assert (c.lr, c.feature_dim, c.hidden_dim, c.encoder_channels, c.encoder_layers) == (1e-4, 50, 1024, 32, 4)
    assert (c.batch_size, c.nstep, c.discount, c.critic_target_tau) == (256, 3, 0.99, 0.01)
    assert (c.update_every_steps, c.num_seed_frames, c.stddev_clip) == (2, 4000, 0.3)
    with pytest.raises(ValueError, match="nstep"):
        DrQV2Config(nstep=0)
    with pytest.raises(ValueError, match="discount"):
        DrQV2Config(discount=1.5)


def test_linear_stddev_schedule():
    c = DrQV2Config(stddev_init=1.0, stddev_final=0.1, stddev_duration=100)
    assert c.stddev(0) == 1.0 and c.stddev(100) == pytest.approx(0.1) and c.stddev(10_000) == pytest.approx(0.1)
    assert c.stddev(50) == pytest.approx(0.55)


def _agent() -> DrQV2Agent:
    return DrQV2Agent((9, 16, 16), 2, DrQV2Config.tiny())


def test_act_ranges():
    agent = _agent()
    obs = torch.randint(0, 256, (9, 16, 16), dtype=torch.uint8)
    assert agent.act(obs, 0, eval_mode=True).shape == (2,)
    batch = agent.act(obs[None].repeat(64, 1, 1, 1), 0, eval_mode=False)  # uniform exploration phase
    assert batch.shape == (64, 2) and batch.abs().max() <= 1 and batch.std() > 0.3
    late = agent.act(obs[None].repeat(64, 1, 1, 1), 10**6, eval_mode=False)
    assert late.abs().max() < 1


def test_update_reduces_critic_loss_on_fixed_batch():
    agent = _agent()
    g = torch.Generator().manual_seed(0)
    batch = TransitionBatch(obs=torch.randint(0, 256, (32, 9, 16, 16), dtype=torch.uint8, generator=g),
                            action=torch.rand(32, 2, generator=g) * 2 - 1, reward=torch.rand(32, generator=g),
                            discount=torch.full((32,), 0.99 ** 3),
                            next_obs=torch.randint(0, 256, (32, 9, 16, 16), dtype=torch.uint8, generator=g))
    first = agent.update(batch, step=10**6)
    for _ in range(30):
        last = agent.update(batch, step=10**6)
    assert last["critic_loss"] < 0.5 * first["critic_loss"]
    assert {"critic_loss", "actor_loss", "critic_q1", "actor_stddev"} <= set(last)


def test_target_critic_moves_by_tau():
    agent = _agent()
    before = [p.clone() for p in agent.critic_target.parameters()]
    batch = TransitionBatch(obs=torch.zeros(4, 9, 16, 16, dtype=torch.uint8), action=torch.zeros(4, 2),
                            reward=torch.ones(4), discount=torch.ones(4), next_obs=torch.zeros(4, 9, 16, 16, dtype=torch.uint8))
    agent.update(batch, 0)
    tau = agent.config.critic_target_tau
    for b, t, p in zip(before, agent.critic_target.parameters(), agent.critic.parameters()):
        assert torch.allclose(t, (1 - tau) * b + tau * p, atol=1e-6)


def test_state_dict_roundtrip():
    a, b = _agent(), _agent()
    b.load_state_dict(a.state_dict())
    obs = torch.randint(0, 256, (9, 16, 16), dtype=torch.uint8)
    assert torch.equal(a.act(obs, 0, True), b.act(obs, 0, True))
