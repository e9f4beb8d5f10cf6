"""Tokenizer config (the architecture) and its named presets; the training loss: `TokenizerObjectiveConfig`."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Literal

from torch import nn


@dataclass
class TokenizerConfig:
    """A compressive (conditional VQGAN) or per-frame VQGAN tokenizer: what a checkpoint needs to rebuild it.

    Architecture (paper Table 2). The encoder has one down block per entry of `down_channels`
    (`down_layers` ResNet blocks each, a stride-2 conv between blocks), then a mid block of two
    ResNet blocks (no attention); the decoder mirrors it with `up_layers` ResNet blocks per up block.
    Encoder output side = resolution / 2^(len(down_channels) - 1). Tokens per frame:
    `context_tokens` x `context_tokens` (context frames, and every frame of the per-frame kind) and
    `future_tokens` x `future_tokens` (future frames); when smaller than the encoder output side, a
    conv with kernel = stride = side / tokens (`quant_conv`) downsamples the embeddings before the
    codebook and a transposed conv (`post_quant_conv`) mirrors it in the decoder.
    Cross-attention: every encoder/decoder stage whose feature-map side is <= the maximum is a
    level; the prediction encoder/decoder attends there to the context frames' maps of that level.
    Context and future frames have separate codebooks (`codebook_size` each): they encode different
    things (the scene vs. its changes), and downstream the context ids and future ids are separate
    vocabulary ranges anyway. Lookup is by cosine similarity, and in training a code unused for
    `codebook_restart_steps` passes is re-anchored on an encoder output (see `quantizer.py`).

    Parameter counts, measured with `ivideogpt describe`: tokenizer_64 has 112.9M (paper: 114M,
    -1.0%) and tokenizer_256 304.2M (paper: 310M, -1.9%). The paper does not specify the
    cross-attention width, heads or the exact bottleneck conv, so the remainder is not recoverable;
    both are within 3%.

    `future_residual` (off in the paper presets, on in `tokenizer_cpu`): future frames are coded as
    changes on the last context frame. The prediction encoder reads `frame - last context frame`, and
    the prediction decoder's output is added to the last context frame (the observed one in training
    and in world-model rollouts, which start from observed frames; the decoded one when only ids are
    given); its last conv starts near zero, so a fresh tokenizer already reproduces the static scene
    and training only has to learn what moved. It is an addition to the paper's design that makes
    short CPU trainings useful; with it off, the prediction path rebuilds the whole frame through
    cross-attention.

    `kind="official"` is the tokenizer of the released checkpoints (`official.py`): the same
    encoder/decoder sizes, but cross-attention after the blocks (learned positions, 4 heads),
    self-attention in the prediction path's mid blocks (and in the context path's with
    `mid_attention`), Euclidean codebooks of `codebook_size` x `embed_dim`, future tokens from a
    patchify + linear of the prediction encoder's map, and a fixed number of `context_frames`.

    `quantizer`: "vq" is the paper's learned codebook (`VectorQuantizer`); "fsq" is finite scalar
    quantization (`FiniteScalarQuantizer`), a fixed grid of prod(`fsq_levels`) ids with nothing to
    learn, which short trainings on small changes need (see `tokenizer_cpu`).

    How it is trained (loss weights, perceptual loss, discriminator) is `TokenizerObjectiveConfig`
    (`tokenizer/objective.py`), a run's `objective:` section; `commitment_beta` and
    `codebook_restart_steps` stay here because the quantizer applies them in its own forward pass.
    """

    kind: Literal["compressive", "perframe", "official"] = "compressive"
    resolution: int = 64
    down_channels: tuple[int, ...] = (128, 256, 512)
    down_layers: int = 2
    up_layers: int = 3
    norm_groups: int = 32
    embed_dim: int = 64
    codebook_size: int = 8192
    context_tokens: int = 16
    future_tokens: int = 4
    max_cross_attention_resolution: int = 16
    future_residual: bool = False  # code future frames as changes on the last context frame
    future_skip_threshold: float = 0.0  # > 0: patches that changed by no more get one "no change" id
    attention_head_dim: int = 64
    context_frames: int = 0  # "official": the context frames its cross-attention is sized for
    mid_attention: bool = False  # "official": self-attention in the context path's mid blocks too
    quantizer: Literal["vq", "fsq"] = "vq"  # learned codebook (paper) or finite scalar grid (tokenizer_cpu)
    fsq_levels: tuple[int, ...] = (8, 5, 5, 5)  # "fsq": values per latent channel; needs embed_dim=len,
    #   codebook_size=product
    l2_normalized_codes: bool = True
    codebook_restart_steps: int = 50  # re-anchor codes unused for this many training passes; 0: never
    commitment_beta: float = 0.25

    def __post_init__(self) -> None:
        self.down_channels = tuple(self.down_channels)
        self.fsq_levels = tuple(self.fsq_levels)
        positive = ("resolution", "down_layers", "up_layers", "norm_groups", "embed_dim", "context_tokens",
                    "future_tokens", "max_cross_attention_resolution", "attention_head_dim")
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1; got {getattr(self, name)}")
        if self.kind not in ("compressive", "perframe", "official"):
            raise ValueError(f"kind must be 'compressive', 'perframe' or 'official'; got {self.kind!r}")
        if not self.down_channels:
            raise ValueError("down_channels must list at least one block's channels; got ()")
        for c in self.down_channels:
            if c < 1 or c % self.norm_groups:
                raise ValueError(f"down_channels entries must be positive multiples of norm_groups="
                                 f"{self.norm_groups}; got {self.down_channels}")
        if self.codebook_size < 2:
            raise ValueError(f"codebook_size must be >= 2; got {self.codebook_size}")
        if self.quantizer not in ("vq", "fsq"):
            raise ValueError(f"quantizer must be 'vq' or 'fsq'; got {self.quantizer!r}")
        if self.future_skip_threshold < 0:
            raise ValueError(f"future_skip_threshold must be >= 0; got {self.future_skip_threshold}")
        if self.future_skip_threshold > 0 and not (self.future_residual and self.quantizer == "fsq"):
            raise ValueError("future_skip_threshold > 0 needs future_residual=True (patches are judged by their "
                             "change) and quantizer='fsq' (whose origin is the skip code)")
        if self.quantizer == "fsq":
            if not self.fsq_levels or min(self.fsq_levels) < 2:
                raise ValueError(f"fsq_levels must list integers >= 2; got {self.fsq_levels}")
            size = math.prod(self.fsq_levels)
            if (self.embed_dim, self.codebook_size) != (len(self.fsq_levels), size):
                raise ValueError(f"quantizer='fsq' with fsq_levels={self.fsq_levels} needs embed_dim="
                                 f"{len(self.fsq_levels)} and codebook_size={size}; got embed_dim={self.embed_dim}, "
                                 f"codebook_size={self.codebook_size}")
        factor = 2 ** (len(self.down_channels) - 1)
        if self.resolution % factor:
            raise ValueError(f"resolution must be divisible by 2^(len(down_channels) - 1) = {factor}; "
                             f"got {self.resolution}")
        side = self.latent_side
        for name in ("context_tokens", "future_tokens"):
            if side % getattr(self, name):
                raise ValueError(f"{name} must divide the encoder output side {side}; got {getattr(self, name)}")
        if self.kind == "official":
            self._check_official(side)
        if self.kind != "perframe" and self.max_cross_attention_resolution < side:
            raise ValueError(f"max_cross_attention_resolution must be >= the encoder output side {side} so the "
                             f"prediction path sees the context; got {self.max_cross_attention_resolution}")
        for name in ("codebook_restart_steps", "commitment_beta"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0; got {getattr(self, name)}")

    def _check_official(self, side: int) -> None:
        """What the released architecture needs: VQ codebooks, no bottleneck conv, a context frame count."""
        if self.context_frames < 1:
            raise ValueError(f"kind='official' needs context_frames >= 1; got {self.context_frames}")
        if self.quantizer != "vq" or self.future_residual or self.future_skip_threshold:
            raise ValueError("kind='official' takes quantizer='vq', future_residual=False, future_skip_threshold=0")
        if self.context_tokens != side:
            raise ValueError(f"kind='official' gives one context token per latent position: context_tokens must be "
                             f"{side}; got {self.context_tokens}")

    @property
    def latent_side(self) -> int:
        """Side of the encoder's output feature map, before any bottleneck conv."""
        return self.resolution // 2 ** (len(self.down_channels) - 1)

    def build(self) -> nn.Module:
        """A `CompressiveTokenizer`, or for kind 'perframe' a `PerFrameTokenizer`, for 'official' an `OfficialTokenizer`."""
        from ivideogpt.tokenizer.model import CompressiveTokenizer
        from ivideogpt.tokenizer.official import OfficialTokenizer
        from ivideogpt.tokenizer.perframe import PerFrameTokenizer

        return {"compressive": CompressiveTokenizer, "perframe": PerFrameTokenizer,
                "official": OfficialTokenizer}[self.kind](self)


