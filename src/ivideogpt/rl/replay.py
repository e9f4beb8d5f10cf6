"""Replay buffers of whole segments, sampled as frame-stacked n-step transitions or as video clips.

A segment is one real episode or one imagined rollout:
- `frames`    (T + 1, H, W, 3) uint8: observation frames.
- `actions`   (T, A) float32: `actions[t]` leads from `frames[t]` to `frames[t + 1]`.
- `rewards`   (T,) float32: received for that transition.
- `discounts` (T,) float32: 0 where the transition ends in a true terminal state, else 1.
- `history`: leading frames that only serve as frame-stack / context history; transitions
  start at `t >= history` (imagined rollouts store the real frames they branched from).
Frames before index 0 are the first frame repeated (the usual frame-stack reset padding).
Storing frames once (not stacks) keeps memory at one frame per step.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import numpy as np
import torch

from ivideogpt.data.batch import Batch
from ivideogpt.frames import to_model


@dataclass
class TransitionBatch:
    """n-step transitions. obs/next_obs (B, 3 * stack, H, W) uint8; action (B, A);
    reward (B,) = discounted n-step return; discount (B,) = gamma ** n (0 past a terminal)."""

    obs: torch.Tensor
    action: torch.Tensor
    reward: torch.Tensor
    discount: torch.Tensor
    next_obs: torch.Tensor

    def to(self, device: torch.device | str) -> "TransitionBatch":
        return replace(self, **{f.name: getattr(self, f.name).to(device) for f in fields(self)})

    def __len__(self) -> int:
        return int(self.action.shape[0])

    @staticmethod
    def cat(parts: list["TransitionBatch"]) -> "TransitionBatch":
        return TransitionBatch(**{f.name: torch.cat([getattr(p, f.name) for p in parts])
                                  for f in fields(TransitionBatch)})


@dataclass
class Segment:
    frames: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    discounts: np.ndarray
    history: int = 0

    def __post_init__(self) -> None:
        steps = len(self.actions)
        if self.frames.dtype != np.uint8 or self.frames.ndim != 4 or self.frames.shape[-1] != 3:
            raise ValueError(f"frames must be uint8 (T + 1, H, W, 3), got {self.frames.dtype} {self.frames.shape}")
        if len(self.frames) != steps + 1 or len(self.rewards) != steps or len(self.discounts) != steps:
            raise ValueError(f"lengths disagree: frames {len(self.frames)}, actions {steps}, "
                             f"rewards {len(self.rewards)}, discounts {len(self.discounts)}")
        if not 0 <= self.history < steps:
            raise ValueError(f"history must be in [0, {steps}), got {self.history}")

    @property
    def num_transitions(self) -> int:
        return len(self.actions) - self.history


class SegmentReplay:
    """FIFO buffer of segments, capacity counted in transitions; the oldest segments leave first."""

    def __init__(self, capacity: int, frame_stack: int, nstep: int, discount: float,
                 seed: int | None = None) -> None:
        if capacity < 1 or frame_stack < 1 or nstep < 1 or not 0.0 <= discount <= 1.0:
            raise ValueError(f"bad replay settings: capacity={capacity} frame_stack={frame_stack} "
                             f"nstep={nstep} discount={discount}")
        self.capacity, self.frame_stack, self.nstep, self.discount = capacity, frame_stack, nstep, discount
        self.segments: list[Segment] = []
        self.rng = np.random.default_rng(seed)
        self._size = 0

    def __len__(self) -> int:
        """Number of sampleable transitions."""
        return self._size

    @property
    def num_steps(self) -> int:
        return self._size

    def add(self, segment: Segment) -> None:
        self.segments.append(segment)
        self._size += segment.num_transitions
        while self._size > self.capacity and len(self.segments) > 1:
            self._size -= self.segments.pop(0).num_transitions

    def add_episode(self, frames: np.ndarray, actions: np.ndarray, rewards: np.ndarray,
                    discounts: np.ndarray | None = None, history: int = 0) -> None:
        discounts = np.ones(len(rewards), np.float32) if discounts is None else discounts
        self.add(Segment(np.asarray(frames, np.uint8), np.asarray(actions, np.float32),
                         np.asarray(rewards, np.float32), np.asarray(discounts, np.float32), history))

    def state_dict(self) -> dict:
        """Every stored segment and the sampling RNG (numpy arrays, for a resumable checkpoint)."""
        return {"segments": [vars(segment).copy() for segment in self.segments],
                "rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict) -> None:
        self.segments = [Segment(**saved) for saved in state["segments"]]
        self._size = sum(segment.num_transitions for segment in self.segments)
        self.rng.bit_generator.state = state["rng"]

    def _locate(self, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
        """Uniform over transitions -> (segment index, time index) arrays."""
        if self._size == 0:
            raise RuntimeError("cannot sample from an empty replay buffer")
        counts = np.array([s.num_transitions for s in self.segments])
        flat = self.rng.integers(0, counts.sum(), batch_size)
        seg = np.searchsorted(np.cumsum(counts), flat, side="right")
        offset = flat - np.concatenate([[0], np.cumsum(counts)[:-1]])[seg]
        starts = np.array([self.segments[i].history for i in seg])
        return seg, starts + offset

    def _stack(self, segment: Segment, t: int) -> np.ndarray:
        """Frames t - stack + 1 .. t (clamped at 0) -> (3 * stack, H, W)."""
        idx = np.clip(np.arange(t - self.frame_stack + 1, t + 1), 0, None)
        return segment.frames[idx].transpose(0, 3, 1, 2).reshape(-1, *segment.frames.shape[1:3])

    def sample(self, batch_size: int) -> TransitionBatch:
        """n-step transitions; near a segment's end the return is truncated and bootstraps from its
        last frame with the matching gamma ** k (exact for time limits and terminals alike)."""
        seg_idx, t_idx = self._locate(batch_size)
        obs, next_obs, actions, returns, discounts = [], [], [], [], []
        for i, t in zip(seg_idx, t_idx):
            seg = self.segments[i]
            n = min(self.nstep, len(seg.actions) - t)
            ret, disc = 0.0, 1.0
            for k in range(n):
                ret += disc * float(seg.rewards[t + k])
                disc *= self.discount * float(seg.discounts[t + k])
            obs.append(self._stack(seg, t))
            next_obs.append(self._stack(seg, t + n))
            actions.append(seg.actions[t])
            returns.append(ret)
            discounts.append(disc)
        return TransitionBatch(
            obs=torch.from_numpy(np.stack(obs)), action=torch.from_numpy(np.stack(actions)),
            reward=torch.tensor(returns, dtype=torch.float32), discount=torch.tensor(discounts, dtype=torch.float32),
            next_obs=torch.from_numpy(np.stack(next_obs)))

    def sample_frames(self, batch_size: int, num_frames: int) -> tuple[np.ndarray, np.ndarray]:
        """Branch points for imagination: the last `num_frames` frames up to a random time t
        (clamped at the episode start) -> (frames (B, num_frames, H, W, 3) uint8, actions (B, num_frames - 1, A)).
        The actions are those between the returned frames (zeros across the clamped start)."""
        seg_idx, t_idx = self._locate(batch_size)
        frames, acts = [], []
        for i, t in zip(seg_idx, t_idx):
            seg = self.segments[i]
            idx = np.arange(t - num_frames + 1, t + 1)
            frames.append(seg.frames[np.clip(idx, 0, None)])
            a = seg.actions[np.clip(idx[:-1], 0, None)].copy()
            a[idx[:-1] < 0] = 0.0
            acts.append(a)
        return np.stack(frames), np.stack(acts)

    def sample_clips(self, batch_size: int, length: int, num_context: int) -> Batch:
        """Video clips for world-model training, never across segments, following `Batch`'s
        alignment: `actions[:, t]` leads from frame t to t + 1 (the last one is zeros) and
        `rewards[:, t]` is received on arriving at frame t (zero for the first frame)."""
        eligible = [i for i, s in enumerate(self.segments) if len(s.frames) >= length]
        if not eligible:
            raise RuntimeError(f"no stored segment has {length} frames for a clip")
        seg_idx = self.rng.choice(eligible, batch_size)
        frames, actions, rewards = [], [], []
        for i in seg_idx:
            seg = self.segments[i]
            s = int(self.rng.integers(0, len(seg.frames) - length + 1))
            frames.append(seg.frames[s:s + length])
            a = np.zeros((length, seg.actions.shape[1]), np.float32)
            take = seg.actions[s:s + length]
            a[: len(take)] = take
            actions.append(a)
            r = np.zeros(length, np.float32)
            r[1:] = seg.rewards[s:s + length - 1]
            rewards.append(r)
        return Batch(frames=to_model(np.stack(frames)), actions=torch.from_numpy(np.stack(actions)),
                     rewards=torch.from_numpy(np.stack(rewards)), num_context=num_context)


def mixed_sample(real: SegmentReplay, model: SegmentReplay | None, batch_size: int,
                 real_ratio: float) -> tuple[TransitionBatch, int]:
    """`real_ratio` of the batch from `real`, the rest from `model` (all real while `model` is empty).
    Returns the batch (real rows first) and the number of real rows."""
    n_real = batch_size if model is None or len(model) == 0 else int(round(batch_size * real_ratio))
    parts = [real.sample(n_real)] if n_real > 0 else []
    if n_real < batch_size:
        parts.append(model.sample(batch_size - n_real))
    return TransitionBatch.cat(parts), n_real
