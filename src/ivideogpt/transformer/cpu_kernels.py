"""The rollout's hand-written CPU kernels (`csrc/`), built on first use, or None where they can't be.

- `decode_attention_kernel`: a token step's attention reads every cached key and value once; this
  kernel does so at the machine's memory speed, ~2.4x faster than batched matmuls in bf16.
- `bf16_linear`: a token step multiplies a few rows by every weight; with AVX512_BF16 this
  kernel runs bf16 linears ~1.4x faster than oneDNN's packed ones (`benchmarks/README.md`).
- `cpu_extension().rms_norm / split_rotate / swiglu`: a layer's small ops, one call each instead of
  HF's ~40 PyTorch ops per layer (`decode.py` calls them through `fused_ops_apply`).
- `cpu_extension().decode_layers`: all of a bf16 token step's layers with the kernels above, one call
  (`decode.CpuLayerLoop`).
They need a CPU with AVX-512 and a C++ compiler: torch's extension tools compile them once (~30 s,
cached per torch installation under `$TORCH_EXTENSIONS_DIR`, default `~/.cache/torch_extensions`).
Without them, or with `IVIDEOGPT_CPU_KERNEL=0`, the decode step uses PyTorch and oneDNN ops (same
results up to rounding, slower), after one warning that says why.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import os
import shutil
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import ModuleType

import torch
import torch.nn.functional as F
from torch import Tensor

log = logging.getLogger(__name__)

NAME = "ivideogpt_cpu_kernels"
CSRC = Path(__file__).with_name("csrc")
# simd.h comes first, as text, and the sources' own `#include "simd.h"` lines are dropped: what torch
# hashes to decide a rebuild is then the code and flags alone, not this checkout's path (an include
# path in the hash made every other checkout on the machine rebuild the kernels, ~30 s each switch).
SOURCES = [CSRC / name for name in ("simd.h", "decode_attention.cpp", "decode_linear.cpp", "decode_ops.cpp",
                                    "decode_layers.cpp")]
LOCAL_INCLUDE = '#include "simd.h"'
SWITCH = "IVIDEOGPT_CPU_KERNEL"  # "0" turns the kernels off
DTYPES = (torch.float32, torch.bfloat16)
MAX_HEAD_DIM = 256
GROUP_COLUMNS = 48  # output columns per packed group of `decode_linear.cpp`

AttendParts = Callable[[Tensor, list[Tensor], list[Tensor], list[int], float], Tensor]


def kernel_applies(query: Tensor, cached: Sequence[Tensor]) -> bool:
    """Whether the attention kernel handles (B, heads, 1, D) `query` over `cached` keys and values.

    CPU, fp32 or bf16, D a multiple of 16 up to 256, and the cache in the query's dtype (under
    autocast they can differ; PyTorch ops then cast as before).
    """
    dim = query.shape[-1]
    return (query.device.type == "cpu" and query.dtype in DTYPES and dim % 16 == 0 and dim <= MAX_HEAD_DIM
            and all(part.dtype == query.dtype for part in cached) and decode_attention_kernel() is not None)


def decode_attention_kernel() -> AttendParts | None:
    """`attend_parts(query (B, heads, D), keys, values, shares, scale) -> (B, heads, D)`, or None (logged once)."""
    extension = cpu_extension()
    return None if extension is None else extension.attend_parts


class PackedBf16Weight:
    """A bf16 (N, K) linear weight in `decode_linear.cpp`'s layout, for `bf16_linear`."""

    def __init__(self, weight: Tensor) -> None:
        columns, inputs = weight.shape
        groups = -(-columns // GROUP_COLUMNS)
        padded = F.pad(weight.detach().to(torch.bfloat16), (0, 0, 0, groups * GROUP_COLUMNS - columns))
        self.packed = padded.view(groups, GROUP_COLUMNS, inputs // 2, 2).transpose(1, 2).contiguous()
        self.shape = (columns, inputs)


def bf16_linear_available() -> bool:
    """Whether the kernels are built and this CPU has AVX512_BF16, which `bf16_linear` needs."""
    extension = cpu_extension()
    return extension is not None and extension.has_bf16_dot()


def bf16_linear(x: Tensor, weight: PackedBf16Weight) -> Tensor:
    """x (..., K) bf16 times a packed (N, K) weight -> (..., N) bf16 (where `bf16_linear_available`)."""
    columns, inputs = weight.shape
    out = cpu_extension().bf16_linear(x.reshape(-1, inputs), weight.packed, columns)
    return out.view(*x.shape[:-1], columns)


def packs_for_bf16_kernel(weight: Tensor) -> bool:
    """Whether `weight` goes to `bf16_linear`: a bf16 CPU weight with an even number of inputs."""
    return (weight.device.type == "cpu" and weight.dtype == torch.bfloat16 and weight.shape[1] % 2 == 0
            and bf16_linear_available())


def fused_ops_apply(*tensors: Tensor) -> bool:
    """Whether `cpu_extension()`'s rms_norm / split_rotate / swiglu take these tensors: CPU, all fp32 or
    all bf16 (the caller checks the widths each op needs)."""
    dtype = tensors[0].dtype
    return (all(t.device.type == "cpu" and t.dtype == dtype for t in tensors) and dtype in DTYPES
            and cpu_extension() is not None)


@functools.cache
def cpu_extension() -> ModuleType | None:
    """Both kernels' module, compiled on first use, or None (with one warning that says why)."""
    why_not = _unavailable_reason()
    if why_not is not None:
        if os.environ.get(SWITCH) != "0":
            log.warning("CPU kernels off (%s): rollouts use PyTorch ops, slower in bf16", why_not)
        return None
    from torch.utils import cpp_extension

    log.info("loading the CPU kernels (compiled on first use per machine, ~30 s)")
    try:
        sources = [source.read_text().replace(LOCAL_INCLUDE, "") for source in SOURCES]
        directory = _build_directory()
        with _building_alone(directory):
            return cpp_extension.load_inline(
                NAME, cpp_sources=sources, build_directory=str(directory),
                functions=["attend_parts", "bf16_linear", "has_bf16_dot", "rms_norm", "split_rotate", "swiglu",
                           "decode_layers"],
                # -fopenmp: at::parallel_for is inline, so without it the kernels would run on one thread.
                # The loader maps the libgomp torch already loaded (same soname): one thread pool for all.
                # AVX512_BF16 is enabled per function (decode_linear.cpp), so the rest runs on any AVX-512 CPU.
                extra_cflags=["-O3", "-mavx512f", "-mfma", "-fopenmp"], extra_ldflags=["-fopenmp"])
    except Exception as error:  # a failed compile or link: fall back, never fail a rollout
        log.warning("CPU kernels off (build failed: %s): rollouts use PyTorch ops", error)
        return None


def _build_directory() -> Path:
    """Where the kernels are built: one folder per torch installation. Two environments on a machine differ in
    their include paths, so sharing one folder would make each rebuild over the other's build (~30 s a switch)."""
    from torch.utils import cpp_extension

    installation = hashlib.sha256(f"{torch.__file__}|{torch.__version__}".encode()).hexdigest()[:10]
    return Path(cpp_extension._get_build_directory(f"{NAME}_{installation}", verbose=False))


@contextlib.contextmanager
def _building_alone(directory: Path) -> Iterator[None]:
    """Build under an OS file lock, which ends with its process. torch's own `lock` file outlives a build killed
    midway (Ctrl-C during the first start), and every later start would wait for it forever: under this lock no
    other build runs, so such a file is stale and is removed."""
    try:
        import fcntl
    except ImportError:  # not POSIX: torch's lock alone
        yield
        return
    with open(directory / "ivideogpt.lock", "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX)
        except OSError:  # a file system without locks (some NFS): torch's lock alone, as before
            yield
            return
        stale = directory / "lock"
        if stale.exists():
            log.warning("removing %s, left by a kernel build that was stopped midway", stale)
            stale.unlink(missing_ok=True)
        yield


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
