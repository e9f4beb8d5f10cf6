"""Compressive vs per-frame tokenization: tokens, training cost and generation cost (paper Tables 7/8 analog).

    python benchmarks/tokenizer_efficiency.py                        # tiny tokenizers, transformer_tiny (~1-2 min)
    python benchmarks/tokenizer_efficiency.py --quick                # smoke run, under ~60 s on 2 cores
    python benchmarks/tokenizer_efficiency.py --tokenizer-scale paper --transformer transformer_small

Three tokenizers of one scale (paper: tokenizer_64, perframe_4x4_64, perframe_16x16_64; tiny: the
tokenizer_tiny blocks with the same token grids) on a 16-frame clip at 64x64, 2 context + 14 future
frames. Per tokenizer, with the transformer preset resized to its vocabulary and token grids:
- tokens per clip (slot tokens included);
- a transformer training step (forward, backward, AdamW) on clips of that length, random ids: median
  seconds, and peak memory in a fresh process per tokenizer from before the model is built, so
  weights, gradients, optimizer state and activations all count (`_common.PeakMemory`: on CUDA
  `torch.cuda.max_memory_allocated`, on CPU resident-set growth from getrusage maxrss / sampled RSS);
- generation with `WorldModel(cache="kept")` (one KV cache, action-conditioned, random weights):
  reset seconds (tokenize the context, its decoder features, the prefill) and seconds per generated
  frame (the whole batch) in the transformer and in the tokenizer's decode of that frame;
- tokenize (encode) and detokenize (decode) seconds per clip, under inference mode.
Ratios in parentheses are relative to the per-frame 16x16 tokenizer. Random weights: timings only.
"""

from __future__ import annotations

import argparse
from concurrent.futures.process import BrokenProcessPool
from dataclasses import replace

import torch
from _common import (PeakMemory, add_common_args, markdown_table, measure_rollout,
                     run_isolated, setup, time_call, transformer_train_step, with_ratio)

from ivideogpt.presets import get_preset
from ivideogpt.tokenizer import TokenizerConfig, tokenizer_64, tokenizer_tiny
from ivideogpt.transformer import SequenceLayout, TransformerConfig
from ivideogpt.world_model import WorldModel

CONTEXT, FUTURE = 2, 14  # the paper's 16-frame clips


def tokenizers(scale: str) -> dict[str, TokenizerConfig]:
    """The compressive tokenizer and its two per-frame baselines, at the paper's or the tiny size."""
    base = tokenizer_64() if scale == "paper" else tokenizer_tiny()
    return {"compressive 16x16 + 4x4": base,
            "per-frame 4x4": replace(base, kind="perframe", context_tokens=4),
            "per-frame 16x16": replace(base, kind="perframe", context_tokens=16)}


def transformer_for(preset: str, tokenizer: TokenizerConfig) -> TransformerConfig:
    """`preset` with the tokenizer's codebook and token grids, conditioned on 4-d actions."""
    future = tokenizer.future_tokens if tokenizer.kind == "compressive" else tokenizer.context_tokens
    return replace(get_preset(preset), codebook_size=tokenizer.codebook_size, action_dim=4,
                   context_grid=(tokenizer.context_tokens,) * 2, future_grid=(future,) * 2)


