"""Rollouts of a released iVideoGPT snapshot: our KV cache kept across frames vs re-processing the prefix.

    python benchmarks/official_rollout.py --quick                       # the act-cond test fixture, batch 1 and 4
    python benchmarks/official_rollout.py SNAPSHOT_DIR --batches 1 16   # a downloaded snapshot
    python benchmarks/official_rollout.py --paper-size --batches 1 16   # released 64x64 + small sizes, random weights

The snapshot (default: `../shared/fixtures/official-tiny/act-cond`, 2 layers, hidden 32) is loaded
with `load_model`, so both paths run the same imported weights in the released token layout.
"kept" is `WorldModel(cache="kept")`; "per_frame" re-processes the whole prefix with a fresh cache
at every frame, which is what the paper code's `generate` does (one HF `generate` call per frame).
`--paper-size` builds the released architecture at its published sizes (tokenizer_64 and the small
Llama of `paper-configs/`, 4-d actions, reward head) with random weights instead of loading a snapshot.
Frames/s count future frames over the batch; "transformer" excludes the tokenizer's decode, "step"
includes it. The last column is kept over per_frame.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from _common import add_common_args, markdown_table, measure_rollout, setup

from ivideogpt.official.mapping import tokenizer_config, transformer_config
from ivideogpt.official.snapshot import read_json
from ivideogpt.train import load_model
from ivideogpt.world_model import WorldModel

FIXTURES = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "official-tiny"


def paper_size_world() -> WorldModel:
    """The released architecture at its published 64x64 / small sizes, random weights, 4-d actions, reward head."""
    configs = FIXTURES / "paper-configs"
    tok_config = tokenizer_config(read_json(configs / "tokenizer_64_config.json"))
    llama = {**read_json(configs / "transformer_small_config.json"), "vocab_size": 2 * tok_config.codebook_size + 2}
    shapes = {"action_linear.weight": torch.zeros(llama["hidden_size"], 4), "reward_linear.weight": torch.zeros(1)}
    transformer = transformer_config(llama, shapes, tok_config).build()
    torch.nn.init.normal_(transformer.action_proj.weight, std=0.02)
    world = WorldModel(tok_config.build(), transformer)
    world.num_context = tok_config.context_frames
    return world


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(parser)
    parser.add_argument("snapshot", nargs="?", default=str(FIXTURES / "act-cond"),
                        help="released snapshot folder or imported checkpoint")
    parser.add_argument("--paper-size", action="store_true", help="the published sizes with random weights")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--future", type=int, default=8, help="future frames per rollout")
    args = parser.parse_args()
    if args.quick:
        args.batches, args.future = [1, 4], 4
    device = setup(args, "released-snapshot rollouts")
    world = paper_size_world() if args.paper_size else load_model(args.snapshot)
    name = "paper-size released architecture (random weights)" if args.paper_size else args.snapshot
    world.tokenizer.to(device)
    world.transformer.to(device)
    print(f"{name}: {world.num_context} context + {args.future} future frames at "
          f"{world.tokenizer.config.resolution}x{world.tokenizer.config.resolution}, fp32\n")
    rows = []
    for batch in args.batches:
        rates = {}
        for mode in ("kept", "per_frame"):
            world.cache_mode = mode
            measure_rollout(world, 1, 1, world.num_context)  # warm-up
            t = measure_rollout(world, batch, args.future, world.num_context)
            frames = batch * args.future
            rates[mode] = (frames / (t["steps"] - t["decode"]), frames / t["steps"])
        speedup = " / ".join(f"{k / p:.1f}x" for k, p in zip(rates["kept"], rates["per_frame"]))
        for mode, (transformer_rate, step_rate) in rates.items():
            rows.append([batch, mode, f"{transformer_rate:.2f}", f"{step_rate:.2f}", speedup if mode == "kept" else "-"])
    world.cache_mode = "kept"
    print(markdown_table(["batch", "cache", "transformer f/s", "step f/s", "kept / per_frame (transformer / step)"],
                         rows))


if __name__ == "__main__":
    main()
