"""DrQ-v2: a visual actor-critic (DDPG-style) with random-shift augmentation, clipped double Q,
n-step returns and a linearly decaying exploration std.

Steps here are agent steps (one policy action; the environment may repeat it), as in DrQ-v2.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ivideogpt.rl.networks import Actor, Critic, Encoder, RandomShift
from ivideogpt.rl.replay import TransitionBatch


@dataclass
class DrQV2Config:
    """DrQ-v2's published defaults (the "easy" std schedule, which the paper's Meta-World runs use)."""

    lr: float = 1e-4
    feature_dim: int = 50
    hidden_dim: int = 1024
    encoder_channels: int = 32
    encoder_layers: int = 4
    batch_size: int = 256
    nstep: int = 3
    discount: float = 0.99
    critic_target_tau: float = 0.01
    update_every_steps: int = 2        # agent steps between gradient updates
    num_seed_frames: int = 4000        # env (simulator) steps of random actions before any update
    num_expl_steps: int = 2000         # agent steps of uniform random actions
    stddev_init: float = 1.0           # linear exploration-noise schedule, in agent steps
    stddev_final: float = 0.1
    stddev_duration: int = 100_000
    stddev_clip: float = 0.3
    aug_pad: int = 4
    replay_capacity: int = 1_000_000   # transitions

    def __post_init__(self) -> None:
        positive = ("lr", "feature_dim", "hidden_dim", "encoder_channels", "encoder_layers", "batch_size",
                    "nstep", "update_every_steps", "stddev_duration", "replay_capacity")
        for name in positive:
            if getattr(self, name) <= 0:
                raise ValueError(f"DrQV2Config.{name} must be > 0, got {getattr(self, name)!r}")
        for name in ("num_seed_frames", "num_expl_steps", "aug_pad", "stddev_clip", "stddev_final"):
            if getattr(self, name) < 0:
                raise ValueError(f"DrQV2Config.{name} must be >= 0, got {getattr(self, name)!r}")
        if not 0.0 <= self.discount <= 1.0:
            raise ValueError(f"DrQV2Config.discount must be in [0, 1], got {self.discount!r}")
        if not 0.0 < self.critic_target_tau <= 1.0:
            raise ValueError(f"DrQV2Config.critic_target_tau must be in (0, 1], got {self.critic_target_tau!r}")
        if self.stddev_init < self.stddev_final:
            raise ValueError(f"DrQV2Config.stddev_init ({self.stddev_init}) must be >= stddev_final ({self.stddev_final})")

    @classmethod
    def paper(cls) -> "DrQV2Config":
        return cls()

    @classmethod
    def tiny(cls) -> "DrQV2Config":
        """Small and fast, for tests and CPU smoke runs."""
        return cls(feature_dim=16, hidden_dim=64, encoder_channels=8, encoder_layers=2, batch_size=32,
                   num_seed_frames=40, num_expl_steps=20, stddev_duration=2000, replay_capacity=20_000)

    def stddev(self, step: int) -> float:
        """Exploration std at agent step `step`: linear from stddev_init to stddev_final."""
        mix = min(max(step / self.stddev_duration, 0.0), 1.0)
        return (1.0 - mix) * self.stddev_init + mix * self.stddev_final


class DrQV2Agent:
    """Encoder + actor + twin critic (+ EMA target critic) and their Adam optimizers."""

    def __init__(self, obs_shape: tuple[int, int, int], action_dim: int, config: DrQV2Config,
                 device: str | torch.device = "cpu") -> None:
        self.config, self.action_dim, self.device = config, action_dim, torch.device(device)
        c = config
        self.encoder = Encoder(obs_shape, c.encoder_channels, c.encoder_layers).to(self.device)
        dims = (self.encoder.repr_dim, action_dim, c.feature_dim, c.hidden_dim)
        self.actor = Actor(*dims).to(self.device)
        self.critic = Critic(*dims).to(self.device)
        self.critic_target = Critic(*dims).to(self.device)
        self.critic_target.load_state_dict(self.critic.state_dict())
        self.critic_target.requires_grad_(False)
        self.aug = RandomShift(c.aug_pad)
        self.encoder_opt = torch.optim.Adam(self.encoder.parameters(), lr=c.lr)
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=c.lr)
        self.critic_opt = torch.optim.Adam(self.critic.parameters(), lr=c.lr)

    @torch.no_grad()
    def act(self, obs: np.ndarray | torch.Tensor, step: int, eval_mode: bool) -> torch.Tensor:
        """obs (C, H, W) or (B, C, H, W) uint8 -> actions (A,) or (B, A) float32 in [-1, 1] (on the CPU).

        Evaluation takes the mean action; training samples with the scheduled std, and is
        uniform random during the first `num_expl_steps` agent steps."""
        obs_t = torch.as_tensor(obs, device=self.device)
        single = obs_t.ndim == 3
        obs_t = obs_t[None] if single else obs_t
        dist = self.actor(self.encoder(obs_t), self.config.stddev(step))
        if eval_mode:
            action = dist.mean
        else:
            action = dist.sample(clip=None)
            if step < self.config.num_expl_steps:
                action = torch.empty_like(action).uniform_(-1.0, 1.0)
        action = action.float().cpu()
        return action[0] if single else action

    def update(self, batch: TransitionBatch, step: int) -> dict[str, float]:
        """One critic step (encoder trained through it) then one actor step, then the target EMA."""
        batch = batch.to(self.device)
        obs = self.encoder(self.aug(batch.obs))
        with torch.no_grad():
            next_obs = self.encoder(self.aug(batch.next_obs))
        logs = self._update_critic(obs, batch, next_obs, step)
        logs.update(self._update_actor(obs.detach(), step))
        tau = self.config.critic_target_tau
        with torch.no_grad():
            for p, tp in zip(self.critic.parameters(), self.critic_target.parameters()):
                tp.lerp_(p, tau)
        return logs

    def critic_loss(self, obs: torch.Tensor, batch: TransitionBatch, next_obs: torch.Tensor,
                    step: int) -> tuple[torch.Tensor, dict[str, float]]:
        """Clipped double-Q n-step TD loss on encoded observations."""
        std = self.config.stddev(step)
        with torch.no_grad():
            next_action = self.actor(next_obs, std).sample(clip=self.config.stddev_clip)
            tq1, tq2 = self.critic_target(next_obs, next_action)
            target = batch.reward + batch.discount * torch.min(tq1, tq2)
        q1, q2 = self.critic(obs, batch.action)
        loss = F.mse_loss(q1, target) + F.mse_loss(q2, target)
        return loss, {"critic_loss": loss.item(), "critic_q1": q1.mean().item(),
                      "critic_target_q": target.mean().item(), "batch_reward": batch.reward.mean().item()}

    def _update_critic(self, obs: torch.Tensor, batch: TransitionBatch, next_obs: torch.Tensor,
                       step: int) -> dict[str, float]:
        loss, logs = self.critic_loss(obs, batch, next_obs, step)
        self.encoder_opt.zero_grad(set_to_none=True)
        self.critic_opt.zero_grad(set_to_none=True)
        loss.backward()
        self.critic_opt.step()
        self.encoder_opt.step()
        return logs

    def _update_actor(self, obs: torch.Tensor, step: int) -> dict[str, float]:
        action = self.actor(obs, self.config.stddev(step)).sample(clip=self.config.stddev_clip)
        q1, q2 = self.critic(obs, action)
        loss = -torch.min(q1, q2).mean()
        self.actor_opt.zero_grad(set_to_none=True)
        loss.backward()
        self.actor_opt.step()
        return {"actor_loss": loss.item(), "actor_stddev": self.config.stddev(step)}

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Flat tensor dict (safetensors-ready) of all network weights."""
        out: dict[str, torch.Tensor] = {}
        for name in ("encoder", "actor", "critic", "critic_target"):
            for key, value in getattr(self, name).state_dict().items():
                out[f"{name}.{key}"] = value.detach().cpu().contiguous()
        return out

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        for name in ("encoder", "actor", "critic", "critic_target"):
            prefix = f"{name}."
            getattr(self, name).load_state_dict({k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)})

    def optimizer_state_dict(self) -> dict:
        return {name: getattr(self, name).state_dict() for name in ("encoder_opt", "actor_opt", "critic_opt")}

    def load_optimizer_state_dict(self, state: dict) -> None:
        for name, value in state.items():
            getattr(self, name).load_state_dict(value)

    def config_dict(self) -> dict:
        return asdict(self.config)
