"""WebDataset-style `.tar` shards: members grouped into samples by key, one episode per sample.

A sample `<key>.*` holds either `<key>.npz` (any npz layout `load_episode` reads) or a video
`<key>.mp4|webm|gif` with optional `<key>.actions.npy` / `<key>.rewards.npy`. Uncompressed
shards are indexed by member offsets, so `TarReader` serves the map-style dataset with random
access; `iter_shard` streams any shard (also `.tar.gz`) sequentially for `ShardStream`.
"""

from __future__ import annotations

import io
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ivideogpt.data.episode import Episode, EpisodeError
from ivideogpt.data.report import DataReport
from ivideogpt.data.sources.base import EpisodeInfo, FileTreeReader, action_rows_ok, align_actions
from ivideogpt.data.sources.npz import READ_ERRORS, info_from_shapes, npz_shapes, read_npz_episode
from ivideogpt.data.sources.video import VIDEO_SUFFIXES, count_frames, read_video

SHARD_SUFFIXES = (".tar", ".tar.gz", ".tgz")


def split_key(name: str) -> tuple[str, str]:
    """`dir/abc.actions.npy` -> (`dir/abc`, `actions.npy`): the key ends at the basename's first dot."""
    folder, _, base = name.rpartition("/")
    stem, _, extension = base.partition(".")
    return (f"{folder}/{stem}" if folder else stem), extension.lower()


def sample_to_episode(members: dict[str, bytes], options: dict[str, Any] | None = None) -> Episode:
    """Build an episode from one sample's {extension: bytes}."""
    if "npz" in members:
        return read_npz_episode(io.BytesIO(members["npz"]), options)
    video = next((ext for ext in members if f".{ext}" in VIDEO_SUFFIXES), None)
    if video is None:
        raise EpisodeError(f"sample has neither .npz nor a video member (has {sorted(members)})")
    frames = read_video(members[video])
    actions = rewards = None
    if "actions.npy" in members:
        actions = align_actions(np.load(io.BytesIO(members["actions.npy"]), allow_pickle=False), frames.shape[0])
    if "rewards.npy" in members:
        rewards = np.load(io.BytesIO(members["rewards.npy"]), allow_pickle=False).reshape(-1)
    return Episode(frames=frames, actions=actions, rewards=rewards)


def iter_shard(path: str | Path, options: dict[str, Any] | None = None,
               report: DataReport | None = None) -> Iterator[tuple[str, Episode]]:
    """Stream (key, episode) from a shard in member order; bad samples are reported and skipped."""
    report = report if report is not None else DataReport()
    current, members = None, {}

    def flush() -> Iterator[tuple[str, Episode]]:
        if current is None:
            return
        report.found += 1
        try:
            yield current, sample_to_episode(members, options)
        except READ_ERRORS as error:
            report.skip(f"{path}:{current}", str(error), "unreadable")

    try:
        with tarfile.open(path, "r|*") as archive:
            for member in archive:
                if not member.isfile():
                    continue
                key, extension = split_key(member.name)
                if key != current:
                    yield from flush()
                    current, members = key, {}
                members[extension] = archive.extractfile(member).read()
            yield from flush()
    except (tarfile.TarError, OSError, EOFError) as error:
        report.skip(str(path), f"shard unreadable after sample {current}: {error}", "unreadable")


class TarReader(FileTreeReader):
    """Uncompressed `.tar` shards under a folder (or one shard), indexed for random access."""

    suffixes = SHARD_SUFFIXES

    def scan(self, report: DataReport) -> list[EpisodeInfo]:
        infos = []
        for shard in self.files():
            if not shard.name.endswith(".tar"):
                report.found += 1
                report.skip(str(shard), "compressed shards stream only (use ShardStream) or unpack to .tar",
                            "unsupported")
                continue
            try:
                samples: dict[str, dict[str, tuple[int, int]]] = {}
                with tarfile.open(shard, "r:") as archive:
                    for member in archive.getmembers():
                        if member.isfile():
                            key, extension = split_key(member.name)
                            samples.setdefault(key, {})[extension] = (member.offset_data, member.size)
            except (tarfile.TarError, OSError, EOFError) as error:
                report.found += 1
                report.skip(str(shard), f"unreadable shard: {error}", "unreadable")
                continue
            for key, members in samples.items():
                report.found += 1
                try:
                    infos.append(self._info(shard, key, members))
                except READ_ERRORS as error:
                    report.skip(f"{shard}:{key}", str(error), "unreadable")
        return infos

    def _read(self, shard: Path, members: dict[str, tuple[int, int]], extension: str) -> bytes:
        offset, size = members[extension]
        with open(shard, "rb") as stream:
            stream.seek(offset)
            data = stream.read(size)
        if len(data) != size:
            raise EpisodeError(f"{shard}: member {extension} truncated")
        return data

    def _info(self, shard: Path, key: str, members: dict[str, tuple[int, int]]) -> EpisodeInfo:
        episode_id = f"{shard.stem}/{key}"
        location = (shard, members)
        if "npz" in members:
            shapes = npz_shapes(io.BytesIO(self._read(shard, members, "npz")))
            return info_from_shapes(episode_id, shapes, self.options, location)
        video = next((ext for ext in members if f".{ext}" in VIDEO_SUFFIXES), None)
        if video is None:
            raise EpisodeError(f"sample has neither .npz nor a video member (has {sorted(members)})")
        length = count_frames(self._read(shard, members, video))
        action_dim = None
        if "actions.npy" in members:
            shape = np.load(io.BytesIO(self._read(shard, members, "actions.npy")), allow_pickle=False).shape
            if not action_rows_ok(shape[0], length):
                raise EpisodeError(f"actions.npy has {shape[0]} rows for {length} frames")
            action_dim = 1 if len(shape) == 1 else int(shape[1])
        return EpisodeInfo(episode_id, length, action_dim, "rewards.npy" in members, location)

    def load(self, info: EpisodeInfo) -> Episode:
        shard, members = info.location
        try:
            data = {ext: self._read(shard, members, ext) for ext in members}
        except OSError as error:
            raise EpisodeError(f"{shard}: {error}") from error
        return sample_to_episode(data, self.options)


def write_shard(path: str | Path, episodes: dict[str, Episode]) -> Path:
    """Write episodes as `<key>.npz` members of an uncompressed shard (for exporting and tests)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w") as archive:
        for key, episode in episodes.items():
            buffer = io.BytesIO()
            arrays = {n: getattr(episode, n) for n in ("frames", "actions", "rewards", "success", "states")
                      if getattr(episode, n) is not None}
            np.savez_compressed(buffer, **arrays)
            info = tarfile.TarInfo(f"{key}.npz")
            info.size = buffer.tell()
            buffer.seek(0)
            archive.addfile(info, buffer)
    return path
