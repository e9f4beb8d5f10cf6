"""SegmentDataset: determinism, mixtures, splits, strides, augmentation and bad input."""

from __future__ import annotations

import json
from functools import partial

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from ivideogpt.data import DataConfig, DataError, SourceConfig, build_dataset, build_datasets, collate_segments
from ivideogpt.data.actions import ActionBounds


def _config(*sources: SourceConfig, **kwargs) -> DataConfig:
    defaults = dict(resolution=8, segment_length=4, num_context=1, val_fraction=0.0, length=1000)
    return DataConfig(sources=list(sources), **{**defaults, **kwargs})


def test_items_are_a_function_of_seed_and_index(npz_dir):
    config = _config(SourceConfig("a", str(npz_dir)), augment=True)
    first, second = build_dataset(config), build_dataset(config)
    for index in (0, 7, 999):
        a, b = first[index], second[index]
        assert torch.equal(a["frames"], b["frames"]) and torch.equal(a["actions"], b["actions"])
    other = build_dataset(_config(SourceConfig("a", str(npz_dir)), augment=True, seed=1))
    draws = lambda ds: [(ds[i]["episode"], ds[i]["frame_indices"][0].item()) for i in range(20)]  # noqa: E731
    assert draws(first) != draws(other)
    with pytest.raises(IndexError):
        first[1000]


def test_item_contents_follow_the_alignment(npz_dir, frame_index):
    dataset = build_dataset(_config(SourceConfig("a", str(npz_dir)), num_context=2))
    item = dataset[3]
    indices = item["frame_indices"].numpy()
    offset = int(dataset.episode_ids[item["episode"]].split("_")[-1])
    assert item["frames"].shape == (4, 3, 8, 8) and item["frames"].dtype == torch.float32
    np.testing.assert_array_equal(frame_index(item["frames"]), indices + offset)
    np.testing.assert_array_equal(item["actions"][:, 0].numpy(), indices)  # actions[t] = (t, -t) raw
    np.testing.assert_array_equal(item["rewards"].numpy(), indices)
    batch = collate_segments([dataset[i] for i in range(3)], num_context=2)
    assert batch.frames.shape == (3, 4, 3, 8, 8) and batch.actions.shape == (3, 4, 2) and batch.rewards.shape == (3, 4)
    assert batch.context_frames.shape[1] == 2
    loader = DataLoader(dataset, batch_size=2, collate_fn=partial(collate_segments, num_context=2))
    assert next(iter(loader)).frames.shape == (2, 4, 3, 8, 8)


@pytest.mark.parametrize("stride, width, expected", [
    ("concat", 6, [4, 5, 6]), ("sum", 2, [15, -15]), ("first", 2, [4, -4])])
def test_frame_skip_actions_and_rewards(npz_dir, stride, width, expected):
    source = SourceConfig("a", str(npz_dir), step=3, action_stride=stride)
    dataset = build_dataset(_config(source, segment_length=3))
    episode = dataset.episodes.index(next(e for e in dataset.episodes if e.episode_id.endswith("000")))
    item = dataset.item(episode, start=1)
    np.testing.assert_array_equal(item["frame_indices"], [1, 4, 7])
    assert item["actions"].shape == (3, width) and dataset.action_dim == width
    row = item["actions"][1].numpy()
    np.testing.assert_array_equal(row if stride != "concat" else row[0::2], expected)
    np.testing.assert_array_equal(item["rewards"], [0 + 1, 2 + 3 + 4, 5 + 6 + 7])  # all since the last kept frame


def test_mixture_frequencies_match_weights(tmp_path, write_episodes):
    write_episodes(tmp_path / "a", 3)
    write_episodes(tmp_path / "b", 5)
    config = _config(SourceConfig("a", str(tmp_path / "a"), weight=3.0),
                     SourceConfig("b", str(tmp_path / "b"), weight=1.0), length=2000)
    dataset = build_dataset(config)
    names = [dataset.episode_ids[dataset[i]["episode"]].split("/")[0] for i in range(2000)]
    assert abs(names.count("a") / 2000 - 0.75) < 0.03


