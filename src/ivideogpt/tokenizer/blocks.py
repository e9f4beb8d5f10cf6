"""Convolutional VQGAN blocks: ResNet blocks, resamplers, cross-attention, encoder and decoder.

Parameter names follow the diffusers VQModel layout (`down_blocks.0.resnets.1.conv1.weight`,
`mid_block.resnets.0.norm1.weight`, `up_blocks.2.upsamplers.0.conv.weight`, `conv_norm_out`, ...)
so that aMUSEd-style pretrained weights could be mapped onto these modules later; diffusers
itself is not a dependency. The cross-attention layers (`*.cross_attention.*`) are new.

Each encoder stage (every down block, then the mid block) and each decoder stage (the mid block,
then every up block) works at one feature-map side. Where that side is <= the configured maximum,
the stage is a *level*: after its ResNet layers (before its down/upsampler) the stage's feature map
is exposed, and, in a conditional (prediction) encoder/decoder, the future-frame map attends there
to the context frames' maps of the same level (paper eq. 4-5).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn


class ResnetBlock2D(nn.Module):
    """GroupNorm-SiLU-conv twice with a residual; a 1x1 shortcut when channels change."""

    def __init__(self, in_channels: int, out_channels: int, groups: int) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, in_channels, eps=1e-6)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm2 = nn.GroupNorm(groups, out_channels, eps=1e-6)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.conv_shortcut = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        skip = x if self.conv_shortcut is None else self.conv_shortcut(x)
        return skip + h


class Downsample2D(nn.Module):
    """Stride-2 3x3 conv with right/bottom padding (halves the side exactly)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample2D(nn.Module):
    """Nearest-neighbour x2 then a 3x3 conv."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


def sincos_2d(h: int, w: int, channels: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Fixed 2D sine-cosine position codes (h*w, channels): a quarter each of sin/cos of y and of x."""
    quarter = channels // 4
    omega = 1.0 / 10000 ** (torch.arange(quarter, device=device, dtype=torch.float32) / max(quarter, 1))
    y, x = torch.meshgrid(torch.arange(h, device=device, dtype=torch.float32),
                          torch.arange(w, device=device, dtype=torch.float32), indexing="ij")
    y, x = y.reshape(-1, 1) * omega, x.reshape(-1, 1) * omega  # (h*w, quarter)
    codes = torch.cat([y.sin(), y.cos(), x.sin(), x.cos()], dim=1)
    return F.pad(codes, (0, channels - 4 * quarter)).to(dtype)


class CrossAttention(nn.Module):
    """Future-frame feature maps attend to all context frames' maps of the same level (residual add).

    `x` is (B*Tf, C, h, w) (future frames of each batch element consecutive); `context` is
    (B, Tc, C, hc, wc). The queries of all Tf frames of one batch element form one sequence: each
    query attends to the Tc*hc*wc context positions only, so no per-frame copy of the context is needed.
    Queries and keys get fixed 2D position codes (values do not): without them a future position
    could find "the same place in the context frame" only by content, and most of a future frame is
    exactly that, a copy of the static scene; the position codes make copying easy to learn.
    """

    def __init__(self, channels: int, groups: int, head_dim: int) -> None:
        super().__init__()
        self.heads = channels // head_dim if channels % head_dim == 0 and channels >= head_dim else 1
        self.group_norm = nn.GroupNorm(groups, channels, eps=1e-6)
        self.norm_cross = nn.GroupNorm(groups, channels, eps=1e-6)
        self.to_q = nn.Linear(channels, channels)
        self.to_k = nn.Linear(channels, channels)
        self.to_v = nn.Linear(channels, channels)
        self.to_out = nn.ModuleList([nn.Linear(channels, channels)])

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        b, _, _, h, w = context.shape
        if x.shape[0] % b != 0:
            raise ValueError(f"{x.shape[0]} future maps do not split over a context batch of {b}")
        channels, tq = x.shape[1], x.shape[0] // b
        query = rearrange(self.group_norm(x), "(b t) c h w -> b t (h w) c", b=b)
        query = query + sincos_2d(x.shape[-2], x.shape[-1], channels, x.device, query.dtype)
        ctx = self.norm_cross(rearrange(context, "b t c h w -> (b t) c h w"))  # normalised per context frame
        ctx = rearrange(ctx, "(b t) c h w -> b t (h w) c", b=b)
        keys = ctx + sincos_2d(h, w, channels, ctx.device, ctx.dtype)
        q, k, v = (rearrange(t, "b t n (heads d) -> b heads (t n) d", heads=self.heads)
                   for t in (self.to_q(query), self.to_k(keys), self.to_v(ctx)))
        out = F.scaled_dot_product_attention(q, k, v)
        out = self.to_out[0](rearrange(out, "b heads n d -> b n (heads d)"))
        out = rearrange(out, "b (t h w) c -> (b t) c h w", t=tq, h=x.shape[-2], w=x.shape[-1])
        return x + out


