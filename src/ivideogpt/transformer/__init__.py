"""Autoregressive transformer over tokenized video: sequence layout, LLaMA-based model, objective."""

from ivideogpt.transformer.cache import GrowingCache
from ivideogpt.transformer.config import TransformerConfig, transformer_medium, transformer_small, transformer_tiny
from ivideogpt.transformer.layout import SequenceLayout
from ivideogpt.transformer.model import TransformerOutput, WorldModelTransformer, symexp, symlog
from ivideogpt.transformer.objective import TransformerObjective, TransformerObjectiveConfig
from ivideogpt.transformer.sampling import sample_tokens

__all__ = [
    "GrowingCache", "SequenceLayout", "TransformerConfig", "TransformerObjective", "TransformerObjectiveConfig",
    "TransformerOutput", "WorldModelTransformer", "sample_tokens", "symexp", "symlog", "transformer_medium", "transformer_small", "transformer_tiny",
]
