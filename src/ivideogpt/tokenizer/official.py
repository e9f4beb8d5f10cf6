"""The released iVideoGPT tokenizer (`CompressiveVQModel` of the paper's code) behind this project's tokenizer API.

Context frames: encoder -> 1x1 `quant_conv` -> Euclidean codebook `quantize` (one id per latent
position, 16x16); decoding looks the codes up, applies `post_quant_conv` and the decoder. Future
frames: the prediction encoder `cond_encoder` (cross-attending to the context encoder's block
outputs) -> 4x4 patchify -> `quant_linear` -> codebook `dynamics_quantize` (4x4 ids); decoding goes
`post_quant_linear` -> un-patchify -> `cond_decoder` (cross-attending to the context decoder's maps).
The released weights expect pixels in [0, 1]; this class takes and returns [-1, 1] like every
tokenizer here and converts at its edges. Its cross-attention position tables fix the number of
context frames (`TokenizerConfig.context_frames`).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from ivideogpt.tokenizer.checks import check_frames, check_ids
from ivideogpt.tokenizer.config import TokenizerConfig
from ivideogpt.tokenizer.model import ContextFeatures, ContextFutureTokenizer, TokenizerOutput, split_batch
from ivideogpt.tokenizer.official_blocks import OfficialDecoder, OfficialEncoder
from ivideogpt.tokenizer.quantizer import QuantizerOutput, codebook_stats


class EuclideanCodebook(nn.Module):
    """Nearest code by Euclidean distance (`torch.cdist`, as the released code), straight-through, beta = 1."""

    def __init__(self, codebook_size: int, embed_dim: int, beta: float) -> None:
        super().__init__()
        self.beta = beta
        self.embedding = nn.Embedding(codebook_size, embed_dim)

    def forward(self, z: torch.Tensor) -> QuantizerOutput:
        """Rows z (N, L, D) -> quantized (N, L, D), ids (N, L) and the VQ-VAE losses."""
        flat = z.reshape(-1, z.shape[-1])
        ids = torch.cdist(flat, self.embedding.weight).argmin(dim=1)
        selected = self.embedding(ids)
        codebook_loss = F.mse_loss(selected, flat.detach())
        commitment = self.beta * F.mse_loss(flat, selected.detach())
        quantized = flat + (selected - flat).detach()
        return QuantizerOutput(quantized.reshape(z.shape), ids.reshape(z.shape[:-1]), commitment, codebook_loss)


class OfficialTokenizer(ContextFutureTokenizer):
    """The released compressive tokenizer; parameter names are the checkpoint's, frames are (B, T, 3, H, W)."""

    def __init__(self, config: TokenizerConfig) -> None:
        super().__init__()
        if config.kind != "official":
            raise ValueError(f"OfficialTokenizer needs kind='official'; got {config.kind!r}")
        c, self.config = config, config
        self.patch = c.latent_side // c.future_tokens
        latent, patched = c.embed_dim, c.embed_dim * self.patch ** 2
        shared = dict(channels=c.down_channels, groups=c.norm_groups, latent=latent, resolution=c.resolution)
        cross = dict(mid_attention=True, max_att_resolution=c.max_cross_attention_resolution,
                     context_frames=c.context_frames)
        self.encoder = OfficialEncoder(layers=c.down_layers, mid_attention=c.mid_attention, **shared)
        self.cond_encoder = OfficialEncoder(layers=c.down_layers, **cross, **shared)
        self.quant_conv = nn.Conv2d(latent, latent, 1)
        self.quantize = EuclideanCodebook(c.codebook_size, latent, c.commitment_beta)
        self.post_quant_conv = nn.Conv2d(latent, latent, 1)
        self.quant_linear = nn.Linear(patched, latent)
        self.dynamics_quantize = EuclideanCodebook(c.codebook_size, latent, c.commitment_beta)
        self.post_quant_linear = nn.Linear(latent, patched)
        self.decoder = OfficialDecoder(layers=c.up_layers, mid_attention=c.mid_attention, **shared)
        self.cond_decoder = OfficialDecoder(layers=c.up_layers, **cross, **shared)

    # -- the rest of the tokenizer API (`ContextFutureTokenizer` has the encoding side) ------------
    def context_decoder_features(self, context_ids: torch.Tensor, context_frames: torch.Tensor | None = None
                                 ) -> ContextFeatures:
        """Context decoder maps for ids (B, Tc, g, g), reused to decode every future frame of a rollout."""
        return self._decode_context(context_ids)[1]

    def decode_future(self, future_ids: torch.Tensor, decoder_features: ContextFeatures | None,
                      use_context: bool = True) -> torch.Tensor:
        """Future ids (B, Tf, f, f) -> frames (B, Tf, 3, H, W) in about [-1, 1]; needs the context (`use_context`)."""
        c = self.config
        check_ids("future_ids", future_ids, c.future_tokens, c.codebook_size)
        if not use_context or decoder_features is None:
            raise ValueError("the released tokenizer cannot decode future frames without the context's features")
        codes = self.dynamics_quantize.embedding(rearrange(future_ids, "b t h w -> (b t) (h w)"))
        return self._decode_future(codes, self._levels(decoder_features, future_ids.shape[0]), future_ids.shape[0])

    def forward(self, context_frames: torch.Tensor, future_frames: torch.Tensor) -> TokenizerOutput:
        """Encode, quantize and reconstruct a clip with straight-through gradients (for fine-tuning)."""
        b = context_frames.shape[0]
        context_q, encoder_features = self._encode_context(context_frames)
        future_q = self._encode_future(future_frames, encoder_features)
        context_recon, decoder_features = self._decode_latents(context_q.quantized, b)
        future_recon = self._decode_future(future_q.quantized, self._levels(decoder_features, b), b)
        usage, perplexity = codebook_stats(context_q.ids, self.config.codebook_size)
        future_usage, future_perplexity = codebook_stats(future_q.ids, self.config.codebook_size)
        return TokenizerOutput(
            context_ids=split_batch(context_q.ids, b), future_ids=split_batch(future_q.ids, b),
            context_recon=context_recon, future_recon=future_recon,
            commitment=context_q.commitment + future_q.commitment,
            codebook_loss=context_q.codebook_loss + future_q.codebook_loss,
            stats={"codebook_usage": usage, "perplexity": perplexity,
                   "future_codebook_usage": future_usage, "future_perplexity": future_perplexity})

    def describe(self) -> dict[str, Any]:
        """Architecture facts (for `ivideogpt describe`, reports and the world model's compatibility check)."""
        c = self.config
        return {
            "kind": c.kind, "resolution": c.resolution, "context_frames": c.context_frames,
            "context_tokens": [c.context_tokens] * 2, "future_tokens": [c.future_tokens] * 2,
            "codebook_size": c.codebook_size, "embed_dim": c.embed_dim, "separate_codebooks": True,
            "down_channels": list(c.down_channels), "down_layers": c.down_layers, "up_layers": c.up_layers,
            "cross_attention_blocks": {"encoder": self.cond_encoder.attends, "decoder": self.cond_decoder.attends},
        }

    # -- internals --------------------------------------------------------------------------
    def _encode_context(self, frames: torch.Tensor) -> tuple[QuantizerOutput, ContextFeatures]:
        check_frames("context_frames", frames, self.config.resolution)
        b = frames.shape[0]
        self._check_context_count(frames.shape[1])
        latent, outputs = self.encoder(rearrange(to_unit(frames), "b t c h w -> (b t) c h w"))
        rows = rearrange(self.quant_conv(latent), "n d h w -> n (h w) d")
        out = self.quantize(rows)
        out.quantized = rearrange(out.quantized, "n (h w) d -> n d h w", h=latent.shape[-2])
        out.ids = rearrange(out.ids, "n (h w) -> n h w", h=latent.shape[-2])
        levels = [split_batch(outputs[i], b) for i in self.cond_encoder.attends]
        return out, ContextFeatures(levels, frames)

    def _encode_future(self, frames: torch.Tensor, features: ContextFeatures) -> QuantizerOutput:
        b = features.batch_size if isinstance(features, ContextFeatures) else None
        check_frames("future_frames", frames, self.config.resolution, batch=b)
        flat = rearrange(to_unit(frames), "b t c h w -> (b t) c h w")
        latent, _ = self.cond_encoder(flat, self._levels(features, frames.shape[0]))
        patches = rearrange(latent, "n c (h p) (w q) -> n (h w) (p q c)", p=self.patch, q=self.patch)
        out = self.dynamics_quantize(self.quant_linear(patches))
        side = self.config.future_tokens
        out.ids = rearrange(out.ids, "n (h w) -> n h w", h=side)
        return out

    def _decode_context(self, context_ids: torch.Tensor) -> tuple[torch.Tensor, ContextFeatures]:
        check_ids("context_ids", context_ids, self.config.context_tokens, self.config.codebook_size)
        self._check_context_count(context_ids.shape[1])
        codes = rearrange(self.quantize.embedding(context_ids), "b t h w d -> (b t) d h w")
        return self._decode_latents(codes, context_ids.shape[0])

    def _decode_latents(self, codes: torch.Tensor, b: int) -> tuple[torch.Tensor, ContextFeatures]:
        """Context codes (B*Tc, D, g, g) -> frames (B, Tc, 3, H, W) in [-1, 1] and the cond decoder's context."""
        frames, outputs = self.decoder(self.post_quant_conv(codes))
        recon = split_batch(from_unit(frames), b)
        return recon, ContextFeatures([split_batch(outputs[i], b) for i in self.cond_decoder.attends], recon)

    def _decode_future(self, codes: torch.Tensor, levels: list[torch.Tensor], b: int) -> torch.Tensor:
        """Future codes (B*Tf, f*f, D) -> frames (B, Tf, 3, H, W) in [-1, 1]."""
        side = self.config.future_tokens
        latent = rearrange(self.post_quant_linear(codes), "n (h w) (p q c) -> n c (h p) (w q)", h=side,
                           p=self.patch, q=self.patch)
        return split_batch(from_unit(self.cond_decoder(latent, levels)[0]), b)

    def _levels(self, features: Any, batch: int) -> list[torch.Tensor]:
        """The level maps of `features` after checking their count and batch."""
        if not isinstance(features, ContextFeatures) or features.batch_size != batch:
            got = features.batch_size if isinstance(features, ContextFeatures) else type(features).__name__
            raise ValueError(f"context features must be ContextFeatures of batch {batch}; got {got}")
        self._check_context_count(features.num_frames)
        return features.levels

    @property
    def fixed_context_frames(self) -> int:
        """Its cross-attention positions are sized for exactly this many context frames."""
        return self.config.context_frames

    def _check_context_count(self, count: int) -> None:
        if count != self.config.context_frames:
            raise ValueError(f"this released tokenizer was trained with {self.config.context_frames} context "
                             f"frames (its cross-attention positions are sized for them); got {count}")


def to_unit(frames: torch.Tensor) -> torch.Tensor:
    """[-1, 1] -> [0, 1], the released weights' pixel range."""
    return (frames + 1) / 2


def from_unit(frames: torch.Tensor) -> torch.Tensor:
    """[0, 1] -> [-1, 1]."""
    return frames * 2 - 1
