"""World-model rollout throughput: one KV cache kept across frames vs. re-processing the prefix every frame.

    python benchmarks/rollout_throughput.py --quick                # smoke run, under ~60 s on 2 cores
    python benchmarks/rollout_throughput.py                        # tiny preset, batch 1, 16 and 64
    python benchmarks/rollout_throughput.py --presets small --batches 16 --modes kept --precisions fp32 bf16
    python benchmarks/rollout_throughput.py --presets small --batches 32 --modes kept --precisions bf16 --fork
    python benchmarks/rollout_throughput.py --device cuda --presets small --batches 16 256 \
        --modes kept static per_frame --precisions fp32 bf16                 # the GPU figures

Setting of the performance targets (DESIGN.md): 2 context + 8 future frames at 64x64, action-conditioned,
random weights. "kept" is `WorldModel(cache="kept")` (the one-token decode path of `transformer/decode.py`);
"static" is `WorldModel(cache="static")`: fixed cache buffers, each frame one captured CUDA graph on a
GPU (`transformer/frame_graph.py`; eager and slower on CPU, where "kept" is the fast path); "per_frame"
re-processes the whole prefix with a fresh cache at every frame (what per-frame `generate` calls do).
`--precisions bf16` runs `WorldModel(precision="bf16")`: bf16 transformer and KV cache,
tokenizer under bf16 autocast. Frames/s count future frames over the whole batch: "transformer"
excludes the tokenizer's decode, "step" includes it, "rollout" also includes the reset ("reset s":
tokenize the context, plus the prefill when cached). The speed-up column is over per_frame. "vs
paper" divides by the paper code's numbers on this machine kind (DESIGN.md; batch 1 and 16 only):
transformer f/s by its action-conditioned generation, step f/s by its MBRL rollout with decode.

The machine's bound for the transformer, measured in the same run: every token step must multiply
the batch by every layer weight and the future-code head (FLOPs at the measured matmul peak of the
run's precision) and read those weights and the whole KV cache (bytes at the measured read
bandwidth); a step takes at least the larger of the two. Summed over the rollout's 17 token steps
per frame this bounds the transformer's frames/s. A second table checks the targets for the small
preset at batch 16, kept (measured when that row is run); on a GPU with "static" measured too, the
GPU targets: static at least 20x the 143 frames/s measured before this path existed (kept, fp32,
one H200), the full step within 2x of the transformer alone, and the share of sampled tokens that
static and kept rollouts of the same seed have in common.

`--fork`: planning's case instead, every batch row forked from one context (`rollout(state, actions)`),
measured with the context's keys shared by the forks (what `fork` does) and with a copy per row, in
one run; the transformer alone (no decode), as a planner scoring rewards runs it.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

import torch
from _common import add_common_args, markdown_table, matmul_peak, measure_rollout, read_bandwidth, setup, sync

from ivideogpt.tokenizer import tokenizer_64, tokenizer_tiny
from ivideogpt.transformer import WorldModelTransformer, transformer_small, transformer_tiny
from ivideogpt.world_model import CACHE_MODES, WorldModel

# Future frames/s of the paper's own code on this machine kind (DESIGN.md), batch 1 / batch 16.
REFERENCE = {"tiny": {"generate": (6.0, 6.4), "rollout": (1.9, 2.0)},
             "small": {"generate": (0.51, 0.64), "rollout": (0.45, 0.61)}}
GPU_BEFORE = 143.0  # transformer f/s of the small preset, kept, batch 16, fp32, one H200, before "static" existed
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
CONTEXT = 2


def build(preset: str) -> tuple[torch.nn.Module, WorldModelTransformer]:
    """Tokenizer + action-conditioned transformer; "tiny" = 2 layers, 256 hidden, 4 heads, vocab 16,386."""
    torch.manual_seed(0)
    if preset == "tiny":
        tokenizer = replace(tokenizer_tiny(), codebook_size=8192).build()
        transformer = transformer_tiny(codebook_size=8192, hidden_size=256, ffn_size=1024, action_dim=4).build()
    else:
        tokenizer, transformer = tokenizer_64().build(), transformer_small(action_dim=4).build()
    torch.nn.init.normal_(transformer.action_proj.weight, std=0.02)
    return tokenizer, transformer


def transformer_bound(transformer: WorldModelTransformer, batch: int, future: int, precision: str,
                      peak: float, bandwidth: float) -> float:
    """Upper bound on the transformer's frames/s for `future` frames after CONTEXT context frames (see above)."""
    c, layout = transformer.config, transformer.layout
    weights = sum(p.numel() for p in transformer.core.layers.parameters()) + c.codebook_size * c.hidden_size
    size = torch.finfo(DTYPES[precision]).bits // 8
    cached = CONTEXT * (1 + layout.context_codes)
    seconds = 0.0
    for _ in range(future * (1 + layout.future_codes)):
        cached += 1
        flops = 2 * batch * weights + 4 * batch * c.num_layers * c.hidden_size * cached
        reads = (weights + 2 * c.num_layers * batch * c.hidden_size * cached) * size
        seconds += max(flops / peak, reads / bandwidth)
    return batch * future / seconds


