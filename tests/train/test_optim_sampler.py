"""Schedule shapes, no-decay parameter groups and the step-indexed sampler."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from ivideogpt.train import StepSampler, TrainConfig, build_optimizer, build_scheduler, lr_factor, parameter_groups


def test_warmup_then_constant() -> None:
    cfg = TrainConfig(warmup_steps=4, schedule="constant", max_steps=20)
    factors = [lr_factor(step, cfg) for step in range(8)]
    assert factors[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert factors[4:] == [1.0] * 4


def test_warmup_then_cosine_to_floor() -> None:
    cfg = TrainConfig(warmup_steps=10, schedule="cosine", max_steps=110, min_lr_ratio=0.1)
    assert lr_factor(0, cfg) == pytest.approx(0.1)
    assert lr_factor(9, cfg) == pytest.approx(1.0)
    assert lr_factor(10, cfg) == pytest.approx(1.0)
    assert lr_factor(60, cfg) == pytest.approx(0.1 + 0.9 * 0.5)  # half way down the cosine
    assert lr_factor(110, cfg) == pytest.approx(0.1)
    decay = [lr_factor(step, cfg) for step in range(10, 111)]
    assert all(a >= b for a, b in zip(decay, decay[1:]))  # monotone after warmup


def test_scheduler_applies_factor_per_update() -> None:
    cfg = TrainConfig(lr=1e-3, warmup_steps=2, schedule="cosine", max_steps=6)
    model = nn.Linear(3, 3)
    optimizer = build_optimizer(model, cfg)
    scheduler = build_scheduler(optimizer, cfg)
    seen = []
    for _ in range(6):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert seen == pytest.approx([1e-3 * lr_factor(s, cfg) for s in range(6)])
    assert math.isclose(seen[1], 1e-3)
    assert set(scheduler.state_dict()["lr_lambdas"]) == {None}  # nothing but numbers to save


def test_no_decay_groups_cover_biases_norms_embeddings() -> None:
    model = nn.Sequential(nn.Embedding(5, 4), nn.Linear(4, 4), nn.LayerNorm(4))
    decay, no_decay = parameter_groups(model, weight_decay=0.1)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert [p.shape for p in decay["params"]] == [torch.Size([4, 4])]  # only the Linear weight
    assert len(no_decay["params"]) == 4  # embedding, linear bias, norm weight and bias


def test_model_can_choose_its_no_decay_set() -> None:
    class Chooser(nn.Linear):
        def no_decay_parameter_names(self) -> set[str]:
            return {"weight"}

    decay, no_decay = parameter_groups(Chooser(2, 2), weight_decay=0.1)
    assert decay["params"][0].ndim == 1 and no_decay["params"][0].ndim == 2


def test_frozen_parameters_are_not_optimised() -> None:
    model = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2))
    model[0].requires_grad_(False)
    groups = parameter_groups(model, 0.0)
    assert sum(len(g["params"]) for g in groups) == 2


def _indices(world: int, rank: int, accum: int, start: int = 0, steps: int = 5) -> list[list[int]]:
    micro = 8 // (world * accum)
    sampler = StepSampler(20, 8, micro, accum, world, rank, seed=3, start_step=start, max_steps=steps)
    flat = list(sampler)
    per_step = micro * accum
    return [sorted(flat[i:i + per_step]) for i in range(0, len(flat), per_step)]


def test_one_and_two_processes_see_the_same_samples_each_step() -> None:
    single = _indices(world=1, rank=0, accum=1)
    two = [sorted(a + b) for a, b in zip(_indices(2, 0, 1), _indices(2, 1, 1))]
    accumulated = _indices(world=1, rank=0, accum=2)
    assert single == two == accumulated
    assert all(len(set(step)) == 8 for step in single[:2])  # within one epoch: no repeats


def test_sampler_resumes_at_the_step_position_and_reshuffles_epochs() -> None:
    full = _indices(1, 0, 1, start=0, steps=6)
    assert _indices(1, 0, 1, start=3, steps=6) == full[3:]
    sampler = StepSampler(20, 8, 8, 1, 1, 0, seed=3, start_step=0, max_steps=5)
    first, second = [sampler.index(n) for n in range(20)], [sampler.index(n) for n in range(20, 40)]
    assert sorted(first) == sorted(second) == list(range(20)) and first != second
