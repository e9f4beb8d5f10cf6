"""The training loop on a toy objective: logs, NaN stop, accumulation, resume, samples, trackers."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import pytest
from train_toy import build_trainer, read_losses

from ivideogpt.configuration import ConfigError
from ivideogpt.train import NonFiniteLossError
from ivideogpt.train import checkpoint as ckpt


def test_fit_logs_every_step_and_keeps_checkpoints(tmp_path: Path) -> None:
    summary = build_trainer(tmp_path, steps=8, save_every=2, keep_last=2).fit()
    assert summary["step"] == 8 and summary["val_loss"] is not None
    records = [json.loads(line) for line in (tmp_path / "losses.jsonl").read_text().splitlines()]
    train = [r for r in records if r["split"] == "train"]
    assert [r["step"] for r in train] == list(range(1, 9))
    assert {"loss", "mse", "mae", "grad_norm", "lr", "samples_per_s"} <= set(train[0])
    assert train[0]["lr"] == pytest.approx(1.5e-3)  # warmup step 1 of 2
    assert [r["step"] for r in records if r["split"] == "val"] == [4, 8]
    names = {p.name for p in ckpt.list_checkpoints(tmp_path / "checkpoints")}
    best = ckpt.read_pointer(tmp_path / "checkpoints", "best").name
    assert {"step_000006", "step_000008"} <= names and best in names and len(names) <= 3
    assert (tmp_path / "config.yaml").is_file()


def test_nan_loss_stops_with_step_and_keeps_last_good_checkpoint(tmp_path: Path) -> None:
    trainer = build_trainer(tmp_path, steps=10, save_every=3, nan_at=4, log_every=5)
    with pytest.raises(NonFiniteLossError, match=r"step 4 .*step_000003"):
        trainer.fit()
    root = tmp_path / "checkpoints"
    assert [p.name for p in ckpt.list_checkpoints(root)] == ["step_000003"]
    assert ckpt.find_latest(root).name == "step_000003" and ckpt.verify(root / "step_000003") is None
    assert read_losses(tmp_path) == {}  # the first log (step 5) found the NaN and stopped


def test_an_update_that_breaks_the_weights_is_never_saved(tmp_path: Path) -> None:
    trainer = build_trainer(tmp_path, steps=6, save_every=1, log_every=10)
    step, updates = trainer.optimizer.step, []

    def step_then_break_a_weight_on_the_second_update(*args, **kwargs):
        step(*args, **kwargs)
        updates.append(1)
        if len(updates) == 2:  # a finite loss and gradient, but an update to inf (e.g. a huge learning rate)
            next(trainer.model.parameters()).data.fill_(float("inf"))

    trainer.optimizer.step = step_then_break_a_weight_on_the_second_update
    with pytest.raises(NonFiniteLossError, match=r"weights became non-finite at step 1 .*step_000001"):
        trainer.fit()
    root = tmp_path / "checkpoints"
    assert [p.name for p in ckpt.list_checkpoints(root)] == ["step_000001"]


def test_gradient_accumulation_matches_a_full_batch(tmp_path: Path) -> None:
    build_trainer(tmp_path / "full", steps=4, dropout=0.0).fit()
    build_trainer(tmp_path / "accum", steps=4, dropout=0.0, grad_accum=4).fit()
    full, accum = read_losses(tmp_path / "full"), read_losses(tmp_path / "accum")
    assert list(full) == list(accum) == [1, 2, 3, 4]
    assert list(accum.values()) == pytest.approx(list(full.values()), rel=1e-5)


def test_resume_in_process_reproduces_the_same_losses(tmp_path: Path) -> None:
    build_trainer(tmp_path / "straight", steps=10, save_every=5).fit()
    build_trainer(tmp_path / "split", steps=10, save_every=5).fit(until=5)  # as if interrupted after 5
    with (tmp_path / "split" / "losses.jsonl").open("a") as handle:  # a record the resumed run must drop
        handle.write(json.dumps({"step": 6, "split": "train", "loss": -1.0}) + "\n")
    resumed = build_trainer(tmp_path / "split", steps=10, save_every=5, resume="latest")
    assert resumed.step == 5
    resumed.fit()
    assert read_losses(tmp_path / "split") == read_losses(tmp_path / "straight")  # bitwise, dropout included
    assert read_losses(tmp_path / "split", "val") == read_losses(tmp_path / "straight", "val")


def test_resume_follows_the_schedule_and_optimizer_settings_given_on_resume(tmp_path: Path, caplog) -> None:
    from ivideogpt.train.optim import lr_factor

    def learning_rates(out: Path) -> dict[int, float]:
        records = [json.loads(line) for line in (out / "losses.jsonl").read_text().splitlines()]
        return {r["step"]: r["lr"] for r in records if r["split"] == "train"}

    build_trainer(tmp_path / "straight", steps=8, save_every=5).fit()
    build_trainer(tmp_path / "longer", steps=6, save_every=5).fit(until=5)
    build_trainer(tmp_path / "longer", steps=8, save_every=5, resume="latest").fit()  # a cosine run made longer
    straight, longer = learning_rates(tmp_path / "straight"), learning_rates(tmp_path / "longer")
    assert [longer[step] for step in (6, 7, 8)] == pytest.approx([straight[step] for step in (6, 7, 8)])
    build_trainer(tmp_path / "tuned", steps=8, save_every=5).fit(until=5)
    with caplog.at_level(logging.INFO, logger="ivideogpt"):
        tuned = build_trainer(tmp_path / "tuned", steps=8, save_every=5, resume="latest", lr=1e-4, weight_decay=0.5,
                              betas=(0.8, 0.9))
    expected = 1e-4 * lr_factor(5, tuned.cfg)
    assert f"at step 5, learning rate {expected:.3g}" in caplog.text
    assert [group["lr"] for group in tuned.optimizer.param_groups] == pytest.approx([expected] * 2)
    assert sorted(group["weight_decay"] for group in tuned.optimizer.param_groups) == [0.0, 0.5]
    assert {group["betas"] for group in tuned.optimizer.param_groups} == {(0.8, 0.9)}
    tuned.fit()
    assert learning_rates(tmp_path / "tuned")[6] == pytest.approx(expected)


def test_sample_gifs_and_tensorboard(tmp_path: Path) -> None:
    import imageio.v3 as iio

    build_trainer(tmp_path, steps=2, save_every=2, sample_every=2, tensorboard=True, num_samples=3).fit()
    gif = tmp_path / "samples" / "step_000002_prediction.gif"
    frames = iio.imread(gif, index=None)
    assert frames.shape == (2, 3 * 4, 2 * 4, 3)  # (T, 3 items x H, ground truth | prediction, RGB)
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))


def test_bf16_autocast_runs_on_cpu(tmp_path: Path) -> None:
    summary = build_trainer(tmp_path, steps=2, save_every=2, mixed_precision="bf16").fit()
    assert summary["train_loss"] == summary["train_loss"]  # finite number


def test_wandb_without_the_package_is_a_clear_error(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "wandb", None)
    with pytest.raises(ConfigError, match="pip install 'ivideogpt\\[wandb\\]'"):  # one line from `ivideogpt train`
        build_trainer(tmp_path, steps=2, wandb=True)
