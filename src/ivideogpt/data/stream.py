"""Streaming segments from tar shards for data too large to index: an IterableDataset.

Shards are split across distributed ranks and DataLoader workers (shard i goes to consumer
i mod (world_size * num_workers)); with fewer shards than consumers, every consumer reads all
shards and keeps every n-th episode instead. Each epoch visits the shards in a seeded order;
each episode yields `segments_per_episode` random segments, drawn from
`default_rng([seed, epoch, shard number, episode number])`, so a stream is reproducible.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import IterableDataset, get_worker_info

from ivideogpt.data.actions import ActionBounds
from ivideogpt.data.config import DataConfig
from ivideogpt.data.report import DataReport
from ivideogpt.data.segment import make_item, segment_span
from ivideogpt.data.sources.webdataset import SHARD_SUFFIXES, iter_shard


class ShardStream(IterableDataset):
    """Random segments streamed from `.tar` shards (any sample `sources.sample` reads), split over workers and ranks."""

    def __init__(self, shards: str | Path | list[str | Path], config: DataConfig, *, step: int = 1,
                 segments_per_episode: int = 4, rank: int = 0, world_size: int = 1,
                 bounds: ActionBounds | None = None, options: dict[str, Any] | None = None) -> None:
        if isinstance(shards, (str, Path)) and Path(shards).is_dir():
            shards = sorted(p for p in Path(shards).rglob("*") if p.name.endswith(SHARD_SUFFIXES))
        self.shards = [Path(s) for s in ([shards] if isinstance(shards, (str, Path)) else shards)]
        if not self.shards:
            raise ValueError("ShardStream needs at least one shard")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, world_size={world_size}), got {rank}")
        self.config, self.step, self.per_episode = config, step, segments_per_episode
        self.rank, self.world_size, self.bounds, self.options = rank, world_size, bounds, options
        self.epoch = 0
        self.report = DataReport()

    def set_epoch(self, epoch: int) -> None:
        """Change the shard order and segment draws (call before each epoch)."""
        self.epoch = epoch

    def _consumer(self) -> tuple[int, int]:
        worker = get_worker_info()
        workers, worker_id = (worker.num_workers, worker.id) if worker is not None else (1, 0)
        return self.rank * workers + worker_id, self.world_size * workers

    def __iter__(self) -> Iterator[dict[str, Any]]:
        consumer, consumers = self._consumer()
        order = np.random.default_rng([self.config.seed, self.epoch]).permutation(len(self.shards))
        by_shard = len(self.shards) >= consumers
        span = segment_span(self.config.segment_length, self.step)
        counter = 0
        for position, shard_number in enumerate(order):
            if by_shard and position % consumers != consumer:
                continue
            for episode_number, (key, episode) in enumerate(iter_shard(self.shards[shard_number], self.options,
                                                                        self.report)):
                if not by_shard:
                    counter += 1
                    if (counter - 1) % consumers != consumer:
                        continue
                if len(episode) < span:
                    self.report.skip(f"{self.shards[shard_number]}:{key}", f"{len(episode)} frames < {span}",
                                     "too_short")
                    continue
                rng = np.random.default_rng([self.config.seed, self.epoch, int(shard_number), episode_number])
                for _ in range(self.per_episode):
                    start = int(rng.integers(0, len(episode) - span + 1))
                    item = make_item(episode, start, self.step, self.config, bounds=self.bounds, rng=rng,
                                     augment=self.config.augment)
                    item["key"] = key
                    yield item

