"""A checkpoint loaded for play: the world model and what the page must know about its actions and starts."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ivideogpt.data.actions import ActionBounds
from ivideogpt.data.config import DataConfig
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
    """held-out episode files a session can start from (`heldout_clips`)."""
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


def heldout_clips(config: DataConfig, data: str | Path | None = None) -> list[Path]:
    """The `.npz` files, in order, of the episodes the run's training held out: the clips a session may start from.

    Those are the test episodes the config names (`heldout_episodes`), else the validation episodes it
    drew at random (`val_fraction`). data: the training data folder (default: each source's own path).
    """
    folders = {source.name: Path(data) if data else source.resolved_path(config.root) for source in config.sources}
    files = [_episode_file(episode_id, folders)
             for episode_id in config.heldout_episodes or validation_episodes(config, folders)]
    return [file for file in files if file is not None]


def validation_episodes(config: DataConfig, folders: dict[str, Path]) -> list[str]:
    """Ids of the episodes training validated on, split by `build_index` exactly as training split them.

    Each source is split on its own, so sources whose folder is missing are left out; none for a streamed
    run (it trains on every episode).
    """
    from ivideogpt.data.index import build_index

    missing = [source.name for source in config.active_sources if not folders[source.name].exists()]
    if config.stream or not config.val_fraction or len(missing) == len(config.active_sources):
        return []
    sources = [replace(source, path=str(folders[source.name])) for source in config.sources]
    here = replace(config, sources=sources, root="", exclude_sources=[*config.exclude_sources, *missing])
    return [episode.episode_id for episode in build_index(here).splits["val"]]


def _episode_file(episode_id: str, folders: dict[str, Path]) -> Path | None:
    """The `.npz` file of episode `source/key` (a bare `key`: the first source's) when it exists, else None."""
    name, _, key = episode_id.partition("/")
    if name not in folders:  # a bare key
        name, key = next(iter(folders), None), episode_id
    file = None if name is None else folders[name] / f"{key}.npz"
    return file if file is not None and file.is_file() else None
