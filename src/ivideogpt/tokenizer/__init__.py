"""Compressive video tokenizer (conditional VQGAN), its per-frame baseline, quantizer and training objective."""

from ivideogpt.tokenizer.config import (
    TokenizerConfig,
    perframe_4x4_64,
    perframe_16x16_64,
    tokenizer_64,
    tokenizer_256,
    tokenizer_cpu,
    tokenizer_tiny,
)
from ivideogpt.tokenizer.model import CompressiveTokenizer, ContextFeatures, TokenizerOutput
from ivideogpt.tokenizer.perframe import PerFrameTokenizer
from ivideogpt.tokenizer.quantizer import FiniteScalarQuantizer, VectorQuantizer, codebook_stats

__all__ = [
    "CompressiveTokenizer", "ContextFeatures", "FiniteScalarQuantizer", "PerFrameTokenizer", "TokenizerConfig", "TokenizerOutput",
    "VectorQuantizer", "codebook_stats", "perframe_4x4_64", "perframe_16x16_64", "tokenizer_256", "tokenizer_64",
    "tokenizer_cpu", "tokenizer_tiny",
]
