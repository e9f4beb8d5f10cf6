"""`ivideogpt plan`: CEM model-predictive control inside the world model, closed loop in Push-T.

Compares the world-model planner with random actions, holding still and the simulator oracle (the
same CEM settings, the real simulator as the model), prints a table, and writes `results.json` plus
side-by-side videos of real and imagined trajectories under `--out`.
"""

from __future__ import annotations

import argparse
from typing import Any

HELP = "plan with CEM MPC in the world model (closed loop in Push-T) vs random, hold-still and the simulator oracle"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", help="world-model checkpoint (or run) directory")
    parser.add_argument("--env", default="pusht", choices=["pusht"], help="environment to control")
    parser.add_argument("--episodes", type=int, default=5, help="episodes per controller")
    parser.add_argument("--max-steps", type=int, default=50, help="planned actions per episode")
    parser.add_argument("--out", default="outputs/plan", help="output directory (results.json, videos/)")
    parser.add_argument("--controllers", default="world-model,random,hold-still,oracle",
                        help="comma-separated subset of world-model, random, hold-still, oracle")
    parser.add_argument("--videos", type=int, default=2, help="episodes to record as video")
    parser.add_argument("--video-format", default="mp4", choices=["mp4", "gif"])
    add_planning_arguments(parser)


def add_precision_argument(parser: argparse.ArgumentParser) -> None:
    """--precision, the same for every command that steps a world model."""
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32",
                        help="bf16: bf16 transformer and tokenizer autocast; ~1.8x faster world-model steps on "
                             "CPUs with AVX-512 BF16 (docs/performance.md)")


def add_planning_arguments(parser: argparse.ArgumentParser) -> None:
    """Objective, episode start, CEM, action-interface and model flags (shared with `evaluate-policy`)."""
    parser.add_argument("--objective", default="reward", choices=["reward", "goal"],
                        help="score: predicted reward sum, or distance to the goal image (see --goal-metric)")
    parser.add_argument("--goal-metric", default="pixel", choices=["pixel", "lpips", "pixel+lpips"],
                        help="distance to the goal image for --objective goal (lpips needs local VGG16 weights)")
    parser.add_argument("--lpips", help="VGG16 weights file for --goal-metric lpips (else the default local places)")
    parser.add_argument("--start", default="reset", choices=["reset", "near-goal"],
                        help="episode starts: the env's random reset, or block next to the goal (easier)")
    cem = _cem_flag_help()
    parser.add_argument("--horizon", type=int, help=cem["horizon"])
    parser.add_argument("--candidates", type=int, help=cem["candidates"])
    parser.add_argument("--elites", type=int, help=cem["elites"])
    parser.add_argument("--iterations", type=int, help=cem["iterations"])
    parser.add_argument("--execute-steps", type=int, help=cem["execute_steps"])
    parser.add_argument("--init-std", type=float, help=cem["init_std"])
    parser.add_argument("--increments", action=argparse.BooleanOptionalAction, help=cem["increments"])
    parser.add_argument("--noise-beta", type=float, help=cem["noise_beta"])
    parser.add_argument("--momentum", type=float, help=cem["momentum"])
    parser.add_argument("--keep-elites", type=int, help=cem["keep_elites"])
    parser.add_argument("--execute", choices=["mean", "best"], help=cem["execute"])
    parser.add_argument("--action-repeat", type=int,
                        help="simulator steps per action (default: the model's training data's, else 1)")
    parser.add_argument("--context-frames", type=int, help="context frames for the world model (default: its own)")
    parser.add_argument("--temperature", type=float, default=0.5,
                        help="sampling temperature of imagined rollouts (below 1: the model's likelier futures)")
    add_precision_argument(parser)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)


CEM_FLAGS = ("horizon", "candidates", "elites", "iterations", "execute_steps", "init_std", "increments", "noise_beta",
             "momentum", "keep_elites", "execute")


def _cem_flag_help() -> dict[str, str]:
    """Help for each CEM flag: the field's own documentation in `CEMConfig` and Push-T's default."""
    from ivideogpt.configuration import field_docs
    from ivideogpt.planning.cem import CEMConfig
    from ivideogpt.planning.experiment import pusht_cem_config

    docs, defaults = field_docs(CEMConfig), pusht_cem_config()
    return {name: f"{docs.get(name, '')} (Push-T default: {getattr(defaults, name)})".replace("%", "%%")
            for name in CEM_FLAGS}


def cem_config(args: argparse.Namespace) -> Any:
    """The Push-T CEM settings (`pusht_cem_config`) with the flags given on the command line."""
    from ivideogpt.planning.experiment import pusht_cem_config

    given = {name: getattr(args, name) for name in CEM_FLAGS if getattr(args, name) is not None}
    return pusht_cem_config(seed=args.seed, **given)