class Stage(nn.Module):
    """ResNet layers, optional cross-attention, optional resampler: a down, mid or up block."""

    def __init__(self, in_channels: int, out_channels: int, layers: int, groups: int, *, side: int,
                 is_level: bool, cross_attention: bool, head_dim: int, resample: str | None) -> None:
        super().__init__()
        self.side, self.is_level, self.out_channels = side, is_level, out_channels
        self.resnets = nn.ModuleList(
            ResnetBlock2D(in_channels if i == 0 else out_channels, out_channels, groups) for i in range(layers))
        self.cross_attention = (CrossAttention(out_channels, groups, head_dim)
                                if is_level and cross_attention else None)
        if resample == "down":
            self.downsamplers = nn.ModuleList([Downsample2D(out_channels)])
        elif resample == "up":
            self.upsamplers = nn.ModuleList([Upsample2D(out_channels)])
        self.resample = resample

    def forward(self, h: torch.Tensor, context: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(output map, this level's feature map or None); attends to `context` when given."""
        for resnet in self.resnets:
            h = resnet(h)
        feature = h if self.is_level else None
        if self.cross_attention is not None and context is not None:
            h = self.cross_attention(h, context)
        if self.resample == "down":
            h = self.downsamplers[0](h)
        elif self.resample == "up":
            h = self.upsamplers[0](h)
        return h, feature


def _run_stages(stages: list[Stage], h: torch.Tensor, contexts: list[torch.Tensor] | None
                ) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Run stages in order, feeding each level its context map; collect the levels' feature maps."""
    features: list[torch.Tensor] = []
    for stage in stages:
        context = contexts[len(features)] if contexts is not None and stage.is_level else None
        h, feature = stage(h, context)
        if feature is not None:
            features.append(feature)
    return h, features


class Encoder(nn.Module):
    """Frames (N, 3, R, R) -> latents (N, embed_dim, R / 2^(n-1), same) and per-level feature maps."""

    def __init__(self, channels: tuple[int, ...], layers: int, groups: int, embed_dim: int, resolution: int,
                 max_cross_attention_resolution: int, cross_attention: bool, head_dim: int) -> None:
        super().__init__()
        self.conv_in = nn.Conv2d(3, channels[0], 3, padding=1)
        side, previous, blocks = resolution, channels[0], []
        for i, out in enumerate(channels):
            last = i == len(channels) - 1
            blocks.append(Stage(previous, out, layers, groups, side=side,
                                is_level=side <= max_cross_attention_resolution, cross_attention=cross_attention,
                                head_dim=head_dim, resample=None if last else "down"))
            previous, side = out, side if last else side // 2
        self.down_blocks = nn.ModuleList(blocks)
        self.mid_block = Stage(previous, previous, 2, groups, side=side,
                               is_level=side <= max_cross_attention_resolution, cross_attention=cross_attention,
                               head_dim=head_dim, resample=None)
        self.conv_norm_out = nn.GroupNorm(groups, previous, eps=1e-6)
        self.conv_act = nn.SiLU()
        self.conv_out = nn.Conv2d(previous, embed_dim, 3, padding=1)

    @property
    def stages(self) -> list[Stage]:
        return [*self.down_blocks, self.mid_block]

    def level_shapes(self) -> list[tuple[int, int]]:
        """(channels, side) of each level's feature map, in order."""
        return [(s.out_channels, s.side) for s in self.stages if s.is_level]

    def forward(self, x: torch.Tensor, contexts: list[torch.Tensor] | None = None
                ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        h, features = _run_stages(self.stages, self.conv_in(x), contexts)
        return self.conv_out(self.conv_act(self.conv_norm_out(h))), features


class Decoder(nn.Module):
    """Latents (N, embed_dim, s, s) -> frames (N, 3, s * 2^(n-1), same) and per-level feature maps."""

    def __init__(self, channels: tuple[int, ...], layers: int, groups: int, embed_dim: int, resolution: int,
                 max_cross_attention_resolution: int, cross_attention: bool, head_dim: int) -> None:
        super().__init__()
        side = resolution // 2 ** (len(channels) - 1)
        up_channels = channels[::-1]
        self.conv_in = nn.Conv2d(embed_dim, up_channels[0], 3, padding=1)
        self.mid_block = Stage(up_channels[0], up_channels[0], 2, groups, side=side,
                               is_level=side <= max_cross_attention_resolution, cross_attention=cross_attention,
                               head_dim=head_dim, resample=None)
        previous, blocks = up_channels[0], []
        for j, out in enumerate(up_channels):
            last = j == len(up_channels) - 1
            blocks.append(Stage(previous, out, layers, groups, side=side,
                                is_level=side <= max_cross_attention_resolution, cross_attention=cross_attention,
                                head_dim=head_dim, resample=None if last else "up"))
            previous, side = out, side if last else side * 2
        self.up_blocks = nn.ModuleList(blocks)
        self.conv_norm_out = nn.GroupNorm(groups, previous, eps=1e-6)
        self.conv_act = nn.SiLU()
        self.conv_out = nn.Conv2d(previous, 3, 3, padding=1)

    @property
    def stages(self) -> list[Stage]:
        return [self.mid_block, *self.up_blocks]

    def level_shapes(self) -> list[tuple[int, int]]:
        """(channels, side) of each level's feature map, in order."""
        return [(s.out_channels, s.side) for s in self.stages if s.is_level]

    def forward(self, z: torch.Tensor, contexts: list[torch.Tensor] | None = None
                ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        h, features = _run_stages(self.stages, self.conv_in(z), contexts)
        return self.conv_out(self.conv_act(self.conv_norm_out(h))), features
