"""Streaming segments from tar shards for data too large to index: a resumable IterableDataset.

Consumers: rank r's DataLoader worker w is consumer `c = r * workers + w` of `C = world_size *
workers` (shifted by the batches a resumed process had taken, see `consumer_of`). With at least C shards, consumer c reads the shards at places c, c + C, ... of the
epoch's seeded shard order; with fewer, every consumer reads all shards and keeps every C-th usable
sample.

Epochs: a sample whose array headers show at least one segment span (and the required actions
and rewards) gives `segments_per_episode` slots; slot j's start frame, future subset and
augmentation come from `default_rng([seed, epoch, shard, sample, j])`. Epoch e of consumer c is
its share of the slots in the epoch-e shard order, passed through a seeded shuffle buffer of
`DataConfig.shuffle_buffer` slots. Every slot of an epoch is yielded once, by one consumer:
the union of all consumers' epoch-e items is the whole epoch, with nothing repeated. Shares
differ in size, so in endless mode (training) a consumer that finishes its epoch goes straight
on to its next one: every rank always has a batch, and no sample is lost or repeated within
any epoch.

Position: each item carries `position = {"epoch": e, "offset": n}` (its consumer has now passed
the first n slots of its epoch e). `start(rank, world_size, positions)` continues each consumer
from there: it re-reads its shards from the start of epoch e and replays the shuffle buffer, but
decodes no slot before the position (tar members are read and array headers parsed, no pixels).
A slot whose pixels fail to decode is reported and passed over (it still counts in the offset).

No data: a consumer whose share of an epoch yields nothing raises a one-line DataError saying what
that share held. `check` finds it for the current epoch (set by `set_epoch`) before training; since whole shards are
dealt out anew each epoch, shards without a usable sample can empty a consumer's share in a later
epoch only, which then raises the same error mid-run.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import IterableDataset, get_worker_info

from ivideogpt.data.actions import ActionBounds
from ivideogpt.data.config import DataConfig
from ivideogpt.data.episode import Episode
from ivideogpt.data.report import DataError, DataReport
from ivideogpt.data.segment import make_item, segment_span
from ivideogpt.data.sources.base import EpisodeInfo
from ivideogpt.data.sources.npz import READ_ERRORS
from ivideogpt.data.sources.sample import sample_episode
from ivideogpt.data.sources.webdataset import SHARD_SUFFIXES, header_info, iter_samples

DECODED_CACHE = 4  # decoded episodes kept per consumer (the slots of one episode often leave the buffer close together)


@dataclass(frozen=True)
class Slot:
    """One segment to cut: which shard, sample and segment number, and the sample's undecoded members."""

    shard: int
    sample: int
    segment: int
    key: str
    members: dict[str, bytes]


@dataclass
class Share:
    """What one consumer's share of one epoch held, for the message of a share without data: the shards it read,
    their samples, the usable ones (long enough, with the required actions and rewards) and those it took."""

    shards: list[Path] = field(default_factory=list)
    samples: int = 0
    usable: int = 0
    taken: int = 0
    unusable: Counter = field(default_factory=Counter)  # samples not usable, by kind (too_short, ...)

    def held(self) -> str:
        """What the share's shards held: "7 samples, 6 usable (too_short: 1)"."""
        kinds = ", ".join(f"{kind}: {n}" for kind, n in sorted(self.unusable.items()))
        return f"{_counted(self.samples, 'sample')}, {self.usable or 'none'} usable" + (f" ({kinds})" if kinds else "")


def _counted(number: int, noun: str) -> str:
    """'1 sample', '2 samples'."""
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _names(shards: list[Path], shown: int = 3) -> str:
    """The first `shown` shards' file names, and how many more."""
    more = f" and {len(shards) - shown} more" if len(shards) > shown else ""
    return ", ".join(shard.name for shard in shards[:shown]) + more


