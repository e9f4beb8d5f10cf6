"""World-model rollout throughput: one KV cache kept across frames vs. re-processing the prefix every frame.

    python benchmarks/rollout_throughput.py --quick                # smoke run, under ~60 s on 2 cores
    python benchmarks/rollout_throughput.py                        # tiny preset, batch 1, 16 and 64
    python benchmarks/rollout_throughput.py --presets small --batches 16 --modes kept   # the DESIGN.md targets

Setting of the performance targets (DESIGN.md): 2 context + 8 future frames at 64x64, action-conditioned,
random weights, fp32 (or --bf16 for the transformer). "kept" is `WorldModel(cache="kept")`; "per_frame"
re-processes the whole prefix with a fresh cache at every frame (what per-frame `generate` calls do).
Frames/s count future frames over the whole batch: "transformer" excludes the tokenizer's decode, "step"
includes it, "rollout" also includes the reset ("reset s": tokenize the context, plus the prefill when
kept). The speed-up columns are kept over per_frame. "vs paper" divides by the paper code's numbers on
this machine kind (DESIGN.md; batch 1 and 16 only): transformer f/s by its action-conditioned
generation, step f/s by its MBRL rollout with decode.
A second table checks the targets for the small preset at batch 16 (measured when that row is run).
"""

from __future__ import annotations

import argparse
from dataclasses import replace

import torch
from _common import add_common_args, markdown_table, measure_rollout, setup

from ivideogpt.tokenizer import tokenizer_64, tokenizer_tiny
from ivideogpt.transformer import transformer_small, transformer_tiny
from ivideogpt.world_model import WorldModel

# Future frames/s of the paper's own code on this machine kind (DESIGN.md), batch 1 / batch 16.
REFERENCE = {"tiny": {"generate": (6.0, 6.4), "rollout": (1.9, 2.0)},
             "small": {"generate": (0.51, 0.64), "rollout": (0.45, 0.61)}}
# transformer_small at batch 16, transformer only: this machine's compute bound (ENVIRONMENT.md), frames/s.
SMALL_BOUND_B16 = {"fp32": 40.0, "bf16": 100.0}


def build(preset: str, bf16: bool) -> tuple[torch.nn.Module, torch.nn.Module]:
    """Tokenizer + action-conditioned transformer; "tiny" = 2 layers, 256 hidden, 4 heads, vocab 16,386."""
    if preset == "tiny":
        tokenizer = replace(tokenizer_tiny(), codebook_size=8192).build()
        transformer = transformer_tiny(codebook_size=8192, hidden_size=256, ffn_size=1024, action_dim=4).build()
    else:
        tokenizer, transformer = tokenizer_64().build(), transformer_small(action_dim=4).build()
    torch.nn.init.normal_(transformer.action_proj.weight, std=0.02)
    return tokenizer, transformer.to(torch.bfloat16) if bf16 else transformer


def vs_paper(rate: float, preset: str, path: str, batch: int) -> str:
    """`rate` over the paper code's number for this preset, path and batch ('-' where none exists)."""
    if batch not in (1, 16):
        return "-"
    return f"{rate / REFERENCE[preset][path][batch == 16]:.1f}x"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(parser)
    parser.add_argument("--presets", nargs="+", default=["tiny"], choices=["tiny", "small"],
                        help="tiny: 2 layers, 256 hidden, vocab 16,386 + tokenizer_tiny; small: paper sizes")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--modes", nargs="+", default=["kept", "per_frame"], choices=["kept", "per_frame", "none"])
    parser.add_argument("--future", type=int, default=8, help="future frames per rollout")
    parser.add_argument("--bf16", action="store_true", help="run the transformer in bfloat16")
    args = parser.parse_args()
    if args.quick:
        args.batches, args.future = [b for b in args.batches if b <= 16], 2
    device = setup(args, "rollout throughput")
    precision = "bf16" if args.bf16 else "fp32"
    print(f"{precision} transformer, 2 context + {args.future} future frames at 64x64; "
          f"frames/s = future frames over the batch\n")

    rows, targets = [], []
    for preset in args.presets:
        tokenizer, transformer = build(preset, args.bf16)
        tokenizer, transformer = tokenizer.to(device), transformer.to(device)
        for batch in args.batches:
            rates: dict[str, tuple[float, float, float]] = {}
            for mode in args.modes:
                world = WorldModel(tokenizer, transformer, cache=mode)
                measure_rollout(world, min(batch, 2), 1)  # warm-up
                t = measure_rollout(world, batch, args.future)
                frames = batch * args.future
                rates[mode] = (frames / (t["steps"] - t["decode"]), frames / t["steps"],
                               frames / (t["prefill"] + t["steps"]))
                speedup = "-"
                if mode != "kept" and "kept" in rates:
                    speedup = " / ".join(f"{k / m:.1f}x" for k, m in zip(rates["kept"][:2], rates[mode][:2]))
                rows.append([preset, batch, mode, f"{t['prefill']:.2f}", f"{t['decode'] / args.future:.3f}",
                             *(f"{r:.2f}" for r in rates[mode]), speedup,
                             vs_paper(rates[mode][0], preset, "generate", batch),
                             vs_paper(rates[mode][1], preset, "rollout", batch)])
                print(f"  {preset} batch {batch} {mode}: done", flush=True)
            if preset == "small" and batch == 16 and "kept" in rates:
                bound = SMALL_BOUND_B16[precision]
                transformer_rate, step_rate = rates["kept"][:2]
                paper = REFERENCE["small"]["rollout"][1]
                targets += [
                    ["full step (kept) vs paper code's MBRL rollout", f"{paper} f/s", f"{step_rate:.2f} f/s",
                     f"{step_rate / paper:.1f}x", ">= 10x", "yes" if step_rate >= 10 * paper else "no"],
                    [f"transformer (kept) vs machine bound ({precision})", f"{bound:.0f} f/s",
                     f"{transformer_rate:.2f} f/s", f"{transformer_rate / bound:.0%}", ">= 50%",
                     "yes" if transformer_rate >= bound / 2 else "no"]]
    print()
    print(markdown_table(["preset", "batch", "cache", "reset s", "decode s / step", "transformer f/s",
                          "step f/s", "rollout f/s", "speed-up transformer / step", "transformer vs paper gen",
                          "step vs paper rollout"], rows))
    print()
    if targets:
        print("Targets (DESIGN.md), small preset, batch 16:\n")
        print(markdown_table(["target", "reference", "measured", "ratio", "target ratio", "met"], targets))
    else:
        print("Targets (DESIGN.md): run with --presets small --batches 16 --modes kept to check them.")


if __name__ == "__main__":
    main()
