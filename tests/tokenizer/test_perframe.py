"""PerFrameTokenizer: the per-frame VQGAN baseline built from the same blocks."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch


@pytest.mark.parametrize("grid", [4, 16])
def test_encode_decode(tiny_config, clip, grid) -> None:
    model = replace(tiny_config, kind="perframe", context_tokens=grid).build()
    ids = model.encode(clip)
    assert ids.shape == (2, 3, grid, grid) and ids.dtype == torch.long and ids.max() < tiny_config.codebook_size
    assert model.decode(ids).shape == clip.shape
    assert not any("cross_attention" in name for name, _ in model.named_parameters())
    out = model(clip[:, :1], clip[:, 1:])
    assert torch.equal(torch.cat([out.context_ids, out.future_ids], dim=1), ids)
    assert model.describe()["future_tokens"] == [grid, grid]


def test_bad_ids(tiny_config) -> None:
    model = replace(tiny_config, kind="perframe", context_tokens=4).build()
    with pytest.raises(ValueError, match=r"ids must be \(B, T, 4, 4\)"):
        model.decode(torch.zeros(1, 2, 16, 16, dtype=torch.long))
