"""WorldModel: cached == uncached generation, determinism, shapes, forking, any context/horizon, errors."""

import copy

import pytest
import torch

from ivideogpt.tokenizer import tokenizer_tiny
from ivideogpt.transformer import transformer_tiny
from ivideogpt.world_model import RolloutState, WindowedRollout, WorldModel


VARIANTS = {"rope": {}, "rope+spatial": {"spatial_positions": True},
            "actions-to-frame": {"spatial_positions": True, "action_to_frame": True, "action_frequencies": 4}}


@pytest.fixture(scope="module", params=list(VARIANTS), ids=list(VARIANTS))
def parts(request) -> tuple[torch.nn.Module, torch.nn.Module]:
    torch.manual_seed(0)
    tokenizer = tokenizer_tiny().build()
    transformer = transformer_tiny(action_dim=2, reward_head=True, **VARIANTS[request.param]).build()
    torch.nn.init.normal_(transformer.action_proj.weight, std=0.5)  # trained-like: actions matter
    torch.nn.init.normal_(transformer.reward_head.weight, std=0.5)
    return tokenizer, transformer


def context(batch: int = 2, tc: int = 2) -> torch.Tensor:
    return torch.rand(batch, tc, 3, 64, 64, generator=torch.Generator().manual_seed(tc)) * 2 - 1


def test_cached_and_uncached_generation_are_identical(parts) -> None:
    ctx, ctx_actions, actions = context(), torch.randn(2, 1, 2), torch.randn(2, 3, 2)
    results = {}
    for mode in ("kept", "static", "per_frame", "none"):
        world = WorldModel(*parts, cache=mode)
        frames, rewards = world.rollout(ctx, actions, context_actions=ctx_actions, seed=7)
        results[mode] = (world.state.ids, frames, rewards)
    for mode in ("static", "per_frame", "none"):
        assert torch.equal(results[mode][0], results["kept"][0])  # the same tokens
        torch.testing.assert_close(results[mode][1], results["kept"][1])
        torch.testing.assert_close(results[mode][2], results["kept"][2], rtol=1e-4, atol=1e-5)


def test_bf16_rollouts_follow_the_fp32_model(parts) -> None:
    tokenizer, transformer = parts
    fp32 = WorldModel(tokenizer, transformer, seed=0)
    bf16 = WorldModel(tokenizer, copy.deepcopy(transformer), seed=0, precision="bf16")
    assert bf16.transformer.lm_head.weight.dtype == torch.bfloat16 and transformer.lm_head.weight.dtype == torch.float32
    ctx, ctx_actions, actions = context(), torch.randn(2, 1, 2), torch.randn(2, 3, 2)
    codes = torch.randint(0, transformer.config.codebook_size, (2, *transformer.layout.future_grid))
    scored = {}
    for name, world in (("fp32", fp32), ("bf16", bf16)):
        world.reset(ctx, ctx_actions)
        logits, rewards = world.score_step(codes, actions[:, 0])
        frames = world.decode_latest()
        assert logits.dtype == rewards.dtype == frames.dtype == torch.float32
        scored[name] = (logits.log_softmax(-1), rewards, frames)
    # bf16 keeps ~3 significant digits; the random reward head (std 0.5) sums large terms, so its share is wider
    for fp32_value, bf16_value, share in zip(scored["fp32"], scored["bf16"], (0.05, 0.25, 0.05)):
        assert (fp32_value - bf16_value).abs().mean() < share * fp32_value.abs().mean() + 0.01
    a = bf16.rollout(ctx, actions, context_actions=ctx_actions, seed=3)
    b = bf16.rollout(ctx, actions, context_actions=ctx_actions, seed=3)
    assert torch.equal(a[0], b[0]) and a[0].dtype == torch.float32
    with pytest.raises(ValueError, match="precision"):
        WorldModel(tokenizer, transformer, precision="fp16")


