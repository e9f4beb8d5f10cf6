"""The rollout's one-token path (`decode_step`) against the HF forward, across cache folds, weight changes
and precisions; the sampling head's prepacked logits."""

import pytest
import torch
from transformers.cache_utils import DynamicCache

from ivideogpt.transformer import decode

from ivideogpt.transformer import GrowingCache, transformer_tiny
from ivideogpt.transformer.cache import FOLD_TOKENS
from ivideogpt.transformer.cpu_kernels import PackedBf16Weight, bf16_linear_available
from ivideogpt.transformer.decode import cpu_layer_loop, head_logits, layer_weights


def _model(**overrides):
    torch.manual_seed(0)
    return transformer_tiny(num_layers=2, **overrides).build().eval()


def test_decode_step_equals_the_hf_forward_across_folds() -> None:
    model = _model(spatial_positions=True)
    steps = FOLD_TOKENS + 8  # the tail folds into the prefix on the way
    embeds = torch.randn(3, 6 + steps, 128)
    with torch.inference_mode():
        reference, cache = DynamicCache(), GrowingCache(2)
        expected = [model.backbone(embeds[:, :6], 0, reference, num_context=1)]
        model.backbone(embeds[:, :6], 0, cache, num_context=1)  # prefill through HF
        got = [expected[0]]
        for i in range(6, 6 + steps):
            expected.append(model.backbone(embeds[:, i : i + 1], i, reference, num_context=1))
            got.append(model.decode_step(embeds[:, i : i + 1], i, cache, num_context=1))
    torch.testing.assert_close(torch.cat(got, 1), torch.cat(expected, 1), rtol=1e-5, atol=1e-5)
    layer = cache.layers[0]
    assert layer.prefix[0].shape[2] == FOLD_TOKENS and layer.tail[0].shape[2] == 6 + steps - FOLD_TOKENS
    assert layer.prefix[0].is_contiguous() and layer.tail[0].data_ptr() == layer.tail_buffer[0].data_ptr()
    assert cache.get_seq_length() == 6 + steps


def test_decode_step_checks_its_position_and_token_count() -> None:
    model = _model()
    cache = GrowingCache(2)
    with torch.inference_mode():
        model.backbone(torch.randn(1, 4, 128), 0, cache)
        for bad_position, tokens in ((3, 1), (4, 2)):
            try:
                model.decode_step(torch.randn(1, tokens, 128), bad_position, cache)
            except ValueError as error:
                assert "position" in str(error) or "one token" in str(error)
            else:
                raise AssertionError("decode_step accepted a wrong position or several tokens")


def test_packed_weights_follow_weight_changes() -> None:
    model = _model()
    embeds = torch.randn(2, 5, 128)
    with torch.inference_mode():
        first = layer_weights(model.core)
        assert layer_weights(model.core) is first  # reused while the weights stay the same
        cache = GrowingCache(2)
        model.backbone(embeds[:, :4], 0, cache)
        before = model.decode_step(embeds[:, 4:], 4, cache.copy())
    with torch.no_grad():
        model.core.layers[1].mlp.down_proj.weight.mul_(2.0)  # e.g. a training update
    with torch.inference_mode():
        assert layer_weights(model.core) is not first
        after = model.decode_step(embeds[:, 4:], 4, cache.copy())
        reference = model.backbone(embeds[:, 4:], 4, cache.copy())
    assert not torch.allclose(before, after)
    torch.testing.assert_close(after, reference, rtol=1e-5, atol=1e-5)


def test_bf16_decode_step_follows_the_hf_forward() -> None:
    model = _model().to(torch.bfloat16)
    embeds = torch.randn(5, 12, 128, dtype=torch.bfloat16)  # 5 rows: a partial tile of the bf16 linear kernel
    with torch.inference_mode():
        reference, cache = DynamicCache(), GrowingCache(2)
        model.backbone(embeds[:, :6], 0, reference)
        model.backbone(embeds[:, :6], 0, cache)
        for i in range(6, 12):
            expected = model.backbone(embeds[:, i : i + 1], i, reference)
            got = model.decode_step(embeds[:, i : i + 1], i, cache)
            torch.testing.assert_close(got.float(), expected.float(), rtol=0.03, atol=0.03)
    assert isinstance(layer_weights(model.core)[0].gate_up, PackedBf16Weight) == (bf16_linear_available())


@pytest.mark.skipif(not bf16_linear_available(), reason="the C++ layer loop needs AVX512_BF16 and the CPU kernels")
def test_cpu_layer_loop_gives_the_python_loops_results_exactly(monkeypatch: pytest.MonkeyPatch) -> None:
    model = _model().to(torch.bfloat16)
    steps = FOLD_TOKENS + 4  # through a fold
    embeds = torch.randn(2, 6 + steps, 128, dtype=torch.bfloat16)
    with torch.inference_mode():
        context = GrowingCache(2)
        model.backbone(embeds[:, :6], 0, context)
        forked = context.copy(repeats=3)  # 6 rows: the context is a part shared by groups of 3
        assert cpu_layer_loop(model.core, embeds[:, :1], forked) is not None
        outputs, caches = [], []
        for loop in (True, False):
            if not loop:
                monkeypatch.setattr(decode, "cpu_layer_loop", lambda *args: None)
            cache = forked.copy()
            rows = embeds.repeat_interleave(3, 0)
            outputs.append(torch.cat([model.decode_step(rows[:, i : i + 1], i, cache) for i in range(6, 6 + steps)], 1))
            caches.append(cache)
    assert torch.equal(outputs[0], outputs[1])
    for with_loop, without in zip(*(cache.layers for cache in caches)):
        assert torch.equal(with_loop.keys, without.keys) and torch.equal(with_loop.values, without.values)
    assert caches[0].get_seq_length() == 6 + steps


def test_head_logits_are_the_future_logits_and_follow_weight_changes() -> None:
    model = _model()
    hidden, k = torch.randn(3, 128), model.config.codebook_size
    for _ in range(2):
        with torch.inference_mode():
            torch.testing.assert_close(head_logits(model.lm_head, k, k, hidden), model.future_logits(hidden),
                                       rtol=1e-5, atol=1e-5)
        with torch.no_grad():
            model.lm_head.weight.mul_(2.0)  # the second pass must see it
