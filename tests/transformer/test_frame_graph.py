"""Static-cache frame generation: the same tokens as the kept cache, and captured frames fed correctly.

CUDA graphs cannot run here, so `replaying_graph` (tests/conftest.py) stands in for one with the same
contract: outputs are fixed tensors written by every replay, and inputs are read from the buffers the
capture saw. What it checks is the plumbing around a graph (buffers bound and handed back, inputs
copied in, one capture per shape), which is where a graph path goes wrong without failing loudly.
"""

import copy

import pytest
import torch

from ivideogpt.tokenizer import tokenizer_tiny
from ivideogpt.transformer import transformer_tiny
from ivideogpt.transformer.cache import GrowingCache
from ivideogpt.transformer.frame_graph import FrameGenerator
from ivideogpt.transformer.sampling import sample_tokens
from ivideogpt.transformer.static_cache import CAPACITY_STEP, StaticCache
from ivideogpt.world_model import WorldModel


@pytest.fixture(scope="module")
def parts() -> tuple[torch.nn.Module, torch.nn.Module]:
    torch.manual_seed(0)
    tokenizer = tokenizer_tiny().build()
    transformer = transformer_tiny(action_dim=2, reward_head=True, spatial_positions=True, action_to_frame=True,
                                   action_frequencies=4).build()
    for parameter in transformer.parameters():  # trained-like: sharp logits, actions that matter
        torch.nn.init.normal_(parameter, std=0.3)
    return tokenizer, transformer


def context(batch: int) -> torch.Tensor:
    return torch.rand(batch, 2, 3, 64, 64, generator=torch.Generator().manual_seed(batch)) * 2 - 1


def graphed(tokenizer, transformer, graph_factory, **kwargs) -> WorldModel:
    world = WorldModel(tokenizer, transformer, cache="static", **kwargs)
    world.frames = FrameGenerator(transformer, graphs=True, graph_factory=graph_factory)
    return world


def test_sampling_from_given_draws_is_sampling_from_the_generator() -> None:
    logits = torch.randn(5, 40)
    drawn = sample_tokens(logits, 0.8, 10, generator=torch.Generator().manual_seed(3))
    draws = torch.rand(5, generator=torch.Generator().manual_seed(3))
    assert torch.equal(sample_tokens(logits, 0.8, 10, draws=draws), drawn)


def test_static_cache_holds_copies_forks_grows_and_joins() -> None:
    growing = GrowingCache(2)
    for layer in growing.layers:
        layer.append(torch.randn(3, 4, 10, 8), torch.randn(3, 4, 10, 8))
    cache = StaticCache.from_growing(growing, 16)
    assert cache.capacity == 16 and cache.length == cache.get_seq_length() == int(cache.position) == 10
    assert torch.equal(cache.keys[1][:, :, :10], growing.layers[1].keys) and not cache.keys[1][:, :, 10:].any()
    forked = cache.copy(repeats=2)
    assert forked.batch_size == 6 and torch.equal(forked.values[0][4], cache.values[0][2])
    picked = cache.copy(indices=torch.tensor([2, 0]), repeats=2)
    assert torch.equal(picked.keys[0][1], cache.keys[0][2]) and torch.equal(picked.keys[0][2], cache.keys[0][0])
    forked.keys[0].zero_()
    assert cache.keys[0][:, :, :10].any()  # copies are independent
    grown = cache.grown(32)
    assert grown.capacity == 32 and torch.equal(grown.keys[0][:, :, :16], cache.keys[0])
    joined = StaticCache.concat([cache, grown])
    assert joined.batch_size == 6 and joined.capacity == 32 and joined.length == 10
    cache.advance(6)
    assert cache.length == int(cache.position) == 16
    with pytest.raises(ValueError, match="capacity"):
        cache.advance(1)


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_static_rollouts_sample_the_kept_caches_tokens_past_their_first_capacity(parts, temperature) -> None:
    ctx, ctx_actions, actions = context(2), torch.randn(2, 1, 2), torch.randn(4, 12, 2)
    results = {}
    for mode in ("kept", "static"):
        world = WorldModel(*parts, cache=mode, temperature=temperature)
        base = world.reset(ctx, ctx_actions)
        frames, rewards = world.rollout(base, actions, seed=4)  # two candidates per context, one prefill
        results[mode] = (world.state, frames, rewards)
    state = results["static"][0]
    assert state.length > base.length + 8 * 17 and state.cache.capacity % CAPACITY_STEP == 0  # it grew
    assert torch.equal(state.ids, results["kept"][0].ids)
    torch.testing.assert_close(results["static"][1], results["kept"][1])
    torch.testing.assert_close(results["static"][2], results["kept"][2], rtol=1e-4, atol=1e-5)


def test_captured_frames_follow_each_state_they_are_handed(parts, replaying_graph) -> None:
    """Rollouts stepped in turn, a reused base state and teacher forcing: replays give the eager tokens."""
    ctx, ctx_actions = context(2), torch.randn(2, 1, 2)
    actions = torch.randn(6, 3, 2, generator=torch.Generator().manual_seed(1))
    codes = torch.randint(0, parts[1].config.codebook_size, (2, *parts[1].layout.future_grid))

    def play(world: WorldModel) -> list[torch.Tensor]:
        base = world.reset(ctx, ctx_actions, seed=2)
        first, second = base.repeat(3), base.repeat(3)
        seen = []
        for t in range(3):  # alternate two states: each replay must see its own cache
            for state in (first, second):
                world.set_state(state)
                seen.append(world.step(actions[:, t], decode=False)[1])
        world.set_state(base.repeat(1))
        logits, _ = world.score_step(codes, actions[:2, 0])  # forced codes: another captured frame
        seen.append(logits)
        again = world.rollout(base, actions, decode=False, seed=9)[1]  # the base state was never changed
        return seen + [again, first.ids, second.ids, world.state.ids]

    eager = play(WorldModel(*parts, cache="static", temperature=1.0))
    replayed = play(graphed(*parts, replaying_graph, temperature=1.0))
    assert replaying_graph.captures == 2  # sampled frames at batch 6 and forced ones at batch 2
    for a, b in zip(eager, replayed):
        if a.dtype == torch.long:
            assert torch.equal(a, b)
        else:
            torch.testing.assert_close(a, b)


def test_changed_weights_are_captured_again(parts, replaying_graph) -> None:
    tokenizer, transformer = parts[0], copy.deepcopy(parts[1])
    world = graphed(tokenizer, transformer, replaying_graph, temperature=0.0)
    ctx, ctx_actions, actions = context(1), torch.randn(1, 1, 2), torch.randn(1, 2, 2)
    world.rollout(ctx, actions, context_actions=ctx_actions, decode=False)
    with torch.no_grad():
        transformer.core.layers[0].mlp.down_proj.weight.mul_(3.0)  # as a training step would, in place
    rewards = world.rollout(ctx, actions, context_actions=ctx_actions, decode=False)[1]
    eager = WorldModel(tokenizer, transformer, cache="kept", temperature=0.0)
    torch.testing.assert_close(rewards, eager.rollout(ctx, actions, context_actions=ctx_actions, decode=False)[1])
    assert replaying_graph.captures == 2
