"""Seconds per CEM planning step in the world model: decoding every imagined frame vs scoring rewards only.

    python benchmarks/planning_speed.py --quick        # smoke run, under ~30 s on 2 cores
    python benchmarks/planning_speed.py                # the `ivideogpt plan` defaults, 10 planning steps per path

A planning step is one `CEMPlanner.plan` call from a new context, as `ivideogpt plan` makes every
`--execute-steps` env steps: one prefill (tokenize the context, run it through the transformer once),
then per CEM iteration all candidates forked from that prefill and stepped together over the horizon.
The model has the demo's shape (`tokenizer_cpu` with 8x8 context tokens, `transformer_tiny` with the
demo's action, reward and position options) and random weights: speed does not depend on training.

Paths, all on the same model, contexts and seeds:
- `decode every frame`: the tokenizer decodes every imagined frame of every candidate (the baseline);
- `rewards only`: the reward objective needs no pixels, so the decode is skipped (`decode=False`);
- `rewards only + video`: the same, plus decoding the chosen candidate's executed frames (the video panel).
Ratios are against the baseline measured in the same run. The last column checks that the paths chose
the same actions (same seeds: decoding does not touch the sampler).
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from _common import add_common_args, markdown_table, setup, sync
from tqdm import tqdm

from ivideogpt.demo import DEMO_TRANSFORMER_OPTIONS
from ivideogpt.planning.cem import CEMPlanner
from ivideogpt.planning.dynamics import ModelContext, WorldModelDynamics
from ivideogpt.planning.experiment import pusht_cem_config
from ivideogpt.planning.objectives import RewardObjective
from ivideogpt.tokenizer.config import tokenizer_cpu
from ivideogpt.transformer.config import transformer_tiny
from ivideogpt.world_model import CACHE_MODES, CacheMode, WorldModel


def demo_world_model(device: torch.device, cache: CacheMode = "kept") -> WorldModel:
    """Random-weight world model of the demo's shape (context 8x8 + future 4x4 tokens, 2-d actions, reward head)."""
    tokenizer = replace(tokenizer_cpu(), context_tokens=8).build()
    facts = tokenizer.describe()
    transformer = transformer_tiny(codebook_size=facts["codebook_size"], context_grid=tuple(facts["context_tokens"]),
                                   future_grid=tuple(facts["future_tokens"]), **DEMO_TRANSFORMER_OPTIONS).build()
    return WorldModel(tokenizer.to(device), transformer.to(device), temperature=0.7, seed=0, cache=cache)


@dataclass
class Path:
    """One way of planning: its planner, and the seconds and actions of each timed planning step."""

    name: str
    planner: CEMPlanner
    dynamics: WorldModelDynamics
    video: bool
    seconds: list[float] = field(default_factory=list)
    chosen: list[torch.Tensor] = field(default_factory=list)

    def plan(self, context: ModelContext, step: int, device: torch.device) -> None:
        """One planning step (plus the imagined video frames when `video`), timed."""
        self.planner.reset(seed=step)
        start = time.perf_counter()
        result = self.planner.plan(context, init_mean=torch.full((2,), 256.0))
        if self.video:
            self.dynamics.imagined(result, self.planner.config.execute_steps)
        sync(device)
        self.seconds.append(time.perf_counter() - start)
        self.chosen.append(result.actions)


def make_path(name: str, world: WorldModel, decode: bool, video: bool, args: argparse.Namespace) -> Path:
    cem = pusht_cem_config(horizon=args.horizon, candidates=args.candidates, iterations=args.iterations)
    dynamics = WorldModelDynamics(world, action_low=np.zeros(2), action_high=np.full(2, 512.0), decode=decode)
    return Path(name, CEMPlanner(dynamics, RewardObjective(), cem), dynamics, video)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(parser)
    parser.add_argument("--steps", type=int, default=10, help="timed planning steps per path")
    parser.add_argument("--candidates", type=int, default=32)
    parser.add_argument("--horizon", type=int, default=6)
    parser.add_argument("--iterations", type=int, default=2)
    parser.add_argument("--cache", choices=CACHE_MODES, default="kept",
                        help="the world model's cache (static: one captured CUDA graph per frame on a GPU)")
    args = parser.parse_args()
    if args.quick:
        args.steps = 2
    device = setup(args, "planning speed")
    print(f"CEM: {args.candidates} candidates x {args.horizon} steps x {args.iterations} iterations, "
          f"one prefill per planning step; demo-shaped model, random weights\n")
    world = demo_world_model(device, args.cache)
    generator = torch.Generator().manual_seed(0)
    contexts = [ModelContext(torch.rand(1, 3, 64, 64, generator=generator) * 2 - 1) for _ in range(args.steps + 1)]
    paths = [make_path("decode every frame", world, True, False, args),
             make_path("rewards only", world, False, False, args),
             make_path("rewards only + video", world, False, True, args)]
    for step, context in enumerate(tqdm(contexts, desc="planning steps")):
        for path in paths:  # interleaved, so a change in the machine's load hits every path alike
            path.plan(context, step, device)
    rows, baseline = [], paths[0]
    for path in paths:
        seconds = path.seconds[1:]  # the first step of each path is a warm-up
        median = statistics.median(seconds)
        same = all(torch.equal(a, b) for a, b in zip(path.chosen, baseline.chosen))
        rows.append([path.name, f"{median:.3f}", f"{min(seconds):.3f}",
                     f"{statistics.median(baseline.seconds[1:]) / median:.2f}x", "yes" if same else "NO"])
    print()
    print(markdown_table(["path", "s / planning step (median)", "fastest", "speed-up", "same actions"], rows))


if __name__ == "__main__":
    main()
