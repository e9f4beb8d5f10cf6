"""The map-style segment dataset: `dataset[i]` is a pure function of (seed, i).

Train: item i draws, from `np.random.default_rng([seed, i])`, a source (by mixture weight),
an episode (uniformly, as the paper does), a segment start (uniformly), the sampled future
frames and the augmentation. So the data position of a run is just the sample index, and a
resumed run continues exactly. `len` is the nominal `DataConfig.length`; since items are
already random draws, iterate indices in order (no shuffling needed).
Val/test: the non-overlapping segments of every episode of the split, in order (augmentation
off); `episode_segments` enumerates them per episode for evaluation protocols.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from ivideogpt.data.batch import Batch, TokenBatch
from ivideogpt.data.config import DataConfig
from ivideogpt.data.episode import Episode, EpisodeError
from ivideogpt.data.index import SPLITS, DataIndex, IndexedEpisode, Split, build_index
from ivideogpt.data.report import DataError
from ivideogpt.data.segment import make_item, segment_span

MAX_RETRIES = 16


class SegmentDataset(Dataset):
    """Segments of one split of a data mixture; items are dicts of tensors (see `make_item`)."""

    def __init__(self, index: DataIndex, split: Split) -> None:
        self.index, self.split, self.config = index, split, index.config
        self.episodes: list[IndexedEpisode] = index.splits[split]
        self.report = index.report
        if not self.episodes:
            raise DataError(f"no usable episodes in the {split} split\n{index.report.summary()}")
        by_source: dict[int, list[int]] = {}
        for number, episode in enumerate(self.episodes):
            by_source.setdefault(episode.source, []).append(number)
        self._sources = sorted(by_source)
        self._members = [np.asarray(by_source[s]) for s in self._sources]
        weights = np.asarray([self.config.sources[s].weight for s in self._sources], dtype=np.float64)
        self.weights = weights / weights.sum()
        missing = [s.name for n, s in enumerate(self.config.sources)
                   if n not in by_source and s.name not in self.config.exclude_sources]
        if missing and split == "train":
            index.report.note(f"sources without {split} episodes (their weight is spread over the rest): {missing}")
        self._segments = [] if split == "train" else [
            (number, start) for number in range(len(self.episodes)) for start in self.episode_segments(number)]
        self._cache: OrderedDict[int, Episode] = OrderedDict()
        self._cached_bytes = 0
        self._bad: set[int] = set()

    # ---- facts -------------------------------------------------------------------------------
    @property
    def action_dim(self) -> int | None:
        """Width of returned actions, or None when items carry no actions."""
        return self.index.action_dim

    @property
    def has_rewards(self) -> bool:
        return self.index.with_rewards

    @property
    def episode_ids(self) -> list[str]:
        return [e.episode_id for e in self.episodes]

    def __len__(self) -> int:
        return self.config.length if self.split == "train" else len(self._segments)

    def step_of(self, episode_number: int) -> int:
        return self.config.sources[self.episodes[episode_number].source].step

    def episode_segments(self, episode_number: int, stride: int | None = None) -> list[int]:
        """Start frames of the segments of an episode, `stride` apart (default: non-overlapping)."""
        step = self.step_of(episode_number)
        span = segment_span(self.config.segment_length, step)
        length = self.episodes[episode_number].info.length
        return list(range(0, length - span + 1, stride or span))

    # ---- reading -----------------------------------------------------------------------------
    def episode(self, episode_number: int) -> Episode:
        """The episode's arrays (LRU-cached); EpisodeError when the file turns out to be bad."""
        if episode_number in self._cache:
            self._cache.move_to_end(episode_number)
            return self._cache[episode_number]
        indexed = self.episodes[episode_number]
        reader = self.index.readers[indexed.source]
        episode = reader.load(indexed.info)
        if len(episode) != indexed.info.length or episode.action_dim != indexed.info.action_dim:
            raise EpisodeError(f"read {len(episode)} frames / action width {episode.action_dim}, "
                               f"index said {indexed.info.length} / {indexed.info.action_dim}")
        self._cache[episode_number] = episode
        self._cached_bytes += _nbytes(episode)
        while len(self._cache) > 1 and self._cached_bytes > self.config.cache_mb * 2**20:
            self._cached_bytes -= _nbytes(self._cache.popitem(last=False)[1])
        return episode

    def item(self, episode_number: int, start: int, rng: np.random.Generator | None = None) -> dict[str, Any]:
        """The segment of episode `episode_number` starting at recorded frame `start` (deterministic
        without `rng`; with it, the future subset and, on the train split with augment, the augmentation)."""
        indexed = self.episodes[episode_number]
        source = self.config.sources[indexed.source]
        item = make_item(self.episode(episode_number), start, source.step, self.config, stride=source.action_stride,
                         bounds=self.index.bounds[indexed.source], rng=rng,
                         augment=self.config.augment and self.split == "train",
                         with_actions=self.index.with_actions, with_rewards=self.index.with_rewards)
        item["episode"] = episode_number
        return item

    def draw(self, rng: np.random.Generator) -> tuple[int, int]:
        """A training draw: (episode number, start frame), source by mixture weight, episode and start uniformly."""
        members = self._members[int(rng.choice(len(self._sources), p=self.weights))]
        number = int(members[rng.integers(len(members))])
        span = segment_span(self.config.segment_length, self.step_of(number))
        return number, int(rng.integers(0, self.episodes[number].info.length - span + 1))

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} items")
        for attempt in range(MAX_RETRIES):
            rng = item_rng(self.config.seed, index, attempt)
            if self.split == "train":
                number, start = self.draw(rng)
            else:
                number, start = self._segments[(index + attempt) % len(self._segments)]
            if number in self._bad:
                continue
            try:
                return self.item(number, start, rng)
            except (EpisodeError, OSError, ValueError) as error:
                self._bad.add(number)
                self.report.skip(self.episodes[number].episode_id, f"{type(error).__name__}: {error}", "bad_at_read")
        raise DataError(f"{self.split} item {index}: {MAX_RETRIES} draws hit unreadable episodes\n"
                        f"{self.report.summary()}")


