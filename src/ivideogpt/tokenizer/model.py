"""The compressive video tokenizer: a conditional VQGAN with context and prediction encoder-decoders.

Context frames get `context_tokens`^2 ids each from a plain VQGAN (the context path); future frames
get only `future_tokens`^2 ids each from a prediction path of the same architecture whose encoder
and decoder cross-attend, level by level, to the context path's feature maps (paper Sec. 3.1, A.1).
Frames are float (B, T, 3, H, W) in [-1, 1]; ids are long (B, T, tokens, tokens).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from einops import rearrange
from torch import nn

from ivideogpt.tokenizer.blocks import Decoder, Encoder
from ivideogpt.tokenizer.checks import check_frames, check_ids
from ivideogpt.tokenizer.config import TokenizerConfig
from ivideogpt.tokenizer.quantizer import QuantizerOutput, build_quantizer, codebook_stats


RESIDUAL_INIT_SCALE = 0.01  # scale of the prediction decoder's last conv at init when `future_residual`


@dataclass
class ContextFeatures:
    """Per-level feature maps of the context frames, each (B, Tc, C, h, w); cacheable across rollout steps.

    They also carry `frames` (B, Tc, 3, H, W): the observed context frames for encoder features, the
    observed or decoded ones for decoder features. A `future_residual` tokenizer codes future frames
    as changes on the last of them. `source` says which context path made them: `encode_future` needs
    the encoder's and `decode_future` the decoder's, whose maps can have the same shapes (None: unknown).
    """

    levels: list[torch.Tensor]
    frames: torch.Tensor | None = None
    source: Literal["encoder", "decoder"] | None = None

    @property
    def batch_size(self) -> int:
        return self.levels[0].shape[0] if self.levels else 0

    @property
    def num_frames(self) -> int:
        return self.levels[0].shape[1] if self.levels else 0

    def repeat(self, n: int) -> "ContextFeatures":
        """Each batch element repeated n times in a row: (B, ...) -> (B*n, ...), for forking rollouts."""
        return self._map(lambda t: t.repeat_interleave(n, dim=0))

    def index(self, index: torch.Tensor | slice | Sequence[int] | int) -> "ContextFeatures":
        """Batch elements selected by `index` (an int keeps a batch dimension of 1)."""
        if isinstance(index, int):
            index = slice(index, index + 1)
        elif not isinstance(index, (slice, torch.Tensor)):
            index = torch.as_tensor(index, dtype=torch.long)
        return self._map(lambda t: t[index])

    @staticmethod
    def concat(parts: list["ContextFeatures"]) -> "ContextFeatures":
        """The batch elements of `parts` one after another (all with the same levels and frame count)."""
        frames = None if parts[0].frames is None else torch.cat([p.frames for p in parts])
        return ContextFeatures([torch.cat(maps) for maps in zip(*(p.levels for p in parts))], frames, parts[0].source)

    def to(self, device: torch.device | str) -> "ContextFeatures":
        return self._map(lambda t: t.to(device))

    def detach(self) -> "ContextFeatures":
        return self._map(torch.Tensor.detach)

    def _map(self, function: Any) -> "ContextFeatures":
        """The same function applied to every level map and to `frames`."""
        frames = None if self.frames is None else function(self.frames)
        return ContextFeatures([function(level) for level in self.levels], frames, self.source)


@dataclass
class TokenizerOutput:
    """What one tokenizer pass produced: ids, reconstructions (B, T, 3, H, W), scalar quantizer losses, stats."""

    context_ids: torch.Tensor
    future_ids: torch.Tensor
    context_recon: torch.Tensor
    future_recon: torch.Tensor
    commitment: torch.Tensor
    codebook_loss: torch.Tensor
    stats: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def reconstruction(self) -> torch.Tensor:
        """Context then future reconstructions, (B, Tc + Tf, 3, H, W)."""
        return torch.cat([self.context_recon, self.future_recon], dim=1)


class VQBranch(nn.Module):
    """One encoder-decoder pair: encoder, bottleneck `quant_conv`, quantizer, `post_quant_conv`, decoder."""

    def __init__(self, config: TokenizerConfig, tokens: int, cross_attention: bool) -> None:
        super().__init__()
        c, self.tokens = config, tokens
        factor = c.latent_side // tokens  # kernel = stride of the bottleneck conv; 1 -> a 1x1 conv
        max_side = c.max_cross_attention_resolution if c.kind == "compressive" else 0
        shared = dict(channels=c.down_channels, groups=c.norm_groups, embed_dim=c.embed_dim, resolution=c.resolution,
                      max_cross_attention_resolution=max_side, head_dim=c.attention_head_dim)
        self.encoder = Encoder(layers=c.down_layers, cross_attention=cross_attention, **shared)
        self.quant_conv = nn.Conv2d(c.embed_dim, c.embed_dim, factor, stride=factor)
        self.quantize = build_quantizer(c)
        self.post_quant_conv = (nn.ConvTranspose2d(c.embed_dim, c.embed_dim, factor, stride=factor) if factor > 1
                                else nn.Conv2d(c.embed_dim, c.embed_dim, 1))
        self.decoder = Decoder(layers=c.up_layers, cross_attention=cross_attention, **shared)

    def encode(self, x: torch.Tensor, contexts: list[torch.Tensor] | None = None
               ) -> tuple[QuantizerOutput, list[torch.Tensor]]:
        """Frames (N, 3, R, R) -> quantizer output at (N, D, tokens, tokens) and encoder level maps."""
        latent, features = self.encoder(x, contexts)
        return self.quantize(self.quant_conv(latent)), features

    def decode(self, quantized: torch.Tensor, contexts: list[torch.Tensor] | None = None
               ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Latents (N, D, tokens, tokens) -> frames (N, 3, R, R) and decoder level maps."""
        return self.decoder(self.post_quant_conv(quantized), contexts)