def test_seeded_rollouts_are_reproducible(parts) -> None:
    world = WorldModel(*parts)
    ctx, ctx_actions, actions = context(), torch.randn(2, 1, 2), torch.randn(2, 2, 2)
    a = world.rollout(ctx, actions, context_actions=ctx_actions, seed=1)[0]
    b = world.rollout(ctx, actions, context_actions=ctx_actions, seed=1)[0]
    c = world.rollout(ctx, actions, context_actions=ctx_actions, seed=2)[0]
    assert torch.equal(a, b) and not torch.equal(a, c)
    chunked = WorldModel(*parts, prefill_rows=1)  # prefill one row at a time, caches concatenated
    torch.testing.assert_close(chunked.rollout(ctx, actions, context_actions=ctx_actions, seed=1)[0], a)


@pytest.mark.parametrize("tc", [1, 3])
def test_step_shapes_any_context_and_horizon(parts, tc: int) -> None:
    world = WorldModel(*parts, seed=0)
    state = world.reset(context(2, tc), torch.randn(2, tc - 1, 2))
    start = state.length
    for _ in range(6):
        frames, rewards = world.step(torch.randn(2, 2))
        assert frames.shape == (2, 3, 64, 64) and rewards.shape == (2,)
        assert frames.abs().max() <= 1.0 + 1e-5 and torch.isfinite(rewards).all()
    assert world.state.length == start + 6 * 17 == state.cache.get_seq_length()
    assert world.state.num_future == 6 and world.state.actions.shape == (2, tc - 1 + 6, 2)


def test_fork_shares_one_prefill(parts) -> None:
    world = WorldModel(*parts)
    base = world.reset(context(1, 2), torch.randn(1, 1, 2))
    length = base.length
    actions = torch.randn(4, 3, 2)
    frames, rewards = world.rollout(base, actions, seed=3)  # 4 candidates from one context
    assert frames.shape == (4, 3, 3, 64, 64) and rewards.shape == (4, 3)
    assert base.length == length and base.cache.get_seq_length() == length  # base state untouched
    again, _ = world.rollout(base, actions, seed=3)
    assert torch.equal(frames, again)
    world.set_state(base.repeat(1))
    forked = world.fork(3)
    assert forked.batch_size == 3 and forked.cache.get_seq_length() == length
    same = torch.zeros(3, 2)
    frames, _ = world.step(same)
    assert frames.shape == (3, 3, 64, 64)


def test_forked_rows_share_their_context_and_sample_what_copies_would(parts) -> None:
    ctx, ctx_actions, actions = context(), torch.randn(2, 1, 2), torch.randn(6, 3, 2)  # 3 candidates per context
    results = {}
    for mode in ("kept", "none"):  # "none" re-runs the HF forward over every token, sharing nothing
        world = WorldModel(*parts, cache=mode)
        frames, rewards = world.rollout(ctx, actions, context_actions=ctx_actions, seed=5)
        results[mode] = (world.state, frames, rewards)
    state = results["kept"][0]
    layer = state.cache.layers[0]
    assert layer.share == 3 and layer.shared[0].shape[0] == 2  # the context once per context, not per candidate
    assert torch.equal(state.ids, results["none"][0].ids)
    torch.testing.assert_close(results["kept"][1], results["none"][1])
    torch.testing.assert_close(results["kept"][2], results["none"][2], rtol=1e-4, atol=1e-5)
    picked = state.index([4, 1])  # rows of different groups get their own copies
    assert picked.cache.layers[0].share == 1 and picked.cache.get_seq_length() == state.cache.get_seq_length()
    torch.testing.assert_close(picked.cache.layers[0].keys, layer.keys[[4, 1]])


def test_rollout_without_decode_keeps_tokens_and_rewards_and_decodes_later(parts) -> None:
    world = WorldModel(*parts)
    ctx, ctx_actions, actions = context(), torch.randn(2, 1, 2), torch.randn(6, 3, 2)
    frames, rewards = world.rollout(ctx, actions, context_actions=ctx_actions, seed=3)
    decoded_ids = world.state.ids
    calls = []
    original = world.tokenizer.decode_future
    world.tokenizer.decode_future = lambda *a, **k: calls.append(1) or original(*a, **k)
    try:
        no_frames, same_rewards = world.rollout(ctx, actions, context_actions=ctx_actions, seed=3, decode=False)
        assert not calls  # the tokenizer's decode was skipped
        later = world.decode_frames(rows=[4, 1])
    finally:
        del world.tokenizer.decode_future
    assert no_frames is None and torch.equal(world.state.ids, decoded_ids)  # sampling is unchanged
    assert torch.equal(same_rewards, rewards)
    torch.testing.assert_close(later, frames[[4, 1]])  # decoding afterwards = decoding every step
    with pytest.raises(ValueError, match="no future frames"):
        world.decode_frames(world.reset(ctx, ctx_actions))


