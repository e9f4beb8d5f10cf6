"""What every reader returns: an index of episodes (id, length, widths) and `load(info) -> Episode`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ivideogpt.data.config import ALIGNMENTS
from ivideogpt.data.episode import Episode, EpisodeError
from ivideogpt.data.report import DataReport


@dataclass(frozen=True)
class EpisodeInfo:
    """One indexed episode: a stable id, its length and widths, and where to read it.

    episode_id: unique within its source and stable across runs (a relative path, file/group, ...).
    location: reader-specific handle (a path, a (path, offset) pair, ...), opaque to callers.
    """

    episode_id: str
    length: int
    action_dim: int | None
    has_rewards: bool
    location: Any


class EpisodeReader(Protocol):
    """A format: `scan` indexes episodes (skipping bad files into the report), `load` reads one."""

    def scan(self, report: DataReport) -> list[EpisodeInfo]: ...

    def load(self, info: EpisodeInfo) -> Episode: ...


class FileTreeReader:
    """Base of the readers of files under a folder (recursively, sorted by path) or of one given file."""

    suffixes: tuple[str, ...] = ()  # file-name endings this format reads, lower case
    read_errors: tuple[type[BaseException], ...] = (EpisodeError, OSError, ValueError)  # a bad file, not a bug

    def __init__(self, path: str | Path, options: dict[str, Any] | None = None) -> None:
        self.path, self.options = Path(path), dict(options or {})
        check_alignment(self.options)

    def files(self) -> list[Path]:
        if self.path.is_file():
            return [self.path]
        return sorted(p for p in self.path.rglob("*") if p.is_file() and p.name.lower().endswith(self.suffixes))

    def file_id(self, file: Path) -> str:
        """A file's stable id: its path below the folder without the suffix (its stem for a single file)."""
        return file.stem if self.path.is_file() else file.relative_to(self.path).with_suffix("").as_posix()

    def scan(self, report: DataReport) -> list[EpisodeInfo]:
        """One episode per file (formats with several override this): a file `index_file` fails on is
        skipped into `report`, with `skip_reason`'s message and kind."""
        infos = []
        for file in self.files():
            report.found += 1
            try:
                infos.append(self.index_file(file, self.file_id(file)))
            except self.read_errors as error:
                report.skip(str(file), *self.skip_reason(error))
        return infos

    def index_file(self, file: Path, episode_id: str) -> EpisodeInfo:
        """Index one file without reading its pixels; raises one of `read_errors` for a bad file."""
        raise NotImplementedError

    def skip_reason(self, error: BaseException) -> tuple[str, str]:
        """(message, kind) of a skipped file in the data report."""
        return str(error), "unreadable"


def coerce_frames(array: Any, where: str = "frames") -> np.ndarray:
    """Any common frame layout -> uint8 (T, H, W, 3); raises EpisodeError when it cannot be sure.

    Accepts channel-last (T, H, W, C) or channel-first (T, C, H, W) with C in {1, 3, 4} or a frame
    stack of 3k channels (the last 3 are the newest frame, as in DrQ-style replay buffers),
    grayscale (T, H, W); uint8, integers within [0, 255], or floats within [0, 1]. Four channels are
    RGBA when the fourth is constant (an opaque alpha), else a stack of 4 grayscale frames, newest
    last (the Atari / DQN layout), of which the newest is kept.
    """
    frames = np.asarray(array)
    if frames.ndim == 3:
        frames = frames[..., None]
    if frames.ndim != 4:
        raise EpisodeError(f"{where}: expected (T, H, W, C) or (T, C, H, W), got shape {frames.shape}")
    last, first = frames.shape[-1], frames.shape[1]
    if last not in (1, 3, 4) and (first in (1, 3, 4) or (first % 3 == 0 and first <= 12)):
        frames = np.moveaxis(frames, 1, -1)
        last = first
    if last == 4:
        alpha = frames[..., 3]
        opaque = alpha.size == 0 or bool(np.all(alpha == alpha.flat[0]))
        frames = frames[..., :3] if opaque else frames[..., 3:]  # RGBA, or 4 grayscale frames: the newest
    elif last > 3 and last % 3 == 0 and last <= 12:
        frames = frames[..., -3:]
    if frames.shape[-1] == 1:
        frames = np.repeat(frames, 3, axis=-1)
    if frames.shape[-1] != 3:
        raise EpisodeError(f"{where}: cannot find 3 colour channels in shape {np.asarray(array).shape}")
    if frames.shape[0] == 0:
        raise EpisodeError(f"{where}: episode has no frames")
    if frames.dtype == np.uint8:
        return np.ascontiguousarray(frames)
    if np.issubdtype(frames.dtype, np.integer) or frames.dtype == np.bool_:
        if frames.min() < 0 or frames.max() > 255:
            raise EpisodeError(f"{where}: integer frames outside [0, 255] (dtype {frames.dtype})")
        return frames.astype(np.uint8)
    if np.issubdtype(frames.dtype, np.floating):
        if not np.isfinite(frames).all() or frames.min() < 0.0 or frames.max() > 1.0:
            raise EpisodeError(f"{where}: float frames must lie in [0, 1] (dtype {frames.dtype}, "
                               f"range [{np.nanmin(frames):.3g}, {np.nanmax(frames):.3g}])")
        return np.round(frames * 255.0).astype(np.uint8)
    raise EpisodeError(f"{where}: unsupported frame dtype {frames.dtype}")


