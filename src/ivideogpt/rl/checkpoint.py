"""Resumable RL checkpoints, written atomically like training checkpoints (`ivideogpt.train.checkpoint`).

Layout of `<out>/checkpoints/step_00001234/` (the number counts env steps):
  agent.safetensors    the agent's networks
  state.pt             agent optimizers, both replay buffers, MBPO (schedule, world model weights,
                       optimizers), every RNG, and the loop's counters (torch.save of our own objects)
  trainer_state.json   the loop counters, readable without torch
  manifest.json        written last; a directory without a matching one is skipped on resume
Checkpoints are taken only where an episode has just ended, so no simulator state is needed: the
next episode starts from a reset seeded by the episode count, with or without a resume in between.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from ivideogpt.train import checkpoint as ckpt

AGENT, STATE = "agent.safetensors", "state.pt"


def save(root: Path, env_step: int, agent_weights: dict[str, torch.Tensor], state: dict[str, Any],
         counters: dict[str, Any], keep_last: int = 1) -> Path:
    """Write one checkpoint atomically and keep only the newest `keep_last`."""
    tmp = ckpt.begin(root, env_step)
    try:
        ckpt.save_tensors(tmp / AGENT, agent_weights)
        torch.save(state, tmp / STATE)
        ckpt.write_json(tmp / ckpt.STATE, counters)
        final = ckpt.finish(root, env_step)
    except BaseException:
        ckpt.abort(root, env_step)
        raise
    ckpt.apply_retention(root, keep_last)
    return final


def any_exists(root: Path) -> bool:
    """Whether `root` holds a complete-looking checkpoint (sizes only: no hashing of a multi-GB state)."""
    return bool(ckpt.list_checkpoints(root))


def load_latest(root: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any], dict[str, Any]] | None:
    """(agent weights, state, counters) of the newest complete checkpoint under `root`, or None."""
    found = ckpt.find_latest(root)
    if found is None:
        return None
    # Our own file, written by `save`: it holds numpy arrays and RNG states, not only tensors.
    state = torch.load(found / STATE, map_location="cpu", weights_only=False)
    return load_file(str(found / AGENT)), state, ckpt.read_json(found / ckpt.STATE)