def test_action_free_world_model_and_sensitivity_check(parts) -> None:
    tokenizer, conditioned = parts
    free = WorldModel(tokenizer, transformer_tiny().build(), seed=0)
    frames, rewards = free.rollout(context(2, 1), horizon=2)
    assert frames.shape == (2, 2, 3, 64, 64) and rewards is None
    with pytest.raises(ValueError, match="action-free"):
        free.step(torch.zeros(2, 2))
    with pytest.raises(ValueError, match="action_dim > 0"):
        free.action_sensitivity(context(2, 1), torch.zeros(2, 2, 2))
    sensitive = WorldModel(tokenizer, conditioned).action_sensitivity(context(2, 1), torch.randn(2, 2, 2))
    assert sensitive["token_change"] > 0.1 and sensitive["frame_l1"] > 0
    ignoring = transformer_tiny(action_dim=2).build()  # zero-initialised projection: actions have no effect
    blind = WorldModel(tokenizer, ignoring).action_sensitivity(context(2, 1), torch.randn(2, 2, 2))
    assert blind["token_change"] == 0.0 and blind["frame_l1"] == 0.0


def test_errors(parts) -> None:
    tokenizer, transformer = parts
    world = WorldModel(tokenizer, transformer)
    with pytest.raises(RuntimeError, match="reset"):
        world.step(torch.zeros(2, 2))
    with pytest.raises(ValueError, match=r"\(2, 1, 2\)"):
        world.reset(context(2, 2))  # context actions missing
    with pytest.raises(ValueError, match=r"\(2, 1, 2\)"):
        world.reset(context(2, 2), torch.zeros(2, 2, 2))
    world.reset(context(2, 1))
    for bad in (torch.zeros(2, 3), torch.zeros(3, 2), None):
        with pytest.raises(ValueError, match="actions"):
            world.step(bad)
    with pytest.raises(ValueError, match="cannot be split"):
        world.rollout(context(2, 1), torch.zeros(3, 2, 2))
    with pytest.raises(ValueError, match=r"\(N, H, A\) with A = 2, got \(2, 2, 3\)"):
        world.rollout(context(2, 1), torch.zeros(2, 2, 3))
    nan = torch.tensor([[0.0, 0.0], [float("nan"), 0.0]])
    with pytest.raises(ValueError, match=r"NaN or inf \(batch rows \[1\]\)"):
        world.step(nan)
    assert world.state.num_future == 0  # the refused step left the state as it was
    with pytest.raises(ValueError, match="rollout actions contain NaN"):
        world.rollout(context(2, 1), torch.stack([torch.zeros(2, 2), nan], dim=1))
    with pytest.raises(ValueError, match="context actions contain NaN"):
        world.reset(context(2, 2), nan[:, None])
    assert world.reset(context(2, 1).numpy()).batch_size == 2  # an array is taken like a tensor
    with pytest.raises(ValueError, match="do not match"):
        WorldModel(tokenizer, transformer_tiny(codebook_size=64).build())


