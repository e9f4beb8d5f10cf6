"""How well a world model ranks candidate plans, against the simulator, for two ways of sampling them.

    python benchmarks/plan_ranking.py --checkpoint checkpoints/pusht            # 16 near-goal states
    python benchmarks/plan_ranking.py --checkpoint checkpoints/pusht --quick    # 3 states, smoke run
    python benchmarks/plan_ranking.py --objective goal --start on-goal           # ranking by the goal image

CEM can only be as good as the ranking its model gives to the candidates it samples. For each start
state (near-goal Push-T starts, after a few random steps), this draws the candidates of one CEM
iteration two ways (std 0.15 of the half action range for positions, the spread `plan` used
before increments; `pusht_cem_config`'s for increments):
- `positions`: every step an independent target position around the agent (white noise);
- `increments`: per-step changes summed from the agent's position (drifting paths, as in demonstrations).
It scores them by the world model's predicted return and by the simulator's real one (`PushTOracle`,
the same action repeat), and prints, per prefix of the horizon, the Spearman correlation of the two
and the real return gained by executing the model's top pick, as a fraction of what the simulator's
own top pick gains (both over the candidates' mean): the share of the oracle's choice the model keeps.

`--objective goal` scores the candidates instead by the pixel distance of their frames (imagined, and
rendered by the simulator) to the goal image, as `plan --objective goal` does; the oracle's pick is
then the simulator's best by that distance, and one more column, the Spearman correlation of the
distance with the real return in the simulator, tells how well the objective itself fits the task.
`--start on-goal` starts with the block a few pixels from the goal pose and the agent 50-90 pixels
away, where a planner should hold the block rather than push it on.
"""

from __future__ import annotations

import argparse
import math
import warnings

import numpy as np
import torch
from _common import add_common_args, markdown_table, setup
from scipy.stats import ConstantInputWarning, spearmanr
from tqdm import tqdm

from ivideogpt.commands.plan import load_world_model
from ivideogpt.frames import to_model
from ivideogpt.planning.dynamics import WorldModelDynamics, context_from_history
from ivideogpt.planning.experiment import pusht_cem_config, start_options
from ivideogpt.planning.objectives import make_objective
from ivideogpt.planning.pusht import (ACTION_HIGH, ACTION_LOW, GOAL_POSE, PushTOracle, agent_position, goal_frame,
                                      make_pusht, snapshot)

SHAPES = {"positions": 0.15, "increments": pusht_cem_config().init_std}  # std, fraction of the half range


def candidates(shape: str, anchor: np.ndarray, count: int, horizon: int, rng: np.random.Generator) -> torch.Tensor:
    """(count, horizon, 2) target positions: independent around `anchor`, or increments summed from it."""
    std = SHAPES[shape] * (ACTION_HIGH - ACTION_LOW) / 2
    noise = rng.normal(0.0, std, (count, horizon, 2))
    paths = anchor + (noise.cumsum(1) if shape == "increments" else noise)
    return torch.as_tensor(paths, dtype=torch.float32).clamp(ACTION_LOW, ACTION_HIGH)


