"""CompressiveTokenizer: shapes, round trips, the split API, cross-attention wiring, context counts."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from ivideogpt.tokenizer import CompressiveTokenizer, ContextFeatures, TokenizerOutput


@pytest.fixture
def model(tiny_config) -> CompressiveTokenizer:
    return tiny_config.build().eval()


def test_encode_shapes_and_ranges(model, clip) -> None:
    context_ids, future_ids = model.encode(clip[:, :1], clip[:, 1:])
    assert context_ids.shape == (2, 1, 16, 16) and context_ids.dtype == torch.long
    assert future_ids.shape == (2, 2, 4, 4) and future_ids.dtype == torch.long
    for ids in (context_ids, future_ids):
        assert 0 <= ids.min() and ids.max() < model.config.codebook_size


def test_round_trip_shapes_and_determinism(model, clip) -> None:
    ids = model.encode(clip[:, :1], clip[:, 1:])
    assert all(torch.equal(a, b) for a, b in zip(ids, model.encode(clip[:, :1], clip[:, 1:])))
    context_recon, future_recon = model.decode(*ids)
    assert context_recon.shape == (2, 1, 3, 64, 64) and future_recon.shape == (2, 2, 3, 64, 64)
    again = model.decode(*ids)
    assert torch.equal(context_recon, again[0]) and torch.equal(future_recon, again[1])


def test_forward_output(model, clip) -> None:
    out = model(clip[:, :2], clip[:, 2:])
    assert isinstance(out, TokenizerOutput)
    assert out.context_ids.shape == (2, 2, 16, 16) and out.future_ids.shape == (2, 1, 4, 4)
    assert out.reconstruction.shape == clip.shape
    assert out.commitment.ndim == 0 and out.commitment >= 0 and out.codebook_loss >= 0
    assert set(out.stats) == {"codebook_usage", "perplexity", "future_codebook_usage", "future_perplexity"}
    # forward's reconstructions are what decode() gives for the same ids
    context_recon, future_recon = model.decode(out.context_ids, out.future_ids)
    torch.testing.assert_close(out.context_recon, context_recon)
    torch.testing.assert_close(out.future_recon, future_recon)


def test_split_api_matches_whole_clip_api(model, clip) -> None:
    context_ids, future_ids = model.encode(clip[:, :1], clip[:, 1:])
    split_ids, encoder_features = model.encode_context(clip[:, :1])
    assert torch.equal(split_ids, context_ids)
    assert torch.equal(model.encode_future(clip[:, 1:], encoder_features), future_ids)
    features = model.context_decoder_features(context_ids)
    _, future_recon = model.decode(context_ids, future_ids)
    # decoding one new frame at a time with cached features gives the same frames
    steps = [model.decode_future(future_ids[:, t:t + 1], features) for t in range(future_ids.shape[1])]
    torch.testing.assert_close(torch.cat(steps, dim=1), future_recon)


def test_context_features_repeat_and_index(model, clip) -> None:
    context_ids, future_ids = model.encode(clip[:, :1], clip[:, 1:])
    features = model.context_decoder_features(context_ids)
    assert isinstance(features, ContextFeatures) and features.batch_size == 2 and features.num_frames == 1
    forked = features.repeat(3)  # (B*3): each element 3 times in a row
    assert forked.batch_size == 6
    frames = model.decode_future(future_ids.repeat_interleave(3, dim=0), forked)
    reference = model.decode_future(future_ids, features)
    torch.testing.assert_close(frames[3:6], reference[1:2].expand(3, -1, -1, -1, -1))
    picked = features.index([1])
    torch.testing.assert_close(model.decode_future(future_ids[1:], picked), reference[1:])
    assert features.index(0).batch_size == 1


def test_gradients_reach_context_encoder_through_cross_attention(model, clip) -> None:
    model.train()
    out = model(clip[:, :1], clip[:, 1:])
    (out.future_recon - clip[:, 1:]).abs().mean().backward()  # future reconstruction loss only
    for name, module in [("context encoder", model.context.encoder), ("prediction encoder", model.prediction.encoder),
                         ("context decoder", model.context.decoder)]:
        grads = [p.grad for p in module.parameters() if p.grad is not None]
        assert grads and sum(g.abs().sum() for g in grads) > 0, f"no gradient reached the {name}"


def test_use_context_false_changes_future_frames(model, clip) -> None:
    context_ids, future_ids = model.encode(clip[:, :1], clip[:, 1:])
    with_context = model.decode(context_ids, future_ids)[1]
    without = model.decode(context_ids, future_ids, use_context=False)[1]
    assert without.shape == with_context.shape
    assert not torch.allclose(with_context, without)
    torch.testing.assert_close(model.decode_future(future_ids, None, use_context=False), without)


@pytest.mark.parametrize("num_context", [1, 2, 3])
def test_any_number_of_context_frames(model, make_clip, num_context) -> None:
    clip = make_clip(batch=1, frames=num_context + 2)
    out = model(clip[:, :num_context], clip[:, num_context:])
    assert out.context_ids.shape == (1, num_context, 16, 16) and out.future_ids.shape == (1, 2, 4, 4)
    assert out.future_recon.shape == (1, 2, 3, 64, 64)


def test_future_tokens_depend_on_context(model, clip) -> None:
    _, future_a = model.encode_context(clip[:, :1])
    _, future_b = model.encode_context(torch.flip(clip[:, :1], dims=[-1]))
    a = model.prediction.encode(clip[:, 1], future_a.levels)[0].quantized
    b = model.prediction.encode(clip[:, 1], future_b.levels)[0].quantized
    assert not torch.allclose(a, b)


def test_describe_and_num_params(model) -> None:
    info = model.describe()
    assert info["context_tokens"] == [16, 16] and info["future_tokens"] == [4, 4]
    assert info["codebook_size"] == 128 and info["embed_dim"] == 16 and info["resolution"] == 64
    assert model.num_params == sum(p.numel() for p in model.parameters()) < 1_000_000


def test_parameter_names_follow_diffusers_layout(model) -> None:
    names = set(dict(model.named_parameters()))
    for expected in ["context.encoder.down_blocks.0.resnets.0.conv1.weight",
                     "context.encoder.down_blocks.0.downsamplers.0.conv.weight",
                     "context.encoder.mid_block.resnets.1.norm2.weight", "context.encoder.conv_out.weight",
                     "context.quant_conv.weight", "context.quantize.embedding.weight",
                     "context.decoder.up_blocks.0.upsamplers.0.conv.weight", "context.decoder.conv_norm_out.bias",
                     "prediction.encoder.down_blocks.2.cross_attention.to_q.weight",
                     "prediction.decoder.up_blocks.0.cross_attention.to_out.0.weight"]:
        assert expected in names, expected
    assert not any("cross_attention" in n for n in names if n.startswith("context."))


def test_position_codes_are_distinct_per_position() -> None:
    from ivideogpt.tokenizer.blocks import sincos_2d

    codes = sincos_2d(4, 4, 18, torch.device("cpu"), torch.float32)
    assert codes.shape == (16, 18) and torch.cdist(codes, codes).add(torch.eye(16)).min() > 0.1


def test_future_residual_starts_as_a_copy_of_the_last_context_frame(tiny_config, clip) -> None:
    model = replace(tiny_config, future_residual=True).build().eval()
    context_ids, future_ids = model.encode(clip[:, :2], clip[:, 2:])
    context_recon, future_recon = model.decode(context_ids, future_ids)
    close = dict(atol=0.05, rtol=0)  # the last conv starts small, not zero, so gradients reach the decoder
    assert torch.allclose(future_recon, context_recon[:, -1:].expand_as(future_recon), **close)
    out = model(clip[:, :2], clip[:, 2:])  # training adds the observed last context frame
    assert torch.allclose(out.future_recon, clip[:, 1:2].expand_as(out.future_recon), **close)
    observed = model.context_decoder_features(context_ids, clip[:, :2])  # so do rollouts from observed frames
    assert torch.allclose(model.decode_future(future_ids, observed), clip[:, 1:2].expand_as(future_recon), **close)
    features = model.context_decoder_features(context_ids)
    assert torch.allclose(model.decode_future(future_ids, features.repeat(2).index([0, 2])), future_recon, atol=1e-6)
    no_base = ContextFeatures(features.levels)
    with pytest.raises(ValueError, match="changes on the last context frame"):
        model.decode_future(future_ids, no_base)
    off = model.decode_future(future_ids, None, use_context=False)  # no context at all: no base either
    assert off.abs().max() < 0.05


def test_future_residual_encoder_reads_the_change_from_the_last_context_frame(tiny_config, clip) -> None:
    model = replace(tiny_config, future_residual=True).build().eval()
    seen = []
    encode = model.prediction.encode
    model.prediction.encode = lambda frames, contexts: seen.append(frames) or encode(frames, contexts)
    model.encode(clip[:, :2], clip[:, 2:])
    change = (clip[:, 2:] - clip[:, 1:2]).flatten(0, 1)
    torch.testing.assert_close(seen[0], change)
    _, features = model.encode_context(clip[:, :2])
    with pytest.raises(ValueError, match="changes on the last context frame"):
        model.encode_future(clip[:, 2:], ContextFeatures(features.levels))


def test_static_patches_get_the_skip_id(tiny_config, clip) -> None:
    config = replace(tiny_config, future_residual=True, quantizer="fsq", fsq_levels=(5, 5, 5), embed_dim=3,
                     codebook_size=125, future_skip_threshold=0.05)
    model = config.build().eval()
    context = clip[:, :1]
    future = context.repeat(1, 2, 1, 1, 1).clone()
    region = future[:, 1, :, 20:24, 40:44]
    future[:, 1, :, 20:24, 40:44] = torch.where(region > 0, -1.0, 1.0)  # change one patch of the second frame
    context_ids, future_ids = model.encode(context, future)
    skip = model.prediction.quantize.zero_id
    assert (future_ids[:, 0] == skip).all()  # nothing moved: every token is "no change"
    assert (future_ids[:, 1, 1, 2] != skip).any()  # rows 16-31, columns 32-47: the changed patch
    others = torch.ones(4, 4, dtype=torch.bool)
    others[1, 2] = False
    assert (future_ids[:, 1][:, others] == skip).all()
    out = model(context, future)  # training sees the same ids and the skip code's latent
    assert torch.equal(out.future_ids, future_ids)
    decoded = model.decode_future(future_ids, model.context_decoder_features(context_ids, context))
    assert torch.equal(decoded[:, 0], context[:, 0])  # skip patches copy the last context frame exactly
    assert torch.equal(out.future_recon[:, 0], context[:, 0])
    assert torch.equal(decoded[:, 1, :, :16], context[:, 0, :, :16])  # top row of patches: all skipped
    assert not torch.equal(decoded[:, 1, :, 16:32, 32:48], context[:, 0, :, 16:32, 32:48])
    with pytest.raises(ValueError, match="future_skip_threshold > 0 needs future_residual=True"):
        replace(config, future_residual=False)
