"""The token cache: ids equal to on-the-fly encoding, the same draws, reuse, rebuild on change, atomic files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from ivideogpt.data import DataConfig, SourceConfig, build_dataset, collate_segments
from ivideogpt.data.batch import TokenBatch
from ivideogpt.data.episode import Episode
from ivideogpt.presets import get_preset
from ivideogpt.train.token_cache import TokenDataset, cache_key, load_or_build
from ivideogpt.transformer.config import transformer_tiny
from ivideogpt.transformer.objective import TransformerObjective


def _episodes(folder: Path, count: int = 4, length: int = 8) -> None:
    rng = np.random.default_rng(0)
    for number in range(count):
        frames = rng.integers(0, 255, (length, 64, 64, 3), dtype=np.uint8)
        Episode(frames=frames, actions=rng.uniform(-1, 1, (length, 2)).astype(np.float32),
                rewards=rng.uniform(0, 1, length).astype(np.float32)).save(folder / f"episode_{number:03d}.npz")


@pytest.fixture()
def setup(tmp_path: Path):
    _episodes(tmp_path / "data")
    config = DataConfig(sources=[SourceConfig(name="toy", path=str(tmp_path / "data"))], resolution=64,
                        segment_length=3, num_context=1, val_fraction=0.0, seed=3, length=50)
    tokenizer = get_preset("tokenizer_tiny").build().eval()
    return build_dataset(config, "train"), tokenizer, tmp_path / "cache"


def test_cached_ids_equal_encoding_each_batch_and_draws_match(setup) -> None:
    frames, tokenizer, cache_dir = setup
    tokens = TokenDataset(frames, load_or_build(tokenizer, frames, cache_dir, batch_size=5))
    assert len(tokens.cache) == 4 * 6  # 4 episodes x 6 starts of 3 frames in 8
    indices = [0, 7, 13, 49]
    batch = collate_segments([frames[i] for i in indices], num_context=1)
    cached = collate_segments([tokens[i] for i in indices], num_context=1)
    assert isinstance(cached, TokenBatch) and cached.num_context == 1
    with torch.inference_mode():
        context_ids, future_ids = tokenizer.encode(batch.context_frames, batch.future_frames)
    assert torch.equal(cached.context_ids, context_ids) and torch.equal(cached.future_ids, future_ids)
    torch.testing.assert_close(cached.actions, batch.actions, rtol=0, atol=0)
    torch.testing.assert_close(cached.rewards, batch.rewards, rtol=0, atol=0)


def test_the_loss_is_the_same_from_cached_ids(setup) -> None:
    frames, tokenizer, cache_dir = setup
    tokens = TokenDataset(frames, load_or_build(tokenizer, frames, cache_dir))
    transformer = transformer_tiny(codebook_size=128, action_dim=2, reward_head=True).build()
    objective = TransformerObjective(transformer, tokenizer)
    on_the_fly = objective.compute_loss(collate_segments([frames[i] for i in range(4)], 1), 0)[0]
    cached = objective.compute_loss(collate_segments([tokens[i] for i in range(4)], 1), 0)[0]
    torch.testing.assert_close(cached, on_the_fly)


def test_reused_and_rebuilt_when_weights_or_data_change(setup, tmp_path: Path) -> None:
    frames, tokenizer, cache_dir = setup
    load_or_build(tokenizer, frames, cache_dir)
    files = sorted(cache_dir.glob("*.safetensors"))
    assert len(files) == 1 and not list(cache_dir.glob(".*tmp"))
    stamp = files[0].stat().st_mtime_ns
    load_or_build(tokenizer, frames, cache_dir)
    assert files[0].stat().st_mtime_ns == stamp  # reused, not rewritten
    key = cache_key(tokenizer, frames)
    with torch.no_grad():
        next(tokenizer.parameters()).add_(1e-3)
    assert cache_key(tokenizer, frames) != key
    _episodes(tmp_path / "data", count=5)  # one more episode
    grown = build_dataset(frames.config, "train")
    assert cache_key(tokenizer, grown) not in (key, cache_key(tokenizer, frames))
    load_or_build(tokenizer, grown, cache_dir)
    assert len(list(cache_dir.glob("*.safetensors"))) == 2


def test_a_killed_build_leaves_no_cache_file(setup, monkeypatch) -> None:
    frames, tokenizer, cache_dir = setup
    import ivideogpt.train.token_cache as token_cache

    def disk_full(path, tensors):
        Path(path).write_bytes(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(token_cache, "save_tensors", disk_full)
    with pytest.raises(OSError, match="No space"):
        load_or_build(tokenizer, frames, cache_dir)
    assert not any(cache_dir.iterdir())


def test_other_processes_never_build(setup) -> None:
    frames, tokenizer, cache_dir = setup
    with pytest.raises(FileNotFoundError, match="first process builds it"):
        load_or_build(tokenizer, frames, cache_dir, build=False)


def test_a_stride_encodes_every_kth_start_and_draws_round_down(setup) -> None:
    frames, tokenizer, cache_dir = setup
    cache = load_or_build(tokenizer, frames, cache_dir, stride=2)
    assert len(cache) == 4 * 3 and cache.starts.tolist()[:3] == [0, 2, 4]
    tokens = TokenDataset(frames, cache)
    for index in range(20):
        number, start = frames.draw(np.random.default_rng([frames.config.seed, index]))
        item = frames.item(number, start - start % 2)
        with torch.inference_mode():
            _, future_ids = tokenizer.encode(item["frames"][None, :1], item["frames"][None, 1:])
        assert torch.equal(tokens[index]["future_ids"].long(), future_ids[0])
    with pytest.raises(ValueError, match="stride must be >= 1"):
        load_or_build(tokenizer, frames, cache_dir, stride=0)


def test_an_unreadable_episode_is_left_out_and_the_others_keep_their_rows(setup) -> None:
    frames, tokenizer, cache_dir = setup
    assert [episode.episode_id for episode in frames.episodes][1] == "toy/episode_001"
    (cache_dir.parent / "data" / "episode_001.npz").write_bytes(b"not an npz file")
    cache = load_or_build(tokenizer, frames, cache_dir, batch_size=4)
    assert cache.offsets.tolist() == [0, 6, 6, 12, 18] and len(cache) == 3 * 6
    assert [cache.tensors[name].shape[0] for name in ("context_ids", "future_ids", "actions", "rewards")] == [18] * 4
    assert cache.row(1, 0) is None and frames.report.counts["bad_at_read"] == 1
    for number in (0, 2, 3):
        item = frames.item(number, 5)
        with torch.inference_mode():
            context_ids, future_ids = tokenizer.encode(item["frames"][None, :1], item["frames"][None, 1:])
        row = cache.row(number, 5)
        assert torch.equal(cache.tensors["context_ids"][row].long(), context_ids[0])
        assert torch.equal(cache.tensors["future_ids"][row].long(), future_ids[0])
        assert torch.equal(cache.tensors["actions"][row], item["actions"])
