"""Bad inputs fail early with a ValueError that names the expected shape."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from ivideogpt.tokenizer import CompressiveTokenizer


@pytest.fixture
def model(tiny_config) -> CompressiveTokenizer:
    return tiny_config.build()


@pytest.mark.parametrize("context, match", [
    (torch.zeros(2, 3, 64, 64), r"context_frames must be \(B, T, 3, 64, 64\) float in \[-1, 1\]; got \(2, 3, 64, 64\)"),
    (torch.zeros(2, 1, 4, 64, 64), r"got \(2, 1, 4, 64, 64\)"),
    (torch.zeros(2, 1, 3, 32, 32), r"\(B, T, 3, 64, 64\).*got \(2, 1, 3, 32, 32\)"),
    (torch.zeros(2, 0, 3, 64, 64), r"got \(2, 0, 3, 64, 64\)"),
    (torch.zeros(2, 1, 3, 64, 64, dtype=torch.uint8), "dtype torch.uint8"),
    (torch.full((2, 1, 3, 64, 64), float("nan")), "NaN or infinite"),
    (torch.full((2, 1, 3, 64, 64), 255.0), r"values in \[255, 255\]"),
])
def test_bad_context_frames(model, clip, context, match) -> None:
    with pytest.raises(ValueError, match=match):
        model.encode(context, clip[:, 1:])


def test_mismatched_batch(model, clip) -> None:
    with pytest.raises(ValueError, match=r"future_frames must be .* with B = 2"):
        model.encode(clip[:, :1], clip[:1, 1:])
    with pytest.raises(ValueError, match=r"future_frames must be .* with B = 2"):
        model(clip[:, :1], clip[:1, 1:])
    context_ids, future_ids = model.encode(clip[:, :1], clip[:, 1:])
    with pytest.raises(ValueError, match=r"future_ids must be \(B, T, 4, 4\) .* with B = 2"):
        model.decode(context_ids, future_ids[:1])
    features = model.context_decoder_features(context_ids)
    with pytest.raises(ValueError, match="batch 2 but the frames/ids have batch 1"):
        model.decode_future(future_ids[:1], features)


def test_no_future_frames(model, clip) -> None:
    with pytest.raises(ValueError, match=r"future_frames must be \(B, T, 3, 64, 64\)"):
        model(clip, clip[:, 3:])


@pytest.mark.parametrize("make_ids, match", [
    (lambda ids: ids[:, :, :8, :8],
     r"context_ids must be \(B, T, 16, 16\) integer ids in \[0, 128\); got \(2, 1, 8, 8\)"),
    (lambda ids: ids[:, 0], r"got \(2, 16, 16\)"),
    (lambda ids: ids.float(), "dtype torch.float32"),
    (lambda ids: ids + 1000, r"got ids in \[\d+, \d+\]"),
    (lambda ids: ids - 1000, r"got ids in \[-\d+, -?\d+\]"),
])
def test_bad_context_ids(model, clip, make_ids, match) -> None:
    context_ids, future_ids = model.encode(clip[:, :1], clip[:, 1:])
    with pytest.raises(ValueError, match=match):
        model.decode(make_ids(context_ids), future_ids)


def test_bad_future_ids_and_features(model, clip) -> None:
    context_ids, future_ids = model.encode(clip[:, :1], clip[:, 1:])
    features = model.context_decoder_features(context_ids)
    with pytest.raises(ValueError, match=r"future_ids must be \(B, T, 4, 4\)"):
        model.decode_future(context_ids, features)
    with pytest.raises(ValueError, match=r"decoder_features must be ContextFeatures"):
        model.decode_future(future_ids, None)
    _, encoder_features = model.encode_context(clip[:, :1])
    with pytest.raises(ValueError, match=r"decoder_features must hold levels \(B, Tc, 32, 16, 16\)"):
        model.decode_future(future_ids, type(features)(features.levels[:1]))
    with pytest.raises(ValueError, match=r"context_features must be ContextFeatures"):
        model.encode_future(clip[:, 1:], features.levels)


def test_features_of_the_other_path(model, clip) -> None:
    """Encoder and decoder features have the same shapes here: only their source tells them apart."""
    context_ids, encoder_features = model.encode_context(clip[:, :1])
    decoder_features = model.context_decoder_features(context_ids)
    assert [t.shape for t in encoder_features.levels] == [t.shape for t in decoder_features.levels]
    with pytest.raises(ValueError, match=r"decoder_features must be the context decoder's features \(from "
                                         r"context_decoder_features\); got the encoder's \(from encode_context\)"):
        model.decode_future(model.encode_future(clip[:, 1:], encoder_features), encoder_features.repeat(1))
    with pytest.raises(ValueError, match=r"context_features must be the context encoder's features"):
        model.encode_future(clip[:, 1:], decoder_features.to("cpu"))


def test_context_frames_of_another_length(model, clip) -> None:
    """Context frames match the ids one for one (a residual tokenizer codes on the last): a whole clip is refused."""
    context_ids, _ = model.encode(clip[:, :1], clip[:, 1:])
    with pytest.raises(ValueError, match=r"context_frames must be .* with T = 1 .*; got \(2, 3, 3, 64, 64\)"):
        model.context_decoder_features(context_ids, clip)


def test_resolution_mismatch_with_other_preset(tiny_config, clip) -> None:
    model = replace(tiny_config, resolution=32, down_channels=(16, 32)).build()
    with pytest.raises(ValueError, match=r"\(B, T, 3, 32, 32\).*got \(2, 1, 3, 64, 64\)"):
        model.encode_context(clip[:, :1])
