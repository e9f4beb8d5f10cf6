"""Episodes stored as `.npz` files: the project format and the layouts other code writes.

Keys are looked up in this order unless given in the source options (`image_key`,
`action_key`, `reward_key`, `success_key`):
- frames: frames, image, images, obs, observation, observations, rgb, pixels, the camera keys
  the paper's data converters write (rgb_static, front_rgb, agentview_rgb, image_1,
  aux1_image), then frame. For BAIR converted by the paper's script, `image` is the main
  camera and `aux1_image` the one its experiments use: set `image_key: aux1_image` to match them.
- actions: actions, action. rewards: rewards, reward. success: success, is_success. states: states, state.
Frames may be channel-last or channel-first, grayscale or frame-stacked (see `coerce_frames`).
Actions with T - 1 rows (one per transition, as in the paper's RoboNet files) get a zero last
row; rewards/success with T - 1 rows (one per transition) get a leading 0 / False. Rewards and
success with T rows follow the `alignment` option: `on_arrival` (default, the project's
convention: row t arrives with frame t) or `after_action` (row t is the outcome of the action
at frame t, as LeRobot and robomimic write them; shifted one step later).
Replay-buffer files with a `discount` key (DrQ-v2 layout, as in the paper's Meta-World
demonstrations) store at row t the action that led *to* frame t; they are shifted by one.
"""

from __future__ import annotations

import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ivideogpt.data.episode import Episode, EpisodeError
from ivideogpt.data.sources.base import EpisodeInfo, FileTreeReader, align_actions, align_per_step, coerce_frames

FRAME_KEYS = ("frames", "image", "images", "obs", "observation", "observations", "rgb", "pixels",
              "rgb_static", "front_rgb", "agentview_rgb", "image_1", "aux1_image", "frame")
ACTION_KEYS = ("actions", "action")
REWARD_KEYS = ("rewards", "reward")
SUCCESS_KEYS = ("success", "successes", "is_success")
STATE_KEYS = ("states", "state")
READ_ERRORS = (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile, zlib.error, EpisodeError)


@dataclass(frozen=True)
class NpzLayout:
    """Which array holds what, and whether actions are stored one row late (replay-buffer files)."""

    frames: str
    actions: str | None
    rewards: str | None
    success: str | None
    states: str | None
    replay_buffer: bool


def _pick(names: set[str], option: str | None, candidates: tuple[str, ...], what: str) -> str | None:
    if option is not None:
        if option not in names:
            raise EpisodeError(f"no array {option!r} ({what}) in file; it has {sorted(names)}")
        return option
    return next((key for key in candidates if key in names), None)


def resolve_layout(names: set[str] | list[str], options: dict[str, Any] | None = None) -> NpzLayout:
    """Find the frame/action/reward arrays among `names`, honouring explicit keys in `options`."""
    names, options = set(names), options or {}
    frames = _pick(names, options.get("image_key"), FRAME_KEYS, "frames")
    if frames is None:
        raise EpisodeError(f"no frame array found; looked for {FRAME_KEYS}, file has {sorted(names)}")
    return NpzLayout(
        frames=frames,
        actions=_pick(names, options.get("action_key"), ACTION_KEYS, "actions"),
        rewards=_pick(names, options.get("reward_key"), REWARD_KEYS, "rewards"),
        success=_pick(names, options.get("success_key"), SUCCESS_KEYS, "success"),
        states=_pick(names, options.get("state_key"), STATE_KEYS, "states"),
        replay_buffer="discount" in names and options.get("replay_buffer", True),
    )


def episode_from_arrays(arrays: dict[str, np.ndarray], options: dict[str, Any] | None = None) -> Episode:
    """Build an Episode from named arrays in any supported layout (see the module docstring)."""
    layout = resolve_layout(list(arrays), options)
    alignment = (options or {}).get("alignment") or "on_arrival"
    frames = coerce_frames(arrays[layout.frames], layout.frames)
    length = frames.shape[0]
    actions = rewards = success = states = None
    if layout.actions is not None:
        raw = np.asarray(arrays[layout.actions])
        if layout.replay_buffer:
            if raw.shape[0] != length:
                raise EpisodeError(f"replay-buffer actions: {raw.shape[0]} rows for {length} frames")
            raw = raw[1:]
        actions = align_actions(raw, length, layout.actions)
    if layout.rewards is not None:
        rewards = align_per_step(arrays[layout.rewards], length, layout.rewards, 0.0, alignment).astype(np.float32)
    if layout.success is not None:
        success = align_per_step(arrays[layout.success], length, layout.success, False, alignment).astype(bool)
    if layout.states is not None and np.ndim(arrays[layout.states]) >= 1:
        raw_states = np.asarray(arrays[layout.states])
        if raw_states.shape[0] == length and np.issubdtype(raw_states.dtype, np.number):
            states = raw_states.reshape(length, -1).astype(np.float32)
    return Episode(frames=frames, actions=actions, rewards=rewards, success=success, states=states)


