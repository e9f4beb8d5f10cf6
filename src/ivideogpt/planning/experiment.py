"""Push-T planning experiment: world-model CEM vs random actions, holding still and the simulator oracle.

Every controller plays the same episodes (same seeds, so the same start states); the report holds
success rate and final coverage / reward per controller, and each recorded episode gets one video
with the panels [world-model real | world-model imagined | oracle real | random real].
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from ivideogpt.frames import to_model
from ivideogpt.planning.cem import CEMConfig, CEMPlanner
from ivideogpt.planning.dynamics import ModelContext, WorldModelDynamics, context_from_history
from ivideogpt.planning.loop import (
    Controller, EpisodeResult, HoldStillController, PlannerController, RandomController, run_episode, summarize,
)
from ivideogpt.planning.objectives import make_objective
from ivideogpt.planning.pusht import (
    ACTION_HIGH, ACTION_LOW, PushTOracle, agent_position, coverage, goal_frame, snapshot,
)
from ivideogpt.media import side_by_side, write_video

CONTROLLERS = ("world-model", "random", "hold-still", "oracle")
STARTS = ("reset", "near-goal")


@dataclass
class LoadedWorldModel:
    """A world model ready to plan with, and what the planner must know about its training data."""

    model: Any
    context_frames: int = 2
    action_low: np.ndarray | None = None
    """raw action bounds the model's actions were normalised with (None: actions given as is)."""
    action_high: np.ndarray | None = None
    action_repeat: int | None = None
    """simulator steps per frame of the model's training data (None: unknown)."""
    reward_transform: Callable[[torch.Tensor], torch.Tensor] | None = None


@dataclass
class PlanSettings:
    """What `ivideogpt plan` runs (the CEM settings live in `CEMConfig`)."""

    episodes: int = 5
    max_steps: int = 50
    start: str = "reset"
    """`reset`: gym-pusht's random starts; `near-goal`: block next to the goal, agent behind it (easier)."""
    objective: str = "reward"
    goal_metric: str = "pixel"
    """distance to the goal image for `objective="goal"`: pixel, lpips or pixel+lpips."""
    lpips: str | None = None
    action_repeat: int = 1
    """simulator steps per planned action, for every controller (the world model's frame step)."""
    size: int = 64
    seed: int = 0
    videos: int = 2
    """episodes recorded as video (the first ones)."""
    video_format: str = "mp4"
    controllers: tuple[str, ...] = CONTROLLERS

    def __post_init__(self) -> None:
        if self.action_repeat < 1:
            raise ValueError(f"action_repeat must be >= 1, got {self.action_repeat}")
        if self.episodes < 1 or self.max_steps < 1 or self.videos < 0:
            raise ValueError(f"episodes and max_steps must be >= 1 and videos >= 0, got {self.episodes}, "
                             f"{self.max_steps}, {self.videos}")
        if self.start not in STARTS:
            raise ValueError(f"start must be one of {STARTS}, got {self.start!r}")
        if self.video_format not in ("mp4", "gif"):
            raise ValueError(f"video_format must be 'mp4' or 'gif', got {self.video_format!r}")
        unknown = set(self.controllers) - set(CONTROLLERS)
        if unknown or not self.controllers:
            raise ValueError(f"controllers must be a non-empty subset of {CONTROLLERS}, got {self.controllers}")


def pusht_cem_config(**overrides: Any) -> CEMConfig:
    """CEM settings for Push-T: target positions in [0, 512]^2, searched as increments from the agent.

    Increments (drifting paths) rather than independent positions around the agent: the demonstrations
    a world model learns from move the target smoothly, and its predictions rank such paths far better
    (docs/planning.md measures both).
    """
    settings: dict[str, Any] = dict(action_dim=2, action_low=(ACTION_LOW,), action_high=(ACTION_HIGH,),
                                    increments=True, init_std=0.1, execute_steps=2, horizon=6, candidates=32,
                                    elites=4, iterations=2)
    settings.update(overrides)
    return CEMConfig(**settings)


def start_options(start: str, episode_seed: int) -> dict[str, Any] | None:
    """Reset options for an episode: None (env's own random start) or a near-goal `reset_to_state`."""
    if start == "reset":
        return None
    rng = np.random.default_rng(episode_seed)
    bx, by = 256 + rng.uniform(-40, 40), 300 + rng.uniform(-20, 30)
    angle = math.pi / 4 + rng.uniform(-0.4, 0.4)
    ax, ay = bx + rng.uniform(-30, 30), by + 100 + rng.uniform(0, 40)
    return {"reset_to_state": [ax, ay, bx, by, angle]}


def model_context_fn(world_model: LoadedWorldModel) -> Callable[[Any, list[np.ndarray], list[np.ndarray]], ModelContext]:
    """The world-model planner's start state from the real history; a model that needs an exact
    context count (a released tokenizer) sees the first frame repeated with a hold-still action."""
    fixed = world_model.model.tokenizer.fixed_context_frames is not None

    def state(env: Any, frames: list[np.ndarray], actions: list[np.ndarray]) -> ModelContext:
        hold = agent_position(env) if fixed else None
        return context_from_history(frames, actions, world_model.context_frames, fill_action=hold)

    return state


