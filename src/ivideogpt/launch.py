"""How a process joins a multi-process launch (torchrun, accelerate launch), on GPUs and on CPUs alike."""

from __future__ import annotations

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
    """accelerate's `PartialState`: this process's rank, device and process group (created on first use)."""
    from accelerate import PartialState

    return PartialState(cpu=on_cpu())
