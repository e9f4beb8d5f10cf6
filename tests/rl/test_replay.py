import numpy as np
import pytest
import torch

from ivideogpt.rl.replay import SegmentReplay, mixed_sample


def _episode(steps: int, value0: int = 0, action_dim: int = 2):
    """Frame t is filled with value0 + t so stacks can be read back; reward t = t + 1."""
    frames = (value0 + np.arange(steps + 1, dtype=np.uint8))[:, None, None, None] * np.ones((1, 4, 4, 3), np.uint8)
    actions = np.arange(steps, dtype=np.float32)[:, None].repeat(action_dim, 1)
    rewards = np.arange(1, steps + 1, dtype=np.float32)
    return frames, actions, rewards


def test_nstep_returns_and_frame_stack():
    buf = SegmentReplay(1000, frame_stack=3, nstep=3, discount=0.5, seed=0)
    buf.add_episode(*_episode(10))
    batch = buf.sample(200)
    t = batch.action[:, 0].long()
    assert batch.obs.shape == (200, 9, 4, 4) and batch.obs.dtype == torch.uint8
    for i in range(200):
        ti = int(t[i])
        n = min(3, 10 - ti)
        expected = sum(0.5 ** k * (ti + k + 1) for k in range(n))
        assert batch.reward[i].item() == pytest.approx(expected)
        assert batch.discount[i].item() == pytest.approx(0.5 ** n)
        stack = batch.obs[i, ::3, 0, 0].tolist()  # one channel per stacked frame
        assert stack == [max(ti - 2, 0), max(ti - 1, 0), ti]  # reset padding repeats frame 0
        assert batch.next_obs[i, -1, 0, 0].item() == ti + n
    assert set(t.tolist()) == set(range(10))


def test_terminal_stops_bootstrap_and_return():
    buf = SegmentReplay(1000, 1, nstep=3, discount=0.9, seed=0)
    frames, actions, rewards = _episode(4)
    discounts = np.array([1, 1, 0, 1], np.float32)  # step 2 ends in a terminal state
    buf.add_episode(frames, actions, rewards, discounts)
    batch = buf.sample(100)
    for a, r, d in zip(batch.action[:, 0].long().tolist(), batch.reward.tolist(), batch.discount.tolist()):
        if a == 1:  # rewards 2, 3 then terminal: the third reward is not added
            assert r == pytest.approx(2 + 0.9 * 3) and d == 0.0


def test_history_is_not_sampled_and_capacity_is_fifo():
    buf = SegmentReplay(25, 2, nstep=1, discount=1.0, seed=0)
    frames, actions, rewards = _episode(10)
    buf.add_episode(frames, actions, rewards, history=4)
    assert len(buf) == 6
    assert buf.sample(100).action[:, 0].min() >= 4
    for v in (20, 40, 60):
        buf.add_episode(*_episode(10, value0=v))
    assert len(buf) == 20 and len(buf.segments) == 2  # oldest segments dropped
    with pytest.raises(ValueError, match="history"):
        buf.add_episode(frames, actions, rewards, history=10)


def test_clips_follow_batch_alignment():
    buf = SegmentReplay(1000, 3, 3, 0.99, seed=0)
    buf.add_episode(*_episode(8))
    clip = buf.sample_clips(4, length=5, num_context=2)
    assert clip.frames.shape == (4, 5, 3, 4, 4) and clip.num_context == 2
    first = ((clip.frames[:, :, 0, 0, 0] + 1) * 127.5).round()  # frame index t
    assert torch.equal(clip.actions[:, :, 0][:, :4], first[:, :4])  # actions[t] leaves frame t
    assert torch.equal(clip.rewards[:, 1:], first[:, 1:])           # reward t+1 -> arriving at frame t+1
    assert (clip.rewards[:, 0] == 0).all()


def test_sample_frames_for_branching():
    buf = SegmentReplay(1000, 3, 3, 0.99, seed=0)
    buf.add_episode(*_episode(6))
    frames, actions = buf.sample_frames(50, 3)
    assert frames.shape == (50, 3, 4, 4, 3) and actions.shape == (50, 2, 2)
    t = frames[:, -1, 0, 0, 0].astype(int)
    assert (frames[:, 0, 0, 0, 0] == np.maximum(t - 2, 0)).all()
    assert (actions[t == 0] == 0).all()


def test_mixed_sample_ratio():
    real, model = SegmentReplay(1000, 1, 1, 1.0, 0), SegmentReplay(1000, 1, 1, 1.0, 1)
    real.add_episode(*_episode(5))
    batch, n_real = mixed_sample(real, model, 10, 0.5)
    assert n_real == 10 and len(batch) == 10  # model buffer empty: all real
    model.add_episode(*_episode(5, value0=100))
    batch, n_real = mixed_sample(real, model, 10, 0.5)
    assert n_real == 5 and (batch.obs[:5] < 100).all() and (batch.obs[5:] >= 100).all()
