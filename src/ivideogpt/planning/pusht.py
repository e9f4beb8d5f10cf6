"""Push-T for planning: env construction, state snapshots, the goal image and the simulator oracle.

gym-pusht has no public get/set-state API, so snapshots read the pymunk bodies directly: agent
position and velocity, block position, angle and velocities. Restoring them reproduces the
simulator's trajectories (the solver's contact warm-start cache is the only thing not carried).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ivideogpt.frames import to_model

PUSHT_ID = "gym_pusht/PushT-v0"
ACTION_LOW, ACTION_HIGH = 0.0, 512.0
GOAL_POSE = (256.0, 256.0, math.pi / 4)  # x, y, angle of the green target T (fixed in gym-pusht)


def make_pusht(size: int = 64, obs_type: str = "pixels_agent_pos", max_episode_steps: int | None = None,
               action_repeat: int = 1) -> Any:
    """A Push-T env rendering `size`x`size` observations (imports gym_pusht to register it).

    `action_repeat` > 1 holds each action for that many simulator steps and reports the last step's
    reward, coverage and success: one step then matches one frame of data recorded that way.
    """
    import gymnasium as gym
    import gym_pusht  # noqa: F401  (registers the env id)

    kwargs: dict[str, Any] = {}
    if max_episode_steps is not None:
        kwargs["max_episode_steps"] = max_episode_steps
    env = gym.make(PUSHT_ID, obs_type=obs_type, render_mode="rgb_array",
                   observation_width=size, observation_height=size, **kwargs)
    if action_repeat == 1:
        return env
    from ivideogpt.envs.wrappers import ActionRepeat

    return ActionRepeat(env, action_repeat, success_key="is_success", reward="last")


@dataclass(frozen=True)
class PushTState:
    """Everything that evolves in a Push-T episode: the agent and block bodies' kinematics."""

    agent_pos: tuple[float, float]
    agent_vel: tuple[float, float]
    block_pos: tuple[float, float]
    block_angle: float
    block_vel: tuple[float, float]
    block_angular_vel: float


def snapshot(env: Any) -> PushTState:
    """Read the current state of a (wrapped or bare) Push-T env."""
    u = env.unwrapped
    return PushTState(tuple(u.agent.position), tuple(u.agent.velocity), tuple(u.block.position),
                      float(u.block.angle), tuple(u.block.velocity), float(u.block.angular_velocity))


def restore(env: Any, state: PushTState) -> None:
    """Put a Push-T env (already reset once) into `state`."""
    u = env.unwrapped
    u.agent.position, u.agent.velocity = state.agent_pos, state.agent_vel
    u.block.angle = state.block_angle  # angle first: it rotates about the centre of gravity
    u.block.position = state.block_pos
    u.block.velocity, u.block.angular_velocity = state.block_vel, state.block_angular_vel
    u.space.reindex_shapes_for_body(u.block)
    u.space.reindex_shapes_for_body(u.agent)


def agent_position(env: Any) -> np.ndarray:
    """(2,) current agent position: the "stay here" action, a good initial CEM mean."""
    return np.asarray(env.unwrapped.agent.position, dtype=np.float32)


def coverage(env: Any) -> float:
    """Fraction of the goal T covered by the block."""
    return float(env.unwrapped._get_coverage())


def goal_frame(size: int = 64) -> np.ndarray:
    """(size, size, 3) uint8 image of the solved scene: the block on the goal T, no agent drawn.

    The agent is left out so that a goal-image cost pulls only the block, not the agent.
    """
    env = make_pusht(size, obs_type="pixels")
    env.reset(seed=0)
    u = env.unwrapped
    u.block.angle = GOAL_POSE[2]
    u.block.position = GOAL_POSE[:2]
    u.space.reindex_shapes_for_body(u.block)
    u.space.remove(*u.agent.shapes, u.agent)  # leave the agent out of the drawing
    frame = u._render()
    env.close()
    return frame


class PushTOracle:
    """`Dynamics` whose model is the simulator itself: each candidate replays in a private env copy.

    Used as the upper bound of what a perfect world model would reach with the same CEM settings.
    Each planned action is held for `action_repeat` simulator steps, as the real env does.
    Candidates run one after another (a simulator does not batch); frames are rendered only when
    `render=True` (a goal-image objective needs them; a reward objective does not).
    """

    def __init__(self, size: int = 64, render: bool = False, action_repeat: int = 1) -> None:
        if action_repeat < 1:
            raise ValueError(f"action_repeat must be >= 1, got {action_repeat}")
        self.render, self.action_repeat = render, action_repeat
        self.env = make_pusht(size, obs_type="pixels" if render else "state")
        self.env.reset(seed=0)
        self.calls = 0

    def rollout(self, state: PushTState, actions: Tensor) -> tuple[Tensor | None, Tensor]:
        """(N, H, 2) target positions -> (frames (N, H, 3, h, w) or None, rewards (N, H))."""
        u = self.env.unwrapped
        n, horizon, _ = actions.shape
        plan = actions.detach().cpu().double().numpy()
        rewards = np.zeros((n, horizon), dtype=np.float32)
        frames = [] if self.render else None
        for i in range(n):
            restore(u, state)
            for t in range(horizon):
                for _ in range(self.action_repeat):
                    obs, reward, *_ = u.step(plan[i, t])
                rewards[i, t] = reward  # the last repeat's, as `make_pusht(action_repeat=...)` reports
                if frames is not None:
                    frames.append(obs)
        self.calls += 1
        video = None
        if frames is not None:
            video = to_model(np.stack(frames)).view(n, horizon, *to_model(frames[0]).shape)
        return video, torch.from_numpy(rewards)
