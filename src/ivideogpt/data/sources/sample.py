"""One WebDataset sample (the members `<key>.<name>` of a shard that share a key) -> one episode.

A sample holds its episode in one of these forms; other members (`.json`, `.txt`, `.cls`, ...)
are ignored:
- `<key>.npz`: any npz layout `load_episode` reads;
- per-array members `<key>.<name>.npy` (numpy `.npy` bytes, as `webdataset` encodes arrays):
  `frames.npy`, `actions.npy`, `rewards.npy`, `success.npy`, ... named as npz keys are, so the
  options `image_key`, `action_key`, `reward_key`, `success_key` choose among them;
- a frame sequence `<key>.<name><index>.jpg|jpeg|png`, e.g. `0000.jpg`, `frames.0000.png` or
  `frame_0000.jpg`: frames in index order, named `<name>` (`frames` when empty);
- a video `<key>.mp4|webm|gif|...` as the frames, with per-array members for the rest.
Rewards and success follow the `alignment` option as in npz files.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ivideogpt.data.episode import Episode, EpisodeError
from ivideogpt.data.sources.base import EpisodeInfo
from ivideogpt.data.sources.npz import episode_from_arrays, info_from_shapes, npy_header, npz_shapes, read_npz_episode
from ivideogpt.data.formats import VIDEO_SUFFIXES
from ivideogpt.data.sources.video import read_video, video_shape

IMAGE_MEMBER = re.compile(r"(?P<name>.*?)[._-]?(?P<index>\d+)\.(?:jpe?g|png)")
HEADER_BYTES = 1 << 16  # enough for any `.npy` header numpy writes

Read = Callable[[str, int | None], bytes]  # (member extension, at most this many bytes or None) -> bytes


@dataclass(frozen=True)
class SampleLayout:
    """Which members of a sample hold the episode (see the module docstring)."""

    npz: str | None = None
    video: str | None = None
    arrays: dict[str, str] = field(default_factory=dict)  # array name -> `.npy` member
    sequences: dict[str, list[str]] = field(default_factory=dict)  # array name -> image members in order


def sample_layout(extensions: Iterable[str]) -> SampleLayout:
    """Sort a sample's member extensions into the forms it may hold; EpisodeError when it holds none."""
    extensions = sorted(extensions)
    arrays, numbered = {}, {}
    for extension in extensions:
        image = IMAGE_MEMBER.fullmatch(extension)
        if extension.endswith(".npy"):
            arrays[extension[:-4]] = extension
        elif image is not None:
            numbered.setdefault(image["name"] or "frames", []).append((int(image["index"]), extension))
    video = next((e for e in extensions if f".{e}" in VIDEO_SUFFIXES), None)
    layout = SampleLayout("npz" if "npz" in extensions else None, video, arrays,
                          {name: [e for _, e in sorted(members)] for name, members in numbered.items()})
    if layout.npz is None and layout.video is None and not layout.arrays and not layout.sequences:
        raise EpisodeError(f"sample has no .npz, video, .npy arrays or .jpg/.png frame sequence (has {extensions})")
    return layout


def _image_shape(data: bytes) -> tuple[int, int]:
    from PIL import Image

    try:
        width, height = Image.open(io.BytesIO(data)).size
    except OSError as error:
        raise EpisodeError(f"cannot read image: {error}") from error
    return height, width


def _decode_sequence(images: list[bytes], name: str) -> np.ndarray:
    """Encoded frames -> (T, H, W, 3) uint8; EpisodeError when one is broken or sizes differ."""
    from PIL import Image

    try:
        frames = [np.asarray(Image.open(io.BytesIO(data)).convert("RGB")) for data in images]
    except OSError as error:
        raise EpisodeError(f"{name}: cannot decode image: {error}") from error
    shapes = {f.shape for f in frames}
    if len(shapes) != 1:
        raise EpisodeError(f"{name}: frames change size within the sequence: {sorted(shapes)}")
    return np.stack(frames)


def sample_info(episode_id: str, extensions: Iterable[str], read: Read, options: dict[str, Any] | None,
                location: Any) -> EpisodeInfo:
    """Index a sample from array headers, image sizes and video headers (pixels are not decoded)."""
    layout = sample_layout(extensions)
    if layout.npz is not None:
        return info_from_shapes(episode_id, npz_shapes(io.BytesIO(read(layout.npz, None))), options, location)
    shapes = {name: npy_header(io.BytesIO(read(member, HEADER_BYTES))) for name, member in layout.arrays.items()}
    for name, members in layout.sequences.items():
        shapes[name] = ((len(members), *_image_shape(read(members[0], None)), 3), np.dtype(np.uint8))
    if layout.video is not None:
        shapes["frames"] = (video_shape(read(layout.video, None)), np.dtype(np.uint8))
    return info_from_shapes(episode_id, shapes, options, location)


def sample_episode(members: dict[str, bytes], options: dict[str, Any] | None = None) -> Episode:
    """Build the episode of one sample from its {extension: bytes}."""
    layout = sample_layout(members)
    if layout.npz is not None:
        return read_npz_episode(io.BytesIO(members[layout.npz]), options)
    try:
        arrays = {name: np.load(io.BytesIO(members[member]), allow_pickle=False)
                  for name, member in layout.arrays.items()}
    except (ValueError, OSError, EOFError) as error:
        raise EpisodeError(f"cannot read .npy member: {error}") from error
    for name, images in layout.sequences.items():
        arrays[name] = _decode_sequence([members[e] for e in images], name)
    if layout.video is not None:
        arrays["frames"] = read_video(members[layout.video])
    return episode_from_arrays(arrays, options)
