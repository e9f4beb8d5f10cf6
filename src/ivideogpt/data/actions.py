"""Action bounds from a data directory's metadata.json, and the map of actions to [-1, 1].

Episodes store raw actions; models see actions scaled per dimension with
`2 * (a - low) / (high - low) - 1`, using the bounds recorded next to the data
(`metadata.json` -> `action_space: {low: [...], high: [...]}`). Generators write the
environment's action space; converters write the observed min and max.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ivideogpt.data.formats import DATA_FORMATS
from ivideogpt.files import atomic_file

METADATA_FILE = "metadata.json"


@dataclass(frozen=True)
class ActionBounds:
    """Per-dimension lower and upper action bounds."""

    low: np.ndarray
    high: np.ndarray

    def __post_init__(self) -> None:
        low = np.asarray(self.low, dtype=np.float32).reshape(-1)
        high = np.asarray(self.high, dtype=np.float32).reshape(-1)
        if low.shape != high.shape or not np.all(np.isfinite(low)) or not np.all(np.isfinite(high)):
            raise ValueError(f"action bounds must be finite and of one shape, got low {low} high {high}")
        if np.any(high < low):
            raise ValueError(f"action bounds need high >= low, got low {low} high {high}")
        object.__setattr__(self, "low", low)
        object.__setattr__(self, "high", high)

    @property
    def dim(self) -> int:
        return int(self.low.shape[0])

    def normalize(self, actions: np.ndarray) -> np.ndarray:
        """Raw actions (..., A) -> [-1, 1] (dimensions with high == low map to 0)."""
        span = self.high - self.low
        safe = np.where(span > 0, span, 1.0)
        scaled = 2.0 * (np.asarray(actions, dtype=np.float32) - self.low) / safe - 1.0
        return np.where(span > 0, scaled, 0.0).astype(np.float32)

    def denormalize(self, actions: np.ndarray) -> np.ndarray:
        """[-1, 1] actions (..., A) -> raw actions."""
        scaled = (np.asarray(actions, dtype=np.float32) + 1.0) / 2.0
        return (scaled * (self.high - self.low) + self.low).astype(np.float32)

    def to_dict(self) -> dict[str, list[float]]:
        return {"low": self.low.tolist(), "high": self.high.tolist()}

    @classmethod
    def from_metadata(cls, metadata: dict[str, Any] | None) -> "ActionBounds | None":
        """Bounds from a metadata dict's `action_space`, or None when it has none."""
        space = (metadata or {}).get("action_space")
        if not space or "low" not in space or "high" not in space:
            return None
        return cls(np.asarray(space["low"]), np.asarray(space["high"]))

    @classmethod
    def from_data(cls, actions: list[np.ndarray]) -> "ActionBounds":
        """Observed per-dimension min and max over a list of (T, A) arrays."""
        stacked = np.concatenate([np.asarray(a, dtype=np.float32) for a in actions], axis=0)
        return cls(stacked.min(axis=0), stacked.max(axis=0))


def metadata_file(path: str | Path) -> Path:
    """Where the metadata.json of a data directory (or of a file's directory) is."""
    path = Path(path)
    return (path if path.is_dir() else path.parent) / METADATA_FILE


def read_metadata(path: str | Path) -> dict[str, Any] | None:
    """The metadata.json of a data directory (or of a file's directory), or None if absent."""
    return read_metadata_file(metadata_file(path))


def read_metadata_file(file: Path) -> dict[str, Any] | None:
    """The contents of metadata JSON `file`, or None if absent; a clear error when it is not valid JSON."""
    if not file.is_file():
        return None
    try:
        data = json.loads(file.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"{file} is not valid JSON: {error}") from error
    return data if isinstance(data, dict) else None


def _shards(folder: Path) -> list[Path]:
    """The tar shards (`.tar`, `.tar.gz`, `.tgz`, any case) directly in `folder`."""
    return [p for p in folder.iterdir() if p.name.lower().endswith(DATA_FORMATS["tar"].suffixes)]


def new_dataset_folder(folder: str | Path, generated_for: str | None = None) -> Path:
    """`folder` made ready for a new dataset, so that writing one never mixes with or overwrites another.

    A missing or empty folder is used as is. One that holds a dataset (a metadata.json, episode files or
    shards) is refused, unless `generated_for` is given and its metadata.json says it was generated for
    an env starting with it (data `ivideogpt data generate` made and can make again): then its episode
    files and metadata.json are removed first, so no stale episode outlives the new dataset. A generator
    (`generated_for` given) finds a metadata.json marking the folder as its own until it writes the
    final one, so a run interrupted halfway is replaced by the next one too.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(f"{folder} is a file, not a folder for a dataset")
    metadata = read_metadata_file(folder / METADATA_FILE)
    data_files = [*folder.rglob("*.npz"), *_shards(folder)] if folder.exists() else []
    if metadata is not None or data_files:
        generated = (metadata is not None and generated_for is not None and "converted_from" not in metadata
                     and str(metadata.get("env", "")).startswith(generated_for))
        if not generated:
            raise FileExistsError(f"{folder} already holds a dataset ({len(data_files)} episode or shard files"
                                  f"{', metadata.json' if metadata is not None else ''}); write to an empty or "
                                  "new folder, or remove this one first")
        for path in [*folder.glob("episode_*.npz"), folder / METADATA_FILE]:
            path.unlink(missing_ok=True)
    if generated_for is not None:
        write_metadata(folder, {"format": "ivideogpt-episodes", "env": generated_for,
                                "incomplete": "being generated; the final metadata.json replaces this one"})
    return folder


def write_metadata(folder: str | Path, metadata: dict[str, Any]) -> Path:
    """Write `folder/metadata.json` atomically."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / METADATA_FILE
    with atomic_file(target, "w") as stream:  # a full disk: no stray temporary file left behind
        json.dump(metadata, stream, indent=2)
    return target
