"""Test clips for the evaluation protocol, read from the project's episode files."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ivideogpt.data.actions import ActionBounds, read_metadata
from ivideogpt.data.episode import EpisodeError
from ivideogpt.data.sources.npz import load_episode
from ivideogpt.frames import to_model

logger = logging.getLogger(__name__)


@dataclass
class TestVideo:
    """One test clip: `frames` (T, 3, H, W) float in [-1, 1], `actions` (T, A) float or None."""

    __test__ = False  # not a pytest test class

    id: str
    frames: torch.Tensor
    actions: torch.Tensor | None = None


def load_test_videos(data_dir: str | Path, clip_length: int, max_videos: int | None = None,
                     pattern: str = "*.npz", clips_per_episode: int = 1) -> list[TestVideo]:
    """Clips of `clip_length` frames from every episode under `data_dir` matching `pattern` (sorted by path).

    One clip per episode is its first frames; more are spread evenly over the episode (the first
    and the last `clip_length` frames included). Episodes shorter than `clip_length`, and files that
    cannot be read (corrupt, truncated), are skipped and reported in a log line. Actions are mapped to
    [-1, 1] with the bounds in the episode folder's metadata.json, as the training data is.
    """
    if clips_per_episode < 1:
        raise ValueError(f"clips_per_episode must be >= 1, got {clips_per_episode}")
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise FileNotFoundError(f"{data_dir} {'is a file, not' if data_dir.exists() else 'does not exist: give'} "
                                f"a folder of episode files ({pattern})")
    paths = sorted(data_dir.rglob(pattern))
    if not paths:
        raise FileNotFoundError(f"no episode files ({pattern}) under {data_dir}")
    videos, short, unreadable = [], [], []
    for path in paths:
        if max_videos is not None and len(videos) >= max_videos:
            break
        try:
            episode = load_episode(path)
        except EpisodeError as error:  # a corrupt or truncated file: reported, the others evaluated
            unreadable.append(f"{path.relative_to(data_dir)} ({error})")
            continue
        frames, all_actions = episode.frames, episode.actions
        if frames.shape[0] < clip_length:
            short.append(f"{path.relative_to(data_dir)} ({frames.shape[0]})")
            continue
        last_start = frames.shape[0] - clip_length
        starts = [0] if clips_per_episode == 1 else sorted(
            set(np.linspace(0, last_start, clips_per_episode).round().astype(int).tolist()))
        bounds = ActionBounds.from_metadata(read_metadata(path))
        episode_id = str(path.relative_to(data_dir).with_suffix(""))
        for start in starts:
            if max_videos is not None and len(videos) >= max_videos:
                break
            actions = None if all_actions is None else all_actions[start : start + clip_length]
            if actions is not None and bounds is not None:
                actions = bounds.normalize(actions)
            videos.append(TestVideo(
                id=episode_id if start == 0 else f"{episode_id}@{start}",
                frames=to_model(np.ascontiguousarray(frames[start : start + clip_length])),
                actions=None if actions is None
                else torch.as_tensor(np.asarray(actions, dtype=np.float32).reshape(clip_length, -1))))
    if short:
        shown = "; ".join(short[:10]) + (f" and {len(short) - 10} more" if len(short) > 10 else "")
        logger.warning("skipped %d episode(s) under %s shorter than %d frames: %s", len(short), data_dir, clip_length,
                       shown)
    if unreadable:
        logger.warning("skipped %d unreadable episode file(s) under %s: %s", len(unreadable), data_dir,
                       "; ".join(unreadable))
    return videos
