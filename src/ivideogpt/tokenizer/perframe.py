"""Per-frame VQGAN baseline: every frame tokenized alone (no cross-attention), for the efficiency study."""

from __future__ import annotations

from typing import Any

import torch
from einops import rearrange

from ivideogpt.tokenizer.checks import check_frames, check_ids
from ivideogpt.tokenizer.config import TokenizerConfig
from ivideogpt.tokenizer.model import ContextFeatures, ContextFutureTokenizer, TokenizerOutput, VQBranch, split_batch
from ivideogpt.tokenizer.quantizer import QuantizerOutput, codebook_stats


class PerFrameTokenizer(ContextFutureTokenizer):
    """A plain VQGAN with `context_tokens`^2 ids per frame, built from the same blocks and quantizer.

    It has the compressive tokenizer's interface (so `WorldModel` drives it as it is): context and
    future frames are coded alike, there are no context features, and a future frame decodes from
    its own ids. `encode_frames` / `decode_frames` code a whole clip in one call.
    """

    def __init__(self, config: TokenizerConfig) -> None:
        super().__init__()
        if config.kind != "perframe":
            raise ValueError(f"PerFrameTokenizer needs kind='perframe'; got {config.kind!r}")
        self.config = config
        self.vq = VQBranch(config, config.context_tokens, cross_attention=False)

    @property
    def future_side(self) -> int:
        return self.config.context_tokens

    def encode_frames(self, frames: torch.Tensor) -> torch.Tensor:
        """Frames (B, T, 3, H, W) in [-1, 1] -> ids (B, T, g, g) long."""
        return split_batch(self._encode(frames).ids, frames.shape[0])

    def decode_frames(self, ids: torch.Tensor) -> torch.Tensor:
        """Ids (B, T, g, g) -> frames (B, T, 3, H, W)."""
        check_ids("ids", ids, self.config.context_tokens, self.config.codebook_size)
        quantized = self.vq.quantize.lookup(rearrange(ids, "b t h w -> (b t) h w"))
        return split_batch(self.vq.decode(quantized)[0], ids.shape[0])

    def context_decoder_features(self, context_ids: torch.Tensor, context_frames: torch.Tensor | None = None
                                 ) -> ContextFeatures:
        """None to compute: future frames decode from their own ids."""
        return ContextFeatures([])

    def decode_future(self, future_ids: torch.Tensor, decoder_features: ContextFeatures | None,
                      use_context: bool = True) -> torch.Tensor:
        """Future ids (B, Tf, g, g) -> frames (B, Tf, 3, H, W), each from its own ids."""
        return self.decode_frames(future_ids)

    def forward(self, context_frames: torch.Tensor, future_frames: torch.Tensor) -> TokenizerOutput:
        """Same contract as `CompressiveTokenizer.forward`; context and future frames are treated alike."""
        check_frames("context_frames", context_frames, self.config.resolution)
        b, tc = context_frames.shape[:2]
        check_frames("future_frames", future_frames, self.config.resolution, batch=b)
        frames = torch.cat([context_frames, future_frames], dim=1)  # (B, Tc + Tf, 3, H, W)
        q, _ = self.vq.encode(rearrange(frames, "b t c h w -> (b t) c h w"))
        recon = split_batch(self.vq.decode(q.quantized)[0], b)
        ids = split_batch(q.ids, b)
        usage, perplexity = codebook_stats(q.ids, self.config.codebook_size)
        return TokenizerOutput(
            context_ids=ids[:, :tc], future_ids=ids[:, tc:], context_recon=recon[:, :tc], future_recon=recon[:, tc:],
            commitment=q.commitment, codebook_loss=q.codebook_loss,
            stats={"codebook_usage": usage, "perplexity": perplexity},
        )

    def describe(self) -> dict[str, Any]:
        """Architecture facts; context and future frames both get `context_tokens`^2 ids."""
        c = self.config
        grid = [c.context_tokens] * 2
        return {
            "kind": c.kind, "resolution": c.resolution, "context_tokens": grid, "future_tokens": grid,
            "codebook_size": c.codebook_size, "embed_dim": c.embed_dim,
            "down_channels": list(c.down_channels), "up_channels": list(c.down_channels[::-1]),
            "down_layers": c.down_layers, "up_layers": c.up_layers,
        }

    def _encode(self, frames: torch.Tensor) -> QuantizerOutput:
        check_frames("frames", frames, self.config.resolution)
        return self.vq.encode(rearrange(frames, "b t c h w -> (b t) c h w"))[0]

    def _encode_context(self, frames: torch.Tensor) -> tuple[QuantizerOutput, ContextFeatures]:
        return self._encode(frames), ContextFeatures([])

    def _encode_future(self, frames: torch.Tensor, features: ContextFeatures) -> QuantizerOutput:
        return self._encode(frames)

    def _decode_context(self, context_ids: torch.Tensor) -> tuple[torch.Tensor, ContextFeatures]:
        return self.decode_frames(context_ids), ContextFeatures([])
