"""FSDP for real (2 CPU processes over gloo): the same losses as 1 process, sharded optimizer checkpoints
that resume on another number of processes (2 -> 1, 1 -> 2), and DDP checkpoints resumed on 1 process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from train_toy import ToyObjective, build_trainer, read_losses

from ivideogpt import launch
from ivideogpt.launch import StoppedWithOthers
from ivideogpt.train import checkpoint as ckpt
from ivideogpt.train import sharding

TOLERANCE = 1e-5  # relative; measured: at most 1e-7 (gradients summed in another order)
SCRIPT = Path(__file__).with_name("train_toy.py")
RUN = ("--steps", "6", "--save-every", "3", "--dropout", "0")


def _agree(run: Path, reference: dict[int, float]) -> None:
    losses = read_losses(run)
    assert list(losses) == list(reference) == list(range(1, 7))
    assert list(losses.values()) == pytest.approx(list(reference.values()), rel=TOLERANCE)


def _summary(run: Path) -> dict:
    return json.loads((run / "summary.json").read_text())


@pytest.fixture(scope="module")
def one_process(tmp_path_factory: pytest.TempPathFactory, run_processes) -> dict[int, float]:
    """Train losses of an uninterrupted 1-process run (6 steps, global batch 8)."""
    out = tmp_path_factory.mktemp("one_process")
    run_processes([SCRIPT, out, *RUN, "--distributed", "fsdp"])
    return read_losses(out)


@pytest.mark.slow
def test_fsdp_on_two_processes_matches_one_and_writes_shards(tmp_path: Path, one_process: dict[int, float],
                                                             run_processes) -> None:
    run_processes([SCRIPT, tmp_path, *RUN, "--distributed", "fsdp", "--grad-accum", "2", "--then", "ddp"], processes=2)
    assert _summary(tmp_path)["world_size"] == 2 and _summary(tmp_path)["distributed_type"] == "FSDP"
    _agree(tmp_path, one_process)
    assert _summary(tmp_path / "then")["distributed_type"] == "MULTI_CPU"  # a second Trainer picks its own strategy
    _agree(tmp_path / "then", one_process)
    checkpoint = tmp_path / "checkpoints" / "step_000006"
    assert sorted(p.name for p in (checkpoint / "optimizer").iterdir()) == [".metadata", "__0_0.distcp", "__1_0.distcp"]
    assert not (checkpoint / "optimizer.safetensors").exists() and ckpt.verify(checkpoint) is None
    weights = load_file(str(checkpoint / "model.safetensors"))  # whole, not sharded: what load_model reads
    assert weights["net.0.weight"].shape == (24, 48)


@pytest.mark.slow
@pytest.mark.parametrize(("first", "then"), [(2, 1), (1, 2)])
def test_fsdp_checkpoint_resumes_on_another_number_of_processes(tmp_path: Path, one_process: dict[int, float],
                                                                run_processes, first: int, then: int) -> None:
    run_processes([SCRIPT, tmp_path, *RUN, "--distributed", "fsdp", "--until", "3"], processes=first)
    assert [p.name for p in ckpt.list_checkpoints(tmp_path / "checkpoints")] == ["step_000003"]
    run_processes([SCRIPT, tmp_path, *RUN, "--distributed", "fsdp", "--resume", "latest"], processes=then)
    assert _summary(tmp_path)["world_size"] == then
    _agree(tmp_path, one_process)


@pytest.mark.slow
def test_ddp_checkpoint_resumes_on_one_process(tmp_path: Path, one_process: dict[int, float], run_processes) -> None:
    run_processes([SCRIPT, tmp_path, *RUN, "--until", "3"], processes=2)
    run_processes([SCRIPT, tmp_path, *RUN, "--resume", "latest"])
    _agree(tmp_path, one_process)


def test_sharded_optimizer_checkpoint_round_trips_in_one_process(tmp_path: Path) -> None:
    trainer = build_trainer(tmp_path / "run", steps=6, save_every=3, distributed="fsdp")
    trainer.fit(until=3)
    saved = trainer.optimizer.state_dict()["state"]
    checkpoint = tmp_path / "run" / "checkpoints" / "step_000003"
    assert (checkpoint / "optimizer" / ".metadata").is_file() and not (checkpoint / "optimizer.json").exists()

    resumed = build_trainer(tmp_path / "run", steps=6, save_every=3, distributed="fsdp", resume="latest")
    restored = resumed.optimizer.state_dict()["state"]
    assert resumed.step == 3 and sorted(restored) == sorted(saved)
    for index, entries in saved.items():
        for key, value in entries.items():
            assert torch.equal(restored[index][key], value), (index, key)
    assert resumed.optimizer.param_groups[0]["lr"] == trainer.optimizer.param_groups[0]["lr"]
    ckpt.load_weights(ToyObjective(), checkpoint)  # the whole model, as `load_model` and `export_model` read it


def test_a_ddp_checkpoint_under_fsdp_is_refused_by_process_0_alone(tmp_path: Path, monkeypatch) -> None:
    trainer = build_trainer(tmp_path / "run", steps=2, save_every=2)
    trainer.fit()
    checkpoint = ckpt.find_latest(tmp_path / "run" / "checkpoints")
    monkeypatch.setattr(sharding, "is_sharded", lambda accelerator: True)  # as on several processes under FSDP

    def load() -> None:
        trainer.io.load(checkpoint, trainer.model, trainer.optimizer, trainer.scheduler)

    with pytest.raises(ckpt.CheckpointError, match="resume it with train.distributed=ddp"):
        load()
    monkeypatch.setattr(launch, "_rank", lambda: 1)  # every other process stops without a message of its own
    with pytest.raises(StoppedWithOthers):
        load()
