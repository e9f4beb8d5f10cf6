"""AdamW with no-decay groups and the warmup + constant / cosine learning-rate schedule."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from ivideogpt.train.config import TrainConfig


def default_no_decay_names(module: nn.Module) -> set[str]:
    """Names of parameters that should not be decayed: biases, norm scales (any < 2-D tensor), embeddings."""
    names: set[str] = set()
    for module_name, child in module.named_modules():
        for param_name, param in child.named_parameters(recurse=False):
            full = f"{module_name}.{param_name}" if module_name else param_name
            if param.ndim < 2 or isinstance(child, nn.Embedding):
                names.add(full)
    return names


def parameter_groups(module: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Trainable parameters split into decay / no-decay groups, in a stable (named) order.

    The module may define `no_decay_parameter_names() -> set[str]` to choose the no-decay set.
    """
    chooser = getattr(module, "no_decay_parameter_names", None)
    no_decay = set(chooser()) if callable(chooser) else default_no_decay_names(module)
    decay_params, plain_params = [], []
    for name, param in module.named_parameters():
        if param.requires_grad:
            (plain_params if name in no_decay else decay_params).append(param)
    groups = [{"params": decay_params, "weight_decay": weight_decay},
              {"params": plain_params, "weight_decay": 0.0}]
    return [group for group in groups if group["params"]]


def build_optimizer(module: nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW over `module`'s trainable parameters with no-decay groups."""
    groups = parameter_groups(module, cfg.weight_decay)
    if not groups:
        raise ValueError(f"{type(module).__name__} has no trainable parameters")
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps, weight_decay=cfg.weight_decay)


def lr_factor(step: int, cfg: TrainConfig) -> float:
    """Multiplier of `cfg.lr` for update `step` (0-based): linear warmup, then constant or cosine decay."""
    if cfg.warmup_steps and step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    if cfg.schedule == "constant":
        return 1.0
    decay_steps = max(1, cfg.max_steps - cfg.warmup_steps)
    progress = min(1.0, (step - cfg.warmup_steps) / decay_steps)
    cosine = 0.5 * (1.0 + math.cos(math.pi * progress))
    return cfg.min_lr_ratio + (1.0 - cfg.min_lr_ratio) * cosine


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig) -> torch.optim.lr_scheduler.LambdaLR:
    """LambdaLR stepping once per update; its state is just the step, so resume is exact."""
    def factor(step: int) -> float:  # a plain function: LambdaLR keeps it out of state_dict
        return lr_factor(step, cfg)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