def test_augmentation_is_shared_by_all_frames_and_off_in_val(tmp_path, make_episode):
    rng = np.random.default_rng(0)
    still = rng.integers(0, 255, (1, 16, 16, 3), dtype=np.uint8).repeat(10, 0)
    for number in range(4):
        episode = make_episode(10, size=16)
        episode.frames = still.copy()
        episode.save(tmp_path / f"e{number}.npz")
    config = _config(SourceConfig("a", str(tmp_path)), augment=True, val_fraction=0.5, brightness=(0.5, 1.5),
                     hue=(-0.2, 0.2))
    datasets = build_datasets(config)
    train, val = datasets["train"], datasets["val"]
    plain = train.item(0, 0)["frames"]  # no rng: no augmentation
    for index in range(5):
        frames = train[index]["frames"]
        assert all(torch.equal(frames[0], frame) for frame in frames[1:])
        assert not torch.allclose(frames, plain)
    assert not torch.equal(train[0]["frames"], train[1]["frames"])
    assert torch.equal(val[0]["frames"], plain)


def test_sampled_future_keeps_context_and_sorted_subset(npz_dir):
    dataset = build_dataset(_config(SourceConfig("a", str(npz_dir)), segment_length=8, num_context=2, sampled_future=3))
    item = dataset[5]
    offsets = (item["frame_indices"] - item["frame_indices"][0]).tolist()
    assert len(offsets) == 5 and offsets[:2] == [0, 1] and offsets[2:] == sorted(offsets[2:]) and min(offsets[2:]) >= 2
    assert "actions" not in item and "rewards" not in item


def test_splits_are_disjoint_stable_and_respect_heldout(tmp_path, write_episodes):
    write_episodes(tmp_path, 20)
    source = SourceConfig("a", str(tmp_path))
    config = _config(source, val_fraction=0.2, heldout_episodes=["a/episode_003", "episode_011"])
    datasets = build_datasets(config, ("train", "val", "test"))
    train, val, test = (set(datasets[s].episode_ids) for s in ("train", "val", "test"))
    assert test == {"a/episode_003", "a/episode_011"} and len(val) == 4 and len(train) == 14
    assert not (train & val) and not (train & test) and not (val & test)
    longer = build_dataset(_config(source, val_fraction=0.2, heldout_episodes=config.heldout_episodes,
                                   segment_length=6), "val")
    assert set(longer.episode_ids) == val  # the split does not depend on the segment length
    other_seed = build_dataset(_config(source, val_fraction=0.2, seed=5), "val")
    assert set(other_seed.episode_ids) != val
    assert len(datasets["val"]) == 4 * 3  # non-overlapping segments of 4 in 12 frames
    assert datasets["val"].episode_segments(0) == [0, 4, 8] and datasets["val"].episode_segments(0, stride=2)[-1] == 8


def test_a_val_split_whose_only_pick_is_too_short_validates_on_a_usable_episode(tmp_path, write_episodes,
                                                                                make_episode):
    write_episodes(tmp_path, 7)
    config = _config(SourceConfig("a", str(tmp_path)), val_fraction=0.15)  # one episode to validate on
    (picked,) = build_dataset(config, "val").episode_ids
    make_episode(2).save(tmp_path / f"{picked.split('/')[1]}.npz")  # now too short for a segment
    datasets = build_datasets(config)
    (instead,) = datasets["val"].episode_ids
    assert instead != picked and instead not in datasets["train"].episode_ids
    assert len(datasets["train"].episode_ids) == 5
    assert f"{instead} validates instead" in datasets["train"].index.report.summary()


