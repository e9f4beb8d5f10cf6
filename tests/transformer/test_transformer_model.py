"""WorldModelTransformer: presets, config validation, loss targets, action/reward paths, errors, cache."""

import pytest
import torch
from transformers import DynamicCache

from ivideogpt.presets import describe_preset
from ivideogpt.transformer import GrowingCache, TransformerConfig, symexp, symlog, transformer_tiny

SMALL = dict(codebook_size=16, context_grid=(2, 2), future_grid=(2, 2), hidden_size=32, num_heads=2, ffn_size=64)


def codes(batch: int = 2, tc: int = 2, tf: int = 3, k: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.randint(0, k, (batch, tc, 2, 2)), torch.randint(0, k, (batch, tf, 2, 2))


@pytest.mark.parametrize("name, paper", [("transformer_small", 138e6), ("transformer_medium", 436e6)])
def test_paper_presets_parameter_counts(name: str, paper: float) -> None:
    facts = describe_preset(name)  # built on the meta device
    assert abs(facts["parameters"] - paper) / paper < 0.03
    assert facts["vocab_size"] == 16386 and facts["dropout"] == 0.1
    for key in ("num_layers", "num_heads", "hidden_size", "ffn_size"):
        assert key in facts


def test_config_validation_names_field_and_value() -> None:
    with pytest.raises(ValueError, match="hidden_size=130.*num_heads=4"):
        TransformerConfig(hidden_size=130, num_heads=4)
    with pytest.raises(ValueError, match="dropout.*1.5"):
        TransformerConfig(dropout=1.5)
    with pytest.raises(ValueError, match="action_dim.*-1"):
        TransformerConfig(action_dim=-1)
    with pytest.raises(ValueError, match="action_frequencies.*-2"):
        TransformerConfig(action_dim=2, action_frequencies=-2)
    with pytest.raises(ValueError, match="need action_dim > 0"):
        TransformerConfig(action_to_frame=True)
    with pytest.raises(ValueError, match="symlog_rewards"):
        TransformerConfig(symlog_rewards=True)


def test_loss_targets_are_future_tokens_only() -> None:
    model = TransformerConfig(**SMALL, num_layers=1).build()
    ctx, fut = codes()
    out = model(ctx, fut)
    assert out.logits.shape == (2, 3 * 4, 34)
    assert torch.equal(out.targets, fut.flatten(1) + 16)  # context never a target, slots neither
    loss, logs = model.loss(ctx, fut)
    assert torch.isfinite(loss) and set(logs) == {"ce", "accuracy"}
    with pytest.raises(ValueError, match="at least one future frame"):
        model.loss(ctx, fut[:, :0])


def test_predictions_are_causal() -> None:
    model = TransformerConfig(**SMALL, num_layers=2).build().eval()
    ctx, fut = codes(tf=2)
    changed = fut.clone()
    changed[:, 1] = (changed[:, 1] + 1) % 16  # alter the second future frame
    a, b = model(ctx, fut).logits, model(ctx, changed).logits
    torch.testing.assert_close(a[:, :5], b[:, :5])  # first frame's predictions (+ the 2nd's first) unchanged
    assert not torch.allclose(a[:, 5:], b[:, 5:])


def test_zero_initialised_action_projection_keeps_pretrained_outputs() -> None:
    torch.manual_seed(0)
    free = TransformerConfig(**SMALL, num_layers=1).build().eval()
    conditioned = TransformerConfig(**SMALL, num_layers=1, action_dim=3, reward_head=True).build().eval()
    missing = conditioned.load_pretrained(free.state_dict())
    assert sorted(missing) == ["action_proj.bias", "action_proj.weight", "reward_head.bias", "reward_head.weight"]
    ctx, fut = codes()
    actions = torch.randn(2, 5, 3)
    torch.testing.assert_close(conditioned(ctx, fut, actions).logits, free(ctx, fut).logits, rtol=0, atol=0)
    wrapped = {f"transformer.{k}": v for k, v in free.state_dict().items()} | {"tokenizer.x": torch.zeros(1)}
    assert len(conditioned.load_pretrained(wrapped, prefix="transformer.")) == 4
    bad = {k: v for k, v in free.state_dict().items() if not k.startswith("lm_head")}
    with pytest.raises(ValueError, match="lm_head"):
        conditioned.load_pretrained(bad)


def test_actions_reach_the_slot_of_the_next_frame() -> None:
    model = TransformerConfig(**SMALL, num_layers=1, action_dim=2).build().eval()
    torch.nn.init.normal_(model.action_proj.weight)
    ctx, fut = codes(tc=1, tf=3)
    actions = torch.randn(2, 4, 2)
    base = model(ctx, fut, actions).logits
    changed = actions.clone()
    changed[:, 1] += 1.0  # leads from frame 1 to frame 2 (the second future frame)
    after = model(ctx, fut, changed).logits
    torch.testing.assert_close(base[:, :4], after[:, :4])  # first future frame: unaffected
    assert not torch.allclose(base[:, 4:8], after[:, 4:8])
    torch.testing.assert_close(model(ctx, fut, actions[:, :3]).logits, base)  # T-1 actions also accepted


@pytest.mark.parametrize("to_frame", [False, True], ids=["slot", "whole-frame"])
def test_actions_are_added_where_the_layout_puts_them(to_frame: bool) -> None:
    model = TransformerConfig(**SMALL, num_layers=1, action_dim=2, action_frequencies=3,
                              action_to_frame=to_frame).build().eval()
    assert model.action_proj.in_features == 2 * (1 + 2 * 3)  # raw value + sin/cos of 3 octaves per dimension
    torch.nn.init.normal_(model.action_proj.weight)
    ctx, fut = codes(tc=2, tf=2)
    ids = model.layout.build_ids(ctx, fut)  # frames of 5 tokens: slot + 2x2 codes
    actions = torch.randn(2, 3, 2)
    added = model.embed(ids, actions, num_context=2) - model.embed(ids)
    offsets = model.project_actions(actions)  # (B, 3, H)
    for t in range(3):  # action t leads into frame t + 1, whose tokens are 5(t+1) .. 5(t+1)+4
        frame = slice(5 * (t + 1), 5 * (t + 2))
        touched = added[:, frame] if to_frame else added[:, frame][:, :1]
        torch.testing.assert_close(touched, offsets[:, t : t + 1].expand_as(touched))
        if not to_frame:
            assert added[:, frame][:, 1:].abs().max() == 0
    assert added[:, :5].abs().max() == 0  # the first frame has no action leading into it
    with pytest.raises(ValueError, match="one action per frame transition"):
        model.embed(ids, actions[:, :2], num_context=2)
    with pytest.raises(ValueError, match="needs num_context"):
        model.embed(ids, actions)


def test_action_fourier_features_separate_nearby_actions() -> None:
    plain = TransformerConfig(**SMALL, num_layers=1, action_dim=1).build()
    fourier = TransformerConfig(**SMALL, num_layers=1, action_dim=1, action_frequencies=6).build()
    for model in (plain, fourier):
        torch.nn.init.normal_(model.action_proj.weight)
        torch.nn.init.zeros_(model.action_proj.bias)
    near = torch.tensor([[0.30], [0.33]])  # a 1.5% step of the action range
    far = torch.tensor([[-1.0], [1.0]])

    @torch.no_grad()
    def gap(model, pair):
        a, b = model.project_actions(pair)
        return float((a - b).norm())

    # Linear: nearby actions are 1/66 as far apart as the range ends. Fourier: a far larger share.
    assert gap(plain, near) / gap(plain, far) == pytest.approx(0.015, rel=1e-3)
    assert gap(fourier, near) / gap(fourier, far) > 0.1


@pytest.mark.parametrize("shape, message", [
    ((2, 4, 3), "A=2"), ((2, 2, 2), "T=4 or 3"), ((1, 4, 2), "B=2"), ((2, 4), "shaped"),
])
def test_mismatched_actions_raise(shape: tuple[int, ...], message: str) -> None:
    model = TransformerConfig(**SMALL, num_layers=1, action_dim=2).build()
    ctx, fut = codes(tc=1, tf=3)
    with pytest.raises(ValueError, match=message):
        model(ctx, fut, torch.zeros(shape))
    with pytest.raises(ValueError, match="action-conditioned"):
        model(ctx, fut)
    free = TransformerConfig(**SMALL, num_layers=1).build()
    with pytest.raises(ValueError, match="action-free"):
        free(ctx, fut, torch.zeros(2, 4, 2))


def test_bad_ids_raise() -> None:
    model = TransformerConfig(**SMALL, num_layers=1).build()
    ctx, fut = codes()
    with pytest.raises(ValueError, match=r"\[0, 16\)"):
        model(ctx, fut + 16)
    with pytest.raises(ValueError, match="context_ids must be shaped"):
        model(ctx[:, :, :1], fut)


def test_reward_head_and_symlog() -> None:
    x = torch.tensor([-100.0, -1.0, 0.0, 0.5, 1000.0])
    torch.testing.assert_close(symexp(symlog(x)), x)
    model = TransformerConfig(**SMALL, num_layers=1, reward_head=True, symlog_rewards=True).build()
    ctx, fut = codes()
    out = model(ctx, fut)
    assert out.rewards.shape == (2, 3)
    loss, logs = model.loss(ctx, fut, rewards=torch.full((2, 3), 10.0))
    torch.testing.assert_close(logs["reward_mse"], symlog(torch.tensor(10.0)) ** 2)  # zero-init head predicts 0
    with pytest.raises(ValueError, match=r"\(2, 3\)"):
        model.loss(ctx, fut, rewards=torch.zeros(2, 5))


def test_dropout_only_in_training() -> None:
    model = TransformerConfig(**SMALL, num_layers=1, dropout=0.3).build()
    ctx, fut = codes()
    assert not torch.allclose(model(ctx, fut).logits, model(ctx, fut).logits)
    model.eval()
    torch.testing.assert_close(model(ctx, fut).logits, model(ctx, fut).logits, rtol=0, atol=0)


def test_growing_cache_matches_dynamic_cache_and_forks() -> None:
    model = transformer_tiny(num_layers=2).build().eval()
    embeds = torch.randn(3, 9, 128)
    with torch.no_grad():
        ref_cache, cache = DynamicCache(), GrowingCache(2)
        ref = [model.backbone(embeds[:, :6], 0, ref_cache)]
        out = [model.backbone(embeds[:, :6], 0, cache)]
        for i in range(6, 9):  # one token at a time through the HF forward (the cache's update)
            ref.append(model.backbone(embeds[:, i : i + 1], i, ref_cache))
            out.append(model.backbone(embeds[:, i : i + 1], i, cache))
        torch.testing.assert_close(torch.cat(out, 1), torch.cat(ref, 1))
        torch.testing.assert_close(torch.cat(out, 1), model.backbone(embeds), rtol=1e-4, atol=1e-5)
        assert cache.get_seq_length() == 9
        forked = cache.copy(repeats=2, indices=torch.tensor([2, 0]))  # rows 2, 2, 0, 0
        merged = GrowingCache.concat([cache.copy(indices=torch.tensor([1])), cache.copy(indices=torch.tensor([0]))])
        nxt = torch.randn(1, 1, 128)
        a = model.backbone(nxt.expand(4, 1, 128), 9, forked)
        torch.testing.assert_close(a[0], a[1])
        torch.testing.assert_close(a[2], a[3])
        b = model.backbone(nxt.expand(3, 1, 128), 9, cache)
        torch.testing.assert_close(a[[0, 2]], b[[2, 0]])
        torch.testing.assert_close(model.backbone(nxt.expand(2, 1, 128), 9, merged), b[[1, 0]])
        assert cache.get_seq_length() == 10 and forked.get_seq_length() == 10


def test_builds_on_meta_device() -> None:
    with torch.device("meta"):
        model = TransformerConfig().build()
    assert model.lm_head.weight.is_meta and model.describe()["vocab_size"] == 16386


def test_spatial_positions_add_cell_coordinates_and_stay_causal() -> None:
    model = TransformerConfig(**SMALL, num_layers=2, spatial_positions=True).build().eval()
    plain = TransformerConfig(**SMALL, num_layers=2).build().eval()
    plain.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("spatial_proj.")})
    ctx, fut = codes(tf=2)
    assert not torch.allclose(model(ctx, fut).logits, plain(ctx, fut).logits)  # the spatial term is used
    with torch.no_grad():
        model.spatial_proj.weight.zero_()
    torch.testing.assert_close(model(ctx, fut).logits, plain(ctx, fut).logits)  # and is the only difference
    with pytest.raises(ValueError, match="needs num_context"):
        model.backbone(torch.randn(1, 3, 32))


