"""Fully sharded training (FSDP2 through accelerate) and its sharded optimizer checkpoints.

accelerate turns FSDP on only for accelerator devices: with several CPU processes it silently
trains with DDP instead. torch's `fully_shard` runs on CPU over gloo as well, so `enable` switches
an Accelerator made there to FSDP: the same code path then trains on CPU and on GPUs.

The optimizer state, two thirds of an AdamW checkpoint, is written with
`torch.distributed.checkpoint` (one `__<rank>_0.distcp` file per process plus `.metadata`) and read
back on any number of processes: each one loads the slices it owns, whatever the writer's layout.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator, FullyShardedDataParallelPlugin, PartialState
from accelerate.utils import DistributedType
from torch import nn

METADATA = ".metadata"  # torch.distributed.checkpoint's index of a sharded directory


def plugin(objective: nn.Module) -> FullyShardedDataParallelPlugin:
    """FSDP2: every parameter sharded (`reshard_after_forward`); each transformer layer of `objective`
    (the classes its Hugging Face models name in `_no_split_modules`) is gathered on its own."""
    return FullyShardedDataParallelPlugin(fsdp_version=2, reshard_after_forward=True,
                                          auto_wrap_policy="transformer_based_wrap",
                                          transformer_cls_names_to_wrap=_layer_classes(objective))


def enable(accelerator: Accelerator, fsdp: FullyShardedDataParallelPlugin, mixed_precision: str) -> None:
    """Make `prepare` shard with `fsdp` on several CPU processes too (accelerate falls back to DDP there).

    Sets what accelerate itself sets on GPUs: FSDP in both its process-wide states (every new
    `AcceleratorState()` copies the `PartialState` one).
    """
    if accelerator.state.distributed_type != DistributedType.MULTI_CPU:
        return  # GPUs: accelerate has already chosen FSDP; one process: nothing to shard
    PartialState().distributed_type = accelerator.state.distributed_type = DistributedType.FSDP
    accelerator.state.fsdp_plugin = fsdp
    if mixed_precision != "no":
        fsdp.set_mixed_precision(mixed_precision)


def forget() -> None:
    """Undo FSDP in accelerate's process-wide state, so that the next Accelerator of this process
    (a transformer run after a tokenizer run) chooses its own strategy."""
    state = PartialState._shared_state
    if state.get("distributed_type") == DistributedType.FSDP:
        cuda = state["device"].type == "cuda"
        state["distributed_type"] = DistributedType.MULTI_GPU if cuda else DistributedType.MULTI_CPU


def is_sharded(accelerator: Accelerator) -> bool:
    """Whether `prepare` shards the model across processes."""
    return accelerator.distributed_type == DistributedType.FSDP


def local(value: torch.Tensor) -> torch.Tensor:
    """A plain tensor from a DTensor (e.g. the gradient norm under FSDP2); other tensors unchanged."""
    from torch.distributed.tensor import DTensor

    return value.full_tensor() if isinstance(value, DTensor) else value


def own_shard(value: torch.Tensor) -> torch.Tensor:
    """This process's part of a DTensor (a parameter under FSDP2), without communication; other tensors unchanged."""
    from torch.distributed.tensor import DTensor

    return value.to_local() if isinstance(value, DTensor) else value


def _layer_classes(module: nn.Module) -> list[str]:
    """The layer classes Hugging Face models inside `module` declare as units (e.g. LlamaDecoderLayer)."""
    names: list[str] = []
    for child in module.modules():
        names += [name for name in getattr(type(child), "_no_split_modules", None) or [] if name not in names]
    return names


def save_optimizer(model: nn.Module, optimizer: Any, directory: Path) -> None:
    """Write this process's share of the optimizer state under `directory` (collective; keys are parameter names)."""
    from torch.distributed.checkpoint import CheckpointException, save
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

    state = get_optimizer_state_dict(model, _unwrap(optimizer))
    try:
        with _quiet():
            save(state, checkpoint_id=str(directory))
    except CheckpointException as error:  # raised on every process when any one failed to write
        raise OSError(f"could not write the sharded optimizer state in {directory}: {error}") from error


def load_optimizer(model: nn.Module, optimizer: Any, directory: Path) -> None:
    """Fill the optimizer from a directory written by `save_optimizer` with any number of processes."""
    from torch.distributed.checkpoint import load
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict, set_optimizer_state_dict

    inner = _unwrap(optimizer)
    state = get_optimizer_state_dict(model, inner)  # the layout to fill: this process's slices
    with _quiet():
        load(state, checkpoint_id=str(directory))
    set_optimizer_state_dict(model, inner, state)


def has_sharded_optimizer(checkpoint: Path) -> bool:
    return (Path(checkpoint) / "optimizer" / METADATA).is_file()


@contextmanager
def _quiet() -> Iterator[None]:
    """Silence the notice that a single process (no process group) reads or writes every shard: intended here."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.distributed is disabled")
        yield


def _unwrap(optimizer: Any) -> torch.optim.Optimizer:
    """The torch optimizer inside accelerate's wrapper."""
    return getattr(optimizer, "optimizer", optimizer)
