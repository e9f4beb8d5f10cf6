"""Push-T snapshots, the goal image and the simulator oracle; the oracle planner beats random."""

import math

import numpy as np
import pytest
import torch

pytest.importorskip("gym_pusht")

from ivideogpt.planning.cem import CEMConfig, CEMPlanner  # noqa: E402
from ivideogpt.planning.loop import (  # noqa: E402
    HoldStillController, PlannerController, RandomController, run_episode,
)
from ivideogpt.planning.objectives import RewardObjective  # noqa: E402
from ivideogpt.planning.pusht import (  # noqa: E402
    GOAL_POSE, PushTOracle, agent_position, coverage, goal_frame, make_pusht, restore, snapshot,
)

NEAR_GOAL = [300.0, 400.0, 280.0, 300.0, math.pi / 4]  # agent behind a block that partly covers the goal


def pushing_actions(env, steps: int) -> np.ndarray:
    """Targets that drive the agent through the block: a contact-rich trajectory."""
    block = np.asarray(env.unwrapped.block.position)
    agent = agent_position(env)
    return np.stack([agent + (block - agent) * (0.3 * (t + 1)) for t in range(steps)]).astype(np.float32)


def play(env, actions: np.ndarray, repeat: int = 1) -> list[tuple[np.ndarray, float]]:
    """(state observation, reward) after each action, every action held for `repeat` env steps."""
    out = []
    for a in actions:
        for _ in range(repeat):
            obs, reward, *_ = env.step(a)
        out.append((obs.copy(), reward))
    return out


def test_restore_reproduces_contact_trajectory_and_oracle_matches_real_env() -> None:
    env = make_pusht(obs_type="state")
    env.reset(seed=0, options={"reset_to_state": NEAR_GOAL})
    start = snapshot(env)
    actions = pushing_actions(env, 6)
    real = play(env, actions)
    assert np.abs(real[-1][0][2:4] - np.asarray(NEAR_GOAL[2:4])).max() > 1.0  # the block was pushed
    restore(env, start)
    for a, (obs, reward) in zip(actions, real):
        again, r, *_ = env.step(a)
        np.testing.assert_allclose(again, obs, atol=1e-6)
    oracle = PushTOracle(render=True)
    frames, rewards = oracle.rollout(start, torch.from_numpy(np.stack([actions, actions])))
    assert frames.shape == (2, 6, 3, 64, 64) and frames.min() >= -1 and frames.max() <= 1
    np.testing.assert_allclose(rewards[0].numpy(), [r for _, r in real], atol=1e-5)
    assert torch.equal(rewards[0], rewards[1])


def test_goal_frame_shows_solved_scene_without_agent() -> None:
    goal = goal_frame(64)
    assert goal.shape == (64, 64, 3) and goal.dtype == np.uint8
    blue = (goal[..., 2] > 150) & (goal[..., 0] < 100)  # the agent is RoyalBlue
    assert not blue.any()
    env = make_pusht()
    env.reset(seed=0)
    env.unwrapped.block.angle = GOAL_POSE[2]
    env.unwrapped.block.position = GOAL_POSE[:2]
    assert coverage(env) > 0.99


def test_oracle_planner_beats_random_near_goal() -> None:
    env = make_pusht()
    cfg = CEMConfig(horizon=5, candidates=32, elites=4, iterations=2, action_low=(0.0,), action_high=(512.0,),
                    init_std=0.15, execute_steps=2)
    oracle = PlannerController(CEMPlanner(PushTOracle(), RewardObjective(), cfg), lambda e, *_: snapshot(e),
                               agent_position, name="oracle")
    random = RandomController(np.zeros(2), np.full(2, 512.0))
    planned = run_episode(env, oracle, seed=0, max_steps=20, options={"reset_to_state": NEAR_GOAL})
    baseline = run_episode(env, random, seed=0, max_steps=20, options={"reset_to_state": NEAR_GOAL})
    assert planned.final_coverage > 0.8 > baseline.final_coverage
    assert planned.final_coverage > baseline.final_coverage + 0.3


def test_action_repeat_env_and_oracle_hold_each_action_and_report_the_last_reward() -> None:
    plain = make_pusht(obs_type="state")
    plain.reset(seed=0, options={"reset_to_state": NEAR_GOAL})
    start = snapshot(plain)
    actions = pushing_actions(plain, 3)
    expected = play(plain, actions, repeat=3)
    repeated = make_pusht(obs_type="state", action_repeat=3)
    repeated.reset(seed=0, options={"reset_to_state": NEAR_GOAL})
    for (again, r), (obs, reward) in zip(play(repeated, actions), expected):
        np.testing.assert_allclose(again, obs, atol=1e-6)
        assert r == pytest.approx(reward)
    _, rewards = PushTOracle(action_repeat=3).rollout(start, torch.from_numpy(actions[None]))
    np.testing.assert_allclose(rewards[0].numpy(), [r for _, r in expected], atol=1e-5)


def test_hold_still_keeps_the_agent_and_the_block() -> None:
    env = make_pusht()
    result = run_episode(env, HoldStillController(agent_position), seed=0, max_steps=10,
                         options={"reset_to_state": NEAR_GOAL}, coverage=coverage)
    assert np.abs(agent_position(env) - np.asarray(NEAR_GOAL[:2])).max() < 1.0
    assert result.final_coverage == pytest.approx(result.initial_coverage, abs=1e-3) and result.steps == 10