def consumer_of(rank: int, world_size: int, taken: int = 0) -> tuple[int, int]:
    """(this DataLoader worker's consumer number, number of consumers) for process `rank` of `world_size`.

    A DataLoader takes batches from its workers in turn, worker 0 first; a process that has already
    taken `taken` batches continues the turn: worker w serves consumer `rank * workers + (w + taken) % workers`.
    """
    worker = get_worker_info()
    workers, worker_id = (worker.num_workers, worker.id) if worker is not None else (1, 0)
    return rank * workers + (worker_id + taken) % workers, world_size * workers


def saved_position(stream: Any, consumer: int, consumers: int) -> Any | None:
    """The position `stream.start` gave this consumer (None: start from the beginning)."""
    saved = stream.positions
    if not saved:
        return None
    if saved["consumers"] != consumers:
        raise ValueError(f"positions saved for {saved['consumers']} consumers, but {consumers} read the stream; "
                         "map them with `restart` first")
    return saved["positions"].get(str(consumer))


def shuffled(slots: Iterable[Slot], size: int, rng: np.random.Generator) -> Iterator[Slot]:
    """Slots through a buffer of `size`: each output is a seeded random pick among the buffered ones."""
    buffer: list[Slot] = []

    def take() -> Slot:
        pick = int(rng.integers(len(buffer)))
        buffer[pick], buffer[-1] = buffer[-1], buffer[pick]
        return buffer.pop()

    for slot in slots:
        buffer.append(slot)
        if len(buffer) >= size:
            yield take()
    while buffer:
        yield take()


class Resumable(IterableDataset):
    """An iterable dataset the Trainer can resume: items carry `position`, `start` continues from saved ones."""

    endless, taken = False, 0

    def place(self, rank: int, world_size: int) -> None:
        """Set which process of how many this stream feeds."""
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, world_size={world_size}), got {rank}")
        self.rank, self.world_size = rank, world_size

    def start(self, rank: int, world_size: int, positions: dict[str, Any], taken: int = 0) -> None:
        """Go on endlessly from `positions` ({"consumers": C, "positions": {consumer: position}}; {}: the start),
        in a DataLoader of a process that has already taken `taken` batches (see `consumer_of`)."""
        self.place(rank, world_size)
        self.endless, self.positions, self.taken = True, positions, taken

    def restart(self, positions: list[Any]) -> Any:
        """Where every consumer begins when the saved `positions` came from another number of consumers."""
        raise NotImplementedError

    def items(self, consumer: int, consumers: int, position: Any = None, endless: bool = False) -> Iterator[dict]:
        """Consumer `consumer`'s items from `position` (None: the beginning)."""
        raise NotImplementedError

    def check(self, consumer: int, consumers: int) -> None:
        """Raise the DataError `items` would raise at its first item when consumer `consumer` has no data (cheaply,
        before training, so that every process can agree to stop)."""
        raise NotImplementedError

    def __iter__(self) -> Iterator[dict[str, Any]]:
        consumer, consumers = consumer_of(self.rank, self.world_size, self.taken)
        for item in self.items(consumer, consumers, saved_position(self, consumer, consumers), self.endless):
            yield {**item, "consumer": consumer}