def make_controllers(settings: PlanSettings, cem: CEMConfig, world_model: LoadedWorldModel | None) -> list[Controller]:
    """The controllers named in `settings.controllers`, all with the same CEM settings and objective."""
    goal = to_model(goal_frame(settings.size)) if settings.objective == "goal" else None
    objective = make_objective(settings.objective, goal=goal, goal_metric=settings.goal_metric,
                               lpips_path=settings.lpips)
    controllers: list[Controller] = []
    for name in settings.controllers:
        if name == "world-model":
            if world_model is None:
                raise ValueError("the world-model controller needs a checkpoint (--checkpoint DIR)")
            wm = world_model
            dynamics = WorldModelDynamics(wm.model, action_low=wm.action_low, action_high=wm.action_high,
                                          reward_transform=wm.reward_transform, seed=settings.seed,
                                          decode=objective.needs_frames)
            controllers.append(PlannerController(CEMPlanner(dynamics, objective, cem), model_context_fn(wm),
                                                 agent_position, name=name, imagine=dynamics.imagined))
        elif name == "oracle":
            oracle = PushTOracle(settings.size, render=objective.needs_frames, action_repeat=settings.action_repeat)
            controllers.append(PlannerController(CEMPlanner(oracle, objective, cem), lambda env, *_: snapshot(env),
                                                 agent_position, name=name))
        elif name == "hold-still":
            controllers.append(HoldStillController(agent_position))
        else:
            controllers.append(RandomController(np.full(2, ACTION_LOW), np.full(2, ACTION_HIGH), seed=settings.seed))
    return controllers


def run_experiment(env: Any, controllers: list[Controller], settings: PlanSettings, out_dir: str | Path,
                   cem: CEMConfig | None = None, log: Callable[[str], None] = print,
                   world_model: dict[str, Any] | None = None) -> dict[str, Any]:
    """Play `settings.episodes` episodes per controller; write `results.json` and videos under `out_dir`.

    `world_model` (checkpoint, sampling temperature, ...) is recorded in the report as given.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, list[EpisodeResult]] = {c.name: [] for c in controllers}
    videos: list[str] = []
    for episode in range(settings.episodes):
        seed = settings.seed + episode
        options = start_options(settings.start, seed)
        for controller in controllers:
            result = run_episode(env, controller, seed=seed, max_steps=settings.max_steps, options=options,
                                 coverage=coverage)
            results[controller.name].append(result)
            log(f"episode {episode} {controller.name:>11}: success={result.success} "
                f"coverage={result.final_coverage:.3f} steps={result.steps} ({result.seconds:.1f}s)")
        if episode < settings.videos:
            videos.append(str(_write_episode_video(out, episode, [results[c.name][-1] for c in controllers],
                                                   settings.video_format)))
    report = {
        "env": "pusht",
        "settings": asdict(settings),
        "cem": asdict(cem) if cem is not None else None,
        "world_model": world_model,
        "summary": (summary := {name: summarize(rs) for name, rs in results.items()}),
        "gain_vs_oracle": gain_vs_oracle(summary),
        "episodes": {name: [r.metrics() for r in rs] for name, rs in results.items()},
        "videos": videos,
        "video_panels": [p for c in controllers for p in _panels(results[c.name][0])],
    }
    (out / "results.json").write_text(json.dumps(report, indent=2))
    return report


def gain_vs_oracle(summary: dict[str, dict[str, float]]) -> dict[str, float]:
    """Each controller's mean coverage gain as a fraction of the oracle's (empty without an oracle that gains)."""
    oracle = summary.get("oracle", {}).get("coverage_gain", 0.0)
    if oracle <= 0:
        return {}
    return {name: s["coverage_gain"] / oracle for name, s in summary.items() if name != "oracle"}


def _panels(result: EpisodeResult) -> list[str]:
    return [f"{result.controller} real"] + ([f"{result.controller} imagined"] if result.imagined is not None else [])


def _write_episode_video(out: Path, episode: int, results: list[EpisodeResult], fmt: str) -> Path:
    panels: list[np.ndarray | None] = []
    for r in results:
        panels += [r.real, r.imagined]
    labels = [label for r in results for label in _panels(r)]
    return write_video(out / "videos" / f"episode_{episode:03d}.{fmt}", side_by_side(*panels, labels=labels))


def format_table(report: dict[str, Any]) -> str:
    """Fixed-width table of the per-controller summary."""
    columns = ("success_rate", "initial_coverage", "final_coverage", "coverage_gain", "coverage_gain_std",
               "max_coverage", "final_reward", "steps", "seconds_per_episode")
    lines = [f"{'controller':>12} " + " ".join(f"{c:>19}" for c in columns) + f" {'gain_vs_oracle':>15}"]
    for name, summary in report["summary"].items():
        ratio = report.get("gain_vs_oracle", {}).get(name)
        lines.append(f"{name:>12} " + " ".join(f"{summary.get(c, float('nan')):>19.3f}" for c in columns)
                     + f" {'' if ratio is None else f'{ratio:.0%}':>15}")
    return "\n".join(lines)
