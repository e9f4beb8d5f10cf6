"""A data mixture streamed from shards: one `ShardStream` per source, interleaved by the mixture weights.

Draw i of consumer c takes its next item from the source picked by `default_rng([seed, C, c, i])`
with probability weight / sum(weights), the same rule as the map-style dataset's draws. Each
source's stream is endless, so a source never runs dry; its epochs keep the guarantee of
`ShardStream` (each slot once per epoch). An item's `position` is {"draws": i + 1, "sources":
[each source's position]}, so a resumed run continues every source where it was.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from ivideogpt.data.actions import ActionBounds, read_metadata
from ivideogpt.data.config import DataConfig
from ivideogpt.data.index import check_source_paths
from ivideogpt.data.report import DataError, DataReport
from ivideogpt.data.segment import output_action_dim
from ivideogpt.data.stream import Resumable, ShardStream


class MixedStream(Resumable):
    """Streams of several sources, interleaved endlessly by weight; `action_dim`/`has_rewards` describe items."""

    endless = True

    def __init__(self, streams: list[ShardStream], weights: list[float], seed: int, *, action_dim: int | None = None,
                 has_rewards: bool = False, rank: int = 0, world_size: int = 1) -> None:
        if not streams or len(streams) != len(weights) or min(weights) <= 0:
            raise ValueError(f"a mixture needs one positive weight per stream, got {weights} for {len(streams)}")
        self.streams, self.seed = streams, seed
        self.cumulative = np.cumsum(weights) / np.sum(weights)
        self.action_dim, self.has_rewards, self.positions = action_dim, has_rewards, {}
        self.place(rank, world_size)

    def restart(self, positions: list[dict[str, Any]]) -> dict[str, Any]:
        """No draws yet; each source at the start of its earliest saved epoch."""
        return {"draws": 0, "sources": [stream.restart([p["sources"][n] for p in positions])
                                        for n, stream in enumerate(self.streams)]}

    def check(self, consumer: int, consumers: int) -> None:
        """Every source must have data for this consumer: each is drawn from sooner or later."""
        for stream in self.streams:
            stream.check(consumer, consumers)

    def items(self, consumer: int, consumers: int, position: dict[str, Any] | None = None,
              endless: bool = True) -> Iterator[dict[str, Any]]:
        """Consumer `consumer`'s share of the mixture from `position` (None: the beginning); always endless."""
        draws = position["draws"] if position else 0
        places = list(position["sources"]) if position else [None] * len(self.streams)
        sources = [stream.items(consumer, consumers, place, endless=True)
                   for stream, place in zip(self.streams, places)]
        while True:
            pick = np.random.default_rng([self.seed, consumers, consumer, draws]).random()
            source = min(int(np.searchsorted(self.cumulative, pick, side="right")), len(self.streams) - 1)
            item = next(sources[source])
            places[source], draws = item["position"], draws + 1
            yield {**item, "position": {"draws": draws, "sources": list(places)}}


def build_stream(config: DataConfig, rank: int = 0, world_size: int = 1) -> MixedStream:
    """The training stream of `config` (`stream: true`): every active source a folder of tar shards.

    Actions are kept when the first usable sample of every source has them and the segments are
    dense (not `sampled_future`), with one output width; later samples without them are skipped.
    """
    check_source_paths(config)  # the same one-line errors as the indexed path
    report = DataReport()
    sources = config.active_sources
    wrong = [s.name for s in sources if s.format not in ("auto", "tar")]
    if wrong:
        raise DataError(f"data.stream reads tar shards only; sources {wrong} have other formats")
    streams, infos = [], []
    for source in sources:
        path = source.resolved_path(config.root)
        bounds = ActionBounds.from_metadata(read_metadata(path)) if source.normalize_actions else None
        stream = ShardStream(path, config, name=source.name, step=source.step, stride=source.action_stride,
                             bounds=bounds, options=source.options, rank=rank, world_size=world_size)
        info = stream.first_info()
        if info is None:
            raise DataError(f"source {source.name}: no sample under {path} is long enough for a segment")
        streams.append(stream)
        infos.append(info)
    widths = {output_action_dim(i.action_dim, s.step, s.action_stride) if i.action_dim is not None else None
              for i, s in zip(infos, sources)}
    keep = config.actions != "ignore" and not config.sampled_future and None not in widths and len(widths) == 1
    if config.actions == "require" and not keep:
        raise DataError(f"actions are required but the sources' first samples give widths {widths}")
    if config.actions == "auto" and not keep and widths != {None} and not config.sampled_future:
        report.note(f"actions dropped: the sources' first samples give action widths {widths}")
    rewards = all(i.has_rewards for i in infos)
    for stream, info in zip(streams, infos):
        stream.action_dim, stream.rewards = (info.action_dim if keep else None), rewards
    return MixedStream(streams, [s.weight for s in sources], config.seed,
                       action_dim=next(iter(widths)) if keep else None, has_rewards=rewards, rank=rank,
                       world_size=world_size)
