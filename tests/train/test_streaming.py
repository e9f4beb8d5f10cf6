"""The Trainer on a streamed mixture: positions per consumer in checkpoints, exact resume, a changed layout."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch
from train_toy import build_trainer, read_losses, toy_stream, write_toy_shards

from ivideogpt.data.report import DataError
from ivideogpt.train.streaming import PositionedCollate, StreamState, check_share


def test_paused_and_resumed_stream_trains_on_the_same_samples(tmp_path: Path) -> None:
    shards = tmp_path / "shards"
    write_toy_shards(shards)
    options = dict(stream=shards, num_workers=2, grad_accum=1)
    straight = build_trainer(tmp_path / "straight", 9, 3, **options)
    straight.fit()
    paused = build_trainer(tmp_path / "paused", 9, 3, **options)
    paused.fit(until=3)  # an odd number of batches: the resumed loader must start with worker 1
    resumed = build_trainer(tmp_path / "paused", 9, 3, resume="latest", **options)
    resumed.fit()
    assert resumed.objective.seen == straight.objective.seen[3 * 8:]
    assert read_losses(tmp_path / "paused") == read_losses(tmp_path / "straight")
    state = json.loads((tmp_path / "paused" / "checkpoints" / "step_000009" / "trainer_state.json").read_text())
    stream = state["data_position"]["stream"]
    assert stream["consumers"] == 2 and stream["positions"] == resumed.stream.positions
    assert {c: p["draws"] for c, p in stream["positions"].items()} == {"0": 40, "1": 32}  # 5 and 4 batches of 8


def test_a_new_layout_restarts_every_consumer_with_a_warning(tmp_path: Path, caplog) -> None:
    write_toy_shards(tmp_path)
    saved = {"consumers": 2, "positions": {"0": {"draws": 9, "sources": [{"epoch": 3, "offset": 1}] * 2},
                                           "1": {"draws": 7, "sources": [{"epoch": 2, "offset": 4}] * 2}}}
    with caplog.at_level(logging.WARNING):
        state = StreamState(toy_stream(tmp_path), 3, saved)
    assert "data order differs" in caplog.text
    begin = {"draws": 0, "sources": [{"epoch": 2, "offset": 0}] * 2}
    assert state.saved() == {"consumers": 3, "positions": {"0": begin, "1": begin, "2": begin}}
    assert StreamState(toy_stream(tmp_path), 2, saved).saved() == saved


def test_positioned_collate_strips_the_stream_entries() -> None:
    items = [{"x": torch.tensor(n), "position": {"offset": n}, "consumer": 1} for n in (1, 2)]
    batch, consumer, position = PositionedCollate(None)(items)
    assert list(batch) == ["x"] and batch["x"].tolist() == [1, 2] and (consumer, position) == (1, {"offset": 2})


def test_a_process_whose_consumers_have_no_data_is_found_before_training(tmp_path: Path) -> None:
    write_toy_shards(tmp_path)  # "small": 6 usable samples, shared by the consumers when they outnumber its 2 shards
    stream = toy_stream(tmp_path)
    check_share(stream, rank=2, world_size=4, workers=1)  # consumer 2 of 4 has data in every source
    check_share(stream, rank=1, world_size=4, workers=2)  # so do consumers 2 and 3 of 8
    with pytest.raises(DataError, match="consumer 6 of 8 found no usable segment in epoch 0 of small"):
        check_share(stream, rank=3, world_size=4, workers=2)
    with pytest.raises(DataError, match="consumer 7 of 8 found no usable segment in epoch 0 of small"):
        check_share(stream, rank=7, world_size=8, workers=0)
