"""Streamed shards: each slot once per epoch over ranks and workers, seeded shuffle, resume, mixture weights."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import pytest

from ivideogpt.data import stream
from ivideogpt.data.config import DataConfig
from ivideogpt.data.mixed_stream import build_stream
from ivideogpt.data.report import DataError
from ivideogpt.data.sources.webdataset import write_shard


def _shards(folder: Path, make_episode, shards: int, per_shard: int, short: bool = False) -> set[str]:
    """Write shards of 8-frame episodes (plus one 2-frame episode if `short`); returns the usable keys."""
    keys = set()
    for number in range(shards):
        episodes = {f"s{number}e{k}": make_episode(8, offset=k) for k in range(per_shard)}
        if short and number == 0:
            episodes["tiny"] = make_episode(2)
        write_shard(folder / f"shard-{number:03d}.tar", episodes)
        keys |= {f"s{number}e{k}" for k in range(per_shard)}
    return keys


def _config(**fields) -> DataConfig:
    return DataConfig(resolution=8, segment_length=4, num_context=1, segments_per_episode=2, **fields)


def _as_consumer(monkeypatch, worker: int | None, workers: int = 2) -> None:
    info = None if worker is None else SimpleNamespace(id=worker, num_workers=workers)
    monkeypatch.setattr(stream, "get_worker_info", lambda: info)


@pytest.mark.parametrize("shards, per_shard", [(5, 2), (2, 5)])  # by shard (5 >= 4 consumers), by sample (2 < 4)
def test_every_slot_once_per_epoch_over_ranks_and_workers(tmp_path, make_episode, monkeypatch, shards, per_shard):
    keys = _shards(tmp_path, make_episode, shards, per_shard, short=True)
    config = _config(shuffle_buffer=5)
    for epoch in (0, 1):
        seen = Counter()
        for rank in range(2):
            for worker in range(2):
                _as_consumer(monkeypatch, worker)
                source = stream.ShardStream(tmp_path, config, rank=rank, world_size=2)
                source.set_epoch(epoch)
                items = list(source)
                assert all(item["frames"].shape == (4, 3, 8, 8) and item["epoch"] == epoch for item in items)
                assert [i["position"] for i in items] == [{"epoch": epoch, "offset": n + 1} for n in range(len(items))]
                seen.update((item["key"], item["segment"]) for item in items)
        assert seen == Counter({(key, segment): 1 for key in keys for segment in (0, 1)})


def test_shuffle_buffer_is_seeded_and_mixes(tmp_path, make_episode, monkeypatch):
    _shards(tmp_path, make_episode, 2, 4)
    _as_consumer(monkeypatch, None)

    def order(**fields) -> list:
        return [(i["key"], i["segment"], i["frame_indices"].tolist()) for i in stream.ShardStream(tmp_path,
                                                                                                  _config(**fields))]

    plain, mixed = order(shuffle_buffer=0), order(shuffle_buffer=6)
    assert mixed == order(shuffle_buffer=6) and sorted(mixed) == sorted(plain) and mixed != plain
    assert order(shuffle_buffer=6, seed=1) != mixed


def test_resume_continues_exactly_and_skips_decoding(tmp_path, make_episode, monkeypatch):
    _shards(tmp_path, make_episode, 3, 3)
    _as_consumer(monkeypatch, 1)
    config = _config(shuffle_buffer=4)
    source = stream.ShardStream(tmp_path, config, world_size=2)
    straight = source.items(1, 4, endless=True)
    first = [next(straight) for _ in range(10)]  # 2 of the 9 samples (4 slots) per epoch here
    assert [i["epoch"] for i in first] == [0] * 4 + [1] * 4 + [2] * 2
    decodes, decode = [], stream.sample_episode
    monkeypatch.setattr(stream, "sample_episode", lambda members, options: decodes.append(1) or decode(members, options))
    for cut in (3, 4, 9):
        decodes.clear()
        resumed = stream.ShardStream(tmp_path, config, world_size=2)
        resumed.start(0, 2, {"consumers": 4, "positions": {"1": first[cut - 1]["position"]}})
        again = iter(resumed)
        for expected in first[cut:]:
            item = next(again)
            assert (item["key"], item["segment"], item["position"]) == (expected["key"], expected["segment"],
                                                                        expected["position"])
            assert item["frames"].equal(expected["frames"])
        assert len(decodes) <= len(first) - cut  # nothing before the position was decoded


def test_mixture_holds_its_weights_and_resumes(tmp_path, make_episode, monkeypatch):
    _shards(tmp_path / "big", make_episode, 2, 3)
    _shards(tmp_path / "small", make_episode, 1, 2)
    config = _config(stream=True, shuffle_buffer=3, sources=[{"name": "big", "path": str(tmp_path / "big"), "weight": 3},
                                                             {"name": "small", "path": str(tmp_path / "small")}])
    _as_consumer(monkeypatch, None)
    mixture = build_stream(config)
    assert mixture.action_dim == 2 and mixture.has_rewards
    mixture.start(0, 1, {})
    items = iter(mixture)
    first = [next(items) for _ in range(400)]
    share = sum(i["key"].startswith("big/") for i in first) / len(first)
    assert share == pytest.approx(0.75, abs=0.05)
    assert first[0]["actions"].shape == (4, 2) and first[0]["rewards"].shape == (4,)
    small = [(i["key"], i["segment"]) for i in first if i["key"].startswith("small/") and i["epoch"] == 0]
    assert sorted(small) == [(f"small/s0e{k}", j) for k in range(2) for j in range(2)]
    resumed = build_stream(config)
    resumed.start(0, 1, {"consumers": 1, "positions": {"0": first[199]["position"]}})
    again = iter(resumed)
    assert [(i["key"], i["segment"], i["epoch"]) for i in (next(again) for _ in range(200))] == \
        [(i["key"], i["segment"], i["epoch"]) for i in first[200:]]


def test_restart_begins_at_the_earliest_epoch_and_empty_shares_fail(tmp_path, make_episode, monkeypatch):
    _shards(tmp_path, make_episode, 1, 1)
    _as_consumer(monkeypatch, None)
    source = stream.ShardStream(tmp_path, _config())
    assert source.restart([{"epoch": 3, "offset": 1}, {"epoch": 2, "offset": 2}]) == {"epoch": 2, "offset": 0}
    source.start(0, 1, {"consumers": 2, "positions": {}})
    with pytest.raises(ValueError, match="saved for 2 consumers"):
        next(iter(source))
    _as_consumer(monkeypatch, 1)  # one sample for two consumers: the second has nothing
    with pytest.raises(DataError, match="consumer 1 of 2 found no usable segment"):
        list(stream.ShardStream(tmp_path, _config()))
    with pytest.raises(DataError, match="tar shards only"):
        build_stream(_config(stream=True, sources=[{"name": "x", "path": str(tmp_path), "format": "npz"}]))


def test_a_share_without_data_says_what_it_held_in_that_epoch(tmp_path, make_episode):
    _shards(tmp_path, make_episode, 2, 3, short=True)  # 2 shards for 8 consumers: 7 samples, 6 usable, shared
    source = stream.ShardStream(tmp_path, _config(), name="few")
    endless = source.items(0, 8, endless=True)
    assert {next(endless)["epoch"] for _ in range(12)} == {0, 1, 2, 3, 4, 5}  # 6 epochs read: counts stay per epoch
    with pytest.raises(DataError) as raised:
        source.check(6, 8)
    assert str(raised.value) == (
        "consumer 6 of 8 found no usable segment in epoch 0 of few: the 2 shards (fewer than the consumers: each "
        "takes one usable sample in 8) held 7 samples, 6 usable (too_short: 1); use at most 6 consumers (processes x "
        "DataLoader workers), or more samples")


def test_a_share_emptied_by_a_later_epochs_shards_says_so_mid_run(tmp_path, make_episode):
    write_shard(tmp_path / "shard-000.tar", {"a": make_episode(8)})
    write_shard(tmp_path / "shard-001.tar", {"tiny": make_episode(2)})  # no usable sample
    write_shard(tmp_path / "shard-002.tar", {"c": make_episode(8)})
    source = stream.ShardStream(tmp_path, _config(), name="dealt")
    source.check(1, 2)  # epoch 0 gives consumer 1 of 2 shard-000; epoch 2 (seed 0) gives it shard-001 alone
    items = source.items(1, 2, endless=True)
    with pytest.raises(DataError) as raised:
        while True:
            next(items)
    assert str(raised.value) == (
        "consumer 1 of 2 found no usable segment in epoch 2 of dealt: its share of the epoch's 3 shards (dealt out "
        "anew each epoch), shard-001.tar, held 1 sample, none usable (too_short: 1); remove the shards without usable "
        "samples, or use fewer consumers (processes x DataLoader workers)")
    source.set_epoch(2)
    with pytest.raises(DataError, match=f"^{re.escape(str(raised.value))}$"):  # the check at start-up says the same
        source.check(1, 2)


def test_a_streamed_mixture_names_its_missing_sources_as_the_indexed_one_does(tmp_path, make_episode):
    _shards(tmp_path / "big", make_episode, 1, 2)
    sources = [{"name": "big", "path": str(tmp_path / "big")}, {"name": "typo", "path": str(tmp_path / "bgi")}]
    with pytest.raises(DataError, match=r"^source typo: path .*bgi does not exist; .*exclude_sources=\[typo\]$"):
        build_stream(_config(stream=True, sources=sources))


def test_shards_with_upper_case_endings_are_streamed_as_the_index_counts_them(tmp_path, make_episode, monkeypatch):
    _shards(tmp_path, make_episode, 2, 1)
    (tmp_path / "shard-001.tar").rename(tmp_path / "shard-001.TAR")
    _as_consumer(monkeypatch, None)
    source = stream.ShardStream(tmp_path, _config())
    assert [shard.name for shard in source.shards] == ["shard-000.tar", "shard-001.TAR"]
    assert {item["key"] for item in source} == {"s0e0", "s1e0"}
