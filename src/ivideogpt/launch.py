"""How a process joins a multi-process launch (torchrun, accelerate launch), on GPUs and on CPUs alike."""

from __future__ import annotations

import atexit
import functools
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
    """accelerate's `PartialState`: this process's rank, device and process group (created on first use,
    and left when the interpreter exits, see `leave_process_group`)."""
    from accelerate import PartialState

    state = PartialState(cpu=on_cpu())
    _leave_process_group_at_exit()
    return state


@functools.cache
def _leave_process_group_at_exit() -> None:
    atexit.register(leave_process_group)


def leave_process_group() -> None:
    """Destroy this process's process group, if it has one, while the interpreter is still whole.

    Left to interpreter shutdown, gloo's worker threads can abort a process that has finished its
    work ("terminate called without an active exception", exit -6), failing the whole launch.
    """
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