def tokenizer_64() -> TokenizerConfig:
    """Paper's 64x64 tokenizer (Table 2): [128, 256, 512], 16x16 context / 4x4 future tokens, 112.9M params."""
    return TokenizerConfig()


def tokenizer_256() -> TokenizerConfig:
    """Paper's 256x256 tokenizer (Table 2): [128, 256, 256, 512, 768], cross-attention up to 32x32, 304.2M."""
    return TokenizerConfig(resolution=256, down_channels=(128, 256, 256, 512, 768), max_cross_attention_resolution=32)


def tokenizer_tiny() -> TokenizerConfig:
    """Test-sized 64x64 tokenizer (~0.43M params, same token grids as the paper); trained without perceptual loss
    (`PRESET_LOSSES` in tokenizer/objective.py)."""
    return TokenizerConfig(down_channels=(16, 32, 32), down_layers=1, up_layers=1, norm_groups=8, embed_dim=16,
                           codebook_size=128, attention_head_dim=16)


def tokenizer_cpu() -> TokenizerConfig:
    """Demo-sized 64x64 tokenizer (1.36M params) that codes Push-T dynamics on 2 CPU cores in minutes.

    Channels [16, 32, 64], one ResNet block per down block and two per up block. Its recipe trains
    without perceptual loss (a VGG16 pass per frame would cost more than the tokenizer itself on CPU)
    and with L2 reconstruction (`PRESET_LOSSES` in tokenizer/objective.py). A step on 8 x (1 context
    + 3 future) frames takes ~0.7 s on 2 idle cores.
    Three choices differ from the paper presets, measured on held-out Push-T clips (future frames
    encoded and decoded, against copying the last context frame; 450 steps, batch 8):
    - `future_residual`: future frames are coded as changes on the last context frame. Without it
      the future path reproduced the context and nothing more (-0.15 dB against copying); with it
      and no quantization at all it reached +5.5 dB.
    - FSQ with levels (8, 5, 5, 5), 1000 ids: with the paper's learned codebook (1024 x 32, any of
      cosine/Euclidean lookup, 8-d codes, lr 3e-3) the future path stayed at "no change" even after
      1500 steps; FSQ gives +1.1 dB after 450 steps and +2.8 dB after 1500.
    - `future_skip_threshold=0.05`: unchanged patches get one id and copy the context exactly. With
      everything above, the demo's tokenizer reconstructs future frames 1.4 dB above copying.
    """
    return TokenizerConfig(down_channels=(16, 32, 64), down_layers=1, up_layers=2, norm_groups=8, embed_dim=4,
                           codebook_size=1000, quantizer="fsq", fsq_levels=(8, 5, 5, 5), attention_head_dim=32,
                           future_residual=True, future_skip_threshold=0.05)


def perframe_4x4_64() -> TokenizerConfig:
    """Per-frame VQGAN baseline, 4x4 tokens per frame, paper-size blocks (efficiency study)."""
    return replace(tokenizer_64(), kind="perframe", context_tokens=4)


def perframe_16x16_64() -> TokenizerConfig:
    """Per-frame VQGAN baseline, 16x16 tokens per frame, paper-size blocks (efficiency study)."""
    return replace(tokenizer_64(), kind="perframe", context_tokens=16)