def test_future_only_loss_is_the_cross_entropy_over_future_codes() -> None:
    torch.manual_seed(0)
    model = transformer_tiny(codebook_size=16, context_grid=(2, 2), future_grid=(2, 2)).build()
    torch.nn.init.normal_(model.lm_head.weight, std=1.0)  # logits far from uniform
    ctx, fut = torch.randint(16, (2, 1, 2, 2)), torch.randint(16, (2, 3, 2, 2))
    full = model(ctx, fut)
    future = model(ctx, fut, future_only=True)
    assert future.logits.shape == (2, 12, 16) and torch.equal(future.targets, full.targets - 16)
    torch.testing.assert_close(future.logits, full.logits[..., 16:32])
    expected = torch.nn.functional.cross_entropy(full.logits[..., 16:32].flatten(0, 1), fut.flatten())
    loss, logs = model.loss(ctx, fut, future_only=True)
    torch.testing.assert_close(loss, expected)
    assert not torch.allclose(model.loss(ctx, fut)[0], loss)  # the whole-vocabulary softmax differs


@pytest.mark.parametrize("layout", ["slotted", "official"])
@pytest.mark.parametrize("future_only", [False, True])
def test_future_inputs_change_what_is_read_not_what_is_predicted(layout: str, future_only: bool) -> None:
    torch.manual_seed(0)
    model = TransformerConfig(**SMALL, num_layers=1, layout=layout).build().eval()  # no dropout
    torch.nn.init.normal_(model.lm_head.weight, std=1.0)
    ctx, fut = codes()
    read = torch.randint(0, 16, fut.shape)
    assert torch.equal(model(ctx, fut, future_only=True).targets.reshape(fut.shape), fut)  # frame-major order
    out = model(ctx, read, future_only=future_only)  # logits from the swapped inputs
    targets = model(ctx, fut, future_only=future_only).targets  # targets from the true codes
    expected = torch.nn.functional.cross_entropy(out.logits.flatten(0, 1), targets.flatten())
    loss, _ = model.loss(ctx, fut, future_only=future_only, future_inputs=read)
    torch.testing.assert_close(loss, expected)
    torch.testing.assert_close(model.loss(ctx, fut, future_only=future_only, future_inputs=fut)[0],
                               model.loss(ctx, fut, future_only=future_only)[0])
    assert not torch.allclose(loss, model.loss(ctx, read, future_only=future_only)[0])
    with pytest.raises(ValueError, match="future_inputs must be shaped like future_ids"):
        model.loss(ctx, fut, future_inputs=read[:, :2])
