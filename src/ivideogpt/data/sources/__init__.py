"""Readers: one small module per on-disk format, all returning `EpisodeInfo` indexes and `Episode`s.

Which formats there are, and which module reads each: the registry in `ivideogpt/data/formats.py`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ivideogpt.data.episode import EpisodeError
from ivideogpt.data.formats import DATA_FORMATS
from ivideogpt.data.sources.base import EpisodeInfo, EpisodeReader, coerce_frames

__all__ = ["EpisodeInfo", "EpisodeReader", "coerce_frames", "detect_format", "make_reader"]

log = logging.getLogger(__name__)
_SUFFIXES = {suffix: f.name for f in DATA_FORMATS.values() for suffix in f.suffixes}
# Every option key some reader reads (docs/data.md); any other key is a typo that would be ignored silently.
READER_OPTIONS = ("action_dim", "action_key", "alignment", "camera", "group", "image_key", "replay_buffer",
                  "reward_key", "state_key", "success_key", "verify")


def _file_format(path: Path) -> str | None:
    if ".tfrecord" in path.name:
        return "tfrecord"
    name = path.name.lower()  # by name ending, so that `.tar.gz` is a tar shard
    return next((kind for suffix, kind in _SUFFIXES.items() if name.endswith(suffix)), None)


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
    others = {other: count for other, count in counts.items() if other != kind}
    if others:  # read as one format, the others' episodes would be missing from every report
        listed = ", ".join(f"{count} {other}" for other, count in sorted(others.items()))
        log.warning("%s holds %d %s file(s) and also %s: only the %s files are read; give each format a source of "
                    "its own (with `format:`)", path, counts[kind], kind, listed, kind)
    return _tfrecord_kind(first[kind]) if kind == "tfrecord" else kind


def make_reader(format: str, path: str | Path, options: dict[str, Any] | None = None) -> EpisodeReader:
    """The reader for `format` ("auto" detects it) over `path`."""
    path = Path(path)
    unknown = sorted(set(options or {}) - set(READER_OPTIONS))
    if unknown:
        raise ValueError(f"unknown reader option(s) {', '.join(unknown)}; the readers take: "
                         f"{', '.join(READER_OPTIONS)}")
    if not path.exists():
        raise FileNotFoundError(f"data path {path} does not exist")
    if format == "auto":
        format = detect_format(path)
    if format not in DATA_FORMATS:
        raise ValueError(f"unknown data format {format!r}")
    if DATA_FORMATS[format].fixed_alignment and "alignment" in (options or {}):  # also when detected, not named
        raise ValueError(f"{format} sources have a fixed reward convention: the alignment option does not apply")
    return DATA_FORMATS[format].reader_class()(path, options)
