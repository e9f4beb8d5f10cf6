"""Index every source once: scan headers, split train/val/test from the seed, drop unusable episodes.

The split is decided on all readable episodes before any length filter, from a hash of
(seed, episode id): it does not change with the segment length, so a tokenizer and a transformer
trained with different segment lengths share one validation set. Held-out ids form the test split.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Literal

from ivideogpt.data.actions import ActionBounds, read_metadata
from ivideogpt.data.config import DataConfig, SourceConfig
from ivideogpt.data.episode import EpisodeError
from ivideogpt.data.report import DataError, DataReport
from ivideogpt.data.segment import output_action_dim, segment_span
from ivideogpt.data.sources import EpisodeInfo, EpisodeReader, make_reader

Split = Literal["train", "val", "test"]
SPLITS: tuple[Split, ...] = ("train", "val", "test")


@dataclass(frozen=True)
class IndexedEpisode:
    """An episode of source number `source`, with its mixture-wide id `source_name/episode_id`."""

    source: int
    episode_id: str
    info: EpisodeInfo


@dataclass
class DataIndex:
    """Readers, action bounds and per-split episode lists of a whole mixture."""

    config: DataConfig
    readers: list[EpisodeReader]
    bounds: list[ActionBounds | None]
    splits: dict[str, list[IndexedEpisode]]
    with_actions: bool
    with_rewards: bool
    action_dim: int | None
    report: DataReport = field(default_factory=DataReport)


def _hash(seed: int, episode_id: str) -> str:
    return hashlib.sha1(f"{seed}:{episode_id}".encode()).hexdigest()


def assign_splits(ids: list[str], val_fraction: float, seed: int, heldout: set[str]) -> dict[str, Split]:
    """{id: split}: held-out ids -> test; round(val_fraction * n) others (at least 1 if n > 1) -> val."""
    result: dict[str, Split] = {}
    remaining = []
    for episode_id in ids:
        key = episode_id.split("/", 1)[1] if "/" in episode_id else episode_id
        if episode_id in heldout or key in heldout:
            result[episode_id] = "test"
        else:
            remaining.append(episode_id)
    count = round(val_fraction * len(remaining))
    if val_fraction > 0 and len(remaining) > 1:
        count = min(max(count, 1), len(remaining) - 1)
    ranked = sorted(remaining, key=lambda i: _hash(seed, i))
    for rank, episode_id in enumerate(ranked):
        result[episode_id] = "val" if rank < count else "train"
    return result


def _keep_a_validation_episode(splits: dict[str, list[IndexedEpisode]], config: DataConfig,
                               report: DataReport) -> None:
    """Move one training episode to an empty val split whose picks were all unusable (too short, no actions).

    Splits are drawn over every episode found, so that they do not change with `segment_length` (a tokenizer
    and a transformer on the same data share them); only where that leaves val empty does a usable one move.
    """
    if config.val_fraction <= 0 or splits["val"] or len(splits["train"]) < 2:
        return
    moved = min(splits["train"], key=lambda episode: _hash(config.seed, episode.episode_id))
    splits["train"].remove(moved)
    splits["val"].append(moved)
    report.note(f"the val split's episodes are all unusable here; {moved.episode_id} validates instead")


def _source_bounds(source: SourceConfig, path: object, dims: set[int], report: DataReport) -> ActionBounds | None:
    if not source.normalize_actions or not dims:
        return None
    try:
        bounds = ActionBounds.from_metadata(read_metadata(path))  # type: ignore[arg-type]
    except ValueError as error:
        report.note(f"source {source.name}: ignoring metadata.json ({error})")
        return None
    if bounds is not None and {bounds.dim} != dims:
        report.note(f"source {source.name}: metadata action bounds have {bounds.dim} dims but actions have "
                    f"{sorted(dims)}; actions stay unnormalised")
        return None
    return bounds


def check_source_paths(config: DataConfig) -> None:
    """Raise a one-line DataError when an active source's path does not exist: a mixture never silently trains
    without one of its sources (leaving one out is `exclude_sources`)."""
    if not config.active_sources:
        raise DataError("no data sources: DataConfig.sources is empty or all are excluded")
    paths = {source.name: source.resolved_path(config.root) for source in config.active_sources}
    missing = [name for name, path in paths.items() if not path.exists()]
    if len(missing) == len(paths):  # most likely a wrong data.root: say so, rather than list every source
        hint = f"data.root={str(config.root)!r}" if str(config.root) else "the sources' paths (or set data.root)"
        first = next(iter(paths.values()))
        raise DataError(f"none of the {len(paths)} data source path(s) exists (the first: {first}); check {hint}")
    if missing:
        s, verb, them = ("s", "do", "them") if len(missing) > 1 else ("", "does", "it")
        names, where = ", ".join(missing), ", ".join(str(paths[name]) for name in missing)
        raise DataError(f"source{s} {names}: path{s} {where} {verb} not exist; correct {them} (or data.root), "
                        f"or leave {them} out with exclude_sources=[{names}]")


def build_index(config: DataConfig) -> DataIndex:
    """Scan all sources of `config`, split, filter and decide whether actions/rewards are returned."""
    check_source_paths(config)
    report = DataReport()
    readers, bounds, per_source = [], [], []
    for number, source in enumerate(config.sources):
        if source.name in config.exclude_sources:
            readers.append(None)
            bounds.append(None)
            per_source.append([])
            continue
        path = source.resolved_path(config.root)
        try:
            reader = make_reader(source.format, path, source.options)
            infos = reader.scan(report)
        except (EpisodeError, FileNotFoundError, OSError, ValueError) as error:
            report.found += 1
            report.skip(str(path), f"source {source.name}: {error}", "unreadable")
            reader, infos = None, []
        if source.num_trajectories is not None and infos and len(infos) != source.num_trajectories:
            report.note(f"source {source.name}: found {len(infos)} episodes, config lists {source.num_trajectories}")
        dims = {i.action_dim for i in infos if i.action_dim is not None}
        readers.append(reader)
        bounds.append(_source_bounds(source, path, dims, report))
        per_source.append([IndexedEpisode(number, f"{source.name}/{i.episode_id}", i) for i in infos])

    everything = [e for episodes in per_source for e in episodes]
    split_of = {}
    for episodes in per_source:
        split_of.update(assign_splits([e.episode_id for e in episodes], config.val_fraction, config.seed,
                                      set(config.heldout_episodes)))
    kept = []
    for episode in everything:
        source = config.sources[episode.source]
        span = segment_span(config.segment_length, source.step)
        if episode.info.length < span:
            report.skip(episode.episode_id, f"{episode.info.length} frames < {span} needed "
                        f"(segment_length {config.segment_length}, step {source.step})", "too_short")
        elif config.actions == "require" and episode.info.action_dim is None:
            report.skip(episode.episode_id, "no actions (DataConfig.actions = 'require')", "no_actions")
        else:
            kept.append(episode)

    widths = {output_action_dim(e.info.action_dim, config.sources[e.source].step,
                                config.sources[e.source].action_stride)
              if e.info.action_dim is not None else None for e in kept}
    with_actions = config.actions != "ignore" and bool(kept) and None not in widths and len(widths) == 1
    if config.actions == "require" and kept and not with_actions:
        raise DataError(f"actions are required but episodes give different action widths {sorted(widths - {None})}")
    if config.actions == "auto" and kept and not with_actions and widths != {None}:
        report.note(f"actions dropped: not every episode has actions of one width (widths {widths})")
    rewards = {e.info.has_rewards for e in kept}
    with_rewards = rewards == {True}
    if rewards == {True, False}:
        report.note("rewards dropped: only some episodes have rewards")

    splits: dict[str, list[IndexedEpisode]] = {s: [] for s in SPLITS}
    for episode in kept:
        splits[split_of[episode.episode_id]].append(episode)
    _keep_a_validation_episode(splits, config, report)
    report.used = len(kept)
    action_dim = next(iter(widths)) if with_actions else None
    return DataIndex(config, readers, bounds, splits, with_actions, with_rewards, action_dim, report)
