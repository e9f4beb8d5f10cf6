"""Quantizer invariants (VQ and FSQ): straight-through, id range, round trips, losses, usage stats."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from ivideogpt.tokenizer import FiniteScalarQuantizer, VectorQuantizer, codebook_stats


@pytest.mark.parametrize("l2_normalize", [True, False])
def test_straight_through_forward_is_the_selected_code(l2_normalize) -> None:
    quantizer = VectorQuantizer(codebook_size=32, embed_dim=8, l2_normalize=l2_normalize)
    z = torch.randn(2, 8, 4, 4, requires_grad=True)
    out = quantizer(z)
    assert out.ids.shape == (2, 4, 4) and out.ids.dtype == torch.long
    assert 0 <= out.ids.min() and out.ids.max() < 32
    torch.testing.assert_close(out.quantized, quantizer.lookup(out.ids))
    # the selected code is the nearest one
    flat = z.detach().permute(0, 2, 3, 1).reshape(-1, 8)
    codes = quantizer.codes().detach()
    if l2_normalize:
        flat = F.normalize(flat, dim=-1)
    assert torch.equal(out.ids.flatten(), torch.cdist(flat, codes).argmin(dim=1))
    # gradient passes straight through to the input
    (out.quantized * torch.randn_like(out.quantized)).sum().backward()
    assert z.grad is not None and z.grad.abs().sum() > 0


def test_losses_are_non_negative_and_train_the_right_side() -> None:
    quantizer = VectorQuantizer(codebook_size=16, embed_dim=4, beta=0.25)
    z = torch.randn(3, 4, 2, 2, requires_grad=True)
    out = quantizer(z)
    assert out.commitment >= 0 and out.codebook_loss >= 0
    out.codebook_loss.backward()
    assert z.grad is None and quantizer.embedding.weight.grad.abs().sum() > 0
    quantizer.zero_grad()
    quantizer(z).commitment.backward()
    assert z.grad.abs().sum() > 0 and quantizer.embedding.weight.grad is None


def test_input_equal_to_a_code_has_zero_loss() -> None:
    quantizer = VectorQuantizer(codebook_size=8, embed_dim=4)
    z = quantizer.codes().detach()[[3, 5]].reshape(2, 4, 1, 1)
    out = quantizer(z)
    assert out.ids.flatten().tolist() == [3, 5]
    assert out.commitment.item() == pytest.approx(0, abs=1e-6)
    assert out.codebook_loss.item() == pytest.approx(0, abs=1e-6)


def test_codebook_stats_ranges() -> None:
    usage, perplexity = codebook_stats(torch.tensor([0, 0, 0, 0]), 8)
    assert usage.item() == pytest.approx(1 / 8) and perplexity.item() == pytest.approx(1.0)
    usage, perplexity = codebook_stats(torch.arange(8).repeat(3), 8)
    assert usage.item() == pytest.approx(1.0) and perplexity.item() == pytest.approx(8.0, rel=1e-4)
    usage, perplexity = codebook_stats(torch.randint(0, 64, (100,)), 64)
    assert 0 < usage <= 1 and 1 <= perplexity <= 64


def test_nan_latents_reach_the_loss_instead_of_crashing_the_stats() -> None:
    quantizer = FiniteScalarQuantizer((8, 5, 5, 5))
    latents = torch.randn(2, 4, 3, 3)
    latents[0, :, 1, 1] = float("nan")  # what a diverged encoder hands over
    ids = quantizer(latents).ids
    usage, perplexity = codebook_stats(ids, quantizer.codebook_size)  # ids of NaN are out of range: left out
    assert 0 < usage <= 1 and torch.isfinite(perplexity)


@pytest.mark.parametrize("bound, value", [("_LOOKUP_ROWS", 7), ("_LOOKUP_BYTES", 5 * 64 * 4)])
def test_lookup_is_chunk_independent(monkeypatch, bound: str, value: int) -> None:
    from ivideogpt.tokenizer import quantizer as module

    quantizer = VectorQuantizer(codebook_size=64, embed_dim=8)
    z = torch.randn(4, 8, 8, 8)
    reference = quantizer(z).ids
    monkeypatch.setattr(module, bound, value)
    assert torch.equal(quantizer(z).ids, reference)


def test_lookup_scores_stay_small_for_a_large_codebook() -> None:
    from ivideogpt.tokenizer.quantizer import lookup_rows

    assert lookup_rows(128) == lookup_rows(8192) == 8192  # the paper's codebook: chunks as before
    assert lookup_rows(10**6) * 10**6 * 4 <= 2**28 and lookup_rows(10**10) == 1  # not 8192 x 10^6 floats (33 GB)


def test_dead_codes_are_restarted_on_batch_rows_in_training_only() -> None:
    quantizer = VectorQuantizer(codebook_size=16, embed_dim=4, restart_after=2)
    z = torch.randn(1, 4, 1, 1).expand(2, 4, 3, 3).contiguous()  # one direction only: a collapsing batch
    quantizer.eval()
    for _ in range(3):
        quantizer(z)
    assert quantizer.unused_steps.sum() == 0  # eval passes neither count nor restart
    quantizer.train()
    before = quantizer.embedding.weight.detach().clone()
    quantizer(z)
    quantizer(z)
    assert (quantizer.unused_steps >= 2).sum() == 15  # all but the one selected code
    out = quantizer(z)  # restarts the 15 dead codes on (noisy copies of) rows of z before the lookup
    changed = (quantizer.embedding.weight.detach() != before).any(dim=1)
    assert changed.sum() == 15
    direction = F.normalize(z[0, :, 0, 0], dim=0)
    assert (F.normalize(quantizer.embedding.weight.detach()[changed], dim=1) @ direction > 0.99).all()
    assert out.ids.max() < 16 and quantizer.unused_steps.max() <= 1


def test_restarts_do_not_break_backward() -> None:
    quantizer = VectorQuantizer(codebook_size=8, embed_dim=4, restart_after=1).train()
    z = torch.randn(2, 4, 2, 2, requires_grad=True)
    for _ in range(3):
        out = quantizer(z)
        (out.quantized.sum() + out.commitment + out.codebook_loss).backward()
    assert z.grad is not None and quantizer.embedding.weight.grad is not None


@pytest.mark.parametrize("levels", [(8, 5, 3), (2, 3, 4)])
def test_fsq_ids_cover_the_grid_and_round_trip(levels: tuple[int, ...]) -> None:
    quantizer = FiniteScalarQuantizer(levels)
    size = math.prod(levels)
    assert quantizer.codebook_size == size and quantizer.embed_dim == 3
    z = 1.5 * torch.randn(256, 3, 8, 8)
    out = quantizer(z)
    assert out.ids.shape == (256, 8, 8) and out.ids.dtype == torch.long
    assert 0 <= out.ids.min() and out.ids.max() < size
    assert out.ids.unique().numel() == size  # large random latents reach every grid point
    torch.testing.assert_close(out.quantized, quantizer.lookup(out.ids))
    for channel, count in enumerate(levels):  # each channel takes exactly `count` values in [-1, 1]
        values = out.quantized[:, channel].unique()
        assert values.numel() == count and values.min() >= -1 and values.max() <= 1
    assert out.commitment == 0 and out.codebook_loss == 0
    assert quantizer(torch.zeros(1, 3, 1, 1)).ids.item() == quantizer.zero_id  # z = 0 is the grid's origin


@pytest.mark.parametrize("levels", [(8, 5, 5, 5), (2, 2, 3, 4)])
def test_fsq_is_straight_through_and_checks_channels(levels: tuple[int, ...]) -> None:
    quantizer = FiniteScalarQuantizer(levels)
    z = torch.randn(2, 4, 4, 4, requires_grad=True)
    quantizer(z).quantized.sum().backward()
    assert z.grad is not None and (z.grad.abs().sum(dim=(0, 2, 3)) > 0).all()  # every channel learns
    with pytest.raises(ValueError, match="needs 4 latent channels, got 3"):
        quantizer(torch.randn(2, 3, 4, 4))
    with pytest.raises(ValueError, match="levels must be integers >= 2"):
        FiniteScalarQuantizer((8, 1))
