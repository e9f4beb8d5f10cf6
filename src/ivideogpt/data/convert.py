"""Convert any readable source into project episodes: one `.npz` per episode (or N tar shards) plus `metadata.json`.

`convert("bair", "softmotion30_44k/train", "data/bair/train")` reads with the format's reader,
optionally centre-crops and resizes frames to `resolution`, writes `<episode id>.npz` and
records the observed action range as `action_space` (so datasets can scale actions to [-1, 1]).
With `shards=N` the episodes go round-robin into N uncompressed shards `shard-000000.tar`, ... as
`<key>.npz` members, for streamed training (`data.stream`, `ShardStream`).
Bad episodes are skipped and reported, never half-written.
"""

from __future__ import annotations

import re
import tarfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ivideogpt.data.actions import ActionBounds, new_dataset_folder, write_metadata
from ivideogpt.data.augment import center_square, crop_resize, to_uint8_frames
from ivideogpt.data.episode import Episode, EpisodeError
from ivideogpt.data.formats import DATA_FORMATS
from ivideogpt.data.report import DataReport
from ivideogpt.data.sources import make_reader
from ivideogpt.data.sources.webdataset import add_episode

CONVERTIBLE = tuple(DATA_FORMATS)  # every format with a reader


def resize_frames(frames: np.ndarray, resolution: int) -> np.ndarray:
    """uint8 (T, H, W, 3) -> uint8 (T, R, R, 3): centre square crop, antialiased bilinear resize."""
    height, width = frames.shape[1:3]
    if height == width == resolution:
        return frames
    tensor = crop_resize(torch.from_numpy(np.ascontiguousarray(frames)), center_square(height, width), resolution)
    return to_uint8_frames(tensor).numpy()


def episode_filename(episode_id: str) -> str:
    """A safe relative file name for an episode id (keeps `/` as folders, never escapes the output)."""
    parts = [re.sub(r"[^A-Za-z0-9._-]", "_", p) for p in episode_id.split("/") if p not in ("", ".", "..")]
    return "/".join(parts or ["episode"]) + ".npz"


def unique_name(name: str, taken: set[str]) -> str:
    """`name`, or `<stem>-2<suffix>`, `<stem>-3<suffix>`, ... when `taken` (lower-cased names: some file systems
    ignore case) already holds it."""
    stem, dot, suffix = name.rpartition(".") if name.endswith(".npz") else (name, "", "")
    candidate, number = name, 1
    while candidate.lower() in taken:
        number += 1
        candidate = f"{stem}-{number}{dot}{suffix}"
    return candidate


class ShardWriter:
    """Episodes round-robin into `count` shards under `out`, each written as `.tar.tmp` and renamed when closed."""

    def __init__(self, out: Path, count: int) -> None:
        if count < 1:
            raise ValueError(f"shards must be >= 1, got {count}")
        out.mkdir(parents=True, exist_ok=True)
        self.paths = [out / f"shard-{number:06d}.tar" for number in range(count)]
        self.archives = [tarfile.open(path.with_suffix(".tar.tmp"), "w") for path in self.paths]
        self.written = 0

    @staticmethod
    def key(episode_id: str) -> str:
        """An episode's member key: its safe file name without `.npz`, dots as `_` (a key ends at its first dot)."""
        return episode_filename(episode_id).removesuffix(".npz").replace(".", "_")

    def write(self, key: str, episode: Episode) -> None:
        """Append an episode as `<key>.npz` to the next shard."""
        add_episode(self.archives[self.written % len(self.archives)], key, episode)
        self.written += 1

    def close(self) -> None:
        for archive, path in zip(self.archives, self.paths):
            archive.close()
            path.with_suffix(".tar.tmp").replace(path)


def convert(kind: str, source: str | Path, out: str | Path, *, options: dict[str, Any] | None = None,
            resolution: int | None = None, limit: int | None = None, progress: bool = True,
            shards: int | None = None) -> DataReport:
    """Convert `source` of format `kind` (one of CONVERTIBLE) into project episodes (or `shards` tar shards)
    under `out`."""
    from tqdm import tqdm

    if kind not in CONVERTIBLE:
        raise ValueError(f"cannot convert {kind!r}; choose one of {CONVERTIBLE}")
    report = DataReport()
    reader = make_reader(kind, Path(source), options)
    if Path(source).is_dir() and Path(out).resolve().is_relative_to(Path(source).resolve()):
        raise ValueError(f"--out {out} lies inside the source {source}: the next read of the source would find "
                         f"every episode twice; write it elsewhere")
    out = new_dataset_folder(out)
    infos = reader.scan(report)
    if limit is not None:
        infos = infos[:limit]
    actions: list[np.ndarray] = []
    taken: set[str] = set()  # output names so far, lower-cased: two episode ids may map to one safe name
    began = time.perf_counter()
    writer = ShardWriter(out, shards) if shards is not None else None
    for info in tqdm(infos, desc=f"convert {kind}", unit="episode", disable=not progress):
        try:
            episode = reader.load(info)
            if resolution is not None:
                episode = Episode(frames=resize_frames(episode.frames, resolution), actions=episode.actions,
                                  rewards=episode.rewards, success=episode.success, states=episode.states)
        except (EpisodeError, OSError, ValueError) as error:
            where = str(info.location) if isinstance(info.location, (str, Path)) else info.episode_id  # the file
            report.skip(where, f"{type(error).__name__}: {error}", "unreadable")
            continue
        # a failed write (a full disk) is not the source's fault: it stops the conversion, as an OSError
        name = ShardWriter.key(info.episode_id) if writer is not None else episode_filename(info.episode_id)
        unique = unique_name(name, taken)
        if unique != name:  # e.g. "a b" and "a_b", or clip.mp4 and clip.gif: both kept, the second renamed
            report.note(f"{info.episode_id} saved as {unique}: {name} was taken by another episode")
        taken.add(unique.lower())
        if writer is not None:
            writer.write(unique, episode)
        else:
            episode.save(out / unique)
        report.used += 1
        if episode.actions is not None:
            actions.append(episode.actions)
    if writer is not None:
        writer.close()
    layout = {"format": "ivideogpt-shards", "shards": shards} if shards is not None else {"format": "ivideogpt-episodes"}
    metadata: dict[str, Any] = {**layout, "converted_from": kind, "source": str(source),
                                "episodes": report.used, "resolution": resolution, "options": options or {},
                                "seconds": round(time.perf_counter() - began, 2)}
    widths = {a.shape[1] for a in actions}
    if len(widths) == 1:
        metadata["action_space"] = ActionBounds.from_data(actions).to_dict()
        metadata["action_space_kind"] = "observed min/max"
    if report.skipped:
        metadata["skipped"] = [{"episode": w, "reason": r} for w, _, r in report.skipped[:100]]
    if report.used:  # metadata.json describes a dataset: none when nothing was converted
        write_metadata(out, metadata)
    return report