def load_world_model(checkpoint: str, device: str, context_frames: int | None = None, temperature: float = 1.0,
                     precision: str = "fp32") -> Any:
    """Checkpoint directory -> `LoadedWorldModel` (model on `device` in eval mode, context length, data facts).

    The action bounds and action repeat come from the training data's metadata.json when it can be
    found; a model trained on normalised actions without it gets Push-T's own action box.
    """
    from ivideogpt.planning.experiment import LoadedWorldModel
    from ivideogpt.train import load_model

    if temperature < 0:
        raise ValueError(f"--temperature must be >= 0, got {temperature}")
    if context_frames is not None and context_frames < 1:
        raise ValueError(f"--context-frames must be >= 1, got {context_frames}")
    model = load_model(checkpoint)
    if not (hasattr(model, "reset") and hasattr(model, "step")):
        raise ValueError(f"{checkpoint} does not hold an interactive world model (reset/step), "
                         f"got {type(model).__name__}")
    model = model.to(device)
    model.temperature = temperature
    model.set_precision(precision)
    low, high, repeat = training_action_facts(checkpoint)
    if context_frames is None:
        context_frames = int(getattr(model, "num_context", None) or getattr(model, "context_frames", 2))
    return LoadedWorldModel(model=model, context_frames=context_frames, action_low=low, action_high=high,
                            action_repeat=repeat)


def check_horizon(cem: Any, world_model: Any) -> None:
    """Refuse CEM rollouts longer than the model's training window: past it the transformer reads positions it
    never saw, and candidates are scored on what it makes of them."""
    if world_model is not None:
        check_within_window(getattr(world_model.model, "window", None), world_model.context_frames, cem.horizon)


def check_within_window(window: int | None, context: int, horizon: int, other_way: str = "") -> None:
    """Refuse (ValueError naming the longest --horizon that fits) `context` + `horizon` frames past the model's
    `window`-frame training window (its clip length, context included; None: unknown, never refused)."""
    if window is not None and context + horizon > window:
        raise ValueError(f"--horizon {horizon} after {context} context frame(s) goes past the model's {window}-frame "
                         f"training window: pass --horizon {window - context} or less{other_way}")


def training_action_facts(checkpoint: str) -> tuple[Any, Any, int | None]:
    """(action low, action high, action repeat) the checkpoint's model was trained with, as far as known.

    Bounds are None when the training data's actions were not normalised; the repeat is None when the
    data's metadata.json is found neither beside the checkpoint (an exported model) nor in its data.
    """
    import numpy as np

    from ivideogpt.data.actions import ActionBounds
    from ivideogpt.planning.pusht import ACTION_HIGH, ACTION_LOW
    from ivideogpt.train.checkpoint import resolve
    from ivideogpt.train.experiments import read_experiment
    from ivideogpt.train.models import training_metadata

    data = read_experiment(resolve(checkpoint), strict=False).data
    source = data.sources[0]
    metadata = training_metadata(checkpoint)
    repeat = None if metadata is None else int(metadata.get("action_repeat", 1))
    if not source.normalize_actions:
        return None, None, repeat
    bounds = ActionBounds.from_metadata(metadata)
    if bounds is None:
        return np.full(2, ACTION_LOW, np.float32), np.full(2, ACTION_HIGH, np.float32), repeat
    return bounds.low, bounds.high, repeat


def plan_settings(args: argparse.Namespace, controllers: tuple[str, ...], world_model: Any) -> Any:
    """The `PlanSettings` of the parsed flags (the action repeat resolved against the world model's data)."""
    from ivideogpt.planning.experiment import PlanSettings

    return PlanSettings(episodes=args.episodes, max_steps=args.max_steps, start=args.start,
                        objective=args.objective, goal_metric=args.goal_metric, lpips=args.lpips,
                        action_repeat=resolve_action_repeat(args.action_repeat, world_model), seed=args.seed,
                        videos=args.videos, video_format=args.video_format, controllers=controllers)


def resolve_action_repeat(flag: int | None, world_model: Any) -> int:
    """--action-repeat, else the world model's training data's, else 1."""
    if flag is not None:
        if flag < 1:
            raise ValueError(f"--action-repeat must be >= 1, got {flag}")
        return flag
    known = None if world_model is None else world_model.action_repeat
    return known or 1


def run(args: argparse.Namespace) -> int:
    import torch

    from ivideogpt.planning.experiment import format_table, make_controllers, run_experiment
    from ivideogpt.planning.pusht import make_pusht

    torch.manual_seed(args.seed)
    controllers = tuple(c.strip() for c in args.controllers.split(",") if c.strip())
    world_model = None
    if "world-model" in controllers:
        if not args.checkpoint:
            raise ValueError("--checkpoint DIR is needed for the world-model planner "
                             "(or pass --controllers random,hold-still,oracle)")
        world_model = load_world_model(args.checkpoint, args.device, args.context_frames, args.temperature,
                                       args.precision)
    settings = plan_settings(args, controllers, world_model)
    cem = cem_config(args)
    check_horizon(cem, world_model)
    env = make_pusht(settings.size, action_repeat=settings.action_repeat)
    try:
        model_facts = None if world_model is None else {
            "checkpoint": args.checkpoint, "temperature": args.temperature, "context_frames": world_model.context_frames,
            "precision": args.precision}
        report = run_experiment(env, make_controllers(settings, cem, world_model), settings, args.out, cem=cem,
                                world_model=model_facts)
    finally:
        env.close()
    print(format_table(report))
    print(f"results: {args.out}/results.json; videos: {', '.join(report['videos']) or 'none'}")
    return 0
