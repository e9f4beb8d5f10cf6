"""Atomic checkpoints: partial writes are ignored, the latest valid one loads, retention, full disk."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from train_toy import build_trainer

from ivideogpt.train import checkpoint as ckpt
from ivideogpt.train.checkpoint import CheckpointError


def _fake(root: Path, step: int, val_loss: float | None = None) -> Path:
    """A minimal complete checkpoint written through begin/finish."""
    tmp = ckpt.begin(root, step)
    ckpt.save_tensors(tmp / "model.safetensors", {"w": torch.full((3,), float(step))})
    ckpt.write_json(tmp / ckpt.STATE, {"step": step, "val_loss": val_loss})
    return ckpt.finish(root, step)


def test_finish_writes_manifest_and_latest_pointer(tmp_path: Path) -> None:
    path = _fake(tmp_path, 5)
    assert path.name == "step_000005" and ckpt.verify(path) is None
    assert ckpt.read_pointer(tmp_path, "latest") == path
    assert not list(tmp_path.glob(".tmp-*"))
    assert set(json.loads((path / ckpt.MANIFEST).read_text())["files"]) == {"model.safetensors", ckpt.STATE}


def test_partial_temp_dir_and_unmarked_dir_are_ignored(tmp_path: Path) -> None:
    good = _fake(tmp_path, 4)
    partial = ckpt.tmp_path(tmp_path, 8)  # killed while writing step 8
    partial.mkdir()
    (partial / "model.safetensors").write_bytes(b"half")
    unmarked = tmp_path / "step_000012"  # a directory without a manifest
    unmarked.mkdir()
    (unmarked / "model.safetensors").write_bytes(b"x")
    assert ckpt.find_latest(tmp_path) == good
    assert ckpt.list_checkpoints(tmp_path) == [good]
    assert ckpt.resolve(tmp_path) == good


def test_corrupt_latest_falls_back_to_previous_good(tmp_path: Path) -> None:
    older, newer = _fake(tmp_path, 4), _fake(tmp_path, 8)
    weights = newer / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-4] + b"\0\0\0\0")  # same size, different bytes
    assert "sha256" in ckpt.verify(newer)
    assert ckpt.find_latest(tmp_path) == older
    with pytest.raises(CheckpointError, match="sha256"):
        ckpt.resolve(newer)
    (newer / "model.safetensors").write_bytes(b"truncated")  # wrong size
    assert ckpt.find_latest(tmp_path) == older


def test_stale_latest_pointer_is_not_trusted_over_newer_checkpoints(tmp_path: Path) -> None:
    _fake(tmp_path, 4)
    newer = _fake(tmp_path, 8)
    ckpt.write_pointer(tmp_path, "latest", tmp_path / "step_000004")  # killed before the pointer moved
    assert ckpt.find_latest(tmp_path) == newer


def test_retention_keeps_last_k_and_best(tmp_path: Path) -> None:
    losses = {2: 0.9, 4: 0.3, 6: 0.7, 8: 0.8, 10: None}
    for step, loss in losses.items():
        _fake(tmp_path, step, loss)
        ckpt.apply_retention(tmp_path, keep_last=2)
    assert [p.name for p in ckpt.list_checkpoints(tmp_path)] == ["step_000004", "step_000008", "step_000010"]
    assert ckpt.read_pointer(tmp_path, "best").name == "step_000004"


def test_optimizer_state_round_trips_through_safetensors_and_json(tmp_path: Path) -> None:
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    model(torch.randn(4, 3)).sum().backward()
    optimizer.step()
    tensors, meta = ckpt.optimizer_to_files(optimizer.state_dict())
    ckpt.save_tensors(tmp_path / "o.safetensors", tensors)
    ckpt.write_json(tmp_path / "o.json", meta)
    from safetensors.torch import load_file

    restored = ckpt.optimizer_from_files(load_file(str(tmp_path / "o.safetensors")), ckpt.read_json(tmp_path / "o.json"))
    again = torch.optim.AdamW(model.parameters(), lr=0.1)
    again.load_state_dict(restored)
    for index, entries in optimizer.state_dict()["state"].items():
        for key, value in entries.items():
            assert torch.equal(again.state_dict()["state"][index][key], value)


def test_tied_weights_are_saved(tmp_path: Path) -> None:
    shared = torch.randn(4, 2)
    ckpt.save_tensors(tmp_path / "m.safetensors", {"a": shared, "b": shared, "c": shared.t()})


def test_full_disk_raises_clearly_and_keeps_previous_checkpoints(tmp_path: Path, monkeypatch) -> None:
    trainer = build_trainer(tmp_path, steps=8, save_every=4)
    real = ckpt.save_file

    def flaky(tensors: dict, path: str) -> None:  # safetensors reports a full disk with its own error type
        if trainer.step == 8 and path.endswith("optimizer.safetensors"):
            raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")
        real(tensors, path)

    monkeypatch.setattr(ckpt, "save_file", flaky)
    with pytest.raises(CheckpointError, match="No space left on device.*intact"):
        trainer.fit()
    root = tmp_path / "checkpoints"
    assert [p.name for p in ckpt.list_checkpoints(root)] == ["step_000004"]
    assert ckpt.find_latest(root).name == "step_000004"
    assert not list(root.glob(".tmp-*"))


def test_fresh_run_refuses_to_overwrite_existing_checkpoints(tmp_path: Path) -> None:
    build_trainer(tmp_path, steps=2, save_every=2).fit()
    with pytest.raises(CheckpointError, match="--resume"):
        build_trainer(tmp_path, steps=4, save_every=2)
    with pytest.raises(CheckpointError, match="no valid checkpoint"):
        build_trainer(tmp_path / "other", steps=4, resume="latest")


def test_export_model_copies_only_what_loading_needs(tmp_path) -> None:
    from ivideogpt.train.checkpoint import list_checkpoints
    from ivideogpt.train.models import export_model

    run = tmp_path / "run" / "checkpoints"
    tmp = ckpt.begin(run, 7)
    (tmp / "config.yaml").write_text("kind: tokenizer\n")
    ckpt.save_tensors(tmp / "model.safetensors", {"w": torch.ones(2)})
    ckpt.save_tensors(tmp / "optimizer.safetensors", {"m": torch.ones(2)})
    ckpt.finish(run, 7)
    shipped = export_model(tmp_path / "run", tmp_path / "shipped")
    assert shipped == tmp_path / "shipped" / "step_000007" and ckpt.verify(shipped) is None
    assert sorted(p.name for p in shipped.iterdir()) == ["config.yaml", "manifest.json", "model.safetensors"]
    assert ckpt.resolve(tmp_path / "shipped") == shipped and list_checkpoints(tmp_path / "shipped") == [shipped]


def _exportable_run(root: Path, step: int, fill: float) -> Path:
    """A training run whose one checkpoint (`step`) has weights filled with `fill`."""
    tmp = ckpt.begin(root / "checkpoints", step)
    (tmp / "config.yaml").write_text("kind: tokenizer\n")
    ckpt.save_tensors(tmp / "model.safetensors", {"w": torch.full((2,), fill)})
    ckpt.write_json(tmp / ckpt.STATE, {"step": step})
    ckpt.finish(root / "checkpoints", step)
    return root


def test_exporting_over_an_earlier_export_replaces_it_even_from_an_earlier_step(tmp_path: Path, capsys) -> None:
    from ivideogpt.cli import main as cli

    shipped = tmp_path / "shipped"
    assert cli(["export", str(_exportable_run(tmp_path / "long", 9, 1.0)), str(shipped)]) == 0
    assert cli(["export", str(_exportable_run(tmp_path / "short", 4, 2.0)), str(shipped)]) == 0
    assert "step_000004" in capsys.readouterr().out
    assert [path.name for path in ckpt.list_checkpoints(shipped)] == ["step_000004"]  # step 9 would win if left
    assert torch.equal(load_file(ckpt.resolve(shipped) / "model.safetensors")["w"], torch.full((2,), 2.0))


def test_exporting_into_a_training_run_is_refused_and_touches_nothing(tmp_path: Path, capsys) -> None:
    from ivideogpt.cli import main as cli

    target = _exportable_run(tmp_path / "target", 3, 0.0)
    assert cli(["export", str(_exportable_run(tmp_path / "run", 5, 1.0)), str(target / "checkpoints")]) == 2
    assert "training run's checkpoints (step_000003)" in capsys.readouterr().err
    assert [path.name for path in ckpt.list_checkpoints(target / "checkpoints")] == ["step_000003"]
    before = sorted(p.name for p in target.iterdir())
    assert cli(["export", str(tmp_path / "run"), str(target)]) == 2  # the run folder itself, or any other folder
    assert "holds other files (checkpoints" in capsys.readouterr().err
    assert sorted(p.name for p in target.iterdir()) == before
    assert cli(["export", str(tmp_path / "missing"), str(tmp_path / "out")]) == 2
    assert "no valid checkpoint" in capsys.readouterr().err


def test_an_exported_model_carries_its_training_data_metadata(tmp_path) -> None:
    from ivideogpt.data.actions import write_metadata
    from ivideogpt.train.checkpoint import DATA_METADATA
    from ivideogpt.train.models import export_model, training_data_metadata

    data = tmp_path / "data"
    write_metadata(data, {"action_repeat": 3, "action_space": {"low": [0.0, 0.0], "high": [512.0, 512.0]}})
    run = tmp_path / "run" / "checkpoints"
    tmp = ckpt.begin(run, 5)
    (tmp / "config.yaml").write_text(f"kind: tokenizer\ndata:\n  sources:\n  - name: pusht\n    path: {data}\n")
    ckpt.save_tensors(tmp / "model.safetensors", {"w": torch.ones(2)})
    ckpt.finish(run, 5)
    assert training_data_metadata(tmp_path / "run") == data / "metadata.json"
    shipped = export_model(tmp_path / "run", tmp_path / "shipped")
    (data / "metadata.json").unlink()  # the data is gone where the model is used
    assert training_data_metadata(tmp_path / "shipped") == shipped / DATA_METADATA
    assert '"action_repeat": 3' in (shipped / DATA_METADATA).read_text() and ckpt.verify(shipped) is None
    assert training_data_metadata(tmp_path / "run") is None


def test_resolve_says_why_no_checkpoint_loads(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="nowhere: the path does not exist"):
        ckpt.resolve(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match=r"holds no step_\* checkpoint folder"):
        ckpt.resolve(tmp_path / "empty")
    build_trainer(tmp_path / "run", steps=2, save_every=2).fit()
    with pytest.raises(CheckpointError, match=r"step_000009: no such checkpoint \(valid ones beside it: step_000002\)"):
        ckpt.resolve(tmp_path / "run" / "checkpoints" / "step_000009")
    weights = tmp_path / "run" / "checkpoints" / "step_000002" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])  # truncated, as by a copy that stopped
    with pytest.raises(CheckpointError, match=r"step_000002: .*model.safetensors has 100 bytes"):
        ckpt.resolve(tmp_path / "run")
