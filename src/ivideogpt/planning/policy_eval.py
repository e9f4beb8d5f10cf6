"""Policy evaluation inside the world model: play a controller in imagination and in the simulator, compare returns.

Every episode starts from the same simulator state twice: once played in the real Push-T, once inside
the world model (the first frame is real, every later frame and reward is imagined). The controller
acts on what it sees in each, so a planner plans from imagined frames when inside the model. Per
episode the report holds the predicted and the real return; per controller, and over all episodes,
their Pearson and Spearman correlation: a world model whose predicted returns track the real ones
can rank controllers without the simulator.
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from ivideogpt.data.actions import ActionBounds
from ivideogpt.frames import to_uint8
from ivideogpt.planning.dynamics import context_from_history
from ivideogpt.planning.experiment import PlanSettings, start_options
from ivideogpt.planning.loop import Controller, run_episode
from ivideogpt.planning.pusht import agent_position, coverage, make_pusht
from ivideogpt.media import side_by_side, write_video
from ivideogpt.world_model import WindowedRollout, WorldModel


class ImaginedPushT:
    """A Push-T episode inside the world model, behind the env interface `run_episode` drives.

    `reset` resets a private simulator to the same start as the real episode and takes its frame as
    the context; each `step` is one imagined frame and its predicted reward (raw actions, normalised
    with `action_low`/`action_high` as in training). An episode longer than the model's training window
    (`model.window`) re-anchors on its newest imagined frames there (`WindowedRollout`), as the gym envs do.
    The simulator is never stepped, so `unwrapped` shows the start state: where the agent began, which is
    where hold-still keeps it.
    """

    def __init__(self, model: WorldModel, *, action_low: np.ndarray | None = None,
                 action_high: np.ndarray | None = None, size: int = 64, seed: int = 0) -> None:
        # its own rollout state and sampler, so a planner using `model` cannot disturb the imagination
        self.model = model.sibling(seed)
        self.rollout = WindowedRollout(self.model, self.model.window)
        self.bounds = None if action_low is None or action_high is None else ActionBounds(action_low, action_high)
        self.start_env = make_pusht(size)

    @property
    def unwrapped(self) -> Any:
        return self.start_env.unwrapped

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[dict[str, np.ndarray], dict]:
        """Start from the simulator's first frame, as the planner does: a model that needs an exact context count
        (a released tokenizer) sees it repeated with a hold-still action between the copies."""
        obs, info = self.start_env.reset(seed=seed, options=options)
        fixed = self.model.tokenizer.fixed_context_frames
        context = context_from_history([obs["pixels"]], [], fixed or 1,
                                       fill_action=agent_position(self.start_env) if fixed else None)
        actions = None if context.actions is None else self._model_actions(context.actions.numpy())[None]
        self.rollout.reset(context.frames[None], actions, seed=seed)  # (1, Tc, 3, h, w)
        return {"pixels": obs["pixels"]}, info

    def _model_actions(self, actions: np.ndarray) -> torch.Tensor:
        """Raw env actions (..., A) as the model saw them in training (normalised when bounds are known)."""
        actions = np.asarray(actions, np.float32) if self.bounds is None else self.bounds.normalize(actions)
        return torch.as_tensor(actions, dtype=torch.float32)

    def step(self, action: np.ndarray) -> tuple[dict[str, np.ndarray], float, bool, bool, dict]:
        frames, rewards = self.rollout.step(self._model_actions(action)[None])
        reward = 0.0 if rewards is None else float(rewards[0])
        return {"pixels": to_uint8(frames[0])}, reward, False, False, {}

    def close(self) -> None:
        self.start_env.close()


def correlations(predicted: list[float], real: list[float]) -> dict[str, float]:
    """Pearson and Spearman correlation of predicted vs real returns (nan with < 2 episodes or a constant side)."""
    from scipy import stats

    if len(predicted) < 2 or np.ptp(predicted) == 0 or np.ptp(real) == 0:
        return {"pearson": math.nan, "spearman": math.nan}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {"pearson": float(stats.pearsonr(predicted, real)[0]),
                "spearman": float(stats.spearmanr(predicted, real)[0])}


def summarize_returns(rows: list[dict[str, Any]]) -> dict[str, float]:
    """Mean predicted and real return, mean absolute error, and their correlations over `rows`."""
    predicted, real = [r["predicted_return"] for r in rows], [r["real_return"] for r in rows]
    return {"episodes": len(rows), "predicted_return": float(np.mean(predicted)), "real_return": float(np.mean(real)),
            "abs_error": float(np.mean(np.abs(np.subtract(predicted, real)))), **correlations(predicted, real)}


def evaluate_policies(real_env: Any, imagined_env: ImaginedPushT, real_controllers: list[Controller],
                      model_controllers: list[Controller], settings: PlanSettings, out_dir: str | Path,
                      log: Callable[[str], None] = print) -> dict[str, Any]:
    """Play each controller `settings.episodes` times in both envs; write `results.json` (and videos) under `out_dir`.

    `real_controllers[i]` and `model_controllers[i]` are two equally seeded copies of one controller, so
    both sides draw the same random numbers.
    """
    if [c.name for c in real_controllers] != [c.name for c in model_controllers]:
        raise ValueError("real_controllers and model_controllers must be copies of the same controllers")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    videos: list[str] = []
    for real_controller, model_controller in zip(real_controllers, model_controllers):
        for episode in range(settings.episodes):
            seed = settings.seed + episode
            options = start_options(settings.start, seed)
            real = run_episode(real_env, real_controller, seed=seed, max_steps=settings.max_steps, options=options,
                               coverage=coverage)
            dreamt = run_episode(imagined_env, model_controller, seed=seed, max_steps=real.steps,  # as many steps
                                 options=options, coverage=coverage)
            rows.append({"controller": real_controller.name, "episode": episode, "seed": seed,
                         "predicted_return": dreamt.total_reward, "real_return": real.total_reward,
                         "steps": real.steps, "real_final_coverage": real.final_coverage, "real_success": real.success})
            log(f"{real_controller.name:>11} episode {episode}: predicted return {dreamt.total_reward:.3f}, "
                f"real {real.total_reward:.3f}")
            if episode < settings.videos:
                name = f"{real_controller.name}_episode_{episode:03d}.{settings.video_format}"
                labels = [f"{real_controller.name}: in the model", "real"]
                videos.append(str(write_video(out / "videos" / name, side_by_side(dreamt.real, real.real,
                                                                                 labels=labels))))
    names = list(dict.fromkeys(r["controller"] for r in rows))
    report = {
        "settings": asdict(settings),
        "summary": {name: summarize_returns([r for r in rows if r["controller"] == name]) for name in names},
        "all": summarize_returns(rows),
        "episodes": rows,
        "videos": videos,
    }
    (out / "results.json").write_text(json.dumps(report, indent=2))
    return report


def format_returns_table(report: dict[str, Any]) -> str:
    """Fixed-width table: per controller and over all episodes, predicted vs real return and correlations."""
    columns = ("episodes", "predicted_return", "real_return", "abs_error", "pearson", "spearman")
    lines = [f"{'controller':>12} " + " ".join(f"{c:>16}" for c in columns)]
    for name, summary in [*report["summary"].items(), ("all", report["all"])]:
        lines.append(f"{name:>12} " + " ".join(f"{summary[c]:>16.3f}" for c in columns))
    return "\n".join(lines)
