"""Decode every indexed episode once, so broken files inside a dataset are found before training.

Indexing reads headers only (array shapes, video frame counts, metadata rows); a video whose
packets are damaged, or an npz member that fails its checksum, only shows when decoded. This
loads each episode of every split with its reader, in `workers` processes, and reports each
failure as a skipped item of kind `undecodable`.
"""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from typing import Any

from ivideogpt.data.index import SPLITS, DataIndex
from ivideogpt.data.report import DataReport
from ivideogpt.data.sources import EpisodeInfo, EpisodeReader

_readers: list[EpisodeReader | None] = []  # set in each worker process by `_start`


def _start(readers: list[EpisodeReader | None]) -> None:
    global _readers
    _readers = readers


def _decode(task: tuple[int, str, EpisodeInfo]) -> tuple[str, str | None]:
    """(episode id, None when it decodes to its indexed length, else why not)."""
    source, episode_id, info = task
    try:
        episode = _readers[source].load(info)  # type: ignore[union-attr]
    except Exception as error:  # noqa: BLE001 - any failure of a reader is what this check reports
        return episode_id, f"{type(error).__name__}: {error}"
    if len(episode) != info.length:
        return episode_id, f"decoded {len(episode)} frames, the index says {info.length}"
    return episode_id, None


def decode_all(index: DataIndex, workers: int = 1, progress: bool = True) -> DataReport:
    """Load every episode of `index`; found = episodes tried, used = decoded, skipped = broken."""
    from tqdm import tqdm

    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    tasks = [(e.source, e.episode_id, e.info) for split in SPLITS for e in index.splits[split]]
    report = DataReport(found=len(tasks))
    bar: Any = tqdm(total=len(tasks), desc="decode", unit="episode", disable=not progress)
    if workers == 1:
        _start(index.readers)
        results = map(_decode, tasks)
    else:
        pool = ProcessPoolExecutor(workers, initializer=_start, initargs=(index.readers,))
        results = pool.map(_decode, tasks, chunksize=max(1, len(tasks) // (workers * 8)))
    try:
        for episode_id, problem in results:
            if problem is None:
                report.used += 1
            else:
                report.skip(episode_id, problem, "undecodable")
            bar.update()
    finally:
        bar.close()
        if workers > 1:
            pool.shutdown()
    return report
