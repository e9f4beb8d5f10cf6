"""`ivideogpt plan`: CEM model-predictive control inside the world model, closed loop in Push-T.

Compares the world-model planner with random actions and with the simulator oracle (the same CEM
settings, the real simulator as the model), prints a table, and writes `results.json` plus
side-by-side videos of real and imagined trajectories under `--out`.
"""

from __future__ import annotations

import argparse
from typing import Any

HELP = "plan with CEM MPC in the world model (closed loop in Push-T) vs random and the simulator oracle"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", help="world-model checkpoint (or run) directory")
    parser.add_argument("--env", default="pusht", choices=["pusht"], help="environment to control")
    parser.add_argument("--episodes", type=int, default=5, help="episodes per controller")
    parser.add_argument("--max-steps", type=int, default=50, help="env steps per episode")
    parser.add_argument("--out", default="outputs/plan", help="output directory (results.json, videos/)")
    parser.add_argument("--controllers", default="world-model,random,oracle",
                        help="comma-separated subset of world-model, random, oracle")
    parser.add_argument("--objective", default="reward", choices=["reward", "goal"],
                        help="score: predicted reward sum, or distance to the goal image (MSE + LPIPS if available)")
    parser.add_argument("--lpips", help="VGG16 weights for the perceptual goal cost (else default locations)")
    parser.add_argument("--start", default="reset", choices=["reset", "near-goal"],
                        help="episode starts: the env's random reset, or block next to the goal (easier)")
    parser.add_argument("--horizon", type=int, default=6)
    parser.add_argument("--candidates", type=int, default=32)
    parser.add_argument("--elites", type=int, default=4)
    parser.add_argument("--iterations", type=int, default=2)
    parser.add_argument("--execute-steps", type=int, default=2, help="actions executed per plan before replanning")
    parser.add_argument("--init-std", type=float, default=0.15, help="initial std, fraction of the half action range")
    parser.add_argument("--momentum", type=float, default=0.1)
    parser.add_argument("--keep-elites", type=int, default=0, help="elites carried into the next CEM iteration")
    parser.add_argument("--execute", default="mean", choices=["mean", "best"],
                        help="run the refitted mean sequence or the best candidate")
    parser.add_argument("--context-frames", type=int, help="context frames for the world model (default: its own)")
    parser.add_argument("--temperature", type=float, default=1.0, help="sampling temperature of imagined rollouts")
    parser.add_argument("--videos", type=int, default=2, help="episodes to record as video")
    parser.add_argument("--video-format", default="mp4", choices=["mp4", "gif"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)


def load_world_model(checkpoint: str, device: str, context_frames: int | None = None, temperature: float = 1.0
                     ) -> Any:
    """Checkpoint directory -> `LoadedWorldModel` (model in eval mode, context length, action bounds)."""
    from ivideogpt.planning.experiment import LoadedWorldModel
    from ivideogpt.train.checkpoint import load_model

    model = load_model(checkpoint)
    if not (hasattr(model, "reset") and hasattr(model, "step")):
        raise SystemExit(f"{checkpoint} does not hold an interactive world model (reset/step), "
                         f"got {type(model).__name__}")
    model = model.to(device).eval() if hasattr(model, "eval") else model
    if temperature < 0:
        raise SystemExit(f"--temperature must be >= 0, got {temperature}")
    model.temperature = temperature
    bounds = getattr(model, "action_bounds", None)
    return LoadedWorldModel(
        model=model,
        context_frames=context_frames or int(getattr(model, "num_context", None) or getattr(model, "context_frames", 2)),
        action_low=None if bounds is None else bounds.low,
        action_high=None if bounds is None else bounds.high,
    )


def run(args: argparse.Namespace) -> int:
    import torch

    from ivideogpt.planning.experiment import (
        PlanSettings, format_table, make_controllers, pusht_cem_config, run_experiment,
    )
    from ivideogpt.planning.pusht import make_pusht

    torch.manual_seed(args.seed)
    settings = PlanSettings(episodes=args.episodes, max_steps=args.max_steps, start=args.start,
                            objective=args.objective, lpips=args.lpips, seed=args.seed, videos=args.videos,
                            video_format=args.video_format,
                            controllers=tuple(c.strip() for c in args.controllers.split(",") if c.strip()))
    cem = pusht_cem_config(horizon=args.horizon, candidates=args.candidates, elites=args.elites,
                           iterations=args.iterations, execute_steps=args.execute_steps, init_std=args.init_std,
                           momentum=args.momentum, keep_elites=args.keep_elites, execute=args.execute,
                           seed=args.seed)
    world_model = None
    if "world-model" in settings.controllers:
        if not args.checkpoint:
            raise SystemExit("--checkpoint DIR is needed for the world-model planner "
                             "(or pass --controllers random,oracle)")
        world_model = load_world_model(args.checkpoint, args.device, args.context_frames, args.temperature)
    env = make_pusht(settings.size)
    try:
        report = run_experiment(env, make_controllers(settings, cem, world_model), settings, args.out, cem=cem)
    finally:
        env.close()
    print(format_table(report))
    print(f"results: {args.out}/results.json; videos: {', '.join(report['videos']) or 'none'}")
    return 0
