"""Training throughput of the transformer and the tokenizer, and achieved FLOP/s vs. this machine's matmul peak.

    python benchmarks/training_throughput.py --quick     # smoke run, under ~60 s on 2 cores
    python benchmarks/training_throughput.py             # all four models (tokenizer_64: ~1 min per step on CPU)
    python benchmarks/training_throughput.py --models transformer_small --batch 4 --bf16
    python benchmarks/training_throughput.py --models stage_encoding stage_cached stage_demo --bf16 --repeats 10
    python benchmarks/training_throughput.py --models transformer_small tokenizer_64 --batch 1 --repeats 1 \
        --transformer-frames 2 14 --tokenizer-frames 2 6 --perceptual    # the paper's pre-training samples

One training step = forward, backward and an AdamW update, on random data with random weights:
- transformers (action-conditioned, 4-d actions): random ids of 2 context + 6 future frames
  (16x16 and 4x4 tokens: 616 tokens per sample), cross-entropy on future tokens;
- tokenizers: `TokenizerObjective` (L1/L2 reconstruction + quantizer losses, no perceptual loss: its
  VGG16 needs local weights) on clips of 2 context + 2 future 64x64 frames, as the CPU recipes sample;
  `--transformer-frames` / `--tokenizer-frames` set other (context, future) counts, e.g. the paper's
  pre-training samples (Table 3: 2 + 14 frames for the transformer, 2 + 6 sampled for the tokenizer), and
  `--perceptual` adds the LPIPS loss on a randomly initialised VGG16 trunk (same FLOPs as the real weights);
- the demo's transformer stage (1 context + 8 future frames, batch 16, `TransformerObjective`):
  `stage_encoding` with the frozen tokenizer encoding every batch (the path before the token cache),
  `stage_cached` from pre-encoded ids, `stage_demo` as the demo trains now (cached ids, 8x8 context
  codes, softmax over the future codes); the last line gives each against `stage_encoding`.
Reported per model: median step seconds, samples (clips) / s, frames / s, tokens / s (sequence tokens for
the transformer, ids produced for the tokenizer), FLOPs per step and per sample counted by
`torch.utils.flop_counter.FlopCounterMode` (matmuls, convolutions, attention; elementwise ops and the
optimizer are not counted; causal attention is counted dense) on an untimed warm-up step, and the
achieved FLOP/s as a fraction of the fp32 and bf16 matmul peak measured in the same run (2048x2048 `mm`).
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from _common import (add_common_args, markdown_table, matmul_peak, optimizer_step, setup, time_call,
                     transformer_train_step)
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count

from ivideogpt.data.batch import Batch, TokenBatch
from ivideogpt.demo import DEMO_TOKENIZER, DEMO_TRANSFORMER, DEMO_TRANSFORMER_OPTIONS
from ivideogpt.perceptual import LPIPS, LPIPS_CHANNELS, VGG16Features
from ivideogpt.presets import get_preset
from ivideogpt.tokenizer.objective import TokenizerObjective
from ivideogpt.transformer import SequenceLayout
from ivideogpt.transformer.objective import TransformerObjective, TransformerObjectiveConfig

aten = torch.ops.aten
TRANSFORMER_FRAMES, TOKENIZER_FRAMES = (2, 6), (2, 2)  # (context, future) frames per sample
DEMO_FRAMES = (1, 8)  # the demo's transformer stage: 1 context + 8 future frames
# The demo's transformer stage (tokenizer_cpu ids, transformer_tiny with the demo's options):
# (ids cached, context codes per side, softmax over the future codes only). "stage_encoding" is the
# path before the token cache (the frozen tokenizer encodes every batch), "stage_cached" the same from
# cached ids, "stage_demo" what the demo now trains (8x8 context codes, future-code softmax).
STAGES = {"stage_encoding": (False, 16, False), "stage_cached": (True, 16, False), "stage_demo": (True, 8, True)}
DEFAULT_BATCH = {"transformer_tiny": 8, "transformer_small": 2, "tokenizer_cpu": 8, "tokenizer_64": 1,
                 **{stage: 16 for stage in STAGES}}


def _sdpa_forward(query: torch.Size, key: torch.Size, value: torch.Size, *args: object, **kwargs: object) -> int:
    return sdpa_flop_count(query, key, value)


def _sdpa_backward(grad_out: torch.Size, query: torch.Size, key: torch.Size, value: torch.Size, *args: object,
                   **kwargs: object) -> int:
    return sdpa_backward_flop_count(grad_out, query, key, value)


# The CPU flash-attention kernels have no formula in torch's registry.
CPU_ATTENTION_FLOPS = {aten._scaled_dot_product_flash_attention_for_cpu: _sdpa_forward,
                       aten._scaled_dot_product_flash_attention_for_cpu_backward: _sdpa_backward}


@dataclass
class Workload:
    """One model's training step and what a sample holds."""

    step: Callable[[], None]
    frames: int  # per sample
    tokens: int  # per sample


