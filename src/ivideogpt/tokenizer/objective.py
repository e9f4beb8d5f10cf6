"""Tokenizer training objective: the one `compute_loss(batch, step) -> (loss, logs)` contract."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Literal

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from ivideogpt.configuration import ConfigError
from ivideogpt.data.batch import Batch
from ivideogpt.tokenizer.config import TokenizerConfig
from ivideogpt.tokenizer.discriminator import PatchDiscriminator, hinge_discriminator_loss
from ivideogpt.tokenizer.model import CompressiveTokenizer


@dataclass
class TokenizerObjectiveConfig:
    """How a tokenizer is trained, apart from what it is (`TokenizerConfig`): a run's `objective:` section.

    Equal weights by default, as in the paper: L1 (and optionally L2) reconstruction, commitment +
    codebook loss, LPIPS perceptual loss, and an optional hinge-loss patch discriminator from step
    `disc_start` on.
    """

    l1_weight: float = 1.0
    l2_weight: float = 0.0
    quantizer_weight: float = 1.0  # weight of commitment + codebook loss
    perceptual_weight: float = 1.0  # LPIPS; 0 skips the VGG16 pass
    perceptual_weights_path: str | None = None  # local VGG16 weights file; unset: the usual places (see README).
    #   A set path that names no file is refused when training starts; unset and not found: a warning only
    require_perceptual: bool = False  # missing VGG16 weights: an error instead of a warning and no perceptual loss
    discriminator: bool = False  # add a hinge-loss patch discriminator
    adversarial_weight: float = 1.0
    disc_start: int = 0  # first step of the adversarial terms
    disc_channels: int = 64
    disc_layers: int = 3

    def __post_init__(self) -> None:
        for name in ("disc_channels", "disc_layers"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1; got {getattr(self, name)}")
        for name in ("l1_weight", "l2_weight", "quantizer_weight", "perceptual_weight", "adversarial_weight",
                     "disc_start"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0; got {getattr(self, name)}")

    def check_weights_path(self, section: str) -> None:
        """Refuse (ConfigError) a set `perceptual_weights_path` naming no file while the perceptual loss is on: a typo
        must not train without it. Unset, the usual places are searched, and weights found nowhere only warn."""
        from ivideogpt.perceptual import find_vgg16_weights

        path = self.perceptual_weights_path
        if self.perceptual_weight > 0 and path is not None and find_vgg16_weights(path) is None:
            raise ConfigError(f"{section}.perceptual_weights_path={path}: no such file; correct the path, or leave it "
                              "unset to look for the VGG16 weights in the usual places")


LOSS_FIELDS = tuple(f.name for f in fields(TokenizerObjectiveConfig))
# The presets whose recipe trains with other than the paper's loss (every other preset: the defaults).
PRESET_LOSSES: dict[str, dict[str, float]] = {
    "tokenizer_tiny": {"perceptual_weight": 0.0},
    "tokenizer_cpu": {"l1_weight": 0.0, "l2_weight": 1.0, "perceptual_weight": 0.0},  # see tokenizer_cpu()
}


def preset_objective(preset: str) -> TokenizerObjectiveConfig:
    """The loss a tokenizer preset is trained with unless a run says otherwise."""
    return TokenizerObjectiveConfig(**PRESET_LOSSES.get(preset, {}))


class TokenizerObjective(nn.Module):
    """The tokenizer (+ optional discriminator) and its loss, optimised in one backward by one optimizer.

    loss = l1_weight * L1 + l2_weight * L2 + quantizer_weight * (commitment + codebook)
         + perceptual_weight * LPIPS + [from step disc_start] adversarial_weight * hinge generator term
         + hinge discriminator loss.
    The generator term is computed with the discriminator frozen (so it only moves the tokenizer);
    the discriminator loss sees detached reconstructions (so it only moves the discriminator).

    `config` is the tokenizer's architecture, `loss` (default: the paper's) how it is trained.
    `perceptual`: an LPIPS-like module `(x, y) -> (N,)` on (N, 3, H, W) in [-1, 1], None for no
    perceptual loss, or "auto" to load LPIPS from local weights when `perceptual_weight > 0`
    (missing weights: error if `require_perceptual`, else one warning and no perceptual loss).
    It is kept outside this module's parameters and state dict: it is frozen and never saved.
    """

    def __init__(self, config: TokenizerConfig, tokenizer: nn.Module | None = None,
                 perceptual: nn.Module | None | Literal["auto"] = "auto",
                 loss: TokenizerObjectiveConfig | None = None) -> None:
        super().__init__()
        self.config = config
        self.loss = loss = loss if loss is not None else TokenizerObjectiveConfig()
        self.tokenizer = tokenizer if tokenizer is not None else config.build()
        self.discriminator = (PatchDiscriminator(loss.disc_channels, loss.disc_layers)
                              if loss.discriminator else None)
        if isinstance(perceptual, str):
            if perceptual != "auto":
                raise ValueError(f"perceptual must be a module, None or 'auto'; got {perceptual!r}")
            perceptual = None
            if loss.perceptual_weight > 0:
                from ivideogpt.perceptual import load_lpips

                perceptual = load_lpips(loss.perceptual_weights_path, required=loss.require_perceptual)
        self._perceptual = (perceptual,)  # a tuple hides it from nn.Module registration

    @property
    def perceptual(self) -> nn.Module | None:
        return self._perceptual[0]

    def _perceptual_on(self, device: torch.device) -> nn.Module | None:
        """The perceptual module, moved to `device` on first use there."""
        module = self.perceptual
        if module is not None:
            tensor = next(iter([*module.parameters(), *module.buffers()]), None)
            if tensor is not None and tensor.device != device:
                module.to(device)
        return module

    def compute_loss(self, batch: Batch, step: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Total loss for one batch and detached scalar logs (recon_l1, commitment, perplexity, ...)."""
        c = self.loss
        out = self.tokenizer(batch.context_frames, batch.future_frames)
        target = rearrange(batch.frames, "b t c h w -> (b t) c h w")
        recon = rearrange(out.reconstruction, "b t c h w -> (b t) c h w")
        recon_l1 = F.l1_loss(recon, target)
        recon_l2 = F.mse_loss(recon, target)
        quantizer_loss = out.commitment + out.codebook_loss
        loss = c.l1_weight * recon_l1 + c.l2_weight * recon_l2 + c.quantizer_weight * quantizer_loss
        logs = {"recon_l1": recon_l1, "recon_l2": recon_l2, "commitment": out.commitment,
                "codebook_loss": out.codebook_loss, **out.stats}
        perceptual = self._perceptual_on(recon.device) if c.perceptual_weight > 0 else None
        if perceptual is not None:
            logs["perceptual"] = perceptual(recon, target).mean()
            loss = loss + c.perceptual_weight * logs["perceptual"]
        if self.discriminator is not None and step >= c.disc_start:
            self.discriminator.requires_grad_(False)  # generator term: gradients reach the tokenizer only
            try:
                logs["adversarial"] = -self.discriminator(recon).mean()
            finally:
                self.discriminator.requires_grad_(True)
            fake = recon.detach()  # the discriminator's loss never reaches the tokenizer
            logs["discriminator"] = hinge_discriminator_loss(self.discriminator(target), self.discriminator(fake))
            loss = loss + c.adversarial_weight * logs["adversarial"] + logs["discriminator"]
        logs["loss"] = loss
        return loss, {name: value.detach() for name, value in logs.items()}

    @torch.no_grad()
    def make_samples(self, batch: Batch) -> dict[str, torch.Tensor]:
        """Ground truth and reconstructions, each (B, T, 3, H, W) in [-1, 1], for sample GIFs.

        For the compressive tokenizer also `reconstruction_no_context`: future frames decoded with
        cross-attention to the context switched off (what the future tokens alone carry).
        """
        was_training = self.tokenizer.training
        self.tokenizer.eval()  # no codebook restarts while sampling
        try:
            out = self.tokenizer(batch.context_frames, batch.future_frames)
            samples = {"ground_truth": batch.frames, "reconstruction": out.reconstruction.clamp(-1, 1)}
            if isinstance(self.tokenizer, CompressiveTokenizer):
                future = self.tokenizer.decode_future(out.future_ids, None, use_context=False)
                samples["reconstruction_no_context"] = torch.cat([out.context_recon, future], dim=1).clamp(-1, 1)
        finally:
            self.tokenizer.train(was_training)
        return samples
