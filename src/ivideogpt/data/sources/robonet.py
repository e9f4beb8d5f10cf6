"""RoboNet trajectory files (`.hdf5`, one episode each), read with h5py and PyAV.

Layout: `env/cam{i}_video/frames` holds an mp4 byte stream (attribute `image_format` RGB or
BGR), or `env/cam{i}_video/frame{t}` one JPEG per step; `policy/actions` (T - 1, A);
`env/state` (T, S). Options: `camera` (default 0) and `action_dim` (default 5: the width the
paper's preprocessing uses; narrower actions are zero-padded, 4-d autograsp actions get the
gripper column from the next state, wider ones are truncated; set `action_dim: null` to keep raw).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ivideogpt.data.episode import Episode, EpisodeError
from ivideogpt.data.report import DataReport
from ivideogpt.data.sources.base import EpisodeInfo, FileTreeReader, align_actions
from ivideogpt.data.sources.rlds import decode_image
from ivideogpt.data.sources.video import read_video


def _attr(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _fit_actions(handle: Any, actions: np.ndarray, width: int | None) -> np.ndarray:
    """Actions widened or cut to `width` columns the way the paper's RoboNet preprocessing does."""
    if width is None or actions.shape[1] == width:
        return actions
    if actions.shape[1] > width:
        return actions[:, :width]
    metadata = dict(handle["metadata"].attrs) if "metadata" in handle else {}
    autograsp = _attr(metadata.get("primitives", "")) == "autograsp" and "state" in handle["env"]
    if actions.shape[1] == width - 1 and autograsp:
        gripper = np.asarray(handle["env"]["state"][1:, -1], np.float32)[: actions.shape[0]]
        high = float(np.asarray(metadata.get("high_bound", [1.0])).reshape(-1)[-1])
        low = float(np.asarray(metadata.get("low_bound", [-1.0])).reshape(-1)[-1])
        column = np.where(gripper > (high + low) / 2, high, low)[:, None]
        return np.concatenate([actions, column.astype(np.float32)], axis=1)
    pad = np.zeros((actions.shape[0], width - actions.shape[1]), np.float32)
    return np.concatenate([actions, pad], axis=1)


class RoboNetReader(FileTreeReader):
    """RoboNet `.hdf5` files under a folder; the episode id is the file name."""

    suffixes = (".h5", ".hdf5")

    def __init__(self, path: str | Path, options: dict[str, Any] | None = None) -> None:
        super().__init__(path, options)
        self.camera = int(self.options.get("camera", 0))
        self.action_dim = self.options.get("action_dim", 5)

    def _length(self, video: Any) -> int:
        if "frames" in video:
            return int(video["frames"].attrs.get("T", 0)) or len(self._decode(video))
        return sum(1 for name in video if name.startswith("frame"))

    def _decode(self, video: Any) -> np.ndarray:
        if "frames" in video:
            frames = read_video(np.asarray(video["frames"][()]).tobytes())
            fmt = _attr(video["frames"].attrs.get("image_format", "RGB"))
        else:
            count = sum(1 for name in video if name.startswith("frame"))
            frames = np.stack([decode_image(np.asarray(video[f"frame{t}"][()]).tobytes()) for t in range(count)])
            fmt = _attr(video["frame0"].attrs.get("image_format", "RGB"))
        return frames[..., ::-1].copy() if fmt.upper() == "BGR" else frames

    def scan(self, report: DataReport) -> list[EpisodeInfo]:
        import h5py

        infos = []
        for file in self.files():
            report.found += 1
            try:
                with h5py.File(file, "r") as handle:
                    video = handle["env"][f"cam{self.camera}_video"]
                    length = self._length(video)
                    actions = handle["policy"]["actions"]
                    if length < 1 or actions.shape[0] not in (length, length - 1) or actions.ndim != 2:
                        raise EpisodeError(f"{actions.shape[0]} actions for {length} frames")
                    width = int(self.action_dim) if self.action_dim is not None else int(actions.shape[1])
                infos.append(EpisodeInfo(file.stem, length, width, False, file))
            except (OSError, KeyError, EpisodeError, ValueError) as error:
                report.skip(str(file), f"{type(error).__name__}: {error}", "unreadable")
        return infos

    def load(self, info: EpisodeInfo) -> Episode:
        import h5py

        try:
            with h5py.File(info.location, "r") as handle:
                frames = self._decode(handle["env"][f"cam{self.camera}_video"])
                raw = np.asarray(handle["policy"]["actions"][()], np.float32)
                actions = _fit_actions(handle, raw, None if self.action_dim is None else int(self.action_dim))
                states = np.asarray(handle["env"]["state"][()], np.float32) if "state" in handle["env"] else None
        except (OSError, KeyError) as error:
            raise EpisodeError(f"{info.location}: {error}") from error
        length = min(frames.shape[0], actions.shape[0] + 1)
        states = states[:length] if states is not None and states.shape[0] >= length else None
        return Episode(frames=frames[:length], actions=align_actions(actions[: length - 1], length), states=states)
