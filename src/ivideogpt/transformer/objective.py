"""`TransformerObjective`: the transformer's `compute_loss(batch, step) -> (loss, logs)` in every training mode.

Modes (`TransformerObjectiveConfig.mode`):
- "transformer": the tokenizer is frozen (eval, no grad) and only turns frames into ids; the loss
  is cross-entropy on future tokens plus reward MSE. Covers action-free pre-training
  (`action_dim=0`: batch actions are not used) and action-conditioned fine-tuning (load an
  action-free checkpoint with `WorldModelTransformer.load_pretrained`; the new heads start at zero).
- "full": transformer and tokenizer both train; the tokenizer's own objective (reconstruction,
  quantizer, perceptual, optional adversarial terms) is added with `tokenizer_weight`. Ids for the
  transformer come from the current tokenizer without gradient (quantization is not differentiable).
- "tokenizer": tokenizer adaptation to a new domain with the transformer frozen; the loss is the
  tokenizer objective, and the frozen transformer's cross-entropy is logged to monitor it.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from ivideogpt.data.batch import Batch, TokenBatch
from ivideogpt.transformer.model import WorldModelTransformer


@dataclass
class TransformerObjectiveConfig:
    """What is trained and how losses are weighted (the paper blends losses with equal weights)."""

    mode: Literal["transformer", "full", "tokenizer"] = "transformer"
    reward_weight: float = 1.0  # weight of reward MSE relative to cross-entropy
    future_only_softmax: bool = False  # cross-entropy over the future codes only, not the whole vocabulary
    #   (the paper's); sampling reads only those, and the output layer costs half
    tokenizer_weight: float = 1.0  # weight of the tokenizer objective ("full" mode)
    monitor_transformer: bool = True  # "tokenizer" mode: still log the frozen transformer's ce
    history_sampling: float = 0.0  # fraction of future input codes swapped for the model's own argmax
    #   predictions (parallel scheduled sampling); rollouts read their own codes, and a model trained
    #   only on true ones lets its errors compound from frame to frame (docs/training.md)
    sample_temperature: float = 1.0  # make_samples rollouts
    sample_top_k: int | None = 100
    sample_seed: int = 0

    def __post_init__(self) -> None:
        if self.mode not in ("transformer", "full", "tokenizer"):
            raise ValueError(f"TransformerObjectiveConfig.mode must be 'transformer', 'full' or 'tokenizer', "
                             f"got {self.mode!r}")
        for name in ("reward_weight", "tokenizer_weight", "sample_temperature"):
            if getattr(self, name) < 0:
                raise ValueError(f"TransformerObjectiveConfig.{name} must be >= 0, got {getattr(self, name)!r}")
        if not 0.0 <= self.history_sampling <= 1.0:
            raise ValueError(f"TransformerObjectiveConfig.history_sampling must be in [0, 1], "
                             f"got {self.history_sampling!r}")


class TransformerObjective(nn.Module):
    """Tokenize a `Batch`, lay it out, and score the transformer (and, by mode, the tokenizer)."""

    def __init__(self, transformer: WorldModelTransformer, tokenizer: nn.Module,
                 config: TransformerObjectiveConfig | None = None, tokenizer_objective: nn.Module | None = None) -> None:
        super().__init__()
        self.config = config or TransformerObjectiveConfig()
        self.transformer = transformer
        self.tokenizer = tokenizer
        self._tokenizer_objective: tuple[nn.Module, ...] = ()  # a tuple: its modules are registered here instead
        if self.config.mode != "transformer":
            if tokenizer_objective is None:
                from ivideogpt.tokenizer.objective import TokenizerObjective

                tokenizer_objective = TokenizerObjective(tokenizer.config, tokenizer)
            if getattr(tokenizer_objective, "tokenizer", tokenizer) is not tokenizer:
                raise ValueError("tokenizer_objective must wrap the same tokenizer module")
            self._tokenizer_objective = (tokenizer_objective,)
            self.discriminator = getattr(tokenizer_objective, "discriminator", None)
        self.tokenizer.requires_grad_(self.config.mode != "transformer")
        self.transformer.requires_grad_(self.config.mode != "tokenizer")
        self.train()

    def train(self, mode: bool = True) -> "TransformerObjective":
        """Like nn.Module.train, but frozen parts stay in eval mode (no dropout, no codebook updates)."""
        super().train(mode)
        if self.config.mode == "transformer":
            self.tokenizer.eval()
        if self.config.mode == "tokenizer":
            self.transformer.eval()
        return self

    def compute_loss(self, batch: Batch | TokenBatch, step: int) -> tuple[Tensor, dict[str, Tensor]]:
        """Total loss and detached scalar logs ("ce", "accuracy", "reward_mse", "tokenizer/...", "loss")."""
        mode = self.config.mode
        loss: Tensor | None = None
        logs: dict[str, Tensor] = {}
        if mode != "tokenizer" or self.config.monitor_transformer:
            grad = torch.no_grad() if mode == "tokenizer" else contextlib.nullcontext()
            with grad:
                loss, logs = self._transformer_loss(batch)
            if mode == "tokenizer":
                loss = None
        if mode != "transformer":
            tok_loss, tok_logs = self._tokenizer_objective[0].compute_loss(batch, step)
            logs.update({f"tokenizer/{k}": v.detach() for k, v in tok_logs.items()})
            weighted = self.config.tokenizer_weight * tok_loss
            loss = weighted if loss is None else loss + weighted
        logs["loss"] = loss.detach()
        return loss, logs

    def _transformer_loss(self, batch: Batch | TokenBatch) -> tuple[Tensor, dict[str, Tensor]]:
        num_context = batch.num_context
        if isinstance(batch, TokenBatch):  # encoded once by the frozen tokenizer (train/token_cache.py)
            if self.config.mode != "transformer":
                raise ValueError(f"pre-encoded token batches need the tokenizer frozen (mode 'transformer'), "
                                 f"not mode {self.config.mode!r}")
            context_ids, future_ids = batch.context_ids, batch.future_ids
        else:
            with torch.no_grad():
                context_ids, future_ids = self.tokenizer.encode(batch.context_frames, batch.future_frames)
        model = self.transformer
        actions = batch.actions if model.config.action_dim > 0 else None  # action-free: actions unused
        rewards = None
        if model.reward_head is not None:
            if batch.rewards is None:
                raise ValueError("the transformer has a reward head but the batch has no rewards "
                                 "(set reward_head=False or provide Batch.rewards)")
            rewards = batch.rewards[:, num_context:]
        future_inputs = None
        if self.config.history_sampling > 0 and model.training:
            future_inputs = self._own_predictions(context_ids, future_ids, actions)
        loss, logs = model.loss(context_ids, future_ids, actions, rewards, reward_weight=self.config.reward_weight,
                                future_only=self.config.future_only_softmax, future_inputs=future_inputs)
        if future_inputs is not None:
            logs["history_swapped"] = (future_inputs != future_ids).float().mean()
        return loss, logs

    @torch.no_grad()
    def _own_predictions(self, context_ids: Tensor, future_ids: Tensor, actions: Tensor | None) -> Tensor:
        """`future_ids` with a `history_sampling` fraction of codes swapped for the model's teacher-forced argmax.

        One extra forward pass without gradients (parallel scheduled sampling, Duckworth et al. 2019):
        the model then learns to predict the true next frames from histories holding its own mistakes,
        as in a rollout. The draw uses torch's global generator, which checkpoints save, so resume stays exact.
        """
        logits = self.transformer(context_ids, future_ids, actions, future_only=True).logits  # (B, n, K)
        predicted = logits.argmax(-1).reshape(future_ids.shape)
        swap = torch.rand(future_ids.shape, device=future_ids.device) < self.config.history_sampling
        return torch.where(swap, predicted, future_ids)

    @torch.no_grad()
    def make_samples(self, batch: Batch) -> dict[str, Tensor]:
        """Predicted and reconstructed videos, each (B, T, 3, H, W) in [-1, 1] (ground truth is `batch.frames`).

        "prediction": the context frames, then a world-model rollout from them under the batch's actions.
        "reconstruction": the tokenizer's reconstruction of the whole segment (the prediction's ceiling).
        """
        from ivideogpt.world_model import WorldModel

        was_training = self.training
        c, nc, total = self.config, batch.num_context, batch.frames.shape[1]
        world = WorldModel(self.tokenizer, self.transformer, temperature=c.sample_temperature, top_k=c.sample_top_k,
                           seed=c.sample_seed)
        context_actions = future_actions = None
        if self.transformer.config.action_dim > 0:
            if batch.actions is None:
                raise ValueError("an action-conditioned transformer needs Batch.actions for samples")
            context_actions, future_actions = batch.actions[:, : nc - 1], batch.actions[:, nc - 1 : total - 1]
        predicted, _ = world.rollout(batch.context_frames, future_actions, horizon=total - nc,
                                     context_actions=context_actions)
        context_ids, future_ids = self.tokenizer.encode(batch.context_frames, batch.future_frames)
        recon = torch.cat(self.tokenizer.decode(context_ids, future_ids), dim=1)
        self.train(was_training)
        return {"prediction": torch.cat([batch.context_frames, predicted.to(batch.frames.dtype)], dim=1).clamp(-1, 1),
                "reconstruction": recon.clamp(-1, 1)}
