"""The real Push-T simulator beside the model ("dream vs real"): same start, same actions, same frame step."""

from __future__ import annotations

from typing import Any

import numpy as np

from ivideogpt.planning.pusht import PushTState, agent_position, make_pusht, restore, snapshot


class RealPushT:
    """One Push-T env rendering `size`x`size` frames, each action held for `action_repeat` simulator steps."""

    def __init__(self, size: int = 64, action_repeat: int = 1) -> None:
        # no step limit and no stop at success: the person decides when the session ends
        self.env = make_pusht(size, obs_type="pixels", max_episode_steps=10**9, action_repeat=action_repeat)

    def reset(self, seed: int | None = None, state: np.ndarray | None = None) -> np.ndarray:
        """The first frame (H, W, 3) uint8 of a random start (`seed`) or of a recorded state (ax, ay, bx, by, angle)."""
        options = None if state is None else {"reset_to_state": [float(v) for v in state[:5]]}
        frame, _ = self.env.reset(seed=seed, options=options)
        return frame

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float]:
        """Move the pusher towards target `action` (2,) in board pixels: the next frame and its reward."""
        frame, reward, *_ = self.env.step(np.asarray(action, dtype=np.float64))
        return frame, float(reward)

    def hold_still(self) -> np.ndarray:
        """(2,) the action that keeps the pusher where it is."""
        return agent_position(self.env)

    def snapshot(self) -> PushTState:
        return snapshot(self.env)

    def restore(self, state: PushTState) -> None:
        restore(self.env, state)

    def close(self) -> Any:
        return self.env.close()