def demo_stage(name: str, batch: int, device: torch.device, bf16: bool) -> Workload:
    """A training step of the demo's transformer stage `name` (see STAGES) on random frames."""
    cached, context_tokens, future_only = STAGES[name]
    tokenizer = replace(get_preset(DEMO_TOKENIZER), context_tokens=context_tokens).build()
    config = replace(get_preset(DEMO_TRANSFORMER), **DEMO_TRANSFORMER_OPTIONS, codebook_size=tokenizer.config.codebook_size,
                     context_grid=(context_tokens, context_tokens))
    objective = TransformerObjective(config.build(), tokenizer, TransformerObjectiveConfig(
        future_only_softmax=future_only)).to(device)
    context, future = DEMO_FRAMES
    frames = Batch(torch.rand(batch, context + future, 3, 64, 64, device=device) * 2 - 1,
                   actions=torch.rand(batch, context + future, 2, device=device) * 2 - 1,
                   rewards=torch.rand(batch, context + future, device=device), num_context=context)
    with torch.inference_mode():
        ids = tokenizer.encode(frames.context_frames, frames.future_frames)
    data = TokenBatch(ids[0].clone(), ids[1].clone(), frames.actions, frames.rewards) if cached else frames

    def loss() -> torch.Tensor:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            return objective.compute_loss(data, 0)[0]

    layout = objective.transformer.layout
    return Workload(optimizer_step(objective, loss), context + future, layout.length(context, future))


def random_lpips(device: torch.device) -> LPIPS:
    """LPIPS on a randomly initialised VGG16 trunk (the FLOPs of the real one); its 1x1 linear layers are the
    installed lpips package's, or random ones where that package is missing."""
    try:
        return LPIPS(VGG16Features()).to(device)
    except FileNotFoundError:
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "vgg.pth"
            torch.save({f"lin{k}.model.1.weight": torch.rand(1, c, 1, 1) for k, c in enumerate(LPIPS_CHANNELS)}, path)
            return LPIPS(VGG16Features(), path).to(device)


def workload(name: str, batch: int, device: torch.device, bf16: bool,
             transformer_frames: tuple[int, int] = TRANSFORMER_FRAMES,
             tokenizer_frames: tuple[int, int] = TOKENIZER_FRAMES, perceptual: bool = False) -> Workload:
    """The training step of preset `name` (or of a demo stage) at `batch` samples of (context, future) frames.

    `perceptual`: the tokenizer objective adds LPIPS on a randomly initialised VGG16 trunk.
    """
    if name in STAGES:
        return demo_stage(name, batch, device, bf16)
    config = get_preset(name)
    if name.startswith("transformer"):
        context, future = transformer_frames
        config = replace(config, action_dim=4)
        step = transformer_train_step(config, batch, context, future, device, bf16)
        layout = SequenceLayout(config.codebook_size, config.context_grid, config.future_grid)
        return Workload(step, context + future, layout.length(context, future))
    context, future = tokenizer_frames
    lpips = random_lpips(device) if perceptual else None
    objective = TokenizerObjective(config, perceptual=lpips).to(device).train()
    data = Batch(torch.rand(batch, context + future, 3, 64, 64, device=device) * 2 - 1, num_context=context)

    def loss() -> torch.Tensor:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            return objective.compute_loss(data, 0)[0]

    tokens = context * config.context_tokens ** 2 + future * config.future_tokens ** 2
    return Workload(optimizer_step(objective, loss), context + future, tokens)


