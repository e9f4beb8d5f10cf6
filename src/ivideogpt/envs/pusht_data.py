"""Embedded robot data: scripted Push-T rollouts stored as project episodes.

The scripted policy makes real contact: it picks a push direction (mostly toward the goal
pose, sometimes random), moves around the T to a point just behind it, then pushes through
it; now and then it wanders to a random target instead. Pushes are offset sideways to turn the
block toward the goal angle. Targets move at most `max_speed` pixels per step, plus a little
Gaussian noise, so action sequences are smooth. Actions are raw target positions in
[0, 512]^2 (the env's Box); `metadata.json` records these bounds for normalisation.
"""

from __future__ import annotations

import contextlib
import math
import multiprocessing
import os
import time
from functools import lru_cache, partial
from pathlib import Path
from typing import Any

import numpy as np

from ivideogpt.data.actions import new_dataset_folder, write_metadata
from ivideogpt.data.episode import Episode

PUSHT_ID = "gym_pusht/PushT-v0"
ACTION_LOW, ACTION_HIGH = 0.0, 512.0
AGENT_RADIUS = 15.0


def make_pusht_env(resolution: int = 64) -> Any:
    """The Push-T env rendering `resolution` x `resolution` pixels plus the agent position."""
    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
    import gym_pusht  # noqa: F401  (registers the env id)
    import gymnasium as gym

    return gym.make(PUSHT_ID, obs_type="pixels_agent_pos", render_mode="rgb_array",
                    observation_width=resolution, observation_height=resolution)


def block_state(env: Any) -> np.ndarray:
    """[agent x, agent y, block x, block y, block angle] of a (bare) Push-T env."""
    agent, block = env.agent.position, env.block.position
    return np.asarray([agent[0], agent[1], block[0], block[1], env.block.angle], dtype=np.float32)


