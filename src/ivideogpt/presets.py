"""Named model presets: paper sizes (Table 2 of the paper) and tiny ones for tests and CPU runs.

Each entry names a function returning a config dataclass with a `build() -> nn.Module` method;
the built module has `describe() -> dict` with its architecture facts and a `num_params` property.
"""

from __future__ import annotations

import importlib
from typing import Any

import torch

PRESETS: dict[str, str] = {
    "tokenizer_tiny": "ivideogpt.tokenizer.config:tokenizer_tiny",
    "tokenizer_cpu": "ivideogpt.tokenizer.config:tokenizer_cpu",
    "tokenizer_64": "ivideogpt.tokenizer.config:tokenizer_64",
    "tokenizer_256": "ivideogpt.tokenizer.config:tokenizer_256",
    "perframe_4x4_64": "ivideogpt.tokenizer.config:perframe_4x4_64",
    "perframe_16x16_64": "ivideogpt.tokenizer.config:perframe_16x16_64",
    "transformer_tiny": "ivideogpt.transformer.config:transformer_tiny",
    "transformer_small": "ivideogpt.transformer.config:transformer_small",
    "transformer_medium": "ivideogpt.transformer.config:transformer_medium",
}


def get_preset(name: str) -> Any:
    """The config dataclass of preset `name`."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}")
    module_name, function = PRESETS[name].split(":")
    return getattr(importlib.import_module(module_name), function)()


def describe_preset(name: str) -> dict[str, Any]:
    """Architecture facts and parameter count of a preset, built on the meta device (no memory, instant)."""
    config = get_preset(name)
    with torch.device("meta"):
        model = config.build()
    return {"name": name, "parameters": model.num_params, **model.describe()}