def test_concatenated_states_step_like_each_alone(parts) -> None:
    """Two rollouts joined along the batch (one forward) give, greedily, what each gives alone."""
    world = WorldModel(*parts, temperature=0.0)
    a = world.reset(context(1, 2), torch.randn(1, 1, 2))
    b = world.reset(context(1, 2) * 0.5, torch.randn(1, 1, 2))
    actions = torch.randn(2, 2)
    world.set_state(RolloutState.concat([a, b]))
    together, rewards = world.step(actions)
    joined = world.state
    for row, state in enumerate((a, b)):
        world.set_state(state)
        alone, reward = world.step(actions[row : row + 1])
        torch.testing.assert_close(together[row : row + 1], alone, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(rewards[row : row + 1], reward, rtol=1e-4, atol=1e-4)
        assert torch.equal(joined.index([row]).ids, world.state.ids)


def test_states_of_different_lengths_do_not_concatenate(parts) -> None:
    world = WorldModel(*parts)
    a = world.reset(context(1, 2), torch.randn(1, 1, 2))
    b = world.reset(context(1, 2), torch.randn(1, 1, 2))
    world.step(torch.randn(1, 2))
    with pytest.raises(ValueError, match="one length"):
        RolloutState.concat([a, b])


def test_decode_latest_is_the_frame_step_returns(parts) -> None:
    world = WorldModel(*parts, seed=0)
    world.reset(context(2, 2), torch.randn(2, 1, 2))
    frames, _ = world.step(torch.randn(2, 2))
    torch.testing.assert_close(world.decode_latest(), frames)
    world.reset(context(2, 2), torch.randn(2, 1, 2))
    with pytest.raises(ValueError, match="no future frame"):
        world.decode_latest()


def test_to_the_same_device_keeps_the_model_and_its_random_stream(parts) -> None:
    ctx, ctx_actions, actions = context(), torch.randn(2, 1, 2), torch.randn(2, 2, 2)
    moved, kept = WorldModel(*parts, seed=4), WorldModel(*parts, seed=4)
    assert moved.to("cpu") is moved and moved.to(torch.device("cpu")) is moved and moved.device.type == "cpu"
    a = moved.rollout(ctx, actions, context_actions=ctx_actions)[0]
    assert torch.equal(a, kept.rollout(ctx, actions, context_actions=ctx_actions)[0])


@pytest.mark.cuda
def test_to_another_device_moves_modules_and_generator_and_stays_seeded(parts) -> None:
    ctx, ctx_actions, actions = context(), torch.randn(2, 1, 2), torch.randn(2, 2, 2)
    world = WorldModel(*map(copy.deepcopy, parts), seed=4)
    world.reset(ctx, ctx_actions)
    assert world.to("cuda") is world and world.state is None  # the CPU rollout cannot continue there
    assert world.device.type == world.generator.device.type == "cuda"
    assert next(world.tokenizer.parameters()).device.type == "cuda"
    a = world.rollout(ctx, actions, context_actions=ctx_actions, seed=1)[0]
    assert a.device.type == "cuda" and torch.equal(a, world.rollout(ctx, actions, context_actions=ctx_actions, seed=1)[0])


@pytest.mark.cuda
@pytest.mark.parametrize("window", [None, 4])  # 4: re-anchored before steps 3 and 5
def test_cuda_graph_frames_sample_the_tokens_of_the_kept_cache(parts, window) -> None:
    ctx, ctx_actions, actions = context(), torch.randn(2, 1, 2), torch.randn(5, 2, 2)
    ids, frames = {}, {}
    for mode in ("kept", "static"):
        world = WorldModel(*map(copy.deepcopy, parts), cache=mode).to("cuda")
        rollout = WindowedRollout(world, window)
        rollout.reset(ctx.cuda(), ctx_actions.cuda(), seed=7)
        steps = [rollout.step(action.cuda()) for action in actions]
        assert all(frame.device.type == reward.device.type == "cuda" for frame, reward in steps)
        ids[mode], frames[mode] = world.state.ids, torch.stack([frame for frame, _ in steps], dim=1)
    assert world.frames.captured  # the static rollout replayed captured graphs
    assert torch.equal(ids["static"], ids["kept"])
    torch.testing.assert_close(frames["static"], frames["kept"])


def test_windowed_rollout_re_anchors_on_its_newest_frames_and_the_action_between_them(parts) -> None:
    ctx, ctx_actions, actions = context(), torch.randn(2, 1, 2), torch.randn(3, 2, 2)
    world = WorldModel(*parts, temperature=0.0)
    world.reset(ctx, ctx_actions)
    first, second = world.step(actions[0])[0], world.step(actions[1])[0]
    world.reset(torch.stack([first, second], dim=1), actions[1][:, None])  # by hand: the window of 4 is full
    expected = world.step(actions[2])[0]
    rollout = WindowedRollout(world, window=4)
    rollout.reset(ctx, ctx_actions)
    frames = [rollout.step(action)[0] for action in actions]
    assert (world.state.num_context, world.state.num_future) == (2, 1)
    torch.testing.assert_close(frames[2], expected)
    with pytest.raises(ValueError, match="2 context frames leave no room for a predicted frame"):
        WindowedRollout(world, window=2).reset(ctx, ctx_actions)
    with pytest.raises(ValueError, match="window must be >= 2"):
        WindowedRollout(world, window=1)


def test_a_sibling_shares_modules_and_settings_but_not_the_rollout_or_sampler(parts) -> None:
    world = WorldModel(*parts, temperature=0.5, top_k=7, seed=0)
    world.num_context, world.window = 2, 4
    world.reset(context(), torch.randn(2, 1, 2))
    sibling = world.sibling(seed=1)
    assert sibling.tokenizer is world.tokenizer and sibling.transformer is world.transformer
    assert (sibling.num_context, sibling.window, sibling.temperature, sibling.top_k, sibling.precision) == \
        (2, 4, 0.5, 7, world.precision)
    assert sibling.state is None and sibling.generator is not world.generator


def test_float64_frames_arrays_and_lists_are_taken_like_float32_tensors(parts) -> None:
    world = WorldModel(*parts, seed=0)
    ctx, actions = context(2, 1), torch.randn(2, 2, 2)
    expected = world.rollout(ctx, actions, seed=3)[0]
    float64 = ctx.double().numpy()  # what numpy arithmetic gives
    torch.testing.assert_close(world.rollout(float64, actions.numpy(), seed=3)[0], expected)
    torch.testing.assert_close(world.rollout(ctx.tolist(), actions.tolist(), seed=3)[0], expected)
    codes = world.encode(ctx.double().numpy(), ctx.numpy())
    assert [c.shape[:2] for c in codes] == [(2, 1), (2, 1)]


@pytest.mark.parametrize("call, match", [
    (lambda w: w.reset(context(2, 1)[:, :0]), r"context_frames must be \(B, T, 3, H, W\) with B, T >= 1, got \(2, 0,"),
    (lambda w: w.step(torch.zeros(2, 2, dtype=torch.bool)), "step actions must be real numbers, got dtype torch.bool"),
    (lambda w: w.step(torch.zeros(2, 2, dtype=torch.complex64)), "must be real numbers, got dtype torch.complex64"),
    (lambda w: w.step("left"), "step actions must be numbers"),
    (lambda w: w.fork(2.5), r"repeat's n must be an integer >= 1, got 2.5"),
    (lambda w: w.rollout(context(2, 1), torch.zeros(2, 2, 2), horizon=2.0), "horizon must be an integer >= 1, got 2.0"),
    (lambda w: w.decode_frames(rows=[0.5]), "rows must be integer batch indices"),
    (lambda w: w.decode_frames(rows=[5]), r"rows must be batch indices in \[0, 2\), got \[5\]"),
    (lambda w: w.decode_frames(frames=0), "frames must be an integer >= 1, got 0"),
    (lambda w: w.decode_frames(frames=3), r"frames must be in \[1, 1\] \(the state's future frames\), got 3"),
    (lambda w: w.set_state(context()), "set_state takes a RolloutState"),
    (lambda w: RolloutState.concat([]), "at least one state"),
])
def test_bad_api_input_is_refused_with_what_was_expected(parts, call, match) -> None:
    world = WorldModel(*parts, seed=0)
    world.reset(context(2, 1))
    world.step(torch.zeros(2, 2))
    with pytest.raises(ValueError, match=match):
        call(world)


def test_refused_codes_leave_the_state_to_score_on(parts) -> None:
    """Float or out-of-range codes are refused before any token is fed, so the next call scores as if none came."""
    world = WorldModel(*parts, seed=0)
    codes = torch.randint(0, world.layout.codebook_size, (2, *world.layout.future_grid))
    world.reset(context(2, 1))
    expected, _ = world.score_step(codes, torch.zeros(2, 2))
    world.reset(context(2, 1))
    for bad, match in ((codes.float(), "got dtype torch.float32"), (codes + world.layout.codebook_size, "got ids in")):
        message = rf"codes must be \(2, .*\) \(B, h', w'\) integer ids in \[0, \d+\), {match}"
        with pytest.raises(ValueError, match=message):
            world.score_step(bad, torch.zeros(2, 2))
    logits, _ = world.score_step(codes.numpy(), torch.zeros(2, 2))
    torch.testing.assert_close(logits, expected)