class ShardStream(Resumable):
    """Segments streamed from `.tar` shards (any sample `sources.sample` reads), split over ranks and workers.

    Iterating gives epoch `set_epoch(e)` once; after `start(...)` it goes on endlessly from the
    given positions (see the module docstring). `action_dim`: the raw action width every used
    episode must have (None: items carry no actions); `rewards`: items carry rewards (episodes
    without them are skipped).
    """

    def __init__(self, shards: str | Path | list[str | Path], config: DataConfig, *, name: str = "", step: int = 1,
                 stride: str = "concat", segments_per_episode: int | None = None, action_dim: int | None = None,
                 rewards: bool = False, bounds: ActionBounds | None = None, options: dict[str, Any] | None = None,
                 rank: int = 0, world_size: int = 1) -> None:
        if isinstance(shards, (str, Path)) and Path(shards).is_dir():
            shards = sorted(p for p in Path(shards).rglob("*") if p.name.lower().endswith(SHARD_SUFFIXES))
        self.shards = [Path(s) for s in ([shards] if isinstance(shards, (str, Path)) else shards)]
        if not self.shards:
            raise ValueError("ShardStream needs at least one shard")
        self.config, self.name, self.step, self.stride = config, name, step, stride
        self.per_episode = config.segments_per_episode if segments_per_episode is None else segments_per_episode
        self.action_dim, self.rewards, self.bounds, self.options = action_dim, rewards, bounds, options
        self.epoch, self.positions = 0, {}
        self.place(rank, world_size)
        self.report, self._reported = DataReport(), set()

    def set_epoch(self, epoch: int) -> None:
        """Change the shard order and segment draws (call before each epoch)."""
        self.epoch = epoch

    def restart(self, positions: list[dict[str, int]]) -> dict[str, int]:
        """The start of the earliest epoch among `positions`."""
        return {"epoch": min((p["epoch"] for p in positions), default=self.epoch), "offset": 0}

    def first_info(self) -> EpisodeInfo | None:
        """Header facts of the first sample long enough for a segment (None if there is none)."""
        span = segment_span(self.config.segment_length, self.step)
        for shard in self.shards:
            for key, members in iter_samples(shard, DataReport()):
                try:
                    info = header_info(key, members, self.options)
                except READ_ERRORS:
                    continue
                if info.length >= span:
                    return info
        return None

    def items(self, consumer: int, consumers: int, position: dict[str, int] | None = None,
              endless: bool = False) -> Iterator[dict[str, Any]]:
        """Consumer `consumer`'s items from `position` (default: the start of `self.epoch`), one epoch or endlessly."""
        epoch, offset = (position["epoch"], position["offset"]) if position else (self.epoch, 0)
        decoded: OrderedDict[tuple[int, int], Episode] = OrderedDict()
        while True:
            yielded, share = 0, Share()
            rng = np.random.default_rng([self.config.seed, epoch, consumers, consumer])
            for number, slot in enumerate(shuffled(self._slots(epoch, consumer, consumers, share),
                                                   self.config.shuffle_buffer, rng)):
                if number < offset:
                    continue
                item = self._item(slot, epoch, decoded)
                if item is not None:
                    yielded += 1
                    yield {**item, "position": {"epoch": epoch, "offset": number + 1}}
            if not yielded and offset == 0:
                raise self._no_segment(consumer, consumers, epoch, share)
            if not endless:
                return
            epoch, offset = epoch + 1, 0

    def check(self, consumer: int, consumers: int) -> None:
        """Raise `items`' DataError when this consumer has no usable sample in the current epoch (array headers only:
        nothing decoded, no shuffle buffer filled)."""
        share = Share()
        if next(self._slots(self.epoch, consumer, consumers, share), None) is None:
            raise self._no_segment(consumer, consumers, self.epoch, share)

    def _no_segment(self, consumer: int, consumers: int, epoch: int, share: Share) -> DataError:
        """The one-line error of a consumer that has nothing to yield in epoch `epoch`: what its share held, and
        what to change (the same at start-up, `check`, and mid-run, when a later epoch deals it other shards)."""
        return DataError(f"consumer {consumer} of {consumers} found no usable segment in epoch {epoch} of "
                         f"{self.name or self.shards[0].parent}: {self._why_empty(share, consumers)}")

    def _why_empty(self, share: Share, consumers: int) -> str:
        """What `share` held, said for how its epoch was split (whole shards, or one usable sample in C), and what to
        change."""
        if share.taken:
            return f"its {_counted(share.taken, 'usable sample')} failed to decode (see the warnings above)"
        if len(self.shards) >= consumers:
            return (f"its share of the epoch's {len(self.shards)} shards (dealt out anew each epoch), "
                    f"{_names(share.shards)}, held {share.held()}; remove the shards without usable samples, "
                    "or use fewer consumers (processes x DataLoader workers)")
        split = (f"the {_counted(len(self.shards), 'shard')} (fewer than the consumers: each takes one usable sample "
                 f"in {consumers}) held {share.held()}")
        advice = f"; use at most {_counted(share.usable, 'consumer')} (processes x DataLoader workers), or more samples"
        return split + advice if share.usable else split

    def _slots(self, epoch: int, consumer: int, consumers: int, share: Share) -> Iterator[Slot]:
        """This consumer's share of epoch `epoch`, in shard order, undecoded; `share` counts what it held."""
        order = np.random.default_rng([self.config.seed, epoch]).permutation(len(self.shards))
        by_shard = len(self.shards) >= consumers
        for place, shard in enumerate(order):
            if by_shard and place % consumers != consumer:
                continue
            share.shards.append(self.shards[shard])
            for sample, (key, members) in enumerate(iter_samples(self.shards[shard], self.report)):
                share.samples += 1
                problem = self._problem(key, members)
                if problem is not None:
                    share.unusable[problem[0]] += 1
                    if by_shard or consumer == 0:  # sharing samples, every consumer checks each one: consumer 0 reports
                        self._skip_once(f"{self.shards[shard]}:{key}", *problem)
                    continue
                share.usable += 1
                if by_shard or (share.usable - 1) % consumers == consumer:  # sharing: every C-th usable one
                    share.taken += 1
                    for segment in range(self.per_episode):
                        yield Slot(int(shard), sample, segment, key, members)

    def _problem(self, key: str, members: dict[str, bytes]) -> tuple[str, str] | None:
        """Why a sample is not usable, as (kind, reason), read from its headers: too short, without the required
        actions or rewards, unreadable; None when it is usable."""
        span = segment_span(self.config.segment_length, self.step)
        try:
            info = header_info(key, members, self.options)
        except READ_ERRORS as error:
            return "unreadable", str(error)
        if info.length < span:
            return "too_short", f"{info.length} frames < {span}"
        if self.action_dim is not None and info.action_dim != self.action_dim:
            return "inconsistent", f"action width {info.action_dim}, the stream needs {self.action_dim}"
        if self.rewards and not info.has_rewards:
            return "inconsistent", "no rewards"
        return None

    def _skip_once(self, where: str, kind: str, reason: str) -> None:
        """Report a skipped sample the first time it is met: each epoch reads it again."""
        if where not in self._reported:
            self._reported.add(where)
            self.report.skip(where, reason, kind)

    def _item(self, slot: Slot, epoch: int, decoded: OrderedDict) -> dict[str, Any] | None:
        """The segment of one slot (its episode decoded or taken from `decoded`); None when it fails to decode."""
        name = (slot.shard, slot.sample)
        try:
            episode = decoded.pop(name) if name in decoded else sample_episode(slot.members, self.options)
            decoded[name] = episode
            while len(decoded) > DECODED_CACHE:
                decoded.popitem(last=False)
            rng = np.random.default_rng([self.config.seed, epoch, slot.shard, slot.sample, slot.segment])
            start = int(rng.integers(0, len(episode) - segment_span(self.config.segment_length, self.step) + 1))
            item = make_item(episode, start, self.step, self.config, stride=self.stride, bounds=self.bounds, rng=rng,
                             augment=self.config.augment, with_actions=self.action_dim is not None,
                             with_rewards=self.rewards)
        except (*READ_ERRORS, IndexError) as error:
            self.report.skip(f"{self.shards[slot.shard]}:{slot.key}", f"{type(error).__name__}: {error}",
                             "bad_at_read")
            return None
        return {**item, "key": f"{self.name}/{slot.key}" if self.name else slot.key, "segment": slot.segment,
                "epoch": epoch}
