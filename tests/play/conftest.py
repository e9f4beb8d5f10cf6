"""Play fixtures: the shipped Push-T model (loads in about a second) and a tiny random model with sliders."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from ivideogpt.data.episode import Episode
from ivideogpt.play.engine import PlayEngine
from ivideogpt.play.model import PlayModel, load_play_model

SHIPPED = Path(__file__).resolve().parents[2] / "checkpoints" / "pusht"


@pytest.fixture(scope="session")
def pusht_model(tmp_path_factory: pytest.TempPathFactory) -> PlayModel:
    """The shipped reference model, greedy (temperature 0), no held-out clips (an empty data folder)."""
    return load_play_model(SHIPPED, data=tmp_path_factory.mktemp("no_data"), temperature=0.0)


@pytest.fixture
def pusht_engine(pusht_model: PlayModel) -> Iterator[PlayEngine]:
    engine = PlayEngine(pusht_model)
    yield engine
    engine.close()


@pytest.fixture(scope="session")
def slider_model(tmp_path_factory: pytest.TempPathFactory) -> PlayModel:
    """A random 3-d-action model (not Push-T: sliders) with 2 context frames, a 4-frame window and one clip."""
    from ivideogpt.tokenizer.config import tokenizer_tiny
    from ivideogpt.transformer.config import transformer_tiny
    from ivideogpt.world_model import WorldModel

    torch.manual_seed(0)
    transformer = transformer_tiny(action_dim=3, reward_head=True).build()
    torch.nn.init.normal_(transformer.action_proj.weight, std=0.5)  # trained-like: actions matter
    world_model = WorldModel(tokenizer_tiny().build(), transformer, temperature=0.0, seed=0)
    rng = np.random.default_rng(0)
    clip = tmp_path_factory.mktemp("clips") / "episode_000001.npz"
    Episode(frames=rng.integers(0, 256, (6, 64, 64, 3), dtype=np.uint8),
            actions=rng.uniform(-1, 1, (6, 3)).astype(np.float32)).save(clip)
    return PlayModel(world_model=world_model, context_frames=2, window=4, clips=[clip], checkpoint="tiny")


@pytest.fixture
def slider_engine(slider_model: PlayModel) -> Iterator[PlayEngine]:
    engine = PlayEngine(slider_model)
    yield engine
    engine.close()
