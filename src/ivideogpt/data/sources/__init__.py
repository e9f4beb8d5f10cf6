"""Readers: one small module per on-disk format, all returning `EpisodeInfo` indexes and `Episode`s.

| format  | what                                                        | module     |
|---------|-------------------------------------------------------------|------------|
| npz     | project episodes and npz layouts of other code              | npz        |
| video   | folder of mp4/webm/gif/... files (action-free)              | video      |
| hdf5    | HDF5 trajectories, one per file or per group                | hdf5       |
| lerobot | LeRobot dataset folder, v2.x or v3.0                        | lerobot    |
| rlds    | RLDS / TFDS TFRecord shards (Open X-Embodiment)             | rlds       |
| bair    | BAIR robot pushing TFRecords                                | rlds       |
| robonet | RoboNet hdf5 trajectories                                   | robonet    |
| tar     | WebDataset tar shards: npz, .npy, image or video samples    | webdataset |
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ivideogpt.data.episode import EpisodeError
from ivideogpt.data.sources.base import EpisodeInfo, EpisodeReader, coerce_frames

__all__ = ["EpisodeInfo", "EpisodeReader", "coerce_frames", "detect_format", "make_reader"]

_SUFFIXES = {".npz": "npz", ".h5": "hdf5", ".hdf5": "hdf5", ".tar": "tar", ".mp4": "video", ".webm": "video",
             ".gif": "video", ".avi": "video", ".mkv": "video", ".mov": "video", ".m4v": "video"}


def _file_format(path: Path) -> str | None:
    if ".tfrecord" in path.name:
        return "tfrecord"
    return _SUFFIXES.get(path.suffix.lower())


def _tfrecord_kind(path: Path) -> str:
    """`bair` when the first record has per-step `{t}/...` features, else `rlds`."""
    from ivideogpt.data.sources.tfrecord import iter_records, parse_example

    try:
        first = next(iter_records(path))
        return "bair" if any(k.split("/")[0].isdigit() for k in parse_example(first)) else "rlds"
    except (StopIteration, EpisodeError, OSError):
        return "rlds"


def detect_format(path: str | Path) -> str:
    """Guess a source's format from its files (a LeRobot folder has meta/info.json)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"data path {path} does not exist")
    if path.is_dir() and (path / "meta" / "info.json").is_file():
        return "lerobot"
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    counts: dict[str, int] = {}
    first: dict[str, Path] = {}
    for file in files[:5000]:
        kind = _file_format(file)
        if kind is not None:
            counts[kind] = counts.get(kind, 0) + 1
            first.setdefault(kind, file)
    if not counts:
        raise EpisodeError(f"no recognised data files under {path} (npz, video, hdf5, tar, tfrecord, LeRobot)")
    kind = max(counts, key=lambda k: counts[k])
    return _tfrecord_kind(first[kind]) if kind == "tfrecord" else kind


def make_reader(format: str, path: str | Path, options: dict[str, Any] | None = None) -> EpisodeReader:
    """The reader for `format` ("auto" detects it) over `path`."""
    path = Path(path)
    if format == "auto":
        format = detect_format(path)
    if format == "npz":
        from ivideogpt.data.sources.npz import NpzReader as reader
    elif format == "video":
        from ivideogpt.data.sources.video import VideoFolderReader as reader
    elif format == "hdf5":
        from ivideogpt.data.sources.hdf5 import Hdf5Reader as reader
    elif format == "lerobot":
        from ivideogpt.data.sources.lerobot import LeRobotReader as reader
    elif format == "rlds":
        from ivideogpt.data.sources.rlds import RldsReader as reader
    elif format == "bair":
        from ivideogpt.data.sources.rlds import BairReader as reader
    elif format == "robonet":
        from ivideogpt.data.sources.robonet import RoboNetReader as reader
    elif format == "tar":
        from ivideogpt.data.sources.webdataset import TarReader as reader
    else:
        raise ValueError(f"unknown data format {format!r}")
    return reader(path, options)