def test_actions_are_normalised_with_metadata_bounds(npz_dir):
    (npz_dir / "metadata.json").write_text(json.dumps({"action_space": {"low": [0, -20], "high": [20, 0]}}))
    dataset = build_dataset(_config(SourceConfig("a", str(npz_dir))))
    item = dataset.item(0, 0)
    bounds = ActionBounds(np.asarray([0, -20]), np.asarray([20, 0]))
    np.testing.assert_allclose(item["actions"].numpy(), bounds.normalize(np.stack([np.arange(4), -np.arange(4)], 1)))
    np.testing.assert_allclose(bounds.denormalize(item["actions"].numpy())[:, 0], np.arange(4), atol=1e-5)
    raw = build_dataset(_config(SourceConfig("a", str(npz_dir), normalize_actions=False))).item(0, 0)
    np.testing.assert_array_equal(raw["actions"][:, 0], np.arange(4))


def test_bad_files_are_skipped_counted_and_reported(tmp_path, write_episodes, make_episode, caplog):
    write_episodes(tmp_path, 3)
    (tmp_path / "empty.npz").write_bytes(b"")
    (tmp_path / "junk.npz").write_bytes(b"\x00" * 64)
    np.savez(tmp_path / "mismatch.npz", frames=np.zeros((12, 8, 8, 3), np.uint8), actions=np.zeros((5, 2)))
    make_episode(2).save(tmp_path / "short.npz")
    dataset = build_dataset(_config(SourceConfig("a", str(tmp_path))))
    assert len(dataset.episodes) == 3
    counts = dataset.report.counts
    assert counts["too_short"] == 1 and counts["unreadable"] == 2 and counts["inconsistent"] == 1
    assert "short" in dataset.report.summary() and "junk.npz" in caplog.text