def count_flops(step: Callable[[], None]) -> int:
    """FLOPs of one call of `step` (it runs once)."""
    with FlopCounterMode(display=False, custom_mapping=CPU_ATTENTION_FLOPS) as counter:
        step()
    return counter.get_total_flops()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(parser)
    parser.add_argument("--models", nargs="+", choices=list(DEFAULT_BATCH), default=list(DEFAULT_BATCH))
    parser.add_argument("--batch", type=int, help=f"samples per step (default per model: {DEFAULT_BATCH})")
    parser.add_argument("--repeats", type=int, default=3, help="timed steps (the median is reported)")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast for forward and backward")
    parser.add_argument("--transformer-frames", type=int, nargs=2, default=TRANSFORMER_FRAMES,
                        metavar=("CONTEXT", "FUTURE"), help="frames per transformer sample (paper pre-training: 2 14)")
    parser.add_argument("--tokenizer-frames", type=int, nargs=2, default=TOKENIZER_FRAMES,
                        metavar=("CONTEXT", "FUTURE"), help="frames per tokenizer sample (paper pre-training: 2 6)")
    parser.add_argument("--perceptual", action="store_true",
                        help="tokenizers: add the LPIPS loss (random VGG16 trunk), as the paper's recipe trains")
    args = parser.parse_args()
    if args.quick:
        args.repeats = 1
        if args.models == list(DEFAULT_BATCH):
            args.models = ["transformer_tiny", "tokenizer_cpu", "transformer_small", *STAGES]
    device = setup(args, "training throughput")
    peak_seconds = 0.5 if args.quick else 2.0
    peaks = {name: matmul_peak(dtype, device, peak_seconds) for name, dtype in
             (("fp32", torch.float32), ("bf16", torch.bfloat16))}
    print(f"matmul peak (2048x2048 mm, median): fp32 {peaks['fp32'] / 1e9:.0f} GFLOP/s, "
          f"bf16 {peaks['bf16'] / 1e9:.0f} GFLOP/s; training in {'bf16 autocast' if args.bf16 else 'fp32'}\n")

    rows = []
    for name in args.models:
        batch = args.batch or (1 if args.quick else DEFAULT_BATCH[name])
        torch.manual_seed(0)
        work = workload(name, batch, device, args.bf16, tuple(args.transformer_frames), tuple(args.tokenizer_frames),
                        args.perceptual)
        flops = count_flops(work.step)  # also the warm-up step
        seconds = time_call(work.step, device, args.repeats, warmup=0)
        achieved = flops / seconds
        rows.append([name, batch, f"{seconds:.3f}", f"{batch / seconds:.2f}", f"{batch * work.frames / seconds:.1f}",
                     f"{batch * work.tokens / seconds:.0f}", f"{flops / 1e9:.1f}", f"{flops / batch / 1e9:.2f}",
                     f"{achieved / 1e9:.1f}",
                     f"{achieved / peaks['fp32']:.0%}", f"{achieved / peaks['bf16']:.0%}"])
        print(f"  {name}: done", flush=True)
    print()
    print(markdown_table(["model", "batch", "step s", "samples/s", "frames/s", "tokens/s", "GFLOP / step",
                          "GFLOP / sample", "GFLOP/s", "of fp32 peak", "of bf16 peak"], rows))
    (t_context, t_future), (k_context, k_future) = args.transformer_frames, args.tokenizer_frames
    print(f"\nsample: transformer {t_context + t_future} frames ({t_context} context), "
          f"tokenizer {k_context + k_future} frames ({k_context} context"
          f"{', LPIPS loss' if args.perceptual else ''}), "
          f"demo stage {sum(DEMO_FRAMES)} frames ({DEMO_FRAMES[0]} context)")
    rates = {row[0]: float(row[3]) for row in rows}
    if set(STAGES) <= set(rates):
        base = rates["stage_encoding"]
        print("demo transformer stage, samples/s against encoding every batch: " + ", ".join(
            f"{stage} {rates[stage]:.1f} ({rates[stage] / base:.2f}x)" for stage in STAGES))


if __name__ == "__main__":
    main()
