"""The CPU decode-attention kernel (`csrc/decode_attention.cpp`), built on first use, or None where it can't be.

A rollout's attention reads every cached key and value once per token step; this kernel does so at
the machine's memory speed, ~2.4x faster than batched matmuls in bf16 (`benchmarks/README.md`).
It needs a CPU with AVX-512 and a C++ compiler: torch's extension tools compile it once (~25 s,
cached in `$TORCH_EXTENSIONS_DIR`, default `~/.cache/torch_extensions`). Without them, or with
`IVIDEOGPT_CPU_KERNEL=0`, `decode.attend` uses PyTorch ops (same results, slower), after one
warning that says why.
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("csrc") / "decode_attention.cpp"
SWITCH = "IVIDEOGPT_CPU_KERNEL"  # "0" turns the kernel off
DTYPES = (torch.float32, torch.bfloat16)
MAX_HEAD_DIM = 256

AttendParts = Callable[[torch.Tensor, list[torch.Tensor], list[torch.Tensor], list[int], float], torch.Tensor]


def kernel_applies(query: torch.Tensor, cached: Sequence[torch.Tensor]) -> bool:
    """Whether the kernel handles (B, heads, 1, D) `query` over `cached` keys and values.

    CPU, fp32 or bf16, D a multiple of 16 up to 256, and the cache in the query's dtype (under
    autocast they can differ; PyTorch ops then cast as before).
    """
    dim = query.shape[-1]
    return (query.device.type == "cpu" and query.dtype in DTYPES and dim % 16 == 0 and dim <= MAX_HEAD_DIM
            and all(part.dtype == query.dtype for part in cached) and decode_attention_kernel() is not None)


@functools.cache
def decode_attention_kernel() -> AttendParts | None:
    """`attend_parts(query (B, heads, D), keys, values, shares, scale) -> (B, heads, D)`, or None (logged once)."""
    why_not = _unavailable_reason()
    if why_not is not None:
        if os.environ.get(SWITCH) != "0":
            log.warning("CPU attention kernel off (%s): rollouts use PyTorch ops, slower in bf16", why_not)
        return None
    from torch.utils import cpp_extension

    log.info("loading the CPU attention kernel (compiled on first use per machine, ~25 s)")
    try:
        module = cpp_extension.load_inline(
            "ivideogpt_decode_attention", cpp_sources=SOURCE.read_text(), functions=["attend_parts"],
            # -fopenmp: at::parallel_for is inline, so without it the kernel would run on one thread.
            # The loader maps the libgomp torch already loaded (same soname): one thread pool for both.
            extra_cflags=["-O3", "-mavx512f", "-mfma", "-fopenmp"], extra_ldflags=["-fopenmp"])
    except Exception as error:  # a failed compile or link: fall back, never fail a rollout
        log.warning("CPU attention kernel off (build failed: %s): rollouts use PyTorch ops", error)
        return None
    return module.attend_parts


def _unavailable_reason() -> str | None:
    if os.environ.get(SWITCH) == "0":
        return f"{SWITCH}=0"
    if torch.backends.cpu.get_cpu_capability() != "AVX512":
        return f"the CPU lacks AVX-512 ({torch.backends.cpu.get_cpu_capability()})"
    compiler = os.environ.get("CXX", "c++")
    if shutil.which(compiler) is None:
        return f"no C++ compiler ({compiler}) on PATH"
    if shutil.which("ninja") is None:
        # pip's ninja (a dependency) lands beside this interpreter, which need not be on PATH.
        beside = Path(sys.executable).parent
        if not (beside / "ninja").exists():
            return "ninja is not on PATH (pip install ninja)"
        os.environ["PATH"] = f"{beside}{os.pathsep}{os.environ.get('PATH', '')}"
    return None
