"""The fast path on released checkpoints: the KV-cached step, fed the reference tokens frame by frame, gives
the paper code's logits and rewards; sampled rollouts stay within the future codes."""

import pytest
import torch

from ivideogpt.official import load_snapshot

TOLERANCE = 1e-4


@pytest.fixture(scope="module", params=["act-free", "act-cond"])
def world(request, fixtures):
    return request.param, load_snapshot(fixtures / request.param)


def test_cached_steps_give_the_reference_logits_and_rewards(world, reference) -> None:
    name, model = world
    key = "free" if name == "act-free" else "cond"
    layout, frames = model.layout, reference["video"] * 2 - 1
    actions = reference["actions"] if model.action_dim else None
    model.reset(frames[:, :2], None if actions is None else actions[:, :1])
    future = layout.split_future(reference["tokens"], 2)  # (2, 6, 4, 4) from the reference ids
    logprobs, rewards = [], []
    for t in range(future.shape[1]):
        logits, reward = model.score_step(future[:, t], None if actions is None else actions[:, 1 + t])
        targets = reference["tokens"][:, layout.length(2, t) + 1: layout.length(2, t + 1) + 1]  # codes, next slot
        scored = logits[:, : targets.shape[1]].log_softmax(-1).gather(-1, targets[..., None])[..., 0]
        logprobs.append(scored)
        rewards.append(reward)
    assert model.state.length == reference["tokens"].shape[1]
    assert torch.equal(model.state.ids, reference["tokens"])
    label_logprobs = torch.cat(logprobs, dim=1).flatten()  # batch-major, in sequence order, as the reference
    assert (label_logprobs - reference[f"{key}_label_logprobs"]).abs().max() < TOLERANCE
    assert (logits[:, -8:] - reference[f"{key}_last_logits"]).abs().max() < TOLERANCE
    if key == "cond":
        assert (torch.stack(rewards, 1) - reference["cond_reward"]).abs().max() < TOLERANCE


def test_sampled_rollout_stays_within_future_codes(world, reference) -> None:
    name, model = world
    frames = reference["video"][:, :2] * 2 - 1
    actions = reference["actions"][:, 2:5] if model.action_dim else None
    predicted, rewards = model.rollout(frames, actions, horizon=3, seed=0)
    assert predicted.shape == (2, 3, 3, 64, 64) and predicted.abs().max() <= 1
    layout = model.layout
    assert torch.equal(model.state.ids[:, : layout.length(2, 0)], reference["tokens"][:, : layout.length(2, 0)])
    future = model.state.ids[:, layout.length(2, 0):].reshape(2, 3, 17)
    assert (future[:, :, 0] == layout.future_slot).all()
    codes = future[:, :, 1:]
    assert ((codes >= layout.future_offset) & (codes < layout.context_slot)).all()
    assert (rewards is None) == (name == "act-free")


def test_kept_cache_and_reprefill_sample_the_same_frames(world, reference) -> None:
    name, model = world
    frames = reference["video"][:1, :2] * 2 - 1
    actions = reference["actions"][:1, 2:4] if model.action_dim else None
    kept, _ = model.rollout(frames, actions, horizon=2, seed=3)
    kept_ids = model.state.ids.clone()
    model.cache_mode = "per_frame"
    try:
        again, _ = model.rollout(frames, actions, horizon=2, seed=3)
    finally:
        model.cache_mode = "kept"
    assert torch.equal(model.state.ids, kept_ids)
    assert (again - kept).abs().max() < 1e-4
