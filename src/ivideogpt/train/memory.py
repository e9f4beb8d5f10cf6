"""Will the tensors sized by the codebook fit where the model trains? Checked before anything is allocated, so a
mistyped `tokenizer.codebook_size` is refused in one line naming the bytes needed and free, not an out-of-memory
traceback. An estimate of what training certainly holds; activations come on top."""

from __future__ import annotations

from pathlib import Path

import torch

from ivideogpt.configuration import ConfigError
from ivideogpt.launch import on_cpu, process_state
from ivideogpt.tokenizer.config import TokenizerConfig
from ivideogpt.train.config import TrainConfig
from ivideogpt.transformer.config import TransformerConfig

MEMINFO = Path("/proc/meminfo")
FLOAT32 = 4
TRAINED_COPIES = 4  # a trained float32 tensor, its gradient and AdamW's two moments
HISTOGRAM_BYTES_PER_ID = 16  # `codebook_stats`: its float32 histogram and entropy temporaries (peak measured at 10^8)


def training_device() -> torch.device:
    """The device this process trains on: its current GPU, or the CPU when `launch.on_cpu()`."""
    return torch.device("cpu") if on_cpu() else torch.device("cuda", torch.cuda.current_device())


def available_bytes(device: torch.device) -> int | None:
    """Bytes free for new tensors on `device` (a GPU's free memory, the host's MemAvailable); None when unknown."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    return host_available_bytes()


def host_available_bytes() -> int | None:
    """MemAvailable of /proc/meminfo; None where it is not known (not Linux, an old kernel). Not the free pages
    instead: they leave out the reclaimable page cache, and would refuse a config that fits."""
    try:
        for line in MEMINFO.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024  # the kernel writes kB
    except OSError:
        pass
    return None


def sharded_over(train: TrainConfig) -> int:
    """Over how many processes training shards its weights, gradients and optimizer state: the launch's under FSDP."""
    return process_state().num_processes if train.distributed == "fsdp" else 1


def codebook_bytes(config: TokenizerConfig) -> int:
    """Bytes a tokenizer's codebook-sized tensors take in training: each learned code table (one per frame kind but
    for `perframe`) trained by AdamW, and the usage histogram of every step. FSQ has no table, only the histogram."""
    histogram = config.codebook_size * HISTOGRAM_BYTES_PER_ID
    if config.quantizer == "fsq":
        return histogram
    tables = 1 if config.kind == "perframe" else 2
    return tables * config.codebook_size * config.embed_dim * FLOAT32 * TRAINED_COPIES + histogram


def vocabulary_bytes(config: TransformerConfig, trained: bool = True) -> int:
    """Bytes the transformer's vocabulary-sized weights (token embedding and output head) take: with their gradients
    and AdamW moments when `trained`, the weights alone when frozen."""
    return 2 * config.vocab_size * config.hidden_size * FLOAT32 * (TRAINED_COPIES if trained else 1)


def check_codebook(config: TokenizerConfig, device: torch.device | None = None, shards: int = 1) -> None:
    """Refuse (ConfigError) a tokenizer to train whose codebook cannot fit on `device` (default: `training_device`),
    its training state sharded over `shards` processes."""
    field = "fsq_levels" if config.quantizer == "fsq" else "codebook_size"
    setting = f"tokenizer.{field}={list(config.fsq_levels) if field == 'fsq_levels' else config.codebook_size}"
    _check(setting, codebook_bytes(config) // shards, device, f"lower tokenizer.{field}")


def check_vocabulary(config: TransformerConfig, device: torch.device | None = None, trained: bool = True,
                     shards: int = 1) -> None:
    """Refuse (ConfigError) a transformer whose vocabulary (2 x the tokenizer's codebook + 2) cannot fit, trained or
    frozen, its training state sharded over `shards` processes."""
    what = f"a transformer vocabulary of {config.vocab_size} ids (the tokenizer's codebook_size={config.codebook_size})"
    _check(what, vocabulary_bytes(config, trained) // shards, device, "train on a tokenizer with a smaller codebook")


def _check(what: str, needed: int, device: torch.device | None, remedy: str) -> None:
    """Raise ConfigError when `needed` bytes exceed what `device` has free (never when that is unknown). The message
    names the kind of device and whole gigabytes free, so the processes of a launch say it alike, and once."""
    device = training_device() if device is None else device
    free = available_bytes(device)
    if free is not None and needed > free:
        raise ConfigError(f"{what} needs {needed / 1e9:,.1f} GB to train but {free / 1e9:,.0f} GB is free on "
                          f"{device.type}; {remedy}")
