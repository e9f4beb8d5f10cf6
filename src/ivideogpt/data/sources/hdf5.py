"""HDF5 trajectory files (`.h5`/`.hdf5`): one episode per file, or one per group.

Dataset keys come from the source options, else the first that exists of:
- frames (`image_key`): frames, images, image, obs/image, obs/agentview_image, observations/images,
  observation/image, rgb, pixels (a group of cameras takes its first camera, sorted by name;
  name one, e.g. `observations/images/top`, to choose). Frames may also be per-frame encoded
  JPEG/PNG bytes, or ALOHA / ACT compressed cameras (recorded with `COMPRESS = True`): uint8
  (T, padded) rows of JPEG bytes zero-padded to the longest frame. Each row is cut where its bytes
  end (JPEG's end marker is never zero) and decoded on its own. The file's `compress_len` says the
  same lengths but is not read: its rows follow the recording script's camera list, which the
  file does not keep (h5py lists cameras by name). Colours are the JPEG's, as LeRobot reads ALOHA.
- actions (`action_key`): actions, action. rewards (`reward_key`): rewards, reward.
  success (`success_key`): success, successes, is_success. `dones` is never read as success: it
  marks where a demonstration ends (or, in robomimic, whatever `done_mode` wrote), not success.
Episodes: the file root when the frame key resolves there; otherwise every group under
`group` (option; default `data` when present, as in robomimic files, else the root).
Rewards and success with one row per frame follow the `alignment` option; by default
robomimic files (a `data` group with an `env_args` attribute) are `after_action` (robomimic
computes `rewards[t]` after `actions[t]`), other files `on_arrival` (see `ivideogpt.data.sources.npz`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ivideogpt.data.episode import Episode, EpisodeError
from ivideogpt.data.report import DataReport
from ivideogpt.data.sources.base import EpisodeInfo, FileTreeReader, action_rows_ok
from ivideogpt.data.sources.npz import SUCCESS_KEYS, episode_from_arrays
from ivideogpt.data.sources.rlds import decode_image

FRAME_KEYS = ("frames", "images", "image", "obs/image", "obs/agentview_image", "observations/images",
              "observation/image", "rgb", "pixels")
ACTION_KEYS = ("actions", "action")
REWARD_KEYS = ("rewards", "reward")


def _dataset(group: Any, key: str) -> Any | None:
    """The dataset at `key` under `group` (a group of cameras -> its first dataset), or None."""
    import h5py

    if key not in group:
        return None
    node = group[key]
    if isinstance(node, h5py.Group):
        names = sorted(name for name in node if isinstance(node[name], h5py.Dataset))
        return node[names[0]] if names else None
    return node


def _find(group: Any, option: str | None, candidates: tuple[str, ...]) -> Any | None:
    if option is not None:
        return _dataset(group, option)
    for key in candidates:
        found = _dataset(group, key)
        if found is not None:
            return found
    return None


def default_alignment(handle: Any) -> str:
    """`after_action` for a robomimic file (its `data` group carries `env_args`), else `on_arrival`."""
    data = handle.get("data")
    return "after_action" if data is not None and "env_args" in data.attrs else "on_arrival"


IMAGE_SIGNATURES = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n")  # how JPEG and PNG files begin


def _is_encoded(frames: Any) -> bool:
    """Whether a frame dataset holds encoded images: one blob per frame, or ALOHA's zero-padded uint8 rows."""
    return frames.ndim == 1 or frames.dtype == object or _padded_rows(frames)


def _padded_rows(frames: Any) -> bool:
    """Whether a 2-D uint8 frame dataset holds zero-padded JPEG/PNG rows (ALOHA), told by its first row's signature:
    other 2-D uint8 data (frames flattened to pixel rows) is not images, and decoding it would fail only at load."""
    if frames.ndim != 2 or frames.dtype != np.uint8 or frames.shape[0] == 0:
        return False
    first = bytes(np.asarray(frames[0, :len(IMAGE_SIGNATURES[1])]))
    return first.startswith(IMAGE_SIGNATURES)


def _frame_bytes(blob: Any, padded: bool) -> bytes:
    """One frame's encoded bytes; a zero-padded row ends at its last non-zero byte (JPEG/PNG never end in zero)."""
    if isinstance(blob, bytes):
        return blob
    data = np.asarray(blob, dtype=np.uint8)
    if padded:
        data = data[:np.max(np.flatnonzero(data), initial=-1) + 1]
    return data.tobytes()


