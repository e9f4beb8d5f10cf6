"""How a process joins a multi-process launch (torchrun, accelerate launch), on GPUs and on CPUs alike."""

from __future__ import annotations

import atexit
import functools
import gc
import sys
from typing import Any

import torch


def on_cpu() -> bool:
    """Whether to run on the CPU: no GPU here, or ACCELERATE_USE_CPU=1.

    accelerate only joins a launch's processes over gloo when told it runs on the CPU; otherwise each
    process of `torchrun --nproc_per_node 2` on a machine without GPUs would run alone.
    """
    from accelerate.utils import parse_flag_from_env

    return parse_flag_from_env("ACCELERATE_USE_CPU") or not torch.cuda.is_available()


def process_state() -> Any:
    """accelerate's `PartialState`: this process's rank, device and process group (created on first use
    when launched as several processes, and left when the interpreter exits, see `leave_process_group`)."""
    from accelerate import PartialState

    state = PartialState(cpu=on_cpu())
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        _leave_process_group_at_exit()  # ~0.5 s at exit (a scan of every object), so only where there is a group
    return state


@functools.cache
def _leave_process_group_at_exit() -> None:
    atexit.register(leave_process_group)


def leave_process_group() -> None:
    """Destroy this process's process group, if it has one, and free it while the interpreter is still whole.

    Left to interpreter shutdown, gloo's worker threads can abort a process that has finished its
    work ("terminate called without an active exception", exit -6), failing the whole launch.
    `destroy_process_group` alone does not end those threads: they live while anything holds the group.
    """
    if not torch.distributed.is_available():
        return
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    _release_device_mesh_groups()
    gc.collect()  # a finished FSDP model may still sit in unreachable cycles that hold the group


def _release_device_mesh_groups() -> None:
    """Drop the process groups that DTensor device meshes keep after the groups were destroyed.

    Under FSDP2, torch 2.13 keeps each mesh alive in DTensor's sharding caches, and a mesh holds its
    groups in `_pg_registry` (a private cache of group objects by name). No public call clears it, so
    this one does, for every mesh there is.
    """
    device_mesh = sys.modules.get("torch.distributed.device_mesh")
    if device_mesh is None:
        return  # no mesh was ever made
    for mesh in gc.get_objects():
        if isinstance(mesh, device_mesh.DeviceMesh):
            getattr(mesh, "_pg_registry", {}).clear()
