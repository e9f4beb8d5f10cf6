"""Quantizers: a learned codebook (VQ, the paper's) or a fixed scalar grid (FSQ), and codebook usage stats.

Both map a latent (N, D, h, w) to ids (N, h, w) in [0, codebook_size) with straight-through gradients,
and map ids back to latents with `lookup`; the tokenizer picks one with `TokenizerConfig.quantizer`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

if TYPE_CHECKING:
    from ivideogpt.tokenizer.config import TokenizerConfig

_LOOKUP_ROWS = 8192  # rows per distance chunk at most...
_LOOKUP_BYTES = _LOOKUP_ROWS * 8192 * 4  # ...and (rows, K) float32 scores of ~256 MB at most, whatever K is


@dataclass
class QuantizerOutput:
    """quantized (N, D, h, w) with straight-through gradients; ids (N, h, w) long; scalar losses."""

    quantized: torch.Tensor
    ids: torch.Tensor
    commitment: torch.Tensor
    codebook_loss: torch.Tensor


def lookup_rows(codebook_size: int) -> int:
    """Rows of a lookup's distance chunk: 8192, fewer past 8192 codes, so its scores never outgrow ~256 MB (a chunk
    of 8192 rows against 10^6 codes would need 33 GB)."""
    return max(1, min(_LOOKUP_ROWS, _LOOKUP_BYTES // (4 * codebook_size)))


class VectorQuantizer(nn.Module):
    """Codebook of `codebook_size` x `embed_dim` vectors: l2-normalised lookup, dead-code restarts, no EMA.

    Why this variant: normalising both the encoder output and the codes (ViT-VQGAN, MaskGIT) makes
    the lookup a cosine similarity that no code can win or lose by its norm. That alone does not stop
    collapse on video whose frames are mostly alike: on Push-T a fresh 1024-entry codebook ended up
    with one code for all future frames (and so no dynamics information at all), because the codebook
    loss only moves codes that are already selected. So, in training, a code unused for
    `restart_after` forward passes is re-anchored on a random encoder output of the current batch
    (Jukebox, CVQ-VAE): codes then sit where the data is. Codes are otherwise learned by gradient (the
    codebook loss) rather than by EMA, so the one optimizer updates them; restarts are the only
    non-gradient update, and under torch.distributed they are decided and drawn on rank 0 and
    broadcast so that every process keeps the same codebook. The paper's 64-d embedding is already a
    low-dimensional lookup space (the encoder's `quant_conv` is the factorised projection).
    `l2_normalize=False` gives the classic Euclidean lookup (aMUSEd-style pretrained codebooks).

    Losses (VQ-VAE): codebook ||sg(z) - e||^2 and commitment beta * ||z - sg(e)||^2, both >= 0.
    """

    def __init__(self, codebook_size: int, embed_dim: int, beta: float = 0.25, l2_normalize: bool = True,
                 restart_after: int = 0) -> None:
        super().__init__()
        self.codebook_size, self.embed_dim, self.beta, self.l2_normalize = codebook_size, embed_dim, beta, l2_normalize
        self.restart_after = restart_after
        self.embedding = nn.Embedding(codebook_size, embed_dim)  # diffusers name: quantize.embedding.weight
        self.register_buffer("unused_steps", torch.zeros(codebook_size, dtype=torch.long))

    def codes(self) -> torch.Tensor:
        """The codebook as used for lookup and output: (K, D), normalised when `l2_normalize`."""
        weight = self.embedding.weight
        return F.normalize(weight, dim=-1) if self.l2_normalize else weight

    @torch.no_grad()
    def restart_dead_codes(self, z: torch.Tensor) -> int:
        """Re-anchor codes unused for `restart_after` passes on random rows of z (M, D); returns how many."""
        dead = (self.unused_steps >= self.restart_after).to(torch.uint8)  # uint8: every backend broadcasts it
        distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
        if distributed:  # rank 0 decides, so every process restarts the same codes
            torch.distributed.broadcast(dead, src=0)
        dead = dead.bool()
        count = int(dead.sum())
        if count == 0:
            return 0
        picks = torch.randint(0, z.shape[0], (count,), device=z.device)
        fresh = z[picks].to(self.embedding.weight.dtype)
        fresh = fresh + 1e-3 * fresh.norm(dim=1, keepdim=True) * torch.randn_like(fresh) / self.embed_dim ** 0.5
        if distributed:
            torch.distributed.broadcast(fresh, src=0)
        self.embedding.weight[dead] = fresh
        self.unused_steps[dead] = 0
        return count

    @torch.no_grad()
    def nearest(self, z: torch.Tensor, codes: torch.Tensor | None = None) -> torch.Tensor:
        """Ids (M,) of the nearest codes to rows of z (M, D), computed in float32 in chunks."""
        codes = (self.codes() if codes is None else codes).float()
        ids = []
        for rows in z.float().split(lookup_rows(codes.shape[0])):
            if self.l2_normalize:  # unit vectors: nearest == highest dot product
                ids.append((rows @ codes.t()).argmax(dim=1))
            else:  # ||z - e||^2 = ||z||^2 - 2 z.e + ||e||^2; ||z||^2 is the same for every code
                ids.append((codes.square().sum(1) - 2 * rows @ codes.t()).argmin(dim=1))
        return torch.cat(ids)

    def forward(self, z: torch.Tensor) -> QuantizerOutput:
        """Quantize z (N, D, h, w)."""
        n, _, h, w = z.shape
        flat = rearrange(z, "n d h w -> (n h w) d")
        if self.l2_normalize:
            flat = F.normalize(flat, dim=-1)
        if self.training and self.restart_after > 0:
            self.restart_dead_codes(flat.detach())  # before the codes enter this pass's graph
        codes = self.codes()
        ids = self.nearest(flat, codes)
        if self.training and self.restart_after > 0:
            with torch.no_grad():
                self.unused_steps += 1
                self.unused_steps[ids] = 0
        selected = codes[ids].to(flat.dtype)  # (n h w, d)
        codebook_loss = F.mse_loss(selected.float(), flat.detach().float())
        commitment = self.beta * F.mse_loss(flat.float(), selected.detach().float())
        quantized = flat + (selected - flat).detach()  # straight-through: forward = code, backward = identity
        return QuantizerOutput(
            quantized=rearrange(quantized, "(n h w) d -> n d h w", n=n, h=h, w=w),
            ids=rearrange(ids, "(n h w) -> n h w", n=n, h=h, w=w),
            commitment=commitment,
            codebook_loss=codebook_loss,
        )

    def lookup(self, ids: torch.Tensor) -> torch.Tensor:
        """Codes of ids (N, h, w) as a latent map (N, D, h, w)."""
        return rearrange(self.codes()[ids], "n h w d -> n d h w")


class FiniteScalarQuantizer(nn.Module):
    """FSQ (Mentzer et al., 2023): each of D latent channels is bounded and rounded to one of `levels[d]` values.

    The implicit codebook is the grid of prod(levels) points, so there is nothing to learn, no
    auxiliary loss and no code that can die. Why it is here: on Push-T, where a future frame differs
    from the context in ~1% of its pixels, the learned codebook of `VectorQuantizer` kept the future
    path at "no change" for 1500 steps (future reconstruction equal to copying the last frame), while
    FSQ with the same 1000 ids learned it (+1.1 dB over copying after 450 steps, +2.8 dB after 1500).
    Ids are the mixed-radix numbers of the rounded digits; losses are returned as zeros.
    """

    def __init__(self, levels: tuple[int, ...]) -> None:
        super().__init__()
        if not levels or min(levels) < 2:
            raise ValueError(f"FSQ levels must be integers >= 2, one per latent channel; got {levels}")
        self.levels = tuple(int(n) for n in levels)
        self.embed_dim = len(self.levels)
        self.codebook_size = math.prod(self.levels)
        radix = [math.prod(self.levels[:d]) for d in range(self.embed_dim)]  # mixed-radix place values
        # Id of the grid point at the origin (every channel 0): the natural code for "nothing here".
        # A plain int, so using it never reads a tensor back from the device.
        self.zero_id = sum((n // 2) * r for n, r in zip(self.levels, radix))
        self.register_buffer("_levels", torch.tensor(self.levels), persistent=False)
        self.register_buffer("_radix", torch.tensor(radix), persistent=False)

    def _bound(self, z: torch.Tensor) -> torch.Tensor:
        """Squash z (M, D) so that rounding gives exactly levels[d] integer values per channel (centred on 0)."""
        levels = self._levels.to(z.dtype)
        half = (levels - 1) / 2
        offset = (1 - self._levels % 2).to(z.dtype) / 2  # even level counts sit on half-integers, shifted to ints
        # The shift maps z = 0 to the value 0. Two levels have no interior 0: the shift would be atanh(1) = inf
        # and freeze the channel, so there z's sign picks the level instead.
        shift = torch.where(self._levels > 2, torch.atanh(offset / half), 0.0)
        return torch.tanh(z + shift) * half - offset

    def forward(self, z: torch.Tensor) -> QuantizerOutput:
        """Quantize z (N, D, h, w); the output lies in [-1, 1] per channel."""
        n, d, h, w = z.shape
        if d != self.embed_dim:
            raise ValueError(f"FSQ with levels {self.levels} needs {self.embed_dim} latent channels, got {d}")
        bounded = self._bound(rearrange(z, "n d h w -> (n h w) d").float())
        rounded = bounded + (bounded.round() - bounded).detach()  # straight-through rounding
        half = self._levels // 2
        ids = ((rounded.detach().round().long() + half) * self._radix).sum(dim=1)
        zero = z.new_zeros((), dtype=torch.float32)
        return QuantizerOutput(
            quantized=rearrange(rounded / half, "(n h w) d -> n d h w", n=n, h=h, w=w).to(z.dtype),
            ids=rearrange(ids, "(n h w) -> n h w", n=n, h=h, w=w),
            commitment=zero,
            codebook_loss=zero,
        )

    def lookup(self, ids: torch.Tensor) -> torch.Tensor:
        """Grid points of ids (N, h, w) as a latent map (N, D, h, w)."""
        half = self._levels // 2
        digits = torch.div(ids.unsqueeze(-1), self._radix, rounding_mode="floor") % self._levels
        return rearrange((digits - half).float() / half, "n h w d -> n d h w")


def build_quantizer(config: "TokenizerConfig") -> nn.Module:
    """The quantizer `config.quantizer` names, sized by the config."""
    if config.quantizer == "fsq":
        return FiniteScalarQuantizer(config.fsq_levels)
    return VectorQuantizer(config.codebook_size, config.embed_dim, config.commitment_beta, config.l2_normalized_codes,
                           config.codebook_restart_steps)


def codebook_stats(ids: torch.Tensor, codebook_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(usage, perplexity) of a batch of ids: fraction of codes used, exp(entropy) of the id histogram.

    usage is in (0, 1]; perplexity is in [1, min(codebook_size, ids.numel())].
    """
    ids = ids.detach().flatten()
    valid = (ids >= 0) & (ids < codebook_size)  # NaN latents quantize to no valid id: left out of the stats,
    # so the NaN reaches the loss and training stops with a clear NonFiniteLossError instead of a crash here
    counts = torch.bincount(ids.clamp(0, codebook_size - 1), weights=valid.float(), minlength=codebook_size)
    probs = counts / counts.sum().clamp_min(1.0)
    entropy = -(probs * probs.clamp_min(1e-12).log()).sum()
    return (counts > 0).float().mean(), entropy.exp()
