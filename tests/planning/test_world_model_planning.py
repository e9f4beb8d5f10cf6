"""Planning inside a tiny randomly initialised world model: batched forked rollouts, closed loop, video."""

import copy
import json

import numpy as np
import pytest
import torch

pytest.importorskip("gym_pusht")

from ivideogpt.planning.cem import CEMConfig, CEMPlanner  # noqa: E402
from ivideogpt.planning.dynamics import ModelContext, WorldModelDynamics, context_from_history  # noqa: E402
from ivideogpt.planning.experiment import (  # noqa: E402
    LoadedWorldModel, PlanSettings, make_controllers, pusht_cem_config, run_experiment,
)
from ivideogpt.planning.objectives import RewardObjective  # noqa: E402
from ivideogpt.planning.pusht import make_pusht  # noqa: E402
from ivideogpt.transformer.frame_graph import FrameGenerator  # noqa: E402
from ivideogpt.world_model import WorldModel  # noqa: E402


def test_context_from_history_takes_recent_frames_and_their_actions() -> None:
    frames = [np.full((8, 8, 3), i, np.uint8) for i in range(4)]
    actions = [np.full(2, i, np.float32) for i in range(3)]
    ctx = context_from_history(frames, actions, 2)
    assert ctx.frames.shape == (2, 3, 8, 8) and torch.equal(ctx.actions, torch.full((1, 2), 2.0))
    start = context_from_history(frames[:1], [], 2)  # episode start: one frame, no actions
    assert start.frames.shape == (1, 3, 8, 8) and start.actions is None
    hold = np.array([5.0, 6.0], np.float32)
    filled = context_from_history(frames[:2], actions[:1], 3, fill_action=hold)  # exact count: first frame repeated
    assert filled.frames.shape == (3, 3, 8, 8) and torch.equal(filled.frames[0], filled.frames[1])
    assert not torch.equal(filled.frames[1], filled.frames[2])
    assert filled.actions.tolist() == [[5.0, 6.0], [0.0, 0.0]]
    assert torch.equal(context_from_history(frames, actions, 2, fill_action=hold).actions, ctx.actions)


def test_one_prefill_per_plan_and_all_candidates_per_step(tiny_world_model) -> None:
    dynamics = WorldModelDynamics(tiny_world_model, action_low=np.zeros(2), action_high=np.full(2, 512.0))
    seen: list[torch.Tensor] = []
    original = tiny_world_model.step

    def spy(actions, decode=True):
        seen.append(actions)
        return original(actions, decode)

    tiny_world_model.step = spy
    try:
        cfg = CEMConfig(horizon=2, candidates=5, elites=2, iterations=2, action_low=(0.0,), action_high=(512.0,))
        context = ModelContext(torch.rand(2, 3, 64, 64) * 2 - 1, torch.full((1, 2), 256.0))
        result = CEMPlanner(dynamics, RewardObjective(), cfg).plan(context)
    finally:
        del tiny_world_model.step
    assert dynamics.prefills == 1 and dynamics.batch_sizes == [5, 5]
    assert [a.shape for a in seen] == [(5, 2)] * 4  # 2 iterations x 2 steps, every step batched over candidates
    assert all(a.abs().max() <= 1.0 for a in seen)  # raw [0, 512] targets normalised to [-1, 1]
    assert result.best_frames.shape == (2, 3, 64, 64) and result.best_rewards.shape == (2,)


def test_plans_are_deterministic_from_seed(tiny_world_model) -> None:
    cfg = CEMConfig(horizon=2, candidates=4, elites=2, iterations=1, action_low=(0.0,), action_high=(512.0,), seed=1)
    context = ModelContext(torch.zeros(1, 3, 64, 64))
    plans = [CEMPlanner(WorldModelDynamics(tiny_world_model, seed=7), RewardObjective(), cfg).plan(context)
             for _ in range(2)]
    assert torch.equal(plans[0].actions, plans[1].actions)
    assert torch.equal(plans[0].best_frames, plans[1].best_frames)


class RecordingObjective(RewardObjective):
    """The reward objective, remembering every batch of scores it gave."""

    def __init__(self, discount: float) -> None:
        super().__init__(discount)
        self.scores: list[torch.Tensor] = []

    def __call__(self, frames, rewards):
        self.scores.append(super().__call__(frames, rewards))
        return self.scores[-1]


