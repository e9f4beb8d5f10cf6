"""Cut a segment out of an episode and turn it into a model-ready item.

A segment of `segment_length` frames starts at recorded frame `start` and keeps every `step`-th
frame: recorded frames `start + k * step`. Per kept frame k (recorded index s_k):
- actions: the `step` recorded actions s_k .. s_k + step - 1, i.e. exactly those leading from
  kept frame k to kept frame k + 1, combined by the source's `action_stride`: "concat"
  (A * step values, lossless), "sum" (delta actions) or "first". Rows past the episode's end
  (only ever for the last kept frame, whose action has no outcome in the segment) are zeros.
- rewards: the sum of recorded rewards over (s_k - step, s_k], i.e. all reward received on
  the way to kept frame k (step 1: just `rewards[s_k]`).
With `sampled_future > 0` only the context and a sorted random subset of future frames are
returned, and actions/rewards are dropped (they would not describe transitions between them).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ivideogpt.data.actions import ActionBounds
from ivideogpt.data.augment import center_square, color_jitter, crop_resize, sample_params, to_uint8_frames
from ivideogpt.data.config import DataConfig
from ivideogpt.data.episode import Episode
from ivideogpt.frames import to_model


def segment_span(segment_length: int, step: int) -> int:
    """Recorded frames a segment covers, first to last kept frame inclusive."""
    return (segment_length - 1) * step + 1


def choose_positions(config: DataConfig, rng: np.random.Generator | None) -> np.ndarray:
    """Positions (0 .. segment_length - 1) of the frames to return: all, or context + sampled future."""
    if not config.sampled_future:
        return np.arange(config.segment_length)
    future = np.arange(config.num_context, config.segment_length)
    if rng is None:  # deterministic fallback: evenly spaced future frames
        picked = future[np.linspace(0, len(future) - 1, config.sampled_future).round().astype(int)]
    else:
        picked = np.sort(rng.choice(future, size=config.sampled_future, replace=False))
    return np.concatenate([np.arange(config.num_context), picked])


def segment_actions(actions: np.ndarray, indices: np.ndarray, step: int, stride: str) -> np.ndarray:
    """(L, A) episode actions -> (T, A') for kept recorded frames `indices` (see module docstring)."""
    length, width = actions.shape
    if step == 1 or stride == "first":
        return actions[indices]
    rows = indices[:, None] + np.arange(step)[None, :]  # (T, step)
    valid = rows < length
    gathered = np.where(valid[..., None], actions[np.minimum(rows, length - 1)], 0.0)  # (T, step, A)
    if stride == "sum":
        return gathered.sum(axis=1).astype(np.float32)
    return gathered.reshape(len(indices), step * width).astype(np.float32)


def segment_rewards(rewards: np.ndarray, indices: np.ndarray, step: int) -> np.ndarray:
    """(L,) episode rewards -> (T,) reward received on arriving at each kept frame."""
    if step == 1:
        return rewards[indices].astype(np.float32)
    cumulative = np.concatenate([[0.0], np.cumsum(rewards, dtype=np.float64)])
    low = np.maximum(indices - step + 1, 0)
    return (cumulative[indices + 1] - cumulative[low]).astype(np.float32)


def output_action_dim(action_dim: int, step: int, stride: str) -> int:
    """Width of segment actions for episodes of `action_dim` wide actions."""
    return action_dim * step if (stride == "concat" and step > 1) else action_dim


def make_item(episode: Episode, start: int, step: int, config: DataConfig, *, stride: str = "concat",
              bounds: ActionBounds | None = None, rng: np.random.Generator | None = None,
              augment: bool = False, with_actions: bool = True, with_rewards: bool = True) -> dict[str, Any]:
    """The item for the segment of `episode` starting at `start`.

    frames (T, 3, R, R) float in [-1, 1]; actions (T, A') float32 and rewards (T,) float32 when
    requested and present; frame_indices (T,) recorded frame numbers. `rng` draws the future
    subset and, with `augment`, the crop and jitter.
    """
    positions = choose_positions(config, rng)
    indices = start + positions * step
    if indices[-1] >= len(episode):
        raise IndexError(f"segment starting at {start} with step {step} runs past the episode ({len(episode)} frames)")
    raw = torch.from_numpy(np.ascontiguousarray(episode.frames[indices]))  # (T, H, W, 3) uint8
    height, width = raw.shape[1:3]
    if augment and rng is not None:
        params = sample_params(height, width, rng, config.crop_scale, config.crop_ratio, config.brightness,
                               config.contrast, config.saturation, config.hue)
        pixels = to_uint8_frames(color_jitter(crop_resize(raw, params.crop, config.resolution), params))
    elif height == width == config.resolution:
        pixels = raw
    else:
        pixels = to_uint8_frames(crop_resize(raw, center_square(height, width), config.resolution))
    item: dict[str, Any] = {"frames": to_model(pixels), "frame_indices": torch.from_numpy(indices.astype(np.int64))}
    dense = not config.sampled_future
    if with_actions and dense and episode.actions is not None:
        actions = episode.actions if bounds is None else bounds.normalize(episode.actions)
        item["actions"] = torch.from_numpy(segment_actions(actions, indices, step, stride))
    if with_rewards and dense and episode.rewards is not None:
        item["rewards"] = torch.from_numpy(segment_rewards(episode.rewards, indices, step))
    return item
