"""MBPO with a video world model (Algorithm 1 of the paper): the world model is trained online on
the real replay buffer, branches short imagined rollouts from real states with the current policy,
and the actor-critic trains on a mix of real and imagined transitions.

All intervals are in env (simulator) steps, as in Table 5; the loop calls `on_agent_step`
once per agent step, i.e. every `action_repeat` env steps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from ivideogpt.data.batch import Batch
from ivideogpt.rl.imagination import ImaginationModel, imagine
from ivideogpt.rl.replay import SegmentReplay, TransitionBatch, mixed_sample


@dataclass
class MBPOConfig:
    """Table 5 defaults (model-based RL hyperparameters of the paper)."""

    init_rollout_batch: int = 640       # branches imagined once, when MBPO starts
    rollout_interval: int = 200         # env steps between imagination rounds
    rollout_batch: int = 32             # branches per round
    horizon: int = 10
    init_model_train_steps: int = 1000  # world-model steps on the seed data before the first rollout
    tokenizer_interval: int = 40        # env steps between tokenizer updates
    transformer_interval: int = 10      # env steps between transformer (+ reward head) updates
    model_batch_size: int = 16
    sequence_length: int = 12
    num_context: int = 2
    tokenizer_future_frames: int = 5    # future frames sampled per clip for the tokenizer
    model_lr: float = 1e-4
    model_weight_decay: float = 0.0
    real_ratio: float = 0.5
    start_env_steps: int = 4000         # MBPO starts with the agent updates (after the seed frames)
    model_buffer_capacity: int = 100_000  # imagined transitions kept (oldest leave first)
    world_model: str | None = None  # pre-trained world-model checkpoint it starts from (None: the presets below)
    tokenizer_preset: str = "tokenizer_64"  # from-scratch tokenizer
    transformer_preset: str = "transformer_small"  # from-scratch transformer

    def __post_init__(self) -> None:
        positive = ("init_rollout_batch", "rollout_interval", "rollout_batch", "horizon", "tokenizer_interval",
                    "transformer_interval", "model_batch_size", "num_context", "tokenizer_future_frames",
                    "model_lr", "model_buffer_capacity")
        for name in positive:
            if getattr(self, name) <= 0:
                raise ValueError(f"MBPOConfig.{name} must be > 0, got {getattr(self, name)!r}")
        if self.init_model_train_steps < 0 or self.start_env_steps < 0 or self.model_weight_decay < 0:
            raise ValueError("MBPOConfig.init_model_train_steps, start_env_steps and model_weight_decay must be >= 0")
        if self.sequence_length <= self.num_context:
            raise ValueError(f"MBPOConfig.sequence_length ({self.sequence_length}) must exceed "
                             f"num_context ({self.num_context})")
        if self.tokenizer_future_frames > self.sequence_length - self.num_context:
            raise ValueError(f"MBPOConfig.tokenizer_future_frames ({self.tokenizer_future_frames}) must be <= "
                             f"sequence_length - num_context ({self.sequence_length - self.num_context})")
        if not 0.0 <= self.real_ratio <= 1.0:
            raise ValueError(f"MBPOConfig.real_ratio must be in [0, 1], got {self.real_ratio!r}")

    @classmethod
    def paper(cls) -> "MBPOConfig":
        return cls()

    @classmethod
    def tiny(cls) -> "MBPOConfig":
        return cls(init_rollout_batch=8, rollout_interval=20, rollout_batch=4, horizon=3,
                   init_model_train_steps=2, tokenizer_interval=8, transformer_interval=4, model_batch_size=2,
                   sequence_length=4, num_context=2, tokenizer_future_frames=2, start_env_steps=40,
                   model_buffer_capacity=2000, tokenizer_preset="tokenizer_tiny", transformer_preset="transformer_tiny")

    def check_action_repeat(self, action_repeat: int) -> None:
        """Intervals must fall on agent steps."""
        for name in ("rollout_interval", "tokenizer_interval", "transformer_interval", "start_env_steps"):
            if getattr(self, name) % action_repeat:
                raise ValueError(f"MBPOConfig.{name} ({getattr(self, name)}) must be a multiple of "
                                 f"action_repeat ({action_repeat})")


Policy = Callable[[torch.Tensor], torch.Tensor]


class MBPO:
    """Owns the world model's online training schedule, the model buffer and the real/model mix."""

    def __init__(self, config: MBPOConfig, model: ImaginationModel, real: SegmentReplay,
                 frame_stack: int, nstep: int, discount: float, seed: int | None = None) -> None:
        if model.num_context != config.num_context:
            raise ValueError(f"world model uses {model.num_context} context frames, config says {config.num_context}")
        self.config, self.model, self.real, self.frame_stack = config, model, real, frame_stack
        self.model_buffer = SegmentReplay(config.model_buffer_capacity, frame_stack, nstep, discount, seed)
        self.rng = np.random.default_rng(seed)
        self.started = False
        self.events: dict[str, list[int]] = {"tokenizer": [], "transformer": [], "rollout": []}
        self.model_updates = 0

    def _tokenizer_batch(self) -> Batch:
        """Context frames plus `tokenizer_future_frames` future frames sampled (in order) from each clip."""
        c = self.config
        clip = self.real.sample_clips(c.model_batch_size, c.sequence_length, c.num_context)
        future = np.sort(self.rng.choice(np.arange(c.num_context, c.sequence_length), c.tokenizer_future_frames,
                                         replace=False))
        keep = torch.as_tensor(np.concatenate([np.arange(c.num_context), future]))
        return Batch(frames=clip.frames[:, keep], num_context=c.num_context)

    def train_model(self, env_step: int, tokenizer: bool, transformer: bool) -> dict[str, float]:
        logs: dict[str, float] = {}
        c = self.config
        if tokenizer:
            logs |= self.model.train_tokenizer(self._tokenizer_batch(), self.model_updates)
            self.events["tokenizer"].append(env_step)
        if transformer:
            batch = self.real.sample_clips(c.model_batch_size, c.sequence_length, c.num_context)
            logs |= self.model.train_transformer(batch, self.model_updates)
            self.events["transformer"].append(env_step)
        self.model_updates += 1
        return logs

    def rollout(self, num_branches: int, policy: Policy, env_step: int) -> dict[str, float]:
        """Imagine `num_branches` rollouts (in chunks of `rollout_batch`) and store them."""
        c = self.config
        k = max(self.frame_stack, c.num_context)
        rewards = []
        for start in range(0, num_branches, c.rollout_batch):
            n = min(c.rollout_batch, num_branches - start)
            frames, actions = self.real.sample_frames(n, k)
            out = imagine(self.model, policy, frames, actions, c.horizon, self.frame_stack)
            for i in range(n):
                self.model_buffer.add_episode(out.frames[i], out.actions[i], out.rewards[i], history=out.history)
            rewards.append(out.rewards[:, out.history:])
        self.events["rollout"].append(env_step)
        return {"imagined_reward_mean": float(np.concatenate(rewards).mean()),
                "model_buffer_size": float(len(self.model_buffer))}

    def on_agent_step(self, env_step: int, policy: Policy) -> dict[str, float]:
        """Run whatever Algorithm 1 schedules at `env_step` (called once per agent step, before the
        agent update): the initial model training and rollouts, then periodic training and rollouts."""
        c = self.config
        if env_step < c.start_env_steps:
            return {}
        if not self.started:
            self.started = True
            logs: dict[str, float] = {}
            for _ in range(c.init_model_train_steps):
                logs = self.train_model(env_step, tokenizer=True, transformer=True)
            return logs | self.rollout(c.init_rollout_batch, policy, env_step)
        logs = {}
        if env_step % c.transformer_interval == 0 or env_step % c.tokenizer_interval == 0:
            logs |= self.train_model(env_step, tokenizer=env_step % c.tokenizer_interval == 0,
                                     transformer=env_step % c.transformer_interval == 0)
        if env_step % c.rollout_interval == 0:
            logs |= self.rollout(c.rollout_batch, policy, env_step)
        return logs

    def state_dict(self) -> dict:
        """Schedule, model buffer, RNG and the world model's own state (for a resumable checkpoint)."""
        return {"started": self.started, "events": {k: list(v) for k, v in self.events.items()},
                "model_updates": self.model_updates, "rng": self.rng.bit_generator.state,
                "model_buffer": self.model_buffer.state_dict(), "model": self.model.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.started, self.model_updates = state["started"], state["model_updates"]
        self.events = {k: list(v) for k, v in state["events"].items()}
        self.rng.bit_generator.state = state["rng"]
        self.model_buffer.load_state_dict(state["model_buffer"])
        self.model.load_state_dict(state["model"])

    def sample(self, batch_size: int) -> tuple[TransitionBatch, int]:
        """A `real_ratio` mix (all real until the first rollout) and its number of real rows."""
        return mixed_sample(self.real, self.model_buffer if self.started else None, batch_size, self.config.real_ratio)
