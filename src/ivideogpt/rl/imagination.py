"""The world model as a drop-in environment for the policy: the protocol MBPO needs, the adapter
for `ivideogpt.world_model.WorldModel` and its objectives, and the batched imagination loop."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Callable, Protocol, runtime_checkable

import numpy as np
import torch

from ivideogpt.data.batch import Batch
from ivideogpt.frames import to_model, to_uint8


@runtime_checkable
class ImaginationModel(Protocol):
    """What MBPO asks of a world model.

    `reset(context, actions)` takes context frames (B, Tc, 3, H, W) float in [-1, 1] and the
    (B, Tc - 1, A) actions between them; `step(actions (B, A))` returns the next frames
    (B, 3, H, W) in [-1, 1] and rewards (B,) on the env's scale. The train methods take clips
    from the real replay buffer (`Batch`) and do one optimizer step each. `state_dict` holds
    everything a resumed run needs (weights, optimizer states, sampling RNG).
    """

    num_context: int

    def reset(self, context: torch.Tensor, actions: torch.Tensor | None = None) -> Any: ...

    def step(self, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]: ...

    def train_tokenizer(self, batch: Batch, step: int) -> dict[str, float]: ...

    def train_transformer(self, batch: Batch, step: int) -> dict[str, float]: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class WorldModelAdapter:
    """`ivideogpt.world_model.WorldModel` plus its two objectives, each with its own Adam
    (Table 5: lr 1e-4, weight decay 0, gradients clipped to norm 1).

    Rewards: the transformer regresses symlog rewards when its config says `symlog_rewards`
    and `WorldModel.step` maps predictions back, so both sides here stay on the env's scale.
    `window`: the clip length the transformer trains on (MBPO's `sequence_length`); a branch longer than
    that re-anchors on its newest imagined frames (`WindowedRollout`), as the gym envs do. None: never.
    """

    def __init__(self, world_model: Any, tokenizer_objective: torch.nn.Module, transformer_objective: torch.nn.Module,
                 num_context: int = 2, lr: float = 1e-4, weight_decay: float = 0.0, grad_clip: float = 1.0,
                 window: int | None = None) -> None:
        from ivideogpt.world_model import WindowedRollout

        self.world_model, self.num_context, self.grad_clip = world_model, num_context, grad_clip
        self.rollout = WindowedRollout(world_model, window)
        self.tokenizer_objective, self.transformer_objective = tokenizer_objective, transformer_objective
        tokenizer_objective.requires_grad_(True)  # a transformer-mode objective freezes the shared tokenizer
        self.tokenizer_params = list(tokenizer_objective.parameters())
        self.transformer_params = list(world_model.transformer.parameters())
        self.tokenizer_opt = torch.optim.Adam(self.tokenizer_params, lr=lr, weight_decay=weight_decay)
        self.transformer_opt = torch.optim.Adam(self.transformer_params, lr=lr, weight_decay=weight_decay)

    @classmethod
    def from_modules(cls, tokenizer: torch.nn.Module, transformer: torch.nn.Module, num_context: int = 2,
                     lr: float = 1e-4, weight_decay: float = 0.0, seed: int | None = None,
                     tokenizer_loss: Any = None, window: int | None = None) -> "WorldModelAdapter":
        """Wrap a tokenizer and an action-conditioned transformer with a reward head; the tokenizer trains with
        `tokenizer_loss` (a `TokenizerObjectiveConfig`; default the paper's), never a perceptual term."""
        from ivideogpt.tokenizer.objective import TokenizerObjective
        from ivideogpt.transformer.objective import TransformerObjective
        from ivideogpt.world_model import WorldModel

        if transformer.reward_head is None or transformer.config.action_dim == 0:
            raise ValueError("MBPO needs an action-conditioned transformer with a reward head")
        tokenizer_objective = TokenizerObjective(tokenizer.config, tokenizer, perceptual=None, loss=tokenizer_loss)
        tokenizer_objective.to(next(tokenizer.parameters()).device)  # a discriminator it builds starts on the CPU
        transformer_objective = TransformerObjective(transformer, tokenizer)
        world_model = WorldModel(tokenizer, transformer, seed=seed)
        return cls(world_model, tokenizer_objective, transformer_objective, num_context, lr, weight_decay, window=window)

    def reset(self, context: torch.Tensor, actions: torch.Tensor | None = None) -> Any:
        return self.rollout.reset(context, actions)

    def step(self, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        frames, rewards = self.rollout.step(actions)
        return frames.clone(), rewards.clone()  # out of inference mode

    def _train(self, objective: torch.nn.Module, optimizer: torch.optim.Optimizer, params: list[torch.nn.Parameter],
               batch: Batch, step: int, prefix: str) -> dict[str, float]:
        objective.train()
        loss, logs = objective.compute_loss(batch.to(params[0].device), step)  # replay clips live on the CPU
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, self.grad_clip)
        optimizer.step()
        objective.eval()
        return {f"{prefix}/{k}": float(v) for k, v in logs.items()}

    def train_tokenizer(self, batch: Batch, step: int) -> dict[str, float]:
        return self._train(self.tokenizer_objective, self.tokenizer_opt, self.tokenizer_params, batch, step, "tokenizer")

    def train_transformer(self, batch: Batch, step: int) -> dict[str, float]:
        return self._train(self.transformer_objective, self.transformer_opt, self.transformer_params, batch, step,
                           "transformer")

    def state_dict(self) -> dict[str, Any]:
        """Weights of both objectives, both optimizers and the rollout sampler's RNG."""
        return {"tokenizer_objective": self.tokenizer_objective.state_dict(),
                "transformer": self.world_model.transformer.state_dict(),
                "tokenizer_opt": self.tokenizer_opt.state_dict(), "transformer_opt": self.transformer_opt.state_dict(),
                "generator": self.world_model.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.tokenizer_objective.load_state_dict(state["tokenizer_objective"])
        self.world_model.transformer.load_state_dict(state["transformer"])
        self.tokenizer_opt.load_state_dict(state["tokenizer_opt"])
        self.transformer_opt.load_state_dict(state["transformer_opt"])
        self._restore_generator(state["generator"])

    def _restore_generator(self, saved: torch.Tensor) -> None:
        """Restore the rollout sampler's RNG. A state saved on another device kind (`--device` changed on resume)
        has another layout (a CPU generator's state is 5,056 bytes, a CUDA one's 16): the sampler is then seeded
        from a hash of it instead, so the resumed run stays deterministic."""
        generator = self.world_model.generator
        if saved.numel() == generator.get_state().numel():
            generator.set_state(saved)
            return
        digest = hashlib.sha256(saved.cpu().numpy().tobytes()).digest()
        generator.manual_seed(int.from_bytes(digest[:8], "little") >> 1)


@dataclass
class ImaginedRollouts:
    """Branches ready for the model buffer: frames (B, k + H, h, w, 3) uint8 with the k real frames
    first, actions (B, k - 1 + H, A), rewards (B, k - 1 + H) (zeros over the real history)."""

    frames: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    history: int


@torch.no_grad()
def imagine(model: ImaginationModel, policy: Callable[[torch.Tensor], torch.Tensor], start_frames: np.ndarray,
            start_actions: np.ndarray, horizon: int, frame_stack: int) -> ImaginedRollouts:
    """Branch `horizon`-step rollouts from real frames: reset the model with the last `num_context`
    real frames, then let `policy` (uint8 stacks (B, 3 * frame_stack, h, w) -> actions (B, A)) act on
    frame stacks made of real, then imagined, frames; everything is batched over B.

    start_frames: (B, k, h, w, 3) uint8 with k >= max(frame_stack, num_context); start_actions: (B, k - 1, A).
    """
    b, k = start_frames.shape[:2]
    if k < max(frame_stack, model.num_context):
        raise ValueError(f"need >= {max(frame_stack, model.num_context)} start frames, got {k}")
    tc = model.num_context
    model.reset(to_model(start_frames[:, k - tc:]), torch.from_numpy(start_actions[:, k - tc:]).float())
    frames = [start_frames[:, i] for i in range(k)]
    actions, rewards = [], []
    for _ in range(horizon):
        stack = np.concatenate([f.transpose(0, 3, 1, 2) for f in frames[-frame_stack:]], axis=1)
        action = policy(torch.from_numpy(stack)).float()
        next_frame, reward = model.step(action)
        frames.append(to_uint8(next_frame))
        actions.append(action.cpu().numpy())
        rewards.append(reward.float().cpu().numpy())
    history_rewards = np.zeros((b, k - 1), np.float32)
    return ImaginedRollouts(
        frames=np.stack(frames, axis=1),
        actions=np.concatenate([start_actions.astype(np.float32), np.stack(actions, axis=1)], axis=1),
        rewards=np.concatenate([history_rewards, np.stack(rewards, axis=1)], axis=1),
        history=k - 1)