def train_worker(config: TransformerConfig, batch: int, device: str, threads: int, repeats: int
                 ) -> tuple[float, int]:
    """Median seconds of a transformer training step and the peak memory of training (bytes)."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    dev = torch.device(device)
    with PeakMemory(dev) as memory:
        step = transformer_train_step(config, batch, CONTEXT, FUTURE, dev)
        step()  # the first step also allocates gradients and optimizer state
    return time_call(step, dev, repeats, warmup=0), memory.bytes


def codec_seconds(tokenizer: torch.nn.Module, batch: int, device: torch.device, repeats: int) -> tuple[float, float]:
    """Seconds to encode and to decode a batch of clips."""
    frames = torch.rand(batch, CONTEXT + FUTURE, 3, 64, 64, device=device) * 2 - 1
    if tokenizer.config.kind == "compressive":
        context, future = frames[:, :CONTEXT], frames[:, CONTEXT:]
        ids = tokenizer.encode(context, future)
        return (time_call(lambda: tokenizer.encode(context, future), device, repeats),
                time_call(lambda: tokenizer.decode(*ids), device, repeats))
    ids = tokenizer.encode_frames(frames)  # a per-frame tokenizer codes the whole clip in one call
    return (time_call(lambda: tokenizer.encode_frames(frames), device, repeats),
            time_call(lambda: tokenizer.decode_frames(ids), device, repeats))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(parser)
    parser.add_argument("--tokenizer-scale", choices=["paper", "tiny"], default="tiny",
                        help="tiny: tokenizer_tiny blocks (fast); paper: tokenizer_64 blocks (minutes on CPU)")
    parser.add_argument("--transformer", default="transformer_tiny",
                        choices=["transformer_tiny", "transformer_small", "transformer_medium"])
    parser.add_argument("--batch", type=int, default=2, help="clips per training step, rollout and codec call")
    parser.add_argument("--future", type=int, default=FUTURE, help="frames generated per rollout")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats (the median is reported)")
    args = parser.parse_args()
    if args.quick:
        args.future, args.repeats = 2, 1
    device = setup(args, "tokenizer efficiency")
    print(f"{args.tokenizer_scale} tokenizers, {args.transformer}, batch {args.batch}, clips of {CONTEXT} context + "
          f"{FUTURE} future frames at 64x64; generation: {args.future} frames; ratios vs per-frame 16x16\n")

    results = {}
    for name, tok_config in tokenizers(args.tokenizer_scale).items():
        config = transformer_for(args.transformer, tok_config)
        tokens = SequenceLayout(config.codebook_size, config.context_grid, config.future_grid).length(CONTEXT, FUTURE)
        try:
            train_s, peak = run_isolated(train_worker, config, args.batch, args.device, args.threads, args.repeats)
        except (BrokenProcessPool, torch.OutOfMemoryError):
            train_s, peak = float("nan"), float("nan")  # out of memory, as the paper's 16x16 row
        tokenizer = tok_config.build().to(device).eval()
        transformer = config.build().to(device)
        torch.nn.init.normal_(transformer.action_proj.weight, std=0.02)
        world = WorldModel(tokenizer, transformer, cache="kept")
        measure_rollout(world, min(args.batch, 2), 1)  # warm-up
        gen = measure_rollout(world, args.batch, args.future)
        with torch.inference_mode():
            encode_s, decode_s = codec_seconds(tokenizer, args.batch, device, args.repeats)
        results[name] = {"tokens": tokens, "train": train_s, "peak": peak / 2**20, "reset": gen["prefill"],
                         "generate": (gen["steps"] - gen["decode"]) / args.future,
                         "decode": gen["decode"] / args.future,
                         "tokenize": encode_s / args.batch, "detokenize": decode_s / args.batch}
        print(f"  {name}: done", flush=True)

    base = results["per-frame 16x16"]
    columns = {"tokens": ("tokens / clip", "d"), "train": ("train step s", ".3g"), "peak": ("train peak MiB", ".0f"),
               "reset": ("reset s", ".3g"), "generate": ("generate s / frame", ".3g"),
               "decode": ("decode s / frame", ".3g"), "tokenize": ("tokenize s / clip", ".3g"),
               "detokenize": ("detokenize s / clip", ".3g")}
    rows = [[name] + [with_ratio(r[key], base[key], fmt) for key, (_, fmt) in columns.items()]
            for name, r in results.items()]
    print()
    print(markdown_table(["tokenizer"] + [title for title, _ in columns.values()], rows))
    memory = "torch.cuda.max_memory_allocated" if device.type == "cuda" else "resident-set growth"
    print(f"\ntrain peak: {memory} of a fresh training process; n/a: the process died (out of memory)")


if __name__ == "__main__":
    main()
