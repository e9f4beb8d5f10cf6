"""Rollout speed with one KV cache kept across frames vs. re-processing the prefix every frame.

    python benchmarks/rollout_cache.py                         # tiny preset, batch 1 and 16
    python benchmarks/rollout_cache.py --presets tiny small    # also the paper's small transformer + tokenizer_64

Setting as in the performance targets: 2 context + 8 future frames at 64x64, action-conditioned,
random weights, fp32 (or --bf16 for the transformer). "kept" is `WorldModel(cache="kept")`; "per_frame"
re-processes the whole prefix with a fresh cache at every frame (what per-frame `generate` calls do).
Frames/s count future frames over the whole batch; "transformer" excludes the tokenizer's decode,
"step" includes it, "rollout" also includes the reset (prefill); speed-ups are kept over per_frame.

Measured 2026-11-26 on a lent machine's CPU (Intel Xeon, idle, `--threads 2`, torch 2.11, fp32), with
`python benchmarks/rollout_cache.py --presets tiny` and `--presets small --modes kept --batches 16 1`:

    preset batch  cache      prefill s  transformer f/s  step f/s  rollout f/s  speed-up step / rollout
    tiny   1      kept       0.03       41.2             34.35     30.4
    tiny   1      per_frame  0.01       25.5             22.65     22.0         1.5x / 1.4x
    tiny   16     kept       0.60       194.1            122.76    77.9
    tiny   16     per_frame  0.20       43.2             39.29     37.0         3.1x / 2.1x
    small  16     kept       16.25      11.5             4.32      2.79         (decode ~2.3 s / 16 frames)
    small  1      kept       0.91       2.3              1.66      1.40
    (the rollout column was added after that run and is computed from its prefill and step columns)

On an H200 (`--device cuda`, fp32) the small preset at batch 16 gives 143 transformer frames/s kept vs 105
per_frame; there a step is bound by kernel launches (17 small forwards per frame), not by the prefix.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

import torch

from ivideogpt.tokenizer import tokenizer_64, tokenizer_tiny
from ivideogpt.transformer import transformer_small, transformer_tiny
from ivideogpt.world_model import WorldModel

# Future frames/s of the paper's own code on this machine kind (DESIGN.md), batch 1 / batch 16.
REFERENCE = {"tiny": {"generate": (6.0, 6.4), "rollout": (1.9, 2.0)},
             "small": {"generate": (0.51, 0.64), "rollout": (0.45, 0.61)}}
SMALL_BOUND_B16 = 40.0  # fp32 compute bound of transformer_small at batch 16 (ENVIRONMENT.md)


def build(preset: str, bf16: bool) -> tuple[torch.nn.Module, torch.nn.Module]:
    """Tokenizer + action-conditioned transformer; "tiny" = 2 layers, 256 hidden, 4 heads, vocab 16,386."""
    if preset == "tiny":
        tokenizer = replace(tokenizer_tiny(), codebook_size=8192).build()
        transformer = transformer_tiny(codebook_size=8192, hidden_size=256, ffn_size=1024, action_dim=4).build()
    else:
        tokenizer, transformer = tokenizer_64().build(), transformer_small(action_dim=4).build()
    torch.nn.init.normal_(transformer.action_proj.weight, std=0.02)
    return tokenizer, transformer.to(torch.bfloat16) if bf16 else transformer


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(world: WorldModel, batch: int, future: int) -> dict[str, float]:
    """Seconds spent in reset, in steps, and in the tokenizer decode inside the steps."""
    decode_time = [0.0]
    decode, device = world.tokenizer.decode_future, world.device

    def timed_decode(*args, **kwargs):
        sync(device)
        start = time.perf_counter()
        out = decode(*args, **kwargs)
        sync(device)
        decode_time[0] += time.perf_counter() - start
        return out

    world.tokenizer.decode_future = timed_decode
    try:
        context = torch.rand(batch, 2, 3, 64, 64, device=device) * 2 - 1
        actions = torch.randn(future, batch, 4, device=device)
        start = time.perf_counter()
        world.reset(context, torch.randn(batch, 1, 4, device=device), seed=0)
        sync(device)
        prefill = time.perf_counter() - start
        start = time.perf_counter()
        for t in range(future):
            world.step(actions[t])
        sync(device)
        steps = time.perf_counter() - start
    finally:
        del world.tokenizer.decode_future
    return {"prefill": prefill, "steps": steps, "decode": decode_time[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=["tiny"], choices=["tiny", "small"],
                        help="tiny: 2 layers, 256 hidden, vocab 16,386 + tokenizer_tiny; small: paper sizes")
    parser.add_argument("--bf16", action="store_true", help="run the transformer in bfloat16")
    parser.add_argument("--future", type=int, default=8, help="future frames per rollout")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--modes", nargs="+", default=["kept", "per_frame"], choices=["kept", "per_frame", "none"])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    print(f"torch {torch.__version__}, {args.device}, {args.threads} threads, {'bf16' if args.bf16 else 'fp32'} transformer, "
          f"2 context + {args.future} future frames at 64x64; frames/s = future frames over the batch")
    header = (f"{'preset':6} {'batch':>5} {'cache':>9} {'prefill s':>9} {'transformer f/s':>15} {'step f/s':>9} "
              f"{'rollout f/s':>11} {'speed-up step/rollout':>21} {'vs paper gen':>12} {'vs paper rollout':>16}")
    print(header)
    print("-" * len(header))
    for preset in args.presets:
        tokenizer, transformer = build(preset, args.bf16)
        tokenizer, transformer = tokenizer.to(device), transformer.to(device)
        for batch in args.batches:
            rates = {}
            for mode in args.modes:
                world = WorldModel(tokenizer, transformer, cache=mode)
                measure(world, min(batch, 2), 1)  # warm-up
                t = measure(world, batch, args.future)
                frames = batch * args.future
                rates[mode] = (frames / (t["steps"] - t["decode"]), frames / t["steps"],
                               frames / (t["prefill"] + t["steps"]))
                ratio = ""
                if mode != "kept" and "kept" in rates:
                    ratio = f"{rates['kept'][1] / rates[mode][1]:.1f}x / {rates['kept'][2] / rates[mode][2]:.1f}x"
                ref = REFERENCE[preset]
                col = 0 if batch == 1 else 1  # references exist for batch 1 and 16
                print(f"{preset:6} {batch:>5} {mode:>9} {t['prefill']:>9.2f} {rates[mode][0]:>15.1f} "
                      f"{rates[mode][1]:>9.2f} {rates[mode][2]:>11.2f} {ratio:>21} "
                      f"{rates[mode][0] / ref['generate'][col]:>11.1f}x "
                      f"{rates[mode][1] / ref['rollout'][col]:>15.1f}x")
            if preset == "small" and batch == 16 and "kept" in rates:
                print(f"  small, batch 16, kept: transformer at {rates['kept'][0] / SMALL_BOUND_B16:.0%} of the "
                      f"~{SMALL_BOUND_B16:.0f} frames/s fp32 bound; full step {rates['kept'][1] / 0.61:.1f}x the "
                      f"paper code's rollout (target >= 10x)")


if __name__ == "__main__":
    main()
