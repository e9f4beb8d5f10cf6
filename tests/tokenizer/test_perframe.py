"""PerFrameTokenizer: the per-frame VQGAN baseline built from the same blocks."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch


@pytest.mark.parametrize("grid", [4, 16])
def test_encode_decode(tiny_config, clip, grid) -> None:
    model = replace(tiny_config, kind="perframe", context_tokens=grid).build()
    ids = model.encode_frames(clip)
    assert ids.shape == (2, 3, grid, grid) and ids.dtype == torch.long and ids.max() < tiny_config.codebook_size
    assert model.decode_frames(ids).shape == clip.shape
    assert not any("cross_attention" in name for name, _ in model.named_parameters())
    out = model(clip[:, :1], clip[:, 1:])
    assert torch.equal(torch.cat([out.context_ids, out.future_ids], dim=1), ids)
    assert model.describe()["future_tokens"] == [grid, grid]
    context_ids, future_ids = model.encode(clip[:, :1], clip[:, 1:])  # the compressive tokenizer's interface
    assert torch.equal(torch.cat([context_ids, future_ids], dim=1), ids)
    assert torch.equal(torch.cat(model.decode(context_ids, future_ids), dim=1), model.decode_frames(ids))


def test_world_model_drives_a_perframe_tokenizer(tiny_config, clip) -> None:
    from ivideogpt.transformer import transformer_tiny
    from ivideogpt.world_model import WorldModel

    tokenizer = replace(tiny_config, kind="perframe", context_tokens=4).build()
    transformer = transformer_tiny(codebook_size=tiny_config.codebook_size, context_grid=(4, 4),
                                   future_grid=(4, 4)).build()
    frames, _ = WorldModel(tokenizer, transformer).rollout(clip[:, :1], None, horizon=2, seed=0)
    assert frames.shape == (2, 2, *clip.shape[2:])


def test_bad_ids(tiny_config) -> None:
    model = replace(tiny_config, kind="perframe", context_tokens=4).build()
    with pytest.raises(ValueError, match=r"ids must be \(B, T, 4, 4\)"):
        model.decode_frames(torch.zeros(1, 2, 16, 16, dtype=torch.long))
