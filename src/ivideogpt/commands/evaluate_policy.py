"""`ivideogpt evaluate-policy`: play controllers inside the world model and in Push-T, compare their returns.

For each controller (random, hold-still, the world-model planner) and episode, the same start is
played in the real simulator and inside the world model; the table gives mean predicted and real
returns and their correlation over episodes, `results.json` every episode.
"""

from __future__ import annotations

import argparse

HELP = "run controllers inside the world model and in Push-T: predicted vs real return and their correlation"
CONTROLLERS = ("world-model", "random", "hold-still")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ivideogpt.commands.plan import add_planning_arguments

    parser.add_argument("--checkpoint", required=True, help="world-model checkpoint (or run) directory")
    parser.add_argument("--controllers", default="random,hold-still",
                        help=f"comma-separated subset of {', '.join(CONTROLLERS)} (world-model: CEM with the "
                             f"planning flags below, planning from imagined frames inside the model)")
    parser.add_argument("--episodes", type=int, default=10, help="episodes per controller")
    parser.add_argument("--max-steps", type=int, default=30, help="actions per episode")
    parser.add_argument("--out", default="outputs/policy_eval", help="output directory (results.json, videos/)")
    parser.add_argument("--videos", type=int, default=0, help="episodes per controller to record (model | real)")
    parser.add_argument("--video-format", default="mp4", choices=["mp4", "gif"])
    add_planning_arguments(parser)


def run(args: argparse.Namespace) -> int:
    import torch

    from ivideogpt.commands.plan import cem_config, check_horizon, load_world_model, plan_settings
    from ivideogpt.planning.experiment import make_controllers
    from ivideogpt.planning.policy_eval import ImaginedPushT, evaluate_policies, format_returns_table
    from ivideogpt.planning.pusht import make_pusht

    controllers = tuple(c.strip() for c in args.controllers.split(",") if c.strip())
    unknown = set(controllers) - set(CONTROLLERS)
    if unknown or not controllers:
        raise ValueError(f"--controllers must name some of {', '.join(CONTROLLERS)}, got {args.controllers!r}")
    torch.manual_seed(args.seed)
    world_model = load_world_model(args.checkpoint, args.device, args.context_frames, args.temperature,
                                   args.precision)
    settings = plan_settings(args, controllers, world_model)
    cem = cem_config(args)
    if "world-model" in controllers:
        check_horizon(cem, world_model)
    real_env = make_pusht(settings.size, action_repeat=settings.action_repeat)
    imagined_env = ImaginedPushT(world_model.model, action_low=world_model.action_low,
                                 action_high=world_model.action_high, size=settings.size, seed=args.seed)
    try:
        report = evaluate_policies(real_env, imagined_env, make_controllers(settings, cem, world_model),
                                   make_controllers(settings, cem, world_model), settings, args.out)
    finally:
        real_env.close()
        imagined_env.close()
    print(format_returns_table(report))
    print(f"results: {args.out}/results.json")
    return 0