class PushTScriptedPolicy:
    """Approach a point behind the T for a push direction, push through it; sometimes wander."""

    def __init__(self, rng: np.random.Generator, max_speed: float = 40.0, noise: float = 3.0,
                 goal_prob: float = 0.6, wander_prob: float = 0.15) -> None:
        self.rng, self.max_speed, self.noise = rng, max_speed, noise
        self.goal_prob, self.wander_prob = goal_prob, wander_prob
        self.target = np.zeros(2)
        self.approach: list[np.ndarray] = []  # detour and approach points, left when reached
        self.queue: list[np.ndarray] = []  # push or wander targets, one per step
        self.approach_steps = 0

    def reset(self, env: Any) -> None:
        self.target = np.asarray(env.agent.position, dtype=np.float64)
        self.approach, self.queue, self.approach_steps = [], [], 0

    def _geometry(self, env: Any) -> tuple[Any, np.ndarray]:
        from gym_pusht.envs.pusht import pymunk_to_shapely

        cog = np.asarray(env.block.local_to_world(env.block.center_of_gravity))
        return pymunk_to_shapely(env.block, env.block.shapes), cog

    def _plan_push(self, env: Any) -> None:
        from shapely.geometry import LineString, Point

        polygon, cog = self._geometry(env)
        goal = env.get_goal_pose_body(env.goal_pose)
        goal_cog = np.asarray(goal.local_to_world(env.block.center_of_gravity))
        to_goal = goal_cog - cog
        if self.rng.random() < self.goal_prob and np.linalg.norm(to_goal) > 20:
            direction = to_goal / np.linalg.norm(to_goal)
            error = (env.goal_pose[2] - env.block.angle + math.pi) % (2 * math.pi) - math.pi
            offset = -math.copysign(min(abs(error) / (math.pi / 2), 1.0) * 30.0, error)
        else:
            angle = self.rng.uniform(-math.pi, math.pi)
            direction = np.asarray([math.cos(angle), math.sin(angle)])
            offset = self.rng.uniform(-30.0, 30.0)
        side = np.asarray([-direction[1], direction[0]])
        for lateral in (offset, offset / 2, 0.0):
            origin = cog + lateral * side
            hit = LineString([origin, origin - direction * 300]).intersection(polygon.boundary)
            points = [np.asarray(p.coords[0]) for p in getattr(hit, "geoms", [hit]) if not p.is_empty]
            if points:
                break
        contact = max(points, key=lambda p: np.dot(origin - p, direction)) if points else cog - direction * 60
        approach = contact - direction * (AGENT_RADIUS + 12.0)
        agent = np.asarray(env.agent.position)
        self.approach = []
        if LineString([agent, approach]).distance(polygon) < AGENT_RADIUS + 2 and Point(agent).distance(polygon) > 1:
            relative = agent - cog
            sign = 1.0 if direction[0] * relative[1] - direction[1] * relative[0] > 0 else -1.0  # agent's side
            self.approach.append(cog + sign * side * 130.0 - direction * 40.0)
        self.approach.append(approach)
        speed = self.rng.uniform(8.0, 15.0)
        self.queue = [approach + direction * speed * k for k in range(1, int(self.rng.integers(6, 15)) + 1)]

    def _plan(self, env: Any) -> None:
        self.approach_steps = 0
        if self.rng.random() < self.wander_prob:
            self.approach = []
            self.queue = [self.rng.uniform(60.0, 452.0, size=2)] * int(self.rng.integers(5, 15))
        else:
            self._plan_push(env)

    def act(self, env: Any) -> np.ndarray:
        """The next target position (2,) in [0, 512]."""
        if (not self.approach and not self.queue) or self.approach_steps > 30:
            self._plan(env)
        agent = np.asarray(env.agent.position)
        if self.approach:
            self.approach_steps += 1
            if np.linalg.norm(agent - self.approach[0]) < 16.0:
                self.approach.pop(0)
        if self.approach:
            waypoint = self.approach[0]
        else:
            waypoint = self.queue.pop(0)
        move = waypoint - self.target
        distance = np.linalg.norm(move)
        if distance > self.max_speed:
            move *= self.max_speed / distance
        self.target = np.clip(self.target + move + self.rng.normal(0.0, self.noise, 2), 10.0, 502.0)
        return self.target.astype(np.float32)


def hold_action(bare: Any, action: np.ndarray, repeat: int) -> tuple[Any, ...]:
    """`repeat` steps of the bare env under `action`; only the last one draws its pixels.

    Drawing the frame is ~80% of a Push-T step, and the frames in between are never recorded.
    Returns the last step's (observation, reward, terminated, truncated, info); the episode keeps
    going after success, so episodes have a fixed length.
    """
    observation_type = bare.obs_type
    try:
        bare.obs_type = "state"
        for _ in range(repeat - 1):
            bare.step(action)
    finally:
        bare.obs_type = observation_type
    return bare.step(action)


def rollout_pusht(env: Any, policy: PushTScriptedPolicy, steps: int, seed: int, action_repeat: int = 1) -> Episode:
    """One episode of `steps` recorded steps: T = steps + 1 frames, actions (T, 2), rewards, success, states.

    Each recorded step holds the policy's action for `action_repeat` env steps (the last one's
    reward and success are kept), as RL wrappers do.
    """
    if action_repeat < 1:
        raise ValueError(f"action_repeat must be >= 1, got {action_repeat}")
    observation, _ = env.reset(seed=seed)
    bare = env.unwrapped
    policy.reset(bare)
    frames, actions = [observation["pixels"]], []
    rewards, success, states = [0.0], [bool(bare._get_coverage() > bare.success_threshold)], [block_state(bare)]
    for _ in range(steps):
        action = policy.act(bare)
        observation, reward, _, _, info = hold_action(bare, action, action_repeat)
        actions.append(action)
        frames.append(observation["pixels"])
        rewards.append(float(reward))
        success.append(bool(info["is_success"]))
        states.append(block_state(bare))
    actions.append(policy.act(bare))  # taken at the last frame; its outcome is not recorded
    return Episode(frames=np.stack(frames).astype(np.uint8), actions=np.stack(actions), rewards=np.asarray(rewards),
                   success=np.asarray(success), states=np.stack(states))


