"""Episodes on disk, readers for common formats, segment sampling, mixtures and augmentation.

Main entry points: `DataConfig`/`SourceConfig` (config), `build_dataset`/`build_datasets` and
`collate_segments` (dataset), `Episode` (episode), `load_episode` (sources.npz), `ActionBounds` (actions),
`DataReport`/`DataError` (report), `convert` (convert), `ShardStream` (stream), `MixedStream`/`build_stream`
(mixed_stream: the streamed training set of a `DataConfig` with `stream: true`).
"""

from ivideogpt.data.actions import ActionBounds
from ivideogpt.data.batch import Batch
from ivideogpt.data.config import DataConfig, SourceConfig
from ivideogpt.data.dataset import SegmentDataset, build_dataset, build_datasets, collate_segments
from ivideogpt.data.episode import Episode, EpisodeError
from ivideogpt.data.report import DataError, DataReport
from ivideogpt.data.sources.npz import load_episode

__all__ = ["ActionBounds", "Batch", "DataConfig", "DataError", "DataReport", "Episode", "EpisodeError",
           "SegmentDataset", "SourceConfig", "build_dataset", "build_datasets", "collate_segments", "load_episode"]