def test_episode_corrupt_beyond_its_header_is_skipped_at_read_time(tmp_path, write_episodes, make_episode):
    write_episodes(tmp_path, 2, length=40)
    noisy = make_episode(40)
    noisy.frames = np.random.default_rng(0).integers(0, 255, noisy.frames.shape, dtype=np.uint8)
    noisy.save(tmp_path / "episode_000.npz")
    data = bytearray((tmp_path / "episode_000.npz").read_bytes())
    data[len(data) // 3: len(data) // 3 + 40] = b"\xff" * 40  # inside the compressed frames, past their header
    (tmp_path / "episode_000.npz").write_bytes(bytes(data))
    dataset = build_dataset(_config(SourceConfig("a", str(tmp_path))))
    ids = {dataset.episode_ids[dataset[i]["episode"]] for i in range(10)}
    assert ids == {"a/episode_001"} and dataset.report.counts["bad_at_read"] == 1


def test_unusable_data_raises_a_clear_error(tmp_path, write_episodes):
    write_episodes(tmp_path, 2, length=3)
    with pytest.raises(DataError, match="no usable episodes in the train split"):
        build_dataset(_config(SourceConfig("a", str(tmp_path))))
    with pytest.raises(DataError, match="no data sources"):
        build_dataset(DataConfig())
    write_episodes(tmp_path / "ok", 2)
    assert set(build_datasets(_config(SourceConfig("a", str(tmp_path / "ok"))))) == {"train"}  # val_fraction 0
    with pytest.raises(DataError, match="val split"):
        build_dataset(_config(SourceConfig("a", str(tmp_path / "ok"))), "val")


def test_action_policy_for_mixed_sources(tmp_path, write_episodes):
    write_episodes(tmp_path / "acts", 2)
    write_episodes(tmp_path / "free", 2, action_dim=None)
    sources = (SourceConfig("acts", str(tmp_path / "acts")), SourceConfig("free", str(tmp_path / "free")))
    auto = build_dataset(_config(*sources))
    assert auto.action_dim is None and "actions" not in auto[0] and auto.report.notes
    required = build_dataset(_config(*sources, actions="require"))
    assert required.action_dim == 2 and {e.split("/")[0] for e in required.episode_ids} == {"acts"}
    assert "actions" not in build_dataset(_config(*sources[:1], actions="ignore"))[0]


def test_frames_are_resized_to_the_resolution(tmp_path, make_episode):
    make_episode(6, size=24).save(tmp_path / "e.npz")
    episode = make_episode(6, size=24)
    episode.frames = episode.frames[:, :, :20]  # 24 x 20: centre-cropped to a square, then resized
    episode.save(tmp_path / "f.npz")
    dataset = build_dataset(_config(SourceConfig("a", str(tmp_path)), resolution=8))
    assert all(dataset.item(n, 0)["frames"].shape == (4, 3, 8, 8) for n in range(2))


@pytest.mark.parametrize("kwargs, field", [
    ({"num_context": 0}, "num_context"), ({"num_context": 4}, "at least one future frame"),
    ({"sampled_future": 4}, "sampled_future"),
    ({"crop_scale": (0.9, 0.5)}, "crop_scale"), ({"val_fraction": 1.0}, "val_fraction"),
    ({"exclude_sources": ["nope"]}, "exclude_sources")])
def test_config_validation_names_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        DataConfig(segment_length=4, **kwargs)
    with pytest.raises(ValueError, match="step"):
        SourceConfig("a", "x", step=0)


def test_shipped_oxe_mixture_loads():
    config = DataConfig.load("configs/data/oxe_pretrain.yaml", ["root=/datasets/oxe", "exclude_sources=[ssv2]"])
    assert len(config.sources) == 36 and len(config.active_sources) == 35
    assert sum(s.num_trajectories for s in config.sources) == 1_417_954
    bridge = next(s for s in config.sources if s.name == "bridge")
    assert (bridge.step, bridge.weight, str(bridge.resolved_path(config.root))) == (2, 12.8, "/datasets/oxe/bridge")


def test_episode_cache_respects_its_memory_budget(npz_dir):
    small = build_dataset(_config(SourceConfig("a", str(npz_dir)), cache_mb=0))
    big = build_dataset(_config(SourceConfig("a", str(npz_dir))))
    for index in range(20):
        assert torch.equal(small[index]["frames"], big[index]["frames"])
    assert len(small._cache) == 1 and len(big._cache) > 1


def test_a_data_root_where_no_source_exists_is_one_line(tmp_path):
    from ivideogpt.data.index import build_index

    config = DataConfig(root=str(tmp_path / "datasets"), segment_length=4,
                        sources=[SourceConfig("a", "robot_a"), SourceConfig("b", "robot_b")])
    with pytest.raises(DataError, match=r"none of the 2 data source path\(s\) exists \(the first: .*robot_a\); "
                                        r"check data.root="):
        build_index(config)


def test_a_mixture_source_whose_path_does_not_exist_is_one_line(tmp_path, write_episodes, capsys):
    from ivideogpt.cli import main
    from ivideogpt.data.index import build_index

    write_episodes(tmp_path / "robot_a", 3)
    mixture = {"root": str(tmp_path), "segment_length": 4, "sources": [
        {"name": "a", "path": "robot_a"}, {"name": "b", "path": "robot_bb", "weight": 3}, {"name": "c", "path": "x"}]}
    message = (rf"sources b, c: paths {tmp_path / 'robot_bb'}, {tmp_path / 'x'} do not exist; correct them \(or "
               r"data.root\), or leave them out with exclude_sources=\[b, c\]$")
    with pytest.raises(DataError, match=message):
        build_index(DataConfig(**mixture))
    with pytest.raises(DataError, match=rf"^source c: path {tmp_path / 'x'} does not exist; correct it \(or "
                                        r"data.root\), or leave it out with exclude_sources=\[c\]$"):
        build_index(DataConfig(**mixture, exclude_sources=["b"]))
    (tmp_path / "mix.yaml").write_text(json.dumps(mixture))
    assert main(["data", "check", str(tmp_path / "mix.yaml")]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()  # the error alone: no skip warning before it
    assert line.startswith("ivideogpt data: sources b, c: paths ")
    assert main(["data", "check", str(tmp_path / "mix.yaml"), "exclude_sources=[b, c]", "--quiet"]) == 0