def fork_table(args: argparse.Namespace, device: torch.device) -> None:
    """Transformer frames/s of `batch` rows forked from one context: context keys shared vs copied per row."""
    rows = []
    for preset in args.presets:
        for precision in args.precisions:
            tokenizer, transformer = build(preset)
            world = WorldModel(tokenizer.to(device), transformer.to(device), precision=precision)
            side = tokenizer.config.resolution
            base = world.reset(torch.rand(1, CONTEXT, 3, side, side, device=device) * 2 - 1,
                               torch.zeros(1, CONTEXT - 1, world.action_dim, device=device))
            for batch in args.batches:
                actions = torch.randn(args.future, batch, world.action_dim, device=device)
                rates = {}
                for name in ("copied", "shared", "copied", "shared"):  # interleaved, the second of each kept
                    state = base.repeat(batch)
                    world.set_state(state.index(list(range(batch))) if name == "copied" else state)
                    sync(device)
                    start = time.perf_counter()
                    for step in actions:
                        world.step(step, decode=False)
                    sync(device)
                    rates[name] = batch * args.future / (time.perf_counter() - start)
                rows.append([preset, precision, batch, f"{rates['copied']:.2f}", f"{rates['shared']:.2f}",
                             f"{rates['shared'] / rates['copied']:.2f}x"])
                print(f"  {preset} {precision} batch {batch}: done", flush=True)
    print()
    print(markdown_table(["preset", "precision", "forked rows", "copied f/s", "shared f/s", "shared / copied"],
                         rows))


def target(name: str, reference: str, measured: str, ratio: str, goal: str, met: bool) -> list[str]:
    """One row of the targets table."""
    return [name, reference, measured, ratio, goal, "yes" if met else "no"]


def batch16_targets(rates: dict[str, tuple[float, float, float]], bound: float, precision: str,
                    on_gpu: bool) -> list[list[str]]:
    """The small preset's targets at batch 16 for the cache modes measured (rates: transformer, step, rollout f/s).

    The static cache's targets are the GPU's: only there is it the fast path.
    """
    rows = []
    if "kept" in rates:
        transformer_rate, step_rate = rates["kept"][:2]
        paper = REFERENCE["small"]["rollout"][1]
        rows += [target(f"full step (kept, {precision}) vs paper code's MBRL rollout", f"{paper} f/s",
                        f"{step_rate:.2f} f/s", f"{step_rate / paper:.1f}x", ">= 10x", step_rate >= 10 * paper),
                 target(f"transformer (kept, {precision}) vs this machine's bound", f"{bound:.1f} f/s",
                        f"{transformer_rate:.2f} f/s", f"{transformer_rate / bound:.0%}", ">= 50%",
                        transformer_rate >= bound / 2)]
    if "static" in rates and on_gpu:
        transformer_rate, step_rate = rates["static"][:2]
        rows += [target(f"transformer (static, {precision}) vs kept before it (one H200)", f"{GPU_BEFORE} f/s",
                        f"{transformer_rate:.0f} f/s", f"{transformer_rate / GPU_BEFORE:.1f}x", ">= 20x",
                        transformer_rate >= 20 * GPU_BEFORE),
                 target(f"full step (static, {precision}) vs its transformer alone", f"{transformer_rate:.0f} f/s",
                        f"{step_rate:.0f} f/s", f"{transformer_rate / step_rate:.2f}x slower", "<= 2x",
                        transformer_rate <= 2 * step_rate)]
    return rows


