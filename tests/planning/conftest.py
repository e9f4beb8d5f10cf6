"""A tiny randomly initialised world model shared by the planning tests (built once)."""

import pytest
import torch


@pytest.fixture(scope="session")
def tiny_world_model():
    from ivideogpt.tokenizer.config import tokenizer_tiny
    from ivideogpt.transformer.config import transformer_tiny
    from ivideogpt.world_model import WorldModel

    torch.manual_seed(0)
    return WorldModel(tokenizer_tiny().build(), transformer_tiny(action_dim=2, reward_head=True).build(), seed=0)
