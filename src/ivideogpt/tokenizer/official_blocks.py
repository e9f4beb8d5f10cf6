"""Encoder and decoder of the released iVideoGPT tokenizer, re-implemented so its weights load as they are.

The released checkpoints (a diffusers-style `CompressiveVQModel`) differ from `blocks.py` in where
and how the prediction path looks at the context:
- cross-attention follows a down block's resampler (or the decoder's mid block, or an up block's
  resampler) wherever the output side is <= `max_att_resolution`, and attends to the context path's
  output of the same block;
- it is `nn.MultiheadAttention` (4 heads) with learned query and key position embeddings, GroupNorm
  (32 groups) on queries and on all context frames' maps at once, and a SiLU after the residual;
- the prediction path's mid blocks have a single-head self-attention between their ResNet blocks.
Parameter names are those of the checkpoints, so loading needs no renaming. ResNet blocks and
resamplers are the ones of `blocks.py` (the same diffusers layout).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from ivideogpt.tokenizer.blocks import Downsample2D, ResnetBlock2D, Upsample2D

CROSS_ATTENTION_HEADS = 4
CROSS_ATTENTION_GROUPS = 32


class SelfAttention2D(nn.Module):
    """Single-head attention over the positions of a feature map, with a residual (diffusers `Attention`)."""

    def __init__(self, channels: int, groups: int) -> None:
        super().__init__()
        self.group_norm = nn.GroupNorm(groups, channels, eps=1e-6)
        self.to_q = nn.Linear(channels, channels)
        self.to_k = nn.Linear(channels, channels)
        self.to_v = nn.Linear(channels, channels)
        self.to_out = nn.ModuleList([nn.Linear(channels, channels)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        tokens = rearrange(self.group_norm(x), "n c h w -> n (h w) c")
        out = F.scaled_dot_product_attention(self.to_q(tokens), self.to_k(tokens), self.to_v(tokens))
        return x + rearrange(self.to_out[0](out), "n (h w) c -> n c h w", h=h, w=w)


class ContextCrossAttention(nn.Module):
    """Future-frame maps attend to the context frames' maps of the same block; SiLU after the residual.

    `x` is (B*Tf, C, h, w), future frames of one batch element consecutive; `context` is (B, Tc, C, h, w).
    The released code repeats the context for every future frame; attention treats every query on
    its own, so here all Tf frames' queries share one pass over the context instead.
    """

    def __init__(self, channels: int, side: int, context_frames: int) -> None:
        super().__init__()
        self.att = nn.MultiheadAttention(channels, CROSS_ATTENTION_HEADS, batch_first=True)
        self.kv_norm = nn.GroupNorm(CROSS_ATTENTION_GROUPS, channels)
        self.q_norm = nn.GroupNorm(CROSS_ATTENTION_GROUPS, channels)
        self.kv_pos_emb = nn.Parameter(torch.zeros(context_frames * side * side, channels))
        self.q_pos_emb = nn.Parameter(torch.zeros(side * side, channels))

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        b, tc, channels, h, w = context.shape
        if x.shape[0] % b:
            raise ValueError(f"{x.shape[0]} future maps do not split over a context batch of {b}")
        if tc * h * w != self.kv_pos_emb.shape[0]:
            raise ValueError(f"this tokenizer was built for {self.kv_pos_emb.shape[0] // (h * w)} context frames; "
                             f"got {tc}")
        kv = self.kv_norm(rearrange(context, "b t c h w -> b c (t h) w"))  # normalised over all frames at once
        kv = rearrange(kv, "b c th w -> b (th w) c") + self.kv_pos_emb
        query = rearrange(self.q_norm(x), "n c h w -> n (h w) c") + self.q_pos_emb
        query = rearrange(query, "(b t) q c -> b (t q) c", b=b)
        out = self._attend(query, kv)
        out = rearrange(out, "b (t h w) c -> (b t) c h w", h=x.shape[-2], w=x.shape[-1])
        return F.silu(x + out)

    def _attend(self, query: torch.Tensor, kv: torch.Tensor) -> torch.Tensor:
        """`nn.MultiheadAttention(query, kv, kv)` without its weights output: (B, q, C) x (B, k, C) -> (B, q, C)."""
        w_q, w_k, w_v = self.att.in_proj_weight.chunk(3)
        b_q, b_k, b_v = self.att.in_proj_bias.chunk(3)
        split = "b n (heads d) -> b heads n d"
        q, k, v = (rearrange(F.linear(t, wt, bt), split, heads=CROSS_ATTENTION_HEADS)
                   for t, wt, bt in ((query, w_q, b_q), (kv, w_k, b_k), (kv, w_v, b_v)))
        out = rearrange(F.scaled_dot_product_attention(q, k, v), "b heads n d -> b n (heads d)")
        return self.att.out_proj(out)


class Block(nn.Module):
    """ResNet blocks then an optional resampler (diffusers `DownEncoderBlock2D` / `UpDecoderBlock2D`)."""

    def __init__(self, in_channels: int, out_channels: int, layers: int, groups: int, resample: str | None) -> None:
        super().__init__()
        self.resnets = nn.ModuleList(
            ResnetBlock2D(in_channels if i == 0 else out_channels, out_channels, groups) for i in range(layers))
        if resample == "down":
            self.downsamplers = nn.ModuleList([Downsample2D(out_channels)])
        elif resample == "up":
            self.upsamplers = nn.ModuleList([Upsample2D(out_channels)])

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        for resnet in self.resnets:
            h = resnet(h)
        for resampler in getattr(self, "downsamplers", getattr(self, "upsamplers", [])):
            h = resampler(h)
        return h


class MidBlock(nn.Module):
    """ResNet, optional self-attention, ResNet (diffusers `UNetMidBlock2D`)."""

    def __init__(self, channels: int, groups: int, attention: bool) -> None:
        super().__init__()
        self.resnets = nn.ModuleList([ResnetBlock2D(channels, channels, groups) for _ in range(2)])
        self.attentions = nn.ModuleList([SelfAttention2D(channels, groups)]) if attention else None

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        h = self.resnets[0](h)
        if self.attentions is not None:
            h = self.attentions[0](h)
        return self.resnets[1](h)


class OfficialEncoder(nn.Module):
    """Frames (N, 3, R, R) -> latents (N, latent, R / 2^(n-1), same) and every block's output map.

    With `context_frames`, a prediction encoder: after each down block whose output side is <=
    `max_att_resolution`, the map attends to the context encoder's output of that block.
    """

    def __init__(self, channels: tuple[int, ...], layers: int, groups: int, latent: int, resolution: int,
                 mid_attention: bool, max_att_resolution: int = 0, context_frames: int = 0) -> None:
        super().__init__()
        self.conv_in = nn.Conv2d(3, channels[0], 3, padding=1)
        self.down_blocks = nn.ModuleList()
        self.attends: list[int] = []  # indices of the down blocks followed by cross-attention
        side, previous = resolution, channels[0]
        cross = []
        for i, out in enumerate(channels):
            last = i == len(channels) - 1
            self.down_blocks.append(Block(previous, out, layers, groups, None if last else "down"))
            side, previous = side if last else side // 2, out
            if context_frames and side <= max_att_resolution:
                self.attends.append(i)
                cross.append(ContextCrossAttention(out, side, context_frames))
        if context_frames:
            self.cross_att_blocks = nn.ModuleList(cross)
        self.mid_block = MidBlock(previous, groups, mid_attention)
        self.conv_norm_out = nn.GroupNorm(groups, previous, eps=1e-6)
        self.conv_out = nn.Conv2d(previous, latent, 3, padding=1)

    def forward(self, x: torch.Tensor, contexts: list[torch.Tensor] | None = None
                ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """-> (latents, [each down block's output]); `contexts` holds the context maps of the attending blocks."""
        h, outputs = self.conv_in(x), []
        for i, block in enumerate(self.down_blocks):
            h = block(h)
            if contexts is not None and i in self.attends:
                h = self.cross_att_blocks[self.attends.index(i)](h, contexts[self.attends.index(i)])
            outputs.append(h)
        h = self.mid_block(h)
        return self.conv_out(F.silu(self.conv_norm_out(h))), outputs


class OfficialDecoder(nn.Module):
    """Latents (N, latent, s, s) -> frames (N, 3, s * 2^(n-1), same) and the mid and up blocks' output maps.

    With `context_frames`, a prediction decoder: after the mid block, and after each up block whose
    output side is <= `max_att_resolution`, the map attends to the context decoder's output there.
    """

    def __init__(self, channels: tuple[int, ...], layers: int, groups: int, latent: int, resolution: int,
                 mid_attention: bool, max_att_resolution: int = 0, context_frames: int = 0) -> None:
        super().__init__()
        up_channels = channels[::-1]
        side = resolution // 2 ** (len(channels) - 1)
        self.conv_in = nn.Conv2d(latent, up_channels[0], 3, padding=1)
        self.mid_block = MidBlock(up_channels[0], groups, mid_attention)
        self.attends: list[int] = [0] if context_frames else []  # 0: the mid block; i + 1: up block i
        cross = [ContextCrossAttention(up_channels[0], side, context_frames)] if context_frames else []
        self.up_blocks = nn.ModuleList()
        previous = up_channels[0]
        for i, out in enumerate(up_channels):
            last = i == len(up_channels) - 1
            self.up_blocks.append(Block(previous, out, layers, groups, None if last else "up"))
            side, previous = side if last else side * 2, out
            if context_frames and side <= max_att_resolution:
                self.attends.append(i + 1)
                cross.append(ContextCrossAttention(out, side, context_frames))
        if context_frames:
            self.cross_att_blocks = nn.ModuleList(cross)
        self.conv_norm_out = nn.GroupNorm(groups, previous, eps=1e-6)
        self.conv_out = nn.Conv2d(previous, 3, 3, padding=1)

    def forward(self, z: torch.Tensor, contexts: list[torch.Tensor] | None = None
                ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """-> (frames, [mid block output, each up block's output]); `contexts` as for the encoder."""
        h = self.mid_block(self.conv_in(z))
        outputs = [h]
        for i, block in enumerate([None, *self.up_blocks]):
            if block is not None:
                h = block(h)
                outputs.append(h)
            if contexts is not None and i in self.attends:
                h = self.cross_att_blocks[self.attends.index(i)](h, contexts[self.attends.index(i)])
        return self.conv_out(F.silu(self.conv_norm_out(h))), outputs
