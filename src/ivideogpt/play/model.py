"""A checkpoint loaded for play: the world model and what the page must know about its actions and starts."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ivideogpt.data.actions import ActionBounds
from ivideogpt.world_model import WorldModel


@dataclass
class PlayModel:
    """A `WorldModel` with its action interface, training window and the start frames it can use."""

    world_model: WorldModel
    context_frames: int
    """frames the model starts from (its training `num_context`)."""
    window: int
    """frames per training clip: context past this is re-prefilled from the newest frames, never grown."""
    bounds: ActionBounds | None = None
    """raw action bounds the training data was normalised with (None: the model takes actions as given)."""
    action_repeat: int = 1
    """simulator steps per frame of the training data (the real Push-T beside the model does the same)."""
    env_id: str | None = None
    """the simulator the training data came from, when known (Push-T: clicks are target positions)."""
    clips: list[Path] = field(default_factory=list)
    """held-out episode files a session can start from."""
    checkpoint: str = ""

    def __post_init__(self) -> None:
        if self.context_frames < 1 or self.window <= self.context_frames:
            raise ValueError(f"need 1 <= context_frames < window, got {self.context_frames} and {self.window}")

    @property
    def action_dim(self) -> int:
        return self.world_model.action_dim

    @property
    def resolution(self) -> int:
        return int(self.world_model.tokenizer.describe()["resolution"])

    @property
    def is_pusht(self) -> bool:
        from ivideogpt.planning.pusht import PUSHT_ID

        return self.env_id == PUSHT_ID and self.action_dim == 2

    def action_box(self) -> tuple[list[float], list[float]]:
        """(low, high) of the raw actions the page may send: the data's bounds, else the model's [-1, 1]."""
        if self.bounds is None:
            return [-1.0] * self.action_dim, [1.0] * self.action_dim
        return self.bounds.low.tolist(), self.bounds.high.tolist()

    def to_model_actions(self, raw: np.ndarray) -> torch.Tensor:
        """Raw actions (..., A) -> the model's scale, on its device."""
        scaled = raw if self.bounds is None else self.bounds.normalize(raw)
        return torch.as_tensor(np.asarray(scaled, dtype=np.float32), device=self.world_model.device)

    def describe(self) -> dict[str, Any]:
        """What the page needs to build its controls."""
        low, high = self.action_box()
        return {"checkpoint": self.checkpoint, "action_dim": self.action_dim, "action_low": low, "action_high": high,
                "pusht": self.is_pusht, "context_frames": self.context_frames, "window": self.window,
                "action_repeat": self.action_repeat, "clips": len(self.clips),
                "predicts_reward": self.world_model.predicts_reward,
                "starts": (["reset"] if self.is_pusht else []) + (["clip"] if self.clips else [])}


def load_play_model(checkpoint: str | Path, data: str | Path | None = None, device: str = "cpu",
                    temperature: float = 1.0, precision: str = "fp32") -> PlayModel:
    """Load a checkpoint the way `ivideogpt plan` does, with its training window and held-out clips.

    data: the training data folder, to find held-out clips in (default: the one its config names, if present).
    """
    from ivideogpt.commands.plan import load_world_model
    from ivideogpt.train.checkpoint import resolve
    from ivideogpt.train.experiments import read_experiment
    from ivideogpt.train.models import training_metadata

    config = read_experiment(resolve(checkpoint), strict=False).data
    loaded = load_world_model(str(checkpoint), device, config.num_context, temperature, precision)
    if not isinstance(loaded.model, WorldModel):
        raise ValueError(f"{checkpoint} holds a {type(loaded.model).__name__}, not a KV-cached WorldModel")
    metadata = training_metadata(checkpoint) or {}
    bounds = None if loaded.action_low is None else ActionBounds(loaded.action_low, loaded.action_high)
    return PlayModel(world_model=loaded.model, context_frames=loaded.context_frames, window=config.segment_length,
                     bounds=bounds, action_repeat=loaded.action_repeat or 1, env_id=metadata.get("env"),
                     clips=heldout_clips(config, data), checkpoint=str(checkpoint))


def heldout_clips(config: Any, data: str | Path | None = None) -> list[Path]:
    """The `.npz` files of a data config's held-out episodes (`source/key`) that exist, in order."""
    folders = {source.name: Path(data) if data else source.resolved_path(config.root) for source in config.sources}
    found = []
    for episode_id in config.heldout_episodes:
        name, _, key = episode_id.rpartition("/")
        folder = folders.get(name) if name else next(iter(folders.values()), None)
        if folder is not None and (folder / f"{key}.npz").is_file():
            found.append(folder / f"{key}.npz")
    return found
