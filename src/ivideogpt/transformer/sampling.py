"""Temperature / top-k sampling from a `torch.Generator`, one uniform draw per row.

Tokens are drawn by inverting the CDF in index order (not sorted order), so two paths that compute
nearly identical logits (cached and uncached attention) pick the same token from the same draw.
"""

from __future__ import annotations

import torch
from torch import Tensor


def sample_tokens(logits: Tensor, temperature: float = 1.0, top_k: int | None = 100,
                  generator: torch.Generator | None = None) -> Tensor:
    """(B, K) logits -> (B,) long token indices.

    temperature 0 picks the argmax; top_k None (or >= K) samples from the full distribution.
    """
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if top_k is not None and top_k < 1:
        raise ValueError(f"top_k must be >= 1 or None, got {top_k}")
    logits = logits.float()
    if temperature == 0:
        return logits.argmax(dim=-1)
    logits = logits / temperature
    if top_k is not None and top_k < logits.shape[-1]:
        # the top_k-th largest value; kthvalue finds it ~3x faster than topk on CPU (same value)
        kth = logits.kthvalue(logits.shape[-1] - top_k + 1, dim=-1, keepdim=True).values  # (B, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    cdf = torch.softmax(logits, dim=-1).cumsum(dim=-1)  # (B, K)
    draw = torch.rand(logits.shape[0], 1, generator=generator, device=logits.device, dtype=cdf.dtype)
    choice = torch.searchsorted(cdf, draw * cdf[:, -1:], right=True)  # (B, 1)
    return choice.squeeze(1).clamp_(max=logits.shape[-1] - 1)
