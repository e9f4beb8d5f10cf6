"""Tokenizer presets (paper parameter counts, meta-device builds) and config validation."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from ivideogpt.presets import describe_preset
from ivideogpt.tokenizer import PerFrameTokenizer, TokenizerConfig, tokenizer_cpu, tokenizer_tiny
from ivideogpt.tokenizer.objective import LOSS_FIELDS, TokenizerObjectiveConfig


@pytest.mark.parametrize("name, paper", [("tokenizer_64", 114e6), ("tokenizer_256", 310e6)])
def test_paper_presets_match_paper_parameter_counts(name, paper) -> None:
    info = describe_preset(name)  # built on the meta device
    assert abs(info["parameters"] - paper) / paper < 0.03, info["parameters"]
    assert info["context_tokens"] == [16, 16] and info["future_tokens"] == [4, 4]
    assert info["codebook_size"] == 8192 and info["embed_dim"] == 64


@pytest.mark.parametrize("name, grid", [("perframe_4x4_64", 4), ("perframe_16x16_64", 16)])
def test_perframe_presets(name, grid) -> None:
    info = describe_preset(name)
    assert info["kind"] == "perframe" and info["context_tokens"] == [grid, grid] == info["future_tokens"]
    assert 50e6 < info["parameters"] < 60e6  # one encoder-decoder pair of the 64x64 preset


def test_small_presets() -> None:
    assert describe_preset("tokenizer_tiny")["parameters"] < 1e6
    info = describe_preset("tokenizer_cpu")
    assert info["resolution"] == 64 and info["context_tokens"] == [16, 16] and info["codebook_size"] == 1000


def test_build_on_meta_device() -> None:
    with torch.device("meta"):
        model = tokenizer_cpu().build()
    assert all(p.device.type == "meta" for p in model.parameters())
    assert isinstance(replace(tokenizer_tiny(), kind="perframe").build(), PerFrameTokenizer)


@pytest.mark.parametrize("kwargs, field", [
    ({"resolution": 62}, "resolution"),
    ({"down_channels": (16, 30)}, "down_channels"),
    ({"down_channels": ()}, "down_channels"),
    ({"context_tokens": 5}, "context_tokens"),
    ({"future_tokens": 3}, "future_tokens"),
    ({"codebook_size": 1}, "codebook_size"),
    ({"max_cross_attention_resolution": 8}, "max_cross_attention_resolution"),
    ({"embed_dim": 0}, "embed_dim"),
    ({"kind": "3d"}, "kind"),
    ({"l1_weight": -1.0}, "l1_weight"),
    ({"disc_start": -5}, "disc_start"),
])
def test_validation_names_field_and_value(kwargs, field) -> None:
    config = TokenizerObjectiveConfig if field in LOSS_FIELDS else TokenizerConfig
    with pytest.raises(ValueError, match=field) as error:
        config(**kwargs)
    assert str(next(iter(kwargs.values())))[:2] in str(error.value)


def test_weights_load_into_a_meta_built_model(tiny_config, clip) -> None:
    source = tiny_config.build().eval()
    with torch.device("meta"):
        target = tiny_config.build()
    target = target.to_empty(device="cpu")
    target.load_state_dict(source.state_dict())
    target.eval()
    assert "context.quantize.unused_steps" in source.state_dict()
    ids = source.encode(clip[:, :1], clip[:, 1:])
    assert all(torch.equal(a, b) for a, b in zip(ids, target.encode(clip[:, :1], clip[:, 1:])))
    torch.testing.assert_close(source.decode(*ids)[1], target.decode(*ids)[1])


def test_loads_through_the_config_surface() -> None:
    from ivideogpt.configuration import ConfigError, load_config

    config = load_config(TokenizerConfig, overrides=["down_channels=[16,32,64]", "norm_groups=8", "kind=perframe"])
    assert config.down_channels == (16, 32, 64) and config.kind == "perframe"
    with pytest.raises(ConfigError, match="codebook_size must be >= 2; got 1"):
        load_config(TokenizerConfig, overrides=["codebook_size=1"])


def test_fsq_needs_matching_embed_dim_and_codebook_size() -> None:
    config = tokenizer_cpu()
    assert config.quantizer == "fsq" and config.codebook_size == 8 * 5 * 5 * 5 and config.embed_dim == 4
    with pytest.raises(ValueError, match="needs embed_dim=4 and codebook_size=1000"):
        replace(config, codebook_size=1024)
    with pytest.raises(ValueError, match="fsq_levels must list integers >= 2"):
        replace(config, fsq_levels=(8, 1), embed_dim=2, codebook_size=8)
    with pytest.raises(ValueError, match="quantizer must be 'vq' or 'fsq'"):
        replace(config, quantizer="lfq")