def align_actions(actions: Any, length: int, where: str = "actions") -> np.ndarray:
    """(T, A) or (T - 1, A) actions -> (T, A) float32; a missing last row repeats the one before it.

    The last row leads out of the episode, so no frame is ever predicted from the padding; a copy of a
    real row (not zeros) keeps it out of the action bounds a converted dataset records too.
    """
    actions = np.asarray(actions)
    if actions.ndim == 1:
        actions = actions[:, None]
    if actions.ndim != 2:
        raise EpisodeError(f"{where}: expected (T, A), got shape {actions.shape}")
    if not (np.issubdtype(actions.dtype, np.floating) or np.issubdtype(actions.dtype, np.integer)):
        raise EpisodeError(f"{where}: expected numbers, got dtype {actions.dtype}")
    actions = actions.astype(np.float32)
    if actions.shape[0] == length - 1:
        last = actions[-1:] if len(actions) else np.zeros((1, actions.shape[1]), np.float32)
        actions = np.concatenate([actions, last])
    if actions.shape[0] != length:
        raise EpisodeError(f"{where}: {actions.shape[0]} rows for {length} frames (expected {length} or {length - 1})")
    return actions


def action_rows_ok(rows: int, length: int) -> bool:
    """Whether an action array with `rows` rows fits an episode of `length` frames."""
    return rows in (length, length - 1)



def check_alignment(options: dict[str, Any]) -> None:
    """Raise ValueError unless the `alignment` option is absent or one of ALIGNMENTS."""
    value = options.get("alignment")
    if value is not None and value not in ALIGNMENTS:
        raise ValueError(f"option alignment must be one of {ALIGNMENTS}, got {value!r}")


def align_per_step(values: Any, length: int, name: str, fill: Any, alignment: str = "on_arrival") -> np.ndarray:
    """Per-step rewards or success flags -> (T,) values on arriving at each frame (entry 0 is `fill`).

    T - 1 entries are one per transition: entry t arrives at frame t + 1, so `fill` is prepended.
    T entries are taken as they are under `on_arrival`; under `after_action` entry t belongs to
    the action at frame t and arrives at frame t + 1, so they move one step later and the last
    one, which arrives after the episode's last frame, is dropped.
    """
    if alignment not in ALIGNMENTS:
        raise ValueError(f"alignment must be one of {ALIGNMENTS}, got {alignment!r}")
    values = np.asarray(values)
    if values.ndim > 1:
        values = values.reshape(values.shape[0], -1)[:, 0]
    if values.ndim == 0 or values.shape[0] not in (length, length - 1):
        raise EpisodeError(f"{name}: {values.shape[0] if values.ndim else 'a scalar'} entries for {length} frames "
                           f"(expected {length} or {length - 1})")
    if values.shape[0] == length and alignment == "on_arrival":
        return values
    return np.concatenate([np.asarray([fill], dtype=values.dtype), values[:length - 1]])