def split_batch(x: torch.Tensor, b: int) -> torch.Tensor:
    """(B*T, ...) -> (B, T, ...)."""
    return rearrange(x, "(b t) ... -> b t ...", b=b)


class ContextFutureTokenizer(nn.Module):
    """The encode/decode API shared by tokenizers with a context path and a prediction path.

    Subclasses provide `_encode_context(frames) -> (QuantizerOutput, ContextFeatures)`,
    `_encode_future(frames, features) -> QuantizerOutput`, `_decode_context(ids) -> (frames, ContextFeatures)`
    and `decode_future(future_ids, decoder_features, use_context)`.
    """

    config: TokenizerConfig

    @property
    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    @property
    def future_side(self) -> int:
        """Side of a future frame's id grid."""
        return self.config.future_tokens

    @property
    def fixed_context_frames(self) -> int | None:
        """The exact context count this tokenizer needs (None: any count up to the model's maximum)."""
        return None

    def encode_context(self, frames: torch.Tensor) -> tuple[torch.Tensor, ContextFeatures]:
        """Context frames (B, Tc, 3, H, W) -> ids (B, Tc, g, g) and the encoder features for `encode_future`."""
        out, features = self._encode_context(frames)
        return split_batch(out.ids, frames.shape[0]), features

    def encode_future(self, frames: torch.Tensor, context_features: ContextFeatures) -> torch.Tensor:
        """Future frames (B, Tf, 3, H, W) -> ids (B, Tf, f, f), conditioned on `encode_context` features."""
        return split_batch(self._encode_future(frames, context_features).ids, frames.shape[0])

    def encode(self, context_frames: torch.Tensor, future_frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (context_ids (B, Tc, g, g), future_ids (B, Tf, f, f)), long."""
        context_ids, features = self.encode_context(context_frames)
        return context_ids, self.encode_future(future_frames, features)

    def decode(self, context_ids: torch.Tensor, future_ids: torch.Tensor, use_context: bool = True
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (context_recon (B, Tc, 3, H, W), future_recon (B, Tf, 3, H, W)), not clamped to [-1, 1]."""
        context_recon, features = self._decode_context(context_ids)
        check_ids("future_ids", future_ids, self.future_side, self.config.codebook_size, batch=context_ids.shape[0])
        return context_recon, self.decode_future(future_ids, features, use_context)


class CompressiveTokenizer(ContextFutureTokenizer):
    """Conditional VQGAN: `context` path (plain VQGAN) + `prediction` path (cross-attends to context)."""

    def __init__(self, config: TokenizerConfig) -> None:
        super().__init__()
        if config.kind != "compressive":
            raise ValueError(f"CompressiveTokenizer needs kind='compressive'; got {config.kind!r}")
        self.config = config
        self.context = VQBranch(config, config.context_tokens, cross_attention=False)
        self.prediction = VQBranch(config, config.future_tokens, cross_attention=True)
        if config.future_residual:  # a fresh prediction decoder outputs (almost) "no change"
            with torch.no_grad():  # small, not zero: a zero last layer would stop gradients reaching the rest
                self.prediction.decoder.conv_out.weight.mul_(RESIDUAL_INIT_SCALE)
                self.prediction.decoder.conv_out.bias.zero_()

    # -- split API (what an interactive rollout uses) -------------------------------------------
    def context_decoder_features(self, context_ids: torch.Tensor, context_frames: torch.Tensor | None = None
                                 ) -> ContextFeatures:
        """Context decoder's per-level maps for ids (B, Tc, g, g); compute once per rollout, reuse every step.

        `context_frames` (B, Tc, 3, H, W), the observed frames behind the ids, become the base of a
        `future_residual` tokenizer (as in training); without them the decoded context frames are.
        """
        features = self._decode_context(context_ids)[1]
        if context_frames is not None:
            check_frames("context_frames", context_frames, self.config.resolution, batch=context_ids.shape[0],
                         count=context_ids.shape[1])
            features.frames = context_frames
        return features

    def decode_future(self, future_ids: torch.Tensor, decoder_features: ContextFeatures | None,
                      use_context: bool = True) -> torch.Tensor:
        """Future ids (B, Tf, f, f) -> frames (B, Tf, 3, H, W); `use_context=False` switches cross-attention off."""
        check_ids("future_ids", future_ids, self.config.future_tokens, self.config.codebook_size)
        b = future_ids.shape[0]
        contexts = None
        if use_context:
            contexts = self._check_features("decoder_features", decoder_features, "decoder",
                                            self.prediction.decoder.level_shapes(), b)
        quantized = self.prediction.quantize.lookup(rearrange(future_ids, "b t h w -> (b t) h w"))
        frames = split_batch(self.prediction.decode(quantized, contexts)[0], b)
        return self._add_base(frames, decoder_features if use_context else None, future_ids)

    # -- whole-clip API -----------------------------------------------------------------------
    def forward(self, context_frames: torch.Tensor, future_frames: torch.Tensor) -> TokenizerOutput:
        """Encode, quantize and reconstruct a clip; gradients flow through the straight-through estimator."""
        context_q, encoder_features = self._encode_context(context_frames)  # validates the frames
        b = context_frames.shape[0]
        future_q = self._encode_future(future_frames, encoder_features)
        context_recon, decoder_maps = self.context.decode(context_q.quantized)
        context_recon = split_batch(context_recon, b)
        decoder_features = ContextFeatures([split_batch(m, b) for m in decoder_maps], context_frames, "decoder")
        future_recon, _ = self.prediction.decode(future_q.quantized, decoder_features.levels)
        future_ids = split_batch(future_q.ids, b)
        future_recon = self._add_base(split_batch(future_recon, b), decoder_features, future_ids)
        usage, perplexity = codebook_stats(context_q.ids, self.config.codebook_size)
        future_usage, future_perplexity = codebook_stats(future_q.ids, self.config.codebook_size)
        return TokenizerOutput(
            context_ids=split_batch(context_q.ids, b), future_ids=future_ids,
            context_recon=context_recon, future_recon=future_recon,
            commitment=context_q.commitment + future_q.commitment,
            codebook_loss=context_q.codebook_loss + future_q.codebook_loss,
            stats={"codebook_usage": usage, "perplexity": perplexity,
                   "future_codebook_usage": future_usage, "future_perplexity": future_perplexity},
        )

    def describe(self) -> dict[str, Any]:
        """Architecture facts (for `ivideogpt describe` and reports)."""
        c = self.config
        return {
            "kind": c.kind, "resolution": c.resolution,
            "context_tokens": [c.context_tokens] * 2, "future_tokens": [c.future_tokens] * 2,
            "codebook_size": c.codebook_size, "embed_dim": c.embed_dim, "separate_codebooks": True,
            "down_channels": list(c.down_channels), "up_channels": list(c.down_channels[::-1]),
            "down_layers": c.down_layers, "up_layers": c.up_layers,
            "cross_attention_sides": {"encoder": [s for _, s in self.prediction.encoder.level_shapes()],
                                      "decoder": [s for _, s in self.prediction.decoder.level_shapes()]},
        }

    # -- internals --------------------------------------------------------------------------
    def _encode_context(self, frames: torch.Tensor) -> tuple[QuantizerOutput, ContextFeatures]:
        check_frames("context_frames", frames, self.config.resolution)
        b = frames.shape[0]
        out, maps = self.context.encode(rearrange(frames, "b t c h w -> (b t) c h w"))
        return out, ContextFeatures([split_batch(m, b) for m in maps], frames, "encoder")

    def _encode_future(self, frames: torch.Tensor, features: ContextFeatures) -> QuantizerOutput:
        b = features.batch_size if isinstance(features, ContextFeatures) else None
        check_frames("future_frames", frames, self.config.resolution, batch=b)
        contexts = self._check_features("context_features", features, "encoder",
                                        self.prediction.encoder.level_shapes(), frames.shape[0])
        if self.config.future_residual:  # the prediction encoder reads what changed, as its decoder writes it
            frames = frames - self._base(features)
        flat = rearrange(frames, "b t c h w -> (b t) c h w")
        out = self.prediction.encode(flat, contexts)[0]
        return self._skip_static_patches(out, flat) if self.config.future_skip_threshold > 0 else out

    def _skip_static_patches(self, out: QuantizerOutput, change: torch.Tensor) -> QuantizerOutput:
        """Give every token whose image patch did not change the one id of "no change" (like a codec's skip block).

        Why: the encoder's GroupNorm and wide receptive field give unchanged patches ids that depend
        on the rest of the frame (on Push-T ~200 distinct ids for "nothing moved here"), and the
        transformer then spends its training predicting those instead of the motion. `change` is
        the encoder input, frame minus last context frame, (N, 3, H, W); a patch is static when no
        value in it moved by more than `future_skip_threshold`.
        """
        tokens = self.config.future_tokens
        patch = change.abs().amax(dim=1)  # (N, H, W)
        patch = rearrange(patch, "n (h p) (w q) -> n h w (p q)", h=tokens, w=tokens).amax(dim=-1)
        static = patch <= self.config.future_skip_threshold  # (N, f, f)
        skip_id = self.prediction.quantize.zero_id
        skip_code = self.prediction.quantize.lookup(torch.full_like(out.ids[:1], skip_id))  # (1, D, f, f)
        quantized = torch.where(static.unsqueeze(1), skip_code.to(out.quantized.dtype), out.quantized)
        return QuantizerOutput(quantized, out.ids.masked_fill(static, skip_id), out.commitment, out.codebook_loss)

    def _decode_context(self, context_ids: torch.Tensor) -> tuple[torch.Tensor, ContextFeatures]:
        check_ids("context_ids", context_ids, self.config.context_tokens, self.config.codebook_size)
        b = context_ids.shape[0]
        quantized = self.context.quantize.lookup(rearrange(context_ids, "b t h w -> (b t) h w"))
        recon, maps = self.context.decode(quantized)
        recon = split_batch(recon, b)
        return recon, ContextFeatures([split_batch(m, b) for m in maps], recon, "decoder")

    def _add_base(self, future: torch.Tensor, decoder_features: ContextFeatures | None, future_ids: torch.Tensor
                  ) -> torch.Tensor:
        """With `future_residual`, future frames (B, Tf, 3, H, W) are changes on the last context frame.

        With `future_skip_threshold`, patches whose id is the skip id copy the last context frame exactly
        (their change is zeroed), as a codec's skip blocks copy the reference frame.
        """
        if self.config.future_skip_threshold > 0:
            moved = (future_ids != self.prediction.quantize.zero_id).to(future.dtype)  # (B, Tf, f, f)
            scale = self.config.resolution // self.config.future_tokens
            future = future * moved.repeat_interleave(scale, dim=2).repeat_interleave(scale, dim=3).unsqueeze(2)
        if not self.config.future_residual or decoder_features is None:
            return future
        return future + self._base(decoder_features)

    @staticmethod
    def _base(features: ContextFeatures) -> torch.Tensor:
        """The frame a `future_residual` tokenizer codes changes against: the last context frame (B, 1, 3, H, W)."""
        if features.frames is None:
            raise ValueError("this tokenizer codes future frames as changes on the last context frame: the "
                             "features must carry context frames (from encode_context or context_decoder_features)")
        return features.frames[:, -1:]

    @staticmethod
    def _check_features(name: str, features: Any, source: str, shapes: list[tuple[int, int]], batch: int | None
                        ) -> list[torch.Tensor]:
        """The level maps of `features`, after checking the path that made them and their (channels, side) per level."""
        expected = ", ".join(f"(B, Tc, {c}, {s}, {s})" for c, s in shapes)
        if not isinstance(features, ContextFeatures):
            raise ValueError(f"{name} must be ContextFeatures with levels {expected}; got {type(features).__name__}")
        if features.source not in (None, source):
            made_by = {"encoder": "encode_context", "decoder": "context_decoder_features"}
            raise ValueError(f"{name} must be the context {source}'s features (from {made_by[source]}); got the "
                             f"{features.source}'s (from {made_by[features.source]})")
        got = [tuple(level.shape) for level in features.levels]
        ok = len(got) == len(shapes) and all(
            len(g) == 5 and g[2:] == (c, s, s) and g[1] >= 1 and g[:2] == got[0][:2] for g, (c, s) in zip(got, shapes))
        if not ok:
            raise ValueError(f"{name} must hold levels {expected}; got {got}")
        if batch is not None and got and got[0][0] != batch:
            raise ValueError(f"{name} has batch {got[0][0]} but the frames/ids have batch {batch}")
        return features.levels
