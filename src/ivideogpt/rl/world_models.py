"""Build the MBPO world model: from scratch (named presets) or from a pre-trained checkpoint.

A pre-trained transformer may be action-free and reward-free (as the paper's pre-training is);
its weights are loaded into a fresh transformer that adds the action projection and the
symlog reward head for the task, which start from their zero init.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ivideogpt.rl.imagination import WorldModelAdapter


def _rl_transformer_config(config: Any, action_dim: int) -> Any:
    from dataclasses import replace

    return replace(config, action_dim=action_dim, reward_head=True, symlog_rewards=True)


def build_world_model(action_dim: int, tokenizer_preset: str = "tokenizer_64", transformer_preset: str = "transformer_small",
                      num_context: int = 2, lr: float = 1e-4, weight_decay: float = 0.0, seed: int | None = None,
                      device: str | torch.device = "cpu") -> WorldModelAdapter:
    """A world model from scratch: tokenizer and transformer presets (see `ivideogpt describe`)."""
    from ivideogpt.presets import get_preset
    from ivideogpt.tokenizer.objective import preset_objective

    tokenizer = get_preset(tokenizer_preset).build().to(device)
    transformer_cfg = _rl_transformer_config(get_preset(transformer_preset), action_dim)
    if transformer_cfg.codebook_size != tokenizer.config.codebook_size:
        transformer_cfg = _rl_transformer_config(
            type(transformer_cfg)(**{**transformer_cfg.__dict__, "codebook_size": tokenizer.config.codebook_size}),
            action_dim)
    transformer = transformer_cfg.build().to(device)
    return WorldModelAdapter.from_modules(tokenizer, transformer, num_context, lr, weight_decay, seed,
                                          tokenizer_loss=preset_objective(tokenizer_preset))


def load_world_model(path: str | Path, action_dim: int, num_context: int = 2, lr: float = 1e-4,
                     weight_decay: float = 0.0, seed: int | None = None,
                     device: str | torch.device = "cpu") -> WorldModelAdapter:
    """A pre-trained world model from a checkpoint (or run) directory holding a world model
    (an object with `.tokenizer` and `.transformer`), re-headed for `action_dim` and rewards."""
    from ivideogpt.train.models import load_model, tokenizer_loss

    loaded = load_model(path)
    tokenizer = getattr(loaded, "tokenizer", None)
    transformer = getattr(loaded, "transformer", None)
    if tokenizer is None or transformer is None:
        raise SystemExit(f"{path} does not hold a world model (tokenizer + transformer), got {type(loaded).__name__}")
    config = _rl_transformer_config(transformer.config, action_dim)
    if config != transformer.config:
        fresh = config.build()
        state = transformer.state_dict()
        if transformer.config.action_dim not in (0, action_dim):
            state = {k: v for k, v in state.items() if not k.startswith("action_proj")}
        fresh.load_pretrained(state)
        transformer = fresh
    return WorldModelAdapter.from_modules(tokenizer.to(device), transformer.to(device), num_context, lr,
                                          weight_decay, seed, tokenizer_loss=tokenizer_loss(path))
