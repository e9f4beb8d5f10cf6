"""`WorldModelTransformer`: a LLaMA core (RMSNorm, SwiGLU, RoPE) over the token layout, with an
untied LM head, an action projection onto slot embeddings and a reward head on frame-last tokens.

The HF `LlamaModel` is called directly (never `generate`), with `inputs_embeds` so actions can be
added to slot embeddings, and with an optional KV cache for frame-by-frame rollouts.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from transformers import LlamaConfig, LlamaModel
from transformers.cache_utils import Cache

from ivideogpt.transformer.cache import GrowingCache
from ivideogpt.transformer.config import TransformerConfig
from ivideogpt.transformer.decode import decode_token
from ivideogpt.transformer.layout import SequenceLayout

# transformers 5 renamed the forward's `past_key_values` argument to `cache`.
_CACHE_ARG = "cache" if "cache" in inspect.signature(LlamaModel.forward).parameters else "past_key_values"
OPTIONAL_PREFIXES = ("action_proj.", "reward_head.")
SPATIAL_FREQUENCIES = 6  # octaves of cell-centre Fourier features: the finest has a period of 1/32 frame


def symlog(x: Tensor) -> Tensor:
    return torch.sign(x) * torch.log1p(x.abs())


def symexp(x: Tensor) -> Tensor:
    return torch.sign(x) * torch.expm1(x.abs())


@dataclass
class TransformerOutput:
    """Predictions for the future part of a segment.

    logits:  (B, n, V) next-token logits at the positions that predict the layout's targets: the
             n = Tf * h'w' future codes (the official layout adds the future slots but the first).
    targets: (B, n) the vocabulary ids those positions must predict.
    rewards: (B, Tf) predicted reward of each future frame (symlog space if configured), or None.
    """

    logits: Tensor
    targets: Tensor
    rewards: Tensor | None


class WorldModelTransformer(nn.Module):
    """Next-token model over `[S1] ctx ... [S2] fut ...` sequences (see `SequenceLayout`)."""

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.config = config
        self.layout = SequenceLayout(config.codebook_size, config.context_grid, config.future_grid, config.layout)
        llama = LlamaConfig(
            vocab_size=config.vocab_size, hidden_size=config.hidden_size, intermediate_size=config.ffn_size,
            num_hidden_layers=config.num_layers, num_attention_heads=config.num_heads,
            num_key_value_heads=config.num_heads, hidden_act="silu", rms_norm_eps=config.rms_norm_eps,
            rope_theta=config.rope_theta, attention_dropout=config.dropout, initializer_range=config.init_std,
            tie_word_embeddings=False, attention_bias=False, mlp_bias=False, use_cache=False,
            pad_token_id=None, bos_token_id=None, eos_token_id=None,
        )
        llama._attn_implementation = config.attn_implementation
        self.core = LlamaModel(llama)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        nn.init.normal_(self.lm_head.weight, std=config.init_std)
        # Dropout as in GPT-2: on the input embeddings and on each residual branch's output
        # (attention-probability dropout is LlamaConfig.attention_dropout).
        self.embed_dropout = nn.Dropout(config.dropout)
        self.resid_dropout = nn.Dropout(config.dropout)
        if config.dropout > 0:
            for layer in self.core.layers:
                layer.self_attn.o_proj.register_forward_hook(self._drop_residual)
                layer.mlp.down_proj.register_forward_hook(self._drop_residual)
        action_features = config.action_dim * (1 + 2 * config.action_frequencies)
        self.action_proj = nn.Linear(action_features, config.hidden_size) if config.action_dim else None
        self.reward_head = nn.Linear(config.hidden_size, 1) if config.reward_head else None
        self.spatial_proj = (nn.Linear(4 * SPATIAL_FREQUENCIES, config.hidden_size, bias=False)
                             if config.spatial_positions else None)
        if self.spatial_proj is not None:
            nn.init.normal_(self.spatial_proj.weight, std=config.init_std)
        self._zero_init_heads()

    def _drop_residual(self, module: nn.Module, inputs: Any, output: Tensor) -> Tensor:
        return self.resid_dropout(output)

    def _zero_init_heads(self) -> None:
        """Zero action projection: an action-free checkpoint behaves identically when actions are added."""
        for head in (self.action_proj, self.reward_head):
            if head is not None:
                nn.init.zeros_(head.weight)
                nn.init.zeros_(head.bias)

    # --- building blocks (shared by training and rollouts) ----------------------------------
    def embed(self, ids: Tensor, actions: Tensor | None = None, num_context: int | None = None) -> Tensor:
        """(B, L) ids of whole frames -> (B, L, H) embeddings; `actions` (B, T-1, A) go where the layout puts them."""
        embeds = self.core.embed_tokens(ids)
        if actions is not None:
            if num_context is None:
                raise ValueError("embed needs num_context to place actions")
            num_future = self.layout.num_future(ids.shape[1], num_context)
            positions, owner = self.layout.action_index(num_context, num_future, self.config.action_to_frame)
            if actions.shape[1] != num_context + num_future - 1:
                raise ValueError(f"embed needs one action per frame transition, got {actions.shape[1]} actions "
                                 f"for {num_context + num_future} frames")
            proj = self.project_actions(actions)[:, owner.to(actions.device)]  # (B, P, H)
            embeds = embeds.index_add(1, positions.to(embeds.device), proj.to(embeds.dtype))
        return embeds

    def project_actions(self, actions: Tensor) -> Tensor:
        """(..., A) actions -> (..., H) embedding offsets; ValueError on a wrong action size.

        With `action_frequencies` F the projection reads [a, sin(2^k pi a), cos(2^k pi a)] for
        k < F. Why: actions such as target positions select *where* something moves; Fourier
        features let the SwiGLU layers compare them with the codes' cell positions, where a raw
        linear projection leaves a short training unable to tell nearby targets apart
        (measurements in docs/training.md).
        """
        if self.action_proj is None:
            raise ValueError("this transformer is action-free (action_dim=0) but actions were given; "
                             "build it with action_dim > 0 to condition on actions")
        if actions.shape[-1] != self.config.action_dim:
            raise ValueError(f"actions have dimension {actions.shape[-1]}, the transformer expects "
                             f"action_dim={self.config.action_dim} (shape {tuple(actions.shape)})")
        features = actions.to(self.action_proj.weight.dtype)
        if self.config.action_frequencies:
            frequencies = math.pi * 2.0 ** torch.arange(self.config.action_frequencies, device=actions.device)
            angles = (features.unsqueeze(-1) * frequencies.to(features.dtype)).flatten(-2)  # (..., A*F)
            features = torch.cat([features, angles.sin(), angles.cos()], dim=-1)
        return self.action_proj(features)

    def backbone(self, embeds: Tensor, start: int = 0, cache: Cache | None = None, num_context: int | None = None
                 ) -> Tensor:
        """(B, q, H) embeddings at positions start..start+q-1 -> (B, q, H) final hidden states.

        With `cache`, keys/values of these tokens are appended to it and attention covers all cached
        tokens; `start` must then equal the number of cached tokens. `num_context` (the segment's
        context frames) places codes in the frame for `spatial_positions`.
        """
        positions = torch.arange(start, start + embeds.shape[1], device=embeds.device)
        embeds = self._add_spatial(embeds, positions, num_context)
        kwargs = {_CACHE_ARG: cache, "use_cache": cache is not None}
        return self.core(inputs_embeds=self.embed_dropout(embeds), position_ids=positions.unsqueeze(0),
                         **kwargs).last_hidden_state

    def decode_step(self, embeds: Tensor, position: int, cache: GrowingCache, num_context: int | None = None
                    ) -> Tensor:
        """(B, 1, H) embeddings of one new token per row at `position` -> (B, 1, H) final hidden states.

        The same as `backbone(embeds, position, cache, num_context)` in eval mode, through the rollouts'
        fast path (`transformer/decode.py`), which reads the cache without concatenating it.
        """
        positions = torch.full((1,), position, device=embeds.device)
        return decode_token(self.core, self._add_spatial(embeds, positions, num_context), position, cache)

    def _add_spatial(self, embeds: Tensor, positions: Tensor, num_context: int | None) -> Tensor:
        if self.spatial_proj is None:
            return embeds
        return embeds + self.spatial_embedding(positions, num_context).to(embeds.dtype)

    def spatial_embedding(self, positions: Tensor, num_context: int | None) -> Tensor:
        """(q,) sequence positions -> (q, H): a learned projection of Fourier features of each code's cell centre.

        Why: RoPE only tells a token how far back another one is in the flattened sequence, and a
        future code's 4x4 cell and the 16x16 context codes over the same image region are hundreds
        of positions apart at irregular offsets. Giving every code its 2D place in one shared image
        frame lets attention find "the context around this cell" from the start of training, which
        short CPU trainings need. Slot tokens get no spatial term.
        """
        if num_context is None:
            raise ValueError("a transformer with spatial_positions needs num_context in backbone()")
        centers, is_code = self.layout.cell_centers(num_context, positions)
        frequencies = math.pi * 2.0 ** torch.arange(SPATIAL_FREQUENCIES, device=positions.device)
        angles = (centers.unsqueeze(-1) * frequencies).flatten(1)  # (q, 2F)
        features = torch.cat([angles.sin(), angles.cos()], dim=1) * is_code.unsqueeze(1)
        return self.spatial_proj(features.to(self.spatial_proj.weight.dtype))

    def future_logits(self, hidden: Tensor) -> Tensor:
        """(..., H) -> (..., K) logits over future codes only: sampling never leaves that range."""
        k = self.config.codebook_size
        return F.linear(hidden, self.lm_head.weight[k : 2 * k])

    def predict_reward(self, hidden: Tensor) -> Tensor:
        """(..., H) hidden at a frame's last token -> (...) reward in environment units."""
        if self.reward_head is None:
            raise ValueError("this transformer has no reward head (reward_head=False)")
        value = self.reward_head(hidden).squeeze(-1)
        return symexp(value) if self.config.symlog_rewards else value

    # --- training ---------------------------------------------------------------------------
    def forward(self, context_ids: Tensor, future_ids: Tensor, actions: Tensor | None = None,
                future_only: bool = False, future_inputs: Tensor | None = None) -> TransformerOutput:
        """Teacher-forced predictions for a segment.

        context_ids: (B, Tc, h, w), future_ids: (B, Tf, h', w') codebook indices.
        actions: (B, T, A) or (B, T-1, A) with T = Tc + Tf; `actions[:, t]` leads from frame t to t + 1
        and is added to frame t+1's slot embedding, or to all its tokens with `action_to_frame` (the last
        of T actions, if given, is unused).
        `future_only`: logits over the K future codes only (what sampling reads) and targets as codebook
        indices, instead of logits over the whole vocabulary and targets as vocabulary ids.
        `future_inputs`: codes shaped like `future_ids` that the model reads as the future frames
        (e.g. its own predictions, `history_sampling`); the targets stay `future_ids`.
        """
        layout = self.layout
        tc, tf = context_ids.shape[1], future_ids.shape[1]
        ids = layout.build_ids(context_ids, future_ids)  # (B, L)
        read = ids
        if future_inputs is not None:
            if future_inputs.shape != future_ids.shape:
                raise ValueError(f"future_inputs must be shaped like future_ids {tuple(future_ids.shape)}, "
                                 f"got {tuple(future_inputs.shape)}")
            read = layout.build_ids(context_ids, future_inputs)
        actions = self.check_actions(actions, batch=ids.shape[0], frames=tc + tf)
        hidden = self.backbone(self.embed(read, actions, tc), num_context=tc)
        target_index = layout.target_index(tc, tf, codes_only=future_only).to(ids.device)  # (n,)
        targets = ids[:, target_index]
        if future_only:
            logits, targets = self.future_logits(hidden[:, target_index - 1]), targets - layout.future_offset
        else:
            logits = self.lm_head(hidden[:, target_index - 1])  # (B, n, V)
        rewards = None
        if self.reward_head is not None:
            last = layout.last_token_index(tc, tf)[tc:].to(ids.device)  # (Tf,)
            rewards = self.reward_head(hidden[:, last]).squeeze(-1)  # (B, Tf)
        return TransformerOutput(logits=logits, targets=targets, rewards=rewards)

    def check_actions(self, actions: Tensor | None, batch: int, frames: int) -> Tensor | None:
        """Validate (B, T or T-1, A) actions for T frames; return the T-1 that lead into frames 1..T-1."""
        if self.action_proj is None:
            if actions is not None:
                self.project_actions(actions)  # raises the action-free error
            return None
        if actions is None:
            raise ValueError(f"this transformer is action-conditioned (action_dim={self.config.action_dim}); "
                             "pass actions shaped (B, T, A)")
        if actions.ndim != 3 or actions.shape[0] != batch or actions.shape[1] not in (frames, frames - 1) \
                or actions.shape[2] != self.config.action_dim:
            raise ValueError(f"actions must be shaped (B={batch}, T={frames} or {frames - 1}, "
                             f"A={self.config.action_dim}), got {tuple(actions.shape)}")
        return actions[:, : frames - 1]

    def loss(self, context_ids: Tensor, future_ids: Tensor, actions: Tensor | None = None,
             rewards: Tensor | None = None, reward_weight: float = 1.0, future_only: bool = False,
             future_inputs: Tensor | None = None) -> tuple[Tensor, dict[str, Tensor]]:
        """Cross-entropy on future tokens + reward_weight * reward MSE (rewards: (B, Tf), future frames only).

        The softmax runs over the whole vocabulary, as in the paper, or with `future_only` over the K
        future codes only: what sampling reads, at half the output layer's cost.
        `future_inputs`: what the model reads as the future frames instead (see `forward`).
        """
        if future_ids.ndim != 4 or future_ids.shape[1] < 1:
            raise ValueError(f"the loss needs at least one future frame: future_ids (B, Tf>=1, h', w'), "
                             f"got {tuple(future_ids.shape)}")
        out = self(context_ids, future_ids, actions, future_only=future_only, future_inputs=future_inputs)
        ce = F.cross_entropy(out.logits.flatten(0, 1).float(), out.targets.flatten())
        logs = {"ce": ce.detach(), "accuracy": (out.logits.argmax(-1) == out.targets).float().mean()}
        loss = ce
        if out.rewards is not None and rewards is not None:
            if rewards.shape != out.rewards.shape:
                raise ValueError(f"rewards must be shaped {tuple(out.rewards.shape)} (B, Tf), got {tuple(rewards.shape)}")
            target = rewards.to(out.rewards.dtype)
            target = symlog(target) if self.config.symlog_rewards else target
            mse = F.mse_loss(out.rewards.float(), target.float())
            loss = loss + reward_weight * mse
            logs["reward_mse"] = mse.detach()
        return loss, logs

    # --- bookkeeping ------------------------------------------------------------------------
    def load_pretrained(self, state_dict: dict[str, Tensor], prefix: str = "") -> list[str]:
        """Load weights that may lack the action projection / reward head (e.g. an action-free checkpoint).

        `prefix` selects and strips keys, e.g. "transformer." for a `TransformerObjective` checkpoint.
        Missing optional heads keep their (zero) init; any other missing or unexpected key raises.
        Returns the names that were missing.
        """
        if prefix:
            state_dict = {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}
        result = self.load_state_dict(state_dict, strict=False)
        bad_missing = [k for k in result.missing_keys if not k.startswith(OPTIONAL_PREFIXES)]
        if bad_missing or result.unexpected_keys:
            raise ValueError(f"checkpoint does not fit this transformer: missing {bad_missing}, "
                             f"unexpected {result.unexpected_keys}")
        return list(result.missing_keys)

    @property
    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def describe(self) -> dict[str, Any]:
        c = self.config
        return {
            "vocab_size": c.vocab_size, "codebook_size": c.codebook_size, "num_layers": c.num_layers,
            "num_heads": c.num_heads, "hidden_size": c.hidden_size, "ffn_size": c.ffn_size, "dropout": c.dropout,
            "context_tokens": list(c.context_grid), "future_tokens": list(c.future_grid),
            "action_dim": c.action_dim, "action_frequencies": c.action_frequencies,
            "action_to_frame": c.action_to_frame, "reward_head": c.reward_head, "symlog_rewards": c.symlog_rewards,
            "layout": c.layout,
            "core": "LlamaModel (RMSNorm, SwiGLU, RoPE), untied LM head",
        }
