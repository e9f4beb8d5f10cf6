"""The project's on-disk episode: one `.npz` file per episode.

Keys and alignment (T = number of frames):
- `frames`  (T, H, W, 3) uint8: the observation at each time step.
- `actions` (T, A) float32, optional: `actions[t]` is taken after seeing `frames[t]` and leads
  to `frames[t + 1]` (the last one has no recorded outcome).
- `rewards` (T,) float32, optional: `rewards[t]` is received on arriving at `frames[t]`
  (so `rewards[0] == 0`); a world model predicts it from frame t.
- `success` (T,) bool, optional: whether the task is solved at `frames[t]`.
- `states`  (T, S) float32, optional: low-dimensional simulator state at `frames[t]` (for
  analysis and tests; models do not read it).

`ivideogpt.data.load_episode(path)` (in `data/sources/npz.py`) also reads the `.npz` layouts other
code writes (key aliases such as `image`/`obs`/`action`, channel-first frames, T - 1 actions).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ivideogpt.files import atomic_file


class EpisodeError(ValueError):
    """An episode's arrays are missing, mis-shaped or inconsistent."""


@dataclass
class Episode:
    """One trajectory: frames and the optional per-step arrays aligned with them."""

    frames: np.ndarray
    actions: np.ndarray | None = None
    rewards: np.ndarray | None = None
    success: np.ndarray | None = None
    states: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.validate()

    def __len__(self) -> int:
        return int(self.frames.shape[0])

    @property
    def action_dim(self) -> int | None:
        return None if self.actions is None else int(self.actions.shape[1])

    def validate(self) -> None:
        """Raise EpisodeError naming the array whose dtype or shape is wrong."""
        frames = self.frames
        if not isinstance(frames, np.ndarray) or frames.dtype != np.uint8:
            raise EpisodeError(f"frames must be a uint8 array (T, H, W, 3), got {getattr(frames, 'dtype', type(frames))}")
        if frames.ndim != 4 or frames.shape[-1] != 3:
            raise EpisodeError(f"frames must be shaped (T, H, W, 3), got {frames.shape}")
        if frames.shape[0] == 0:
            raise EpisodeError("episode has no frames")
        length = frames.shape[0]
        if self.actions is not None:
            self.actions = np.asarray(self.actions, dtype=np.float32)
            if self.actions.ndim == 1:
                self.actions = self.actions[:, None]
            if self.actions.ndim != 2 or self.actions.shape[0] != length:
                raise EpisodeError(f"actions must be shaped ({length}, A) to match frames, got {self.actions.shape}")
            if not np.isfinite(self.actions).all():
                raise EpisodeError("actions contain NaN or inf")
        if self.states is not None:
            self.states = np.asarray(self.states, dtype=np.float32)
            if self.states.ndim == 1:
                self.states = self.states[:, None]
            if self.states.ndim != 2 or self.states.shape[0] != length:
                raise EpisodeError(f"states must be shaped ({length}, S) to match frames, got {self.states.shape}")
        for name in ("rewards", "success"):
            value = getattr(self, name)
            if value is None:
                continue
            value = np.asarray(value, dtype=bool if name == "success" else np.float32).reshape(-1)
            if value.shape[0] != length:
                raise EpisodeError(f"{name} must have {length} entries to match frames, got {value.shape[0]}")
            if name == "rewards" and not np.isfinite(value).all():
                raise EpisodeError("rewards contain NaN or inf")
            setattr(self, name, value)

    def save(self, path: str | Path) -> None:
        """Write atomically (temporary file, then rename) so a crash never leaves half a file."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays = {"frames": self.frames}
        for name in ("actions", "rewards", "success", "states"):
            if getattr(self, name) is not None:
                arrays[name] = getattr(self, name)
        with atomic_file(path) as stream:
            np.savez_compressed(stream, **arrays)
