"""Loading a run for play: its held-out start clips are the episodes its training held out."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from ivideogpt.data import DataConfig, SourceConfig, build_datasets
from ivideogpt.data.episode import Episode
from ivideogpt.play.engine import PlayEngine
from ivideogpt.play.model import heldout_clips, load_play_model


def _tiny_run(run: Path, data: DataConfig) -> Path:
    """A transformer run of random tiny weights trained (as far as its config.yaml says) on `data`."""
    from ivideogpt.configuration import save_config
    from ivideogpt.tokenizer import tokenizer_tiny
    from ivideogpt.train import checkpoint as ckpt
    from ivideogpt.train.experiments import TransformerExperiment
    from ivideogpt.transformer import transformer_tiny
    from ivideogpt.transformer.objective import TransformerObjective

    tokenizer, transformer = tokenizer_tiny(), transformer_tiny(action_dim=3)
    objective = TransformerObjective(transformer.build(), tokenizer.build())
    tmp = ckpt.begin(run, 1)
    save_config(TransformerExperiment(tokenizer=tokenizer, transformer=transformer, data=data), tmp / "config.yaml")
    ckpt.save_tensors(tmp / "model.safetensors", objective.state_dict())
    ckpt.finish(run, 1)
    return run


@pytest.fixture(scope="module")
def val_only_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, DataConfig]:
    """A run over 8 episodes that names no held-out episodes: training holds out a random 25% (val_fraction)."""
    root = tmp_path_factory.mktemp("val_only")
    rng = np.random.default_rng(0)
    for number in range(8):
        Episode(frames=rng.integers(0, 256, (6, 64, 64, 3), dtype=np.uint8),
                actions=rng.uniform(-1, 1, (6, 3)).astype(np.float32)).save(root / "data" / f"ep_{number}.npz")
    data = DataConfig(sources=[SourceConfig(name="tiny", path=str(root / "data"), format="npz",
                                            normalize_actions=False)],
                      segment_length=4, num_context=2, val_fraction=0.25, seed=5)
    return _tiny_run(root / "run", data), data


def test_a_run_with_only_val_fraction_offers_the_episodes_training_held_out(val_only_run) -> None:
    run, data = val_only_run
    held_out = build_datasets(data, ("train", "val"))["val"].episode_ids  # what training validated on
    model = load_play_model(run, temperature=0.0)
    assert len(held_out) == 2 and [f"tiny/{clip.stem}" for clip in model.clips] == held_out
    assert model.describe()["starts"] == ["clip"] and model.window == 4
    engine = PlayEngine(model)
    try:
        session = engine.create("clip", clip=1)
        assert session.start["episode"] == model.clips[1].stem
        assert engine.step(session.id, [0.1, 0.2, 0.3])[1].frame.shape == (64, 64, 3)
    finally:
        engine.close()


def test_the_held_out_split_follows_the_data_to_another_folder(val_only_run, tmp_path: Path) -> None:
    run, data = val_only_run
    moved = Path(shutil.copytree(data.sources[0].path, tmp_path / "moved"))
    named = load_play_model(run).clips
    assert len(named) == 2
    assert load_play_model(run, data=moved).clips == [moved / clip.name for clip in named]
    assert load_play_model(run, data=tmp_path / "missing").clips == []


def test_a_source_whose_folder_is_missing_leaves_the_others_split_as_in_training(val_only_run, tmp_path: Path) -> None:
    run, data = val_only_run
    absent = SourceConfig(name="absent", path=str(tmp_path / "not_here"), format="npz")
    mixture = replace(data, sources=[*data.sources, absent])
    clips = heldout_clips(mixture)
    assert len(clips) == 2 and clips == load_play_model(run).clips