def item_rng(seed: int, index: int, attempt: int = 0) -> np.random.Generator:
    """The generator behind training item `index` (retry `attempt` after an unreadable episode)."""
    return np.random.default_rng([seed, index] + ([attempt] if attempt else []))


def _nbytes(episode: Episode) -> int:
    return sum(a.nbytes for a in (episode.frames, episode.actions, episode.rewards, episode.success, episode.states)
               if a is not None)


def build_datasets(config: DataConfig, splits: tuple[str, ...] = ("train", "val")) -> dict[str, SegmentDataset]:
    """Scan the sources once and build the requested splits.

    A requested split without episodes raises DataError, except "val" when `val_fraction` is 0
    (then it is left out of the result).
    """
    index = build_index(config)
    index.report.log()
    wanted = [s for s in splits if not (s == "val" and config.val_fraction == 0 and not index.splits["val"])]
    return {split: SegmentDataset(index, split) for split in wanted}  # type: ignore[arg-type]


def build_dataset(config: DataConfig, split: Split = "train") -> SegmentDataset:
    """One split ("train", "val" or "test" = held-out episodes) of the mixture described by `config`."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    index = build_index(config)
    index.report.log()
    return SegmentDataset(index, split)


def collate_segments(items: list[dict[str, Any]], num_context: int) -> Batch | TokenBatch:
    """Stack items into a Batch (actions/rewards only when every item has them).

    Items of a `TokenDataset` (pre-encoded ids) become a TokenBatch instead, whose context length is
    that of its ids.
    """
    if not items:
        raise ValueError("cannot collate an empty list of items")
    if "context_ids" in items[0]:
        fields = [name for name in ("context_ids", "future_ids", "actions", "rewards") if name in items[0]]
        stacked = {name: torch.stack([item[name] for item in items]) for name in fields}
        return TokenBatch(**{**stacked, "context_ids": stacked["context_ids"].long(),
                             "future_ids": stacked["future_ids"].long()})
    frames = torch.stack([item["frames"] for item in items])  # (B, T, 3, H, W)

    def stacked(key: str) -> torch.Tensor | None:
        present = [key in item for item in items]
        if any(present) and not all(present):
            raise ValueError(f"some items have {key} and some do not; mixtures must agree")
        return torch.stack([item[key] for item in items]) if all(present) else None

    if not 1 <= num_context <= frames.shape[1]:
        raise ValueError(f"num_context {num_context} must be in [1, {frames.shape[1]}]")
    return Batch(frames=frames, actions=stacked("actions"), rewards=stacked("rewards"), num_context=num_context)
