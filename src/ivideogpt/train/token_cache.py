"""Pre-encoded training clips: the frozen tokenizer runs once per clip, not once per training step.

A transformer run with a frozen tokenizer used to re-encode every batch, which on a CPU cost as
much as the transformer step itself. Here every training segment of the data (every episode and
every start frame) is encoded once, stored on disk and reused by every later run on the same
tokenizer weights and the same data. The file is keyed by a hash of both, so a changed tokenizer
or changed data gets a new file, never a stale one.

`TokenDataset` serves the cached clips with the exact draw of `SegmentDataset` (the same episode
and start for the same index), so a run is the same with or without the cache up to the ids'
encoding, and resume stays exact.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from torch import nn
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from ivideogpt.configuration import config_to_dict
from ivideogpt.data.dataset import MAX_RETRIES, SegmentDataset, collate_segments, item_rng
from ivideogpt.data.report import DataError
from ivideogpt.train.checkpoint import save_tensors

log = logging.getLogger(__name__)

FORMAT = 1
# DataConfig fields that change no cached clip: how many items a run draws and the reader's RAM budget.
_KEY_IGNORES = ("length", "cache_mb")


def default_cache_dir() -> Path:
    """`$IVIDEOGPT_CACHE_DIR/tokens`, else `~/.cache/ivideogpt/tokens`."""
    root = os.environ.get("IVIDEOGPT_CACHE_DIR")
    return Path(root) / "tokens" if root else Path.home() / ".cache" / "ivideogpt" / "tokens"


def cache_key(tokenizer: nn.Module, dataset: SegmentDataset) -> str:
    """sha256 over the tokenizer's weights and config and the data: its config, episodes, files and action bounds."""
    digest = hashlib.sha256()
    digest.update(f"format {FORMAT}\n{json.dumps(config_to_dict(tokenizer.config), sort_keys=True)}".encode())
    for name, tensor in sorted(tokenizer.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    data = {k: v for k, v in config_to_dict(dataset.config).items() if k not in _KEY_IGNORES}
    digest.update(json.dumps(data, sort_keys=True, default=str).encode())
    for episode in dataset.episodes:
        digest.update(f"{episode.episode_id} {episode.info.length} {_file_stamp(episode.info.location)}".encode())
    digest.update(repr(dataset.index.bounds).encode())
    return digest.hexdigest()


def _file_stamp(location: Any) -> str:
    """Size and modification time of the file behind an episode, so rewritten data is seen as new."""
    path = location[0] if isinstance(location, (tuple, list)) and location else location
    try:
        stat = Path(path).stat()
    except (TypeError, OSError):
        return repr(location)
    return f"{path} {stat.st_size} {stat.st_mtime_ns}"


def clip_starts(dataset: SegmentDataset, stride: int = 1) -> list[list[int]]:
    """Per episode, the start frames that are encoded: every `stride`-th one a training draw can pick."""
    return [dataset.episode_segments(number, stride=stride) for number in range(len(dataset.episodes))]


class TokenCache:
    """The ids, actions and rewards of every training clip, in episode order, with a row per (episode, start)."""

    def __init__(self, tensors: dict[str, torch.Tensor]) -> None:
        self.tensors = tensors
        self.offsets = tensors["episode_offsets"]  # (E + 1,) first row of each episode
        self.starts = tensors["starts"]  # (N,) start frame of each row
        self.stride = int(tensors["stride"])  # encoded starts are multiples of it

    def __len__(self) -> int:
        return int(self.starts.shape[0])

    def row(self, episode_number: int, start: int) -> int | None:
        """The row of the clip at `start` (rounded down to an encoded start), or None when that episode was
        unreadable at build time."""
        first, end = int(self.offsets[episode_number]), int(self.offsets[episode_number + 1])
        row = first + start // self.stride
        return row if first <= row < end else None


def load_or_build(tokenizer: nn.Module, dataset: SegmentDataset, cache_dir: str | Path | None = None,
                  stride: int = 1, batch_size: int = 64, device: torch.device | str = "cpu", precision: str = "no",
                  build: bool = True, progress: bool = True) -> TokenCache:
    """The cache file of this tokenizer, data, stride and precision: read when it exists, else encoded and written.

    `stride` > 1 encodes every stride-th start frame only (a draw uses the encoded start at or before its
    own), which divides the encoding time by `stride`. `precision` is the run's `train.mixed_precision`:
    the ids are encoded under the same autocast that encoding every batch would have used. With
    `build=False` (processes other than the first of a multi-process run) the file must exist already.
    `progress=False` (a run's `train.progress`) hides the encoding's progress bar.
    """
    if stride < 1:
        raise ValueError(f"token cache stride must be >= 1, got {stride}")
    root = Path(cache_dir) if cache_dir else default_cache_dir()
    path = root / f"{cache_key(tokenizer, dataset)}-stride{stride}-{precision}.safetensors"
    if not path.is_file():
        if not build:
            raise FileNotFoundError(f"token cache {path} is missing (the first process builds it)")
        _write_atomically(path, encode_clips(tokenizer, dataset, stride, batch_size, device, precision, progress))
        log.info("token cache written: %s", path)
    else:
        log.info("token cache reused: %s", path)
    tensors = load_file(str(path))
    if tensors["episode_offsets"].shape[0] != len(dataset.episodes) + 1:
        raise DataError(f"token cache {path} covers {tensors['episode_offsets'].shape[0] - 1} episodes, the data "
                        f"has {len(dataset.episodes)}: delete the file to rebuild it")
    return TokenCache(tensors)


@torch.inference_mode()
def encode_clips(tokenizer: nn.Module, dataset: SegmentDataset, stride: int = 1, batch_size: int = 64,
                 device: torch.device | str = "cpu", precision: str = "no", progress: bool = True
                 ) -> dict[str, torch.Tensor]:
    """Encode the training clips of `dataset` at every `stride`-th start with the frozen tokenizer."""
    was_training = tokenizer.training
    tokenizer.eval()
    per_episode = clip_starts(dataset, stride)
    total = sum(len(starts) for starts in per_episode)
    id_dtype = torch.int16 if tokenizer.config.codebook_size <= 2**15 else torch.int32
    rows = _Rows(total, {"context_ids": id_dtype, "future_ids": id_dtype})
    starts_kept, offsets = [], [0]
    with tqdm(total=total, desc="encoding tokens", unit="clip", dynamic_ncols=True, disable=not progress) as bar:
        for number, starts in enumerate(per_episode):
            try:
                items = [dataset.item(number, start) for start in starts]
            except (OSError, ValueError) as error:  # EpisodeError is a ValueError
                dataset.report.skip(dataset.episodes[number].episode_id, f"{type(error).__name__}: {error}",
                                    "bad_at_read")
                items = []
            for chunk in _chunks(items, batch_size):
                batch = collate_segments(chunk, dataset.config.num_context).to(device)
                with _autocast(device, precision):
                    context_ids, future_ids = tokenizer.encode(batch.context_frames, batch.future_frames)
                rows.write({"context_ids": context_ids, "future_ids": future_ids, "actions": batch.actions,
                            "rewards": batch.rewards})
            bar.update(len(starts))
            _release_freed_memory()
            starts_kept += starts if items else []
            offsets.append(len(starts_kept))
    tokenizer.train(was_training)
    if not starts_kept:
        raise DataError(f"no training clip could be read to build the token cache\n{dataset.report.summary()}")
    tensors = rows.filled()
    tensors["starts"] = torch.tensor(starts_kept, dtype=torch.int32)
    tensors["episode_offsets"] = torch.tensor(offsets, dtype=torch.int64)
    tensors["stride"] = torch.tensor(stride, dtype=torch.int64)
    return tensors


@functools.cache
def _malloc_trim() -> Any:
    """glibc's `malloc_trim`, or None where the C library has none (macOS, musl)."""
    try:
        return getattr(ctypes.CDLL(None), "malloc_trim", None)
    except OSError:
        return None


def _release_freed_memory() -> None:
    """Give the heap pages freed so far back to the OS (called once per encoded episode).

    glibc keeps freed pages that lie below live allocations. Even with the ids written in place, the
    batches' frames and activations left ~7 MB per Push-T episode behind; with this, encoding 120
    episodes ends at 0.6 GB instead of 1.7 GB (3.8 GB before either fix). Dask trims its workers the
    same way.
    """
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


def _autocast(device: torch.device | str, precision: str) -> torch.autocast:
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    return torch.autocast(torch.device(device).type, dtype=dtype, enabled=dtype is not None)


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for first in range(0, len(items), size):
        yield items[first : first + size]


class _Rows:
    """Encoded clips written into tensors sized for every clip up front.

    Appending each batch's ids to lists and concatenating them at the end left thousands of small
    kept tensors between the batches' large freed temporaries, memory glibc's allocator does not give
    back: encoding 87k Push-T clips (91 per episode) grew by ~31 MB per episode, to 24 GB, and was
    killed. One block per field, filled in place, also spares the final concatenation's copy.
    """

    def __init__(self, total: int, dtypes: dict[str, torch.dtype]) -> None:
        self.total, self.dtypes, self.count = total, dtypes, 0
        self.tensors: dict[str, torch.Tensor] = {}

    def write(self, fields: dict[str, torch.Tensor | None]) -> None:
        """Store the next rows of every field (fields that are None, e.g. absent rewards, are not stored)."""
        rows = 0
        for name, tensor in fields.items():
            if tensor is None:
                continue
            if name not in self.tensors:
                self.tensors[name] = torch.empty((self.total, *tensor.shape[1:]),
                                                 dtype=self.dtypes.get(name, tensor.dtype))
            rows = tensor.shape[0]
            self.tensors[name][self.count : self.count + rows] = tensor
        self.count += rows

    def filled(self) -> dict[str, torch.Tensor]:
        """The rows written so far (fewer than `total` when an episode could not be read)."""
        return {name: tensor[: self.count].clone() if self.count < self.total else tensor
                for name, tensor in self.tensors.items()}


def _write_atomically(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    """Write beside the target, fsync, then rename: a killed build never leaves a half file under the key."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        save_tensors(partial, tensors)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


class TokenDataset(Dataset):
    """Training items from a `TokenCache`, drawn exactly as `SegmentDataset` draws frames for the same index.

    `frames` is the frame dataset behind it (for sample videos, which need pixels).
    """

    def __init__(self, frames: SegmentDataset, cache: TokenCache) -> None:
        if frames.split != "train":
            raise ValueError(f"a TokenDataset serves the train split, got {frames.split!r}")
        self.frames, self.cache = frames, cache

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} items")
        for attempt in range(MAX_RETRIES):
            row = self.cache.row(*self.frames.draw(item_rng(self.frames.config.seed, index, attempt)))
            if row is not None:
                return {name: self.cache.tensors[name][row] for name in ("context_ids", "future_ids", "actions",
                                                                         "rewards") if name in self.cache.tensors}
        raise DataError(f"train item {index}: {MAX_RETRIES} draws hit episodes missing from the token cache")
