"""Helpers shared by the benchmarks: arguments, timing, rollout measurement, peak memory, Markdown tables."""

from __future__ import annotations

import argparse
import math
import multiprocessing
import os
import resource
import statistics
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import torch
from torch import nn

from ivideogpt.transformer import TransformerConfig
from ivideogpt.world_model import WorldModel


def add_common_args(parser: argparse.ArgumentParser) -> None:
    """--threads, --device and --quick, the same in every benchmark."""
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)),
                        help="torch intra-op threads (default: all cores this process may use)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    parser.add_argument("--quick", action="store_true", help="a fast smoke run (small sizes, one repeat)")


def setup(args: argparse.Namespace, what: str) -> torch.device:
    """Set threads and seed, print one line describing the run, return the device."""
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{args.threads} CPU threads"
    load = os.getloadavg()
    print(f"{what}: torch {torch.__version__}, {where}, {os.cpu_count()} cores with load average "
          f"{', '.join(f'{x:.1f}' for x in load)}{', quick' if args.quick else ''}")
    cores = os.cpu_count() or 1
    if device.type == "cpu" and args.threads > 1 and round(load[0]) + args.threads > cores:
        free = max(1, cores - round(load[0]))
        print(f"warning: the machine is busy; {args.threads} threads waiting on each other at every op can run many "
              f"times slower than fewer: consider --threads {free}")
    print()
    return device


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_call(fn: Callable[[], Any], device: torch.device, repeats: int, warmup: int = 1) -> float:
    """Median wall-clock seconds of `fn()` over `repeats` calls, after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub Markdown table; numbers must already be formatted."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def with_ratio(value: float, reference: float, fmt: str = ".3g") -> str:
    """'value (ratio x)' with the ratio value / reference; 'n/a' for a nan value, no ratio for a nan or 0 reference."""
    if math.isnan(value):
        return "n/a"
    if reference == 0 or math.isnan(reference):
        return f"{value:{fmt}}"
    return f"{value:{fmt}} ({value / reference:.2g}x)"


# --- training steps -----------------------------------------------------------------------------
def optimizer_step(model: nn.Module, loss_fn: Callable[[], torch.Tensor]) -> Callable[[], None]:
    """A closure running one training step: `loss_fn()`, backward, AdamW update (lr 1e-4, wd 0.01)."""
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4, weight_decay=0.01)

    def step() -> None:
        loss_fn().backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def transformer_train_step(config: TransformerConfig, batch: int, num_context: int, num_future: int,
                           device: torch.device, bf16: bool = False) -> Callable[[], None]:
    """A training step of `config`'s transformer on random ids and 4-d actions (config.action_dim must be 4)."""
    model = config.build().to(device).train()
    k = config.codebook_size
    context_ids = torch.randint(k, (batch, num_context, *config.context_grid), device=device)
    future_ids = torch.randint(k, (batch, num_future, *config.future_grid), device=device)
    actions = torch.randn(batch, num_context + num_future, 4, device=device)

    def loss() -> torch.Tensor:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            return model.loss(context_ids, future_ids, actions)[0]

    return optimizer_step(model, loss)


# --- the machine's limits ------------------------------------------------------------------------
def matmul_peak(dtype: torch.dtype, device: torch.device, seconds: float, n: int = 2048) -> float:
    """Median FLOP/s of repeated n x n `mm` calls over about `seconds`."""
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    out = torch.empty(n, n, device=device, dtype=dtype)
    return 2 * n**3 / median_seconds(lambda: torch.mm(a, b, out=out), device, seconds)


def read_bandwidth(device: torch.device, seconds: float, megabytes: int = 512) -> float:
    """Bytes/s of reading a `megabytes` fp32 tensor once (far larger than any cache): the faster of `sum` and `amax`.

    The faster of two reductions, each a median, because on 2 CPU cores a single one can be
    compute-limited: summing all-ones read at ~31 GB/s where `amax` of random values read at ~45.
    """
    data = torch.empty(megabytes * 2**20 // 4, device=device).normal_()
    return data.numel() * 4 / min(median_seconds(data.sum, device, seconds / 2),
                                  median_seconds(data.amax, device, seconds / 2))


def median_seconds(fn: Callable[[], Any], device: torch.device, seconds: float) -> float:
    """Median wall-clock seconds of `fn()` called repeatedly for about `seconds` (at least 3 times), after one warm-up."""
    fn()
    times: list[float] = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(times) < 3:
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


# --- world-model rollouts ---------------------------------------------------------------------
def measure_rollout(world: WorldModel, batch: int, future: int, context: int = 2) -> dict[str, float]:
    """Seconds spent in `reset` (prefill), in `future` steps, and in the tokenizer decode inside those steps.

    Random context frames at the tokenizer's resolution and random actions of the model's size (none
    for an action-free model).
    """
    decode_time = [0.0]
    decode, device = world.tokenizer.decode_future, world.device

    def timed_decode(*args: Any, **kwargs: Any) -> torch.Tensor:
        sync(device)
        start = time.perf_counter()
        out = decode(*args, **kwargs)
        sync(device)
        decode_time[0] += time.perf_counter() - start
        return out

    world.tokenizer.decode_future = timed_decode
    try:
        side, dim = world.tokenizer.config.resolution, world.action_dim
        frames = torch.rand(batch, context, 3, side, side, device=device) * 2 - 1
        actions = torch.randn(future + context - 1, batch, dim, device=device) if dim else None
        start = time.perf_counter()
        world.reset(frames, None if actions is None else actions[: context - 1].transpose(0, 1), seed=0)
        sync(device)
        prefill = time.perf_counter() - start
        start = time.perf_counter()
        for t in range(future):
            world.step(None if actions is None else actions[context - 1 + t])
        sync(device)
        steps = time.perf_counter() - start
    finally:
        del world.tokenizer.decode_future
    return {"prefill": prefill, "steps": steps, "decode": decode_time[0]}


# --- peak memory --------------------------------------------------------------------------------
def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _max_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


class PeakMemory:
    """Peak memory allocated inside a `with` block, in bytes (`.bytes`), above what was in use at entry.

    CUDA: `torch.cuda.max_memory_allocated` (tensors only). CPU: resident set size (RSS, Linux): the
    process's peak RSS (getrusage maxrss) if the block raised it, else the highest RSS a thread sampled
    every millisecond (the process peaked earlier, e.g. while importing). Run it in a fresh process
    (`run_isolated`) so memory freed by earlier work does not hide new allocations.
    """

    def __init__(self, device: torch.device) -> None:
        self.device, self.bytes = device, 0
        self._stop = threading.Event()
        self._sampled = 0

    def _sample(self) -> None:
        while not self._stop.wait(0.001):
            self._sampled = max(self._sampled, _rss_bytes())

    def __enter__(self) -> "PeakMemory":
        if self.device.type == "cuda":
            sync(self.device)
            self._start = torch.cuda.memory_allocated(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            self._start, self._start_max = _rss_bytes(), _max_rss_bytes()
            self._sampled = self._start
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            sync(self.device)
            self.bytes = torch.cuda.max_memory_allocated(self.device) - self._start
            return
        self._stop.set()
        self._thread.join()
        peak = _max_rss_bytes()
        self.bytes = (peak if peak > self._start_max else max(self._sampled, _rss_bytes())) - self._start


def run_isolated(fn: Callable[..., Any], *args: Any) -> Any:
    """`fn(*args)` in a fresh spawned process (a clean peak-memory baseline); returns its result.

    Raises `BrokenProcessPool` if the process dies (e.g. killed for running out of memory).
    """
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(fn, *args).result()
