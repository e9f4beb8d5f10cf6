"""A stub world model for MBPO tests: copies the last context frame, rewards = sum of the action."""

from __future__ import annotations

import pytest
import torch

from ivideogpt.data.batch import Batch


class StubWorldModel:
    """Deterministic and instant: next frame = previous frame shifted one pixel right; reward = sum(action)."""

    def __init__(self, num_context: int = 2) -> None:
        self.num_context = num_context
        self.last: torch.Tensor | None = None
        self.trained: list[tuple[str, int, tuple[int, ...]]] = []
        self.reset_shapes: list[tuple[int, ...]] = []

    def reset(self, context: torch.Tensor, actions: torch.Tensor | None = None) -> None:
        assert context.dtype == torch.float32 and context.min() >= -1 and context.max() <= 1
        assert actions is not None and actions.shape[1] == context.shape[1] - 1
        self.reset_shapes.append((tuple(context.shape), tuple(actions.shape)))
        self.last = context[:, -1]

    def step(self, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        assert self.last is not None and actions.shape[0] == self.last.shape[0]
        self.last = torch.roll(self.last, 1, dims=-1)
        return self.last, actions.sum(-1)

    def train_tokenizer(self, batch: Batch, step: int) -> dict[str, float]:
        self.trained.append(("tokenizer", step, tuple(batch.frames.shape)))
        return {"tokenizer/loss": 1.0}

    def train_transformer(self, batch: Batch, step: int) -> dict[str, float]:
        assert batch.actions is not None and batch.rewards is not None
        self.trained.append(("transformer", step, tuple(batch.frames.shape)))
        return {"transformer/loss": 2.0}

    def state_dict(self) -> dict:
        return {"trained": list(self.trained)}

    def load_state_dict(self, state: dict) -> None:
        self.trained = list(state["trained"])


@pytest.fixture
def stub_model() -> StubWorldModel:
    return StubWorldModel()
