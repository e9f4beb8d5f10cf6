"""`TransformerConfig`: the autoregressive world-model transformer, plus the paper's presets.

Sizes follow Table 2 of the paper (LLaMA blocks at GPT-2 sizes): `transformer_small` (138M) and
`transformer_medium` (436M) with a 16,386-token vocabulary; `transformer_tiny` is for tests and CPU demos.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from ivideogpt.transformer.layout import VARIANTS


@dataclass
class TransformerConfig:
    """Architecture and heads of `WorldModelTransformer`. Validated on construction."""

    codebook_size: int = 8192  # K: tokenizer codebook size; vocabulary is 2K + 2
    context_grid: tuple[int, int] = (16, 16)  # token grid of one context frame
    future_grid: tuple[int, int] = (4, 4)  # token grid of one future frame
    num_layers: int = 12
    num_heads: int = 12
    hidden_size: int = 768
    ffn_size: int = 3072  # SwiGLU intermediate size
    dropout: float = 0.1  # embedding, residual and attention dropout
    action_dim: int = 0  # 0 = action-free; else actions are projected onto slot embeddings
    # Not in the paper: Fourier features (this many octaves) of each action value for the projection,
    # and the projected action added to every token of the frame it leads into, not only its slot.
    action_frequencies: int = 0
    action_to_frame: bool = False
    reward_head: bool = False  # predict each future frame's reward from its last token
    symlog_rewards: bool = False  # regress symlog(reward) instead of the raw reward
    spatial_positions: bool = False  # add each code's 2D cell position to its embedding (not in the paper)
    layout: str = "slotted"  # token sequence variant (`SequenceLayout.variant`); "official": the released checkpoints'
    rope_theta: float = 10000.0
    rms_norm_eps: float = 1e-6
    init_std: float = 0.02
    attn_implementation: str = "sdpa"  # "sdpa" or "eager"

    def __post_init__(self) -> None:
        self.context_grid = tuple(self.context_grid)  # type: ignore[assignment]
        self.future_grid = tuple(self.future_grid)  # type: ignore[assignment]
        positive = ("codebook_size", "num_layers", "num_heads", "hidden_size", "ffn_size")
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"TransformerConfig.{name} must be a positive integer, got {value!r}")
        for name in ("context_grid", "future_grid"):
            grid = getattr(self, name)
            if len(grid) != 2 or any(not isinstance(v, int) or v < 1 for v in grid):
                raise ValueError(f"TransformerConfig.{name} must be two positive integers, got {grid!r}")
        if self.hidden_size % self.num_heads:
            raise ValueError(f"TransformerConfig.hidden_size={self.hidden_size} is not divisible by "
                             f"num_heads={self.num_heads}")
        if (self.hidden_size // self.num_heads) % 2:
            raise ValueError(f"TransformerConfig: head size hidden_size/num_heads="
                             f"{self.hidden_size // self.num_heads} must be even for rotary embeddings")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"TransformerConfig.dropout must be in [0, 1), got {self.dropout!r}")
        if not isinstance(self.action_dim, int) or self.action_dim < 0:
            raise ValueError(f"TransformerConfig.action_dim must be an integer >= 0, got {self.action_dim!r}")
        if not isinstance(self.action_frequencies, int) or self.action_frequencies < 0:
            raise ValueError(f"TransformerConfig.action_frequencies must be an integer >= 0, "
                             f"got {self.action_frequencies!r}")
        if (self.action_frequencies or self.action_to_frame) and not self.action_dim:
            raise ValueError("TransformerConfig.action_frequencies and action_to_frame need action_dim > 0")
        if self.symlog_rewards and not self.reward_head:
            raise ValueError("TransformerConfig.symlog_rewards=True needs reward_head=True")
        for name in ("rope_theta", "rms_norm_eps", "init_std"):
            if getattr(self, name) <= 0:
                raise ValueError(f"TransformerConfig.{name} must be positive, got {getattr(self, name)!r}")
        if self.layout not in VARIANTS:
            raise ValueError(f"TransformerConfig.layout must be one of {VARIANTS}, got {self.layout!r}")
        if self.attn_implementation not in ("sdpa", "eager"):
            raise ValueError(f"TransformerConfig.attn_implementation must be 'sdpa' or 'eager', "
                             f"got {self.attn_implementation!r}")

    @property
    def vocab_size(self) -> int:
        return 2 * self.codebook_size + 2

    def build(self) -> nn.Module:
        """A freshly initialised `WorldModelTransformer` (works under `torch.device("meta")`)."""
        from ivideogpt.transformer.model import WorldModelTransformer

        return WorldModelTransformer(self)


def transformer_small(**overrides) -> TransformerConfig:
    """Paper "small": 12 layers, 12 heads, 768 hidden, 3072 FFN, dropout 0.1 (138M parameters)."""
    base = dict(num_layers=12, num_heads=12, hidden_size=768, ffn_size=3072, dropout=0.1)
    return TransformerConfig(**{**base, **overrides})


def transformer_medium(**overrides) -> TransformerConfig:
    """Paper "medium": 24 layers, 16 heads, 1024 hidden, 4096 FFN, dropout 0.1 (436M parameters)."""
    base = dict(num_layers=24, num_heads=16, hidden_size=1024, ffn_size=4096, dropout=0.1)
    return TransformerConfig(**{**base, **overrides})


def transformer_tiny(**overrides) -> TransformerConfig:
    """Tests and CPU demos: 2 layers, 4 heads, 128 hidden, 512 FFN, codebook 128 (as tokenizer_tiny), no dropout."""
    base = dict(codebook_size=128, num_layers=2, num_heads=4, hidden_size=128, ffn_size=512, dropout=0.0)
    return TransformerConfig(**{**base, **overrides})