def _decode_encoded(frames: np.ndarray, where: str) -> np.ndarray:
    """Per-frame encoded images -> (T, H, W, 3) uint8; a frame that does not decode is named with `where`."""
    padded = frames.ndim == 2
    images = []
    for t, blob in enumerate(frames):
        try:
            images.append(decode_image(_frame_bytes(blob, padded)))
        except EpisodeError as error:
            raise EpisodeError(f"{where} frame {t}: {error}") from error
    return np.stack(images)


class Hdf5Reader(FileTreeReader):
    """HDF5 files under a folder (or one file); episode id `file` or `file/group`."""

    suffixes = (".h5", ".hdf5")

    def _groups(self, handle: Any) -> list[str]:
        import h5py

        if _find(handle, self.options.get("image_key"), FRAME_KEYS) is not None and "group" not in self.options:
            return [""]
        parent = self.options.get("group", "data" if "data" in handle else "")
        node = handle[parent] if parent else handle
        return [f"{parent}/{name}".strip("/") for name in sorted(node, key=_natural)
                if isinstance(node[name], h5py.Group)]

    def _arrays(self, group: Any) -> dict[str, Any]:
        """The episode's datasets under `group` (frames always; actions, rewards, success when found)."""
        found = {"frames": _find(group, self.options.get("image_key"), FRAME_KEYS),
                 "actions": _find(group, self.options.get("action_key"), ACTION_KEYS),
                 "rewards": _find(group, self.options.get("reward_key"), REWARD_KEYS),
                 "success": _find(group, self.options.get("success_key"), SUCCESS_KEYS)}
        if found["frames"] is None:
            keys: list[str] = []
            group.visit(lambda name: keys.append(name) if hasattr(group[name], "shape") else None)
            shown = ", ".join(keys[:12]) + (f" and {len(keys) - 12} more" if len(keys) > 12 else "")
            raise EpisodeError(f"no frame dataset found (set options.image_key to one of its datasets: {shown})")
        return {k: v for k, v in found.items() if v is not None}

    def scan(self, report: DataReport) -> list[EpisodeInfo]:
        import h5py

        infos = []
        for file in self.files():
            stem = self.file_id(file)
            try:
                with h5py.File(file, "r") as handle:
                    groups = self._groups(handle)
                    if not groups:
                        raise EpisodeError("no episode groups with frames found")
                    for group in groups:
                        report.found += 1
                        where = f"{file}:{group or '/'}"
                        try:
                            infos.append(self._info(stem, group, handle[group] if group else handle, file))
                        except (EpisodeError, KeyError, ValueError) as error:
                            report.skip(where, str(error), "inconsistent")
            except (OSError, EpisodeError, KeyError) as error:
                report.found += 1
                report.skip(str(file), f"{type(error).__name__}: {error}", "unreadable")
        return infos

    def _info(self, stem: str, group: str, node: Any, file: Path) -> EpisodeInfo:
        arrays = self._arrays(node)
        frames = arrays["frames"]
        length = int(frames.shape[0])
        if length == 0 or not (_is_encoded(frames) or frames.ndim in (3, 4)):
            rows = " (2-D rows must be zero-padded JPEG/PNG bytes, as ALOHA writes them)" if frames.ndim == 2 else ""
            raise EpisodeError(f"frames: bad shape {frames.shape}{rows}")
        action_dim = None
        if "actions" in arrays:
            shape = arrays["actions"].shape
            if len(shape) not in (1, 2) or not action_rows_ok(shape[0], length):
                raise EpisodeError(f"actions: shape {shape} does not fit {length} frames")
            action_dim = 1 if len(shape) == 1 else int(shape[1])
        episode_id = f"{stem}/{group}" if group else stem
        return EpisodeInfo(episode_id, length, action_dim, "rewards" in arrays, (file, group))

    def load(self, info: EpisodeInfo) -> Episode:
        import h5py

        file, group = info.location
        try:
            with h5py.File(file, "r") as handle:
                datasets = self._arrays(handle[group] if group else handle)
                arrays = {key: dataset[()] for key, dataset in datasets.items()}
                where = f"{file}:{datasets['frames'].name}"
                alignment = self.options.get("alignment") or default_alignment(handle)
        except (OSError, KeyError) as error:
            raise EpisodeError(f"cannot read {file}:{group or '/'}: {error}") from error
        if _is_encoded(arrays["frames"]):
            arrays["frames"] = _decode_encoded(arrays["frames"], where)
        return episode_from_arrays(arrays, {"alignment": alignment})


def _natural(name: str) -> tuple:
    """Sort key so that demo_2 comes before demo_10."""
    digits = "".join(c for c in name if c.isdigit())
    return (name.rstrip("0123456789"), int(digits) if digits else -1, name)