def read_npz_episode(source: str | Path | Any, options: dict[str, Any] | None = None) -> Episode:
    """Load one `.npz` episode (a path or a binary file object); EpisodeError names what is wrong."""
    try:
        with np.load(source, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except READ_ERRORS as error:
        if isinstance(error, ValueError) and not zipfile.is_zipfile(source):  # numpy suggests unpickling: never it
            raise EpisodeError("not an .npz archive (videos become episodes with `ivideogpt data convert video "
                               "SRC --out DIR`, docs/data.md)") from error
        raise EpisodeError(f"cannot read npz: {type(error).__name__}: {error}") from error
    return episode_from_arrays(arrays, options)


def load_episode(path: str | Path, **options: str) -> Episode:
    """Read one `.npz` episode in the project layout or a known alias layout; EpisodeError if unusable.

    `options` name arrays explicitly (`image_key`, `action_key`, `reward_key`, `success_key`).
    """
    return read_npz_episode(Path(path), options)


def npz_shapes(source: str | Path | Any) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Shape and dtype of every array in an `.npz`, from the array headers only (no full decompression)."""
    shapes = {}
    with zipfile.ZipFile(source) as archive:
        for name in archive.namelist():
            if name.endswith(".npy"):
                with archive.open(name) as stream:
                    shapes[name[:-4]] = npy_header(stream)
    return shapes


def npy_header(stream: Any) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype from the header of `.npy` bytes (a binary stream positioned at its start)."""
    version = np.lib.format.read_magic(stream)
    read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, _, dtype = read(stream)
    return tuple(shape), dtype


def info_from_shapes(episode_id: str, shapes: dict[str, tuple[tuple[int, ...], np.dtype]],
                     options: dict[str, Any] | None, location: Any) -> EpisodeInfo:
    """Validate array headers (ranks, lengths, dtypes) and index the episode without reading pixels."""
    layout = resolve_layout(list(shapes), options)
    frame_shape, frame_dtype = shapes[layout.frames]
    if not (np.issubdtype(frame_dtype, np.number) or frame_dtype == np.bool_):
        raise EpisodeError(f"{layout.frames}: unsupported dtype {frame_dtype}")
    if len(frame_shape) not in (3, 4) or frame_shape[0] == 0:
        raise EpisodeError(f"{layout.frames}: bad shape {frame_shape}")
    coerce_frames(np.zeros((1,) + tuple(frame_shape[1:]), dtype=np.uint8), layout.frames)  # channels check
    length = frame_shape[0]
    action_dim = None
    if layout.actions is not None:
        shape, dtype = shapes[layout.actions]
        rows = shape[0] - 1 if layout.replay_buffer else shape[0]
        expected = (length - 1,) if layout.replay_buffer else (length, length - 1)
        if len(shape) not in (1, 2) or rows not in expected or not np.issubdtype(dtype, np.number):
            raise EpisodeError(f"{layout.actions}: shape {shape} dtype {dtype} does not fit {length} frames")
        action_dim = 1 if len(shape) == 1 else int(shape[1])
    for key in (layout.rewards, layout.success):
        if key is not None and shapes[key][0][:1] not in ((length,), (length - 1,)):
            raise EpisodeError(f"{key}: shape {shapes[key][0]} does not fit {length} frames")
    return EpisodeInfo(episode_id, length, action_dim, layout.rewards is not None, location)


class NpzReader(FileTreeReader):
    """A directory tree of `.npz` episodes (or one file); the episode id is the relative path."""

    suffixes = (".npz",)
    read_errors = READ_ERRORS

    def index_file(self, file: Path, episode_id: str) -> EpisodeInfo:
        return info_from_shapes(episode_id, npz_shapes(file), self.options, file)

    def skip_reason(self, error: BaseException) -> tuple[str, str]:
        return f"{type(error).__name__}: {error}", _kind(error)

    def load(self, info: EpisodeInfo) -> Episode:
        return read_npz_episode(info.location, self.options)


def _kind(error: BaseException) -> str:
    return "inconsistent" if isinstance(error, EpisodeError) else "unreadable"