@lru_cache(maxsize=4)
def _worker_env(resolution: int) -> Any:
    """One simulator per process and resolution, reused for every episode that process writes."""
    return make_pusht_env(resolution)


def _write_episode(number: int, out: Path, resolution: int, steps: int, seed: int, action_repeat: int
                   ) -> tuple[bool, bool]:
    """Write episode `number` (its RNG seeded by (seed, number)); returns (block moved, reached success)."""
    rng = np.random.default_rng([seed, number])
    episode = rollout_pusht(_worker_env(resolution), PushTScriptedPolicy(rng), steps,
                            seed=int(rng.integers(2**31 - 1)), action_repeat=action_repeat)
    episode.save(out / f"episode_{number:06d}.npz")
    shift = episode.states[-1, 2:4] - episode.states[0, 2:4]
    moved = bool(np.linalg.norm(shift) > 5.0 or abs(episode.states[-1, 4] - episode.states[0, 4]) > 0.1)
    return moved, bool(episode.success.any())


def generate_pusht(out: str | Path, episodes: int, resolution: int = 64, steps: int = 100, seed: int = 0,
                   progress: bool = True, action_repeat: int = 1, workers: int = 1) -> dict[str, Any]:
    """Write `episodes` scripted Push-T episodes and metadata.json to `out`; returns timing and stats.

    `action_repeat` k records every k-th env step (10 / k frames per second) with each action held
    for k env steps: the agent then nearly reaches each target, so a frame's action largely fixes
    where the agent is, rather than the agent's unseen velocity. Episode n depends only on (seed, n),
    so `workers` processes (one simulator each) write the same files as one.
    """
    from tqdm import tqdm

    if episodes < 1 or steps < 1 or workers < 1:
        raise ValueError(f"episodes, steps and workers must be >= 1, got {episodes}, {steps} and {workers}")
    out = new_dataset_folder(out, generated_for=PUSHT_ID)  # no mixing, no stale episodes
    job = partial(_write_episode, out=out, resolution=resolution, steps=steps, seed=seed, action_repeat=action_repeat)
    began = time.perf_counter()
    with contextlib.ExitStack() as stack:
        if workers > 1:
            pool = stack.enter_context(multiprocessing.get_context("spawn").Pool(min(workers, episodes)))
            results = pool.imap_unordered(job, range(episodes))
        else:
            results = map(job, range(episodes))
        outcomes = list(tqdm(results, total=episodes, desc="push-t episodes", unit="episode", disable=not progress))
    moved = sum(m for m, _ in outcomes)
    successes = sum(s for _, s in outcomes)
    seconds = time.perf_counter() - began
    stats = {"episodes": episodes, "frames": episodes * (steps + 1), "seconds": round(seconds, 2),
             "frames_per_second": round(episodes * (steps + 1) / seconds, 1),
             "block_moved_fraction": moved / episodes, "success_fraction": successes / episodes}
    write_metadata(out, {
        "format": "ivideogpt-episodes", "env": PUSHT_ID, "policy": "scripted push (ivideogpt.envs.pusht_data)",
        "resolution": resolution, "steps": steps, "frames_per_episode": steps + 1, "episodes": episodes,
        "seed": seed, "fps": 10 / action_repeat, "action_repeat": action_repeat,
        "action_space": {"low": [ACTION_LOW] * 2, "high": [ACTION_HIGH] * 2},
        "action_meaning": "target (x, y) of the agent in board pixels", "state_keys": ["agent_x", "agent_y",
                                                                                          "block_x", "block_y",
                                                                                          "block_angle"],
        "stats": stats})
    return stats