def test_rewards_only_planning_scores_and_chooses_as_decoding_every_frame(tiny_world_model) -> None:
    cfg = CEMConfig(horizon=3, candidates=6, elites=2, iterations=3, action_low=(0.0,), action_high=(512.0,), seed=2)
    context = ModelContext(torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0)) * 2 - 1,
                           torch.full((1, 2), 100.0))
    scores, results, dynamics = [], [], []
    for decode in (True, False):
        dyn = WorldModelDynamics(tiny_world_model, action_low=np.zeros(2), action_high=np.full(2, 512.0), seed=5,
                                 decode=decode)
        objective = RecordingObjective(discount=0.9)
        results.append(CEMPlanner(dyn, objective, cfg).plan(context))
        scores.append(torch.stack(objective.scores))
        dynamics.append(dyn)
    assert torch.equal(scores[0], scores[1])  # every candidate of every iteration scored the same
    assert torch.equal(results[0].actions, results[1].actions)
    assert results[0].best_index == results[1].best_index
    assert results[0].best_frames is not None and results[1].best_frames is None
    torch.testing.assert_close(dynamics[1].imagined(results[1]), results[0].best_frames)  # decoded afterwards


def test_planning_through_captured_static_frames_scores_as_the_kept_cache(tiny_world_model, replaying_graph) -> None:
    """CEM forks the context for every iteration: each fork is bound to the captured frame in turn."""
    cfg = CEMConfig(horizon=3, candidates=6, elites=2, iterations=3, action_low=(0.0,), action_high=(512.0,), seed=2)
    context = ModelContext(torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0)) * 2 - 1,
                           torch.full((1, 2), 100.0))
    transformer = copy.deepcopy(tiny_world_model.transformer)
    for head in (transformer.action_proj, transformer.reward_head):  # zero at init: make scores depend on actions
        torch.nn.init.normal_(head.weight, std=0.5)
    kept = WorldModel(tiny_world_model.tokenizer, transformer, seed=0)
    static = WorldModel(tiny_world_model.tokenizer, transformer, cache="static", seed=0)
    static.frames = FrameGenerator(transformer, graphs=True, graph_factory=replaying_graph)
    scores, results = [], []
    for world in (kept, static):
        dyn = WorldModelDynamics(world, action_low=np.zeros(2), action_high=np.full(2, 512.0), seed=5, decode=False)
        objective = RecordingObjective(discount=0.9)
        results.append(CEMPlanner(dyn, objective, cfg).plan(context))
        scores.append(torch.stack(objective.scores))
    assert scores[0].std() > 0.01  # candidates are told apart
    torch.testing.assert_close(scores[1], scores[0])
    assert torch.equal(results[0].actions, results[1].actions) and replaying_graph.captures == 1


def test_closed_loop_in_pusht_writes_video_and_report(tiny_world_model, tmp_path) -> None:
    settings = PlanSettings(episodes=1, max_steps=3, videos=1, video_format="gif")
    cem = pusht_cem_config(horizon=2, candidates=4, elites=2, iterations=1, execute_steps=2)
    world_model = LoadedWorldModel(tiny_world_model, context_frames=2, action_low=np.zeros(2),
                                   action_high=np.full(2, 512.0))
    controllers = make_controllers(settings, cem, world_model)
    env = make_pusht()
    report = run_experiment(env, controllers, settings, tmp_path, cem=cem, log=lambda _: None)
    assert set(report["summary"]) == {"world-model", "random", "hold-still", "oracle"}
    assert report["summary"]["world-model"]["steps"] == 3
    assert report["video_panels"] == ["world-model real", "world-model imagined", "random real", "hold-still real",
                                      "oracle real"]
    video = tmp_path / "videos" / "episode_000.gif"
    assert video.stat().st_size > 0
    import imageio.v3 as iio

    frames = iio.imread(video)
    assert frames.shape[0] == 4 and frames.shape[2] == 2 * (5 * 64 + 4 * 2)  # 5 panels, 2 px gaps, scale 2
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["summary"]["random"]["episodes"] == 1


def test_action_bounds_of_another_width_are_refused_before_planning(tiny_world_model) -> None:
    with pytest.raises(ValueError, match=r"action_low must be one value or \(2,\), one per action dimension, "
                                         r"got \(3,\)"):
        dynamics = WorldModelDynamics(tiny_world_model, action_low=np.zeros(3), action_high=np.ones(3))
        dynamics.rollout(ModelContext(torch.zeros(1, 3, 64, 64)), torch.zeros(4, 2, 2))
