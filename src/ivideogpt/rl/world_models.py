"""Build the MBPO world model: from scratch (named presets) or from a pre-trained checkpoint.

A pre-trained transformer may be action-free and reward-free (as the paper's pre-training is);
its weights are loaded into a fresh transformer that adds the action projection and the
symlog reward head for the task, which start from their zero init.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from ivideogpt.rl.imagination import WorldModelAdapter

log = logging.getLogger(__name__)


def _rl_transformer_config(config: Any, action_dim: int) -> Any:
    from dataclasses import replace

    return replace(config, action_dim=action_dim, reward_head=True, symlog_rewards=True)


def build_world_model(action_dim: int, tokenizer_preset: str = "tokenizer_64", transformer_preset: str = "transformer_small",
                      num_context: int = 2, lr: float = 1e-4, weight_decay: float = 0.0, seed: int | None = None,
                      device: str | torch.device = "cpu", window: int | None = None) -> WorldModelAdapter:
    """A world model from scratch: tokenizer and transformer presets (see `ivideogpt describe`); `window` as for
    `WorldModelAdapter`."""
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
                                          tokenizer_loss=preset_objective(tokenizer_preset), window=window)


def load_world_model(path: str | Path, action_dim: int, num_context: int = 2, lr: float = 1e-4,
                     weight_decay: float = 0.0, seed: int | None = None, device: str | torch.device = "cpu",
                     action_repeat: int | None = None, window: int | None = None) -> WorldModelAdapter:
    """A pre-trained world model from a checkpoint (or run) directory holding a world model
    (an object with `.tokenizer` and `.transformer`), re-headed for `action_dim` and rewards; `window` as for
    `WorldModelAdapter` (MBPO's clip length, which it trains the model on from then on).

    Where the env differs from what the model was trained on (action width, context frames, the env's
    `action_repeat`), a note says so: allowed, but the model then starts further from its training.
    """
    from ivideogpt.train.models import load_model, tokenizer_loss

    loaded = load_model(path)
    tokenizer = getattr(loaded, "tokenizer", None)
    transformer = getattr(loaded, "transformer", None)
    if tokenizer is None or transformer is None:
        raise ValueError(f"{path} does not hold a world model (tokenizer + transformer), got {type(loaded).__name__}")
    _note_differences(path, loaded, action_dim, num_context, action_repeat)
    config = _rl_transformer_config(transformer.config, action_dim)
    if config != transformer.config:
        fresh = config.build()
        state = transformer.state_dict()
        if transformer.config.action_dim not in (0, action_dim):
            state = {k: v for k, v in state.items() if not k.startswith("action_proj")}
        fresh.load_pretrained(state)
        transformer = fresh
    return WorldModelAdapter.from_modules(tokenizer.to(device), transformer.to(device), num_context, lr,
                                          weight_decay, seed, tokenizer_loss=tokenizer_loss(path), window=window)


def _note_differences(path: str | Path, loaded: Any, action_dim: int, num_context: int,
                      action_repeat: int | None) -> None:
    """Log where MBPO's setting differs from the one the pre-trained model at `path` learned."""
    from ivideogpt.train.models import training_metadata

    trained_dim = loaded.transformer.config.action_dim
    if trained_dim not in (0, action_dim):
        log.warning("%s was trained on %d-d actions and the env has %d-d ones: its action projection starts afresh",
                    path, trained_dim, action_dim)
    trained_context = getattr(loaded, "num_context", None)
    if trained_context is not None and trained_context != num_context:
        log.warning("%s was trained with %d context frame(s); MBPO gives it %d (mbpo.num_context=%d matches it)",
                    path, trained_context, num_context, trained_context)
    trained_repeat = (training_metadata(path) or {}).get("action_repeat")
    if action_repeat is not None and trained_repeat is not None and trained_repeat != action_repeat:
        log.warning("%s was trained on frames %d env steps apart; this env's action repeat is %d "
                    "(env.action_repeat=%d matches it, with step counts that are multiples of it)", path,
                    trained_repeat, action_repeat, trained_repeat)
