"""TokenizerObjective: the loss contract, perceptual injection, the adversarial schedule, overfitting."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from torch import nn

from ivideogpt.configuration import ConfigError
from ivideogpt.data.batch import Batch
from ivideogpt.tokenizer.discriminator import hinge_discriminator_loss
from ivideogpt.tokenizer.config import TokenizerConfig
from ivideogpt.tokenizer.objective import TokenizerObjective, TokenizerObjectiveConfig


def overfit(config: TokenizerConfig, frames: torch.Tensor, steps: int, lr: float) -> list[float]:
    """Train a fresh tokenizer on one fixed clip (B, T, 3, H, W), one context frame; the loss at each step."""
    objective = TokenizerObjective(config, perceptual=None)
    optimizer = torch.optim.AdamW(objective.parameters(), lr=lr, weight_decay=0.0)
    batch = Batch(frames=frames, num_context=1)
    losses = []
    for step in range(steps):
        loss, _ = objective.compute_loss(batch, step)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(objective.parameters(), 1.0)
        optimizer.step()
        losses.append(float(loss.detach()))
    return losses


class StubPerceptual(nn.Module):
    """(N,) mean absolute difference: stands in for LPIPS without weight files."""

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return (x - y).abs().flatten(1).mean(1)


def test_loss_and_logs(tiny_config, clip) -> None:
    objective = TokenizerObjective(tiny_config, perceptual=StubPerceptual(), loss=TokenizerObjectiveConfig(perceptual_weight=1.0))
    loss, logs = objective.compute_loss(Batch(frames=clip, num_context=1), step=0)
    assert loss.ndim == 0 and loss.requires_grad
    for name in ["recon_l1", "recon_l2", "commitment", "codebook_loss", "perceptual", "codebook_usage", "perplexity",
                 "future_codebook_usage", "future_perplexity", "loss"]:
        assert logs[name].ndim == 0 and not logs[name].requires_grad, name
    assert 0 < logs["codebook_usage"] <= 1 and 1 <= logs["perplexity"] <= tiny_config.codebook_size
    expected = logs["recon_l1"] + logs["commitment"] + logs["codebook_loss"] + logs["perceptual"]
    torch.testing.assert_close(loss.detach(), expected)
    assert "adversarial" not in logs
    loss.backward()


def test_perceptual_is_not_a_parameter(tiny_config) -> None:
    objective = TokenizerObjective(tiny_config, perceptual=nn.Linear(2, 2), loss=TokenizerObjectiveConfig(perceptual_weight=1.0))
    assert not any(name.startswith("_perceptual") or "weight" == name for name, _ in objective.named_parameters())
    assert objective.perceptual is not None and not any(k.startswith("_perceptual") for k in objective.state_dict())


def test_missing_lpips_weights(tiny_config, tmp_path) -> None:
    pytest.importorskip("ivideogpt.perceptual")
    loss = TokenizerObjectiveConfig(perceptual_weight=1.0, perceptual_weights_path=str(tmp_path / "vgg16.pth"))
    with pytest.raises(FileNotFoundError, match="vgg16.pth"):
        TokenizerObjective(tiny_config, loss=replace(loss, require_perceptual=True))
    assert TokenizerObjective(tiny_config, loss=loss).perceptual is None  # warns, trains without it


def test_a_set_perceptual_weights_path_must_name_a_file(tmp_path) -> None:
    typo = TokenizerObjectiveConfig(perceptual_weights_path=str(tmp_path / "vgg16.pht"))
    with pytest.raises(ConfigError, match=r"^objective.perceptual_weights_path=\S+vgg16.pht: no such file; correct"):
        typo.check_weights_path("objective")
    replace(typo, perceptual_weight=0.0).check_weights_path("objective")  # no perceptual loss: the path is unused
    TokenizerObjectiveConfig().check_weights_path("objective")  # unset: the usual places, and a warning if absent
    (tmp_path / "vgg16.pht").write_bytes(b"")  # there: read (and judged) when the objective is built
    typo.check_weights_path("objective")


def test_adversarial_term_starts_at_disc_start(tiny_config, clip) -> None:
    loss = TokenizerObjectiveConfig(discriminator=True, disc_start=5, disc_channels=8, disc_layers=2)
    objective = TokenizerObjective(tiny_config, perceptual=None, loss=loss)
    batch = Batch(frames=clip, num_context=1)
    loss, logs = objective.compute_loss(batch, step=4)
    assert "adversarial" not in logs and "discriminator" not in logs
    loss.backward()
    assert all(p.grad is None for p in objective.discriminator.parameters())
    _, logs = objective.compute_loss(batch, step=5)
    assert {"adversarial", "discriminator"} <= set(logs)


def test_generator_term_leaves_discriminator_alone(tiny_config, clip) -> None:
    loss = TokenizerObjectiveConfig(discriminator=True, disc_channels=8, disc_layers=2,
                                    l1_weight=0.0, l2_weight=0.0, quantizer_weight=0.0)
    objective = TokenizerObjective(tiny_config, perceptual=None, loss=loss)
    batch = Batch(frames=clip, num_context=1)
    loss, _ = objective.compute_loss(batch, step=0)
    loss.backward()  # = adversarial (generator) term + discriminator loss
    assert all(p.requires_grad for p in objective.discriminator.parameters())
    tokenizer_grad = sum(p.grad.abs().sum() for p in objective.tokenizer.parameters() if p.grad is not None)
    assert tokenizer_grad > 0  # only the generator term reaches the tokenizer here
    # the discriminator's gradient is exactly that of its own loss on detached reconstructions
    discriminator = objective.discriminator
    with torch.no_grad():
        recon = objective.tokenizer(batch.context_frames, batch.future_frames).reconstruction.flatten(0, 1)
    own = hinge_discriminator_loss(discriminator(batch.frames.flatten(0, 1)), discriminator(recon))
    expected = torch.autograd.grad(own, list(discriminator.parameters()))
    for param, grad in zip(discriminator.parameters(), expected):
        torch.testing.assert_close(param.grad, grad)


def test_make_samples(tiny_config, clip) -> None:
    samples = TokenizerObjective(tiny_config, perceptual=None).make_samples(Batch(frames=clip, num_context=2))
    assert set(samples) == {"ground_truth", "reconstruction", "reconstruction_no_context"}
    assert all(s.shape == clip.shape for s in samples.values())
    assert samples["reconstruction"].abs().max() <= 1


def test_perframe_objective(tiny_config, clip) -> None:
    objective = TokenizerObjective(replace(tiny_config, kind="perframe", context_tokens=4), perceptual=None)
    loss, logs = objective.compute_loss(Batch(frames=clip, num_context=1), step=0)
    loss.backward()
    assert "perplexity" in logs and "future_perplexity" not in logs
    assert set(objective.make_samples(Batch(frames=clip, num_context=1))) == {"ground_truth", "reconstruction"}


def test_overfit_drives_loss_down(small_config, make_clip) -> None:
    frames = make_clip(batch=1, frames=2, resolution=32)
    losses = overfit(small_config, frames, steps=30, lr=3e-3)
    assert len(losses) == 30 and losses[-1] < 0.5 * losses[0], losses[::10]