def on_goal_options(seed: int) -> dict[str, list[float]]:
    """Reset options with the block within 8 pixels and 0.1 rad of the goal pose and the agent 50-90 pixels from it."""
    rng = np.random.default_rng(1000 + seed)
    x, y = GOAL_POSE[0] + rng.uniform(-8, 8), GOAL_POSE[1] + rng.uniform(-8, 8)
    angle = GOAL_POSE[2] + rng.uniform(-0.1, 0.1)
    distance, direction = rng.uniform(50, 90), rng.uniform(0, 2 * math.pi)
    return {"reset_to_state": [x + distance * math.cos(direction), y + distance * math.sin(direction), x, y, angle]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="checkpoints/pusht")
    parser.add_argument("--states", type=int, default=16)
    parser.add_argument("--candidates", type=int, default=48)
    parser.add_argument("--horizon", type=int, default=6)
    parser.add_argument("--temperature", type=float, default=0.5)
    parser.add_argument("--samples", type=int, default=2, help="imagined rollouts averaged per candidate")
    parser.add_argument("--objective", choices=["reward", "goal"], default="reward",
                        help="rank by return, or by pixel distance to the goal image")
    parser.add_argument("--start", choices=["near-goal", "on-goal"], default="near-goal")
    add_common_args(parser)
    args = parser.parse_args()
    warnings.filterwarnings("ignore", category=ConstantInputWarning)  # ties everywhere: rho is nan, skipped
    device = setup(args, "plan ranking")
    states = 3 if args.quick else args.states
    world_model = load_world_model(args.checkpoint, str(device), temperature=args.temperature)
    repeat = world_model.action_repeat or 1
    by_goal = args.objective == "goal"
    env, oracle = make_pusht(64, action_repeat=repeat), PushTOracle(64, render=by_goal, action_repeat=repeat)
    distance = make_objective("goal", goal=to_model(goal_frame(64))) if by_goal else None
    prefixes = sorted({1, 2, 3, args.horizon})
    found: dict[str, dict[int, list[tuple[float, ...]]]] = {s: {k: [] for k in prefixes} for s in SHAPES}
    rng = np.random.default_rng(0)
    for episode in tqdm(range(states), desc="start states"):
        options = start_options("near-goal", episode) if args.start == "near-goal" else on_goal_options(episode)
        observation, _ = env.reset(seed=episode, options=options)
        frames, actions = [observation["pixels"]], []
        for _ in range(int(rng.integers(0, 3))):  # a few small random moves: more varied states
            action = agent_position(env) + rng.normal(0.0, 20.0, 2).astype(np.float32)
            observation, *_ = env.step(action)
            frames.append(observation["pixels"])
            actions.append(action)
        context = context_from_history(frames, actions, world_model.context_frames)
        for shape in SHAPES:
            plans = candidates(shape, agent_position(env), args.candidates, args.horizon, rng)
            real_frames, real = oracle.rollout(snapshot(env), plans)
            dynamics = WorldModelDynamics(world_model.model, action_low=world_model.action_low,
                                          action_high=world_model.action_high, seed=episode, decode=by_goal)
            imagined = [dynamics.rollout(context, plans) for _ in range(args.samples)]
            for k in prefixes:
                real_k = real[:, :k].sum(1).numpy()
                if distance is None:  # rank by return
                    predicted_k = np.mean([rewards[:, :k].sum(1).numpy() for _, rewards in imagined], axis=0)
                    oracle_k = real_k
                else:  # rank by closeness to the goal image, each imagined rollout scored on its own
                    predicted_k = np.mean([distance(frames[:, :k], None).numpy() for frames, _ in imagined], axis=0)
                    oracle_k = distance(real_frames[:, :k], None).numpy()
                found[shape][k].append((spearmanr(predicted_k, oracle_k).statistic,
                                        real_k[predicted_k.argmax()] - real_k.mean(),
                                        real_k[oracle_k.argmax()] - real_k.mean(),
                                        spearmanr(oracle_k, real_k).statistic))
    rows = []
    for shape, by_prefix in found.items():
        for k, values in by_prefix.items():
            rho, picked, best, fit = (np.asarray(v, dtype=float) for v in zip(*values))
            rows.append([shape, k, f"{np.nanmean(rho):.2f}", f"{picked.mean():.3f}", f"{best.mean():.3f}",
                         f"{picked.mean() / best.mean():.0%}" if best.mean() > 0 else "n/a"]
                        + ([f"{np.nanmean(fit):.2f}"] if by_goal else []))
    scored = "pixel distance to the goal image" if by_goal else "return"
    print(f"{states} {args.start} states x {args.candidates} candidates ranked by {scored}, T {args.temperature}, "
          f"{args.samples} imagined rollouts per candidate, action repeat {repeat}\n")
    print(markdown_table(["candidates", "steps scored", "Spearman (model vs real)", "real gain of model's pick",
                          "real gain of oracle's pick", "share of oracle's"]
                         + (["Spearman (real distance vs real return)"] if by_goal else []), rows))


if __name__ == "__main__":
    main()