def shared_tokens(tokenizer: torch.nn.Module, transformer: WorldModelTransformer, batch: int, future: int,
                  precision: str, device: torch.device) -> float:
    """The share of sampled future tokens that kept and static rollouts of one seed have in common."""
    ids = {}
    for mode in ("kept", "static"):
        world = WorldModel(tokenizer, transformer, cache=mode, precision=precision, temperature=1.0)
        side = tokenizer.config.resolution
        frames = torch.rand(batch, CONTEXT, 3, side, side, generator=torch.Generator().manual_seed(0)) * 2 - 1
        actions = torch.randn(batch, future, world.action_dim, generator=torch.Generator().manual_seed(1))
        world.rollout(frames.to(device), actions.to(device), horizon=future,
                      context_actions=torch.zeros(batch, CONTEXT - 1, world.action_dim, device=device), seed=2,
                      decode=False)
        ids[mode] = world.layout.split_future(world.state.ids, CONTEXT)
    return float((ids["kept"] == ids["static"]).float().mean())


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
    parser.add_argument("--modes", nargs="+", default=["kept", "per_frame"], choices=list(CACHE_MODES))
    parser.add_argument("--future", type=int, default=8, help="future frames per rollout")
    parser.add_argument("--precisions", nargs="+", default=["fp32"], choices=list(DTYPES),
                        help="WorldModel precision(s), each measured in this run")
    parser.add_argument("--fork", action="store_true",
                        help="rows forked from one context: shared context keys vs a copy per row")
    args = parser.parse_args()
    if args.quick:
        args.batches, args.future = [b for b in args.batches if b <= 16], 2
    device = setup(args, "rollout throughput")
    if args.fork:
        fork_table(args, device)
        return
    seconds = 0.5 if args.quick else 2.0
    peaks = {name: matmul_peak(dtype, device, seconds) for name, dtype in DTYPES.items()}
    bandwidth = read_bandwidth(device, seconds)
    print(f"this machine: matmul peak (2048x2048 mm) fp32 {peaks['fp32'] / 1e9:.0f} GFLOP/s, bf16 "
          f"{peaks['bf16'] / 1e9:.0f} GFLOP/s; memory read {bandwidth / 1e9:.1f} GB/s")
    print(f"{CONTEXT} context + {args.future} future frames at 64x64; frames/s = future frames over the batch\n")
    rows, targets = [], []
    for preset in args.presets:
        for precision in args.precisions:
            tokenizer, transformer = build(preset)
            tokenizer, transformer = tokenizer.to(device), transformer.to(device)
            for batch in args.batches:
                rates: dict[str, tuple[float, float, float]] = {}
                bound = transformer_bound(transformer, batch, args.future, precision, peaks[precision], bandwidth)
                measured = []
                for mode in args.modes:
                    world = WorldModel(tokenizer, transformer, cache=mode, precision=precision)
                    # warm-up; static at the measured batch, so its graph is captured before the clock starts
                    measure_rollout(world, batch if mode == "static" else min(batch, 2), 1)
                    t = measure_rollout(world, batch, args.future, CONTEXT)
                    frames = batch * args.future
                    rates[mode] = (frames / (t["steps"] - t["decode"]), frames / t["steps"],
                                   frames / (t["prefill"] + t["steps"]))
                    measured.append((mode, t))
                    print(f"  {preset} {precision} batch {batch} {mode}: done", flush=True)
                for mode, t in measured:
                    speedup = "-"
                    if mode != "per_frame" and "per_frame" in rates:
                        speedup = " / ".join(f"{m / p:.1f}x" for m, p in zip(rates[mode][:2], rates["per_frame"][:2]))
                    rows.append([preset, precision, batch, mode, f"{t['prefill']:.2f}",
                                 f"{t['decode'] / args.future:.3f}", *(f"{r:.2f}" for r in rates[mode]),
                                 f"{rates[mode][0] / bound:.0%}", speedup,
                                 vs_paper(rates[mode][0], preset, "generate", batch),
                                 vs_paper(rates[mode][1], preset, "rollout", batch)])
                if preset == "small" and batch == 16:
                    targets += batch16_targets(rates, bound, precision, device.type == "cuda")
                    if "static" in rates and device.type == "cuda":
                        shared = shared_tokens(tokenizer, transformer, batch, args.future, precision, device)
                        targets.append(target(f"sampled tokens, static = kept (same seed, {precision})", "100%",
                                              f"{shared:.2%}", "-", "100%", shared == 1.0))
    print()
    print(markdown_table(["preset", "precision", "batch", "cache", "reset s", "decode s / step", "transformer f/s",
                          "step f/s", "rollout f/s", "transformer of bound", "over per_frame: transformer / step",
                          "transformer vs paper gen", "step vs paper rollout"], rows))
    print()
    if targets:
        print("Targets (DESIGN.md), small preset, batch 16:\n")
        print(markdown_table(["target", "reference", "measured", "ratio", "target ratio", "met"], targets))
    else:
        print("Targets (DESIGN.md): run with --presets small --batches 16 --modes kept to check them.")


if __name__ == "__main__":
    main()
