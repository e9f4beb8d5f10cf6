"""`ivideogpt import-official`: a checkpoint `load_model` reads; refusals that name what does not fit."""

import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from ivideogpt.cli import main
from ivideogpt.official import SnapshotError, read_snapshot
from ivideogpt.train import load_model
from ivideogpt.world_model import WorldModel


def _copy(fixtures: Path, name: str, dest: Path) -> Path:
    """A writable copy of a fixture snapshot, with the tokenizer link resolved."""
    snapshot = dest / name
    shutil.copytree(fixtures / name / "transformer", snapshot / "transformer")
    shutil.copytree(fixtures / "act-free" / "tokenizer", snapshot / "tokenizer")
    return snapshot


@pytest.mark.parametrize("name", ["act-free", "act-cond"])
def test_import_writes_a_checkpoint_that_load_model_reads(fixtures, reference, tmp_path, name, capsys) -> None:
    assert main(["import-official", str(fixtures / name), "--out", str(tmp_path / "out")]) == 0
    assert "wrote" in capsys.readouterr().out
    for source in (tmp_path / "out", fixtures / name):  # the checkpoint, and the snapshot read directly
        model = load_model(source)
        assert isinstance(model, WorldModel) and model.num_context == 2
        frames = reference["video"] * 2 - 1
        actions = reference["actions"] if model.action_dim else None
        with torch.no_grad():
            context_ids, future_ids = model.tokenizer.encode(frames[:, :2], frames[:, 2:])
            _, logs = model.transformer.loss(context_ids, future_ids, actions)
        key = "free" if name == "act-free" else "cond"
        assert abs(float(logs["ce"]) - float(reference[f"{key}_loss"])) < 1e-4
        assert model.action_dim == (4 if name == "act-cond" else 0) and model.predicts_reward == (name == "act-cond")


def test_truncated_weights_are_refused(fixtures, tmp_path, capsys) -> None:
    snapshot = _copy(fixtures, "act-free", tmp_path)
    weights = snapshot / "tokenizer" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100_000])
    with pytest.raises(SnapshotError, match=r"diffusion_pytorch_model.safetensors \(100000 bytes\) is not a complete"):
        read_snapshot(snapshot)
    assert main(["import-official", str(snapshot), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ivideogpt import-official: ") and "truncated or corrupt" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("folder", ["act-free/tokenizer", "."])
def test_a_wrong_folder_is_refused(fixtures, folder) -> None:
    with pytest.raises(SnapshotError, match="is not a released iVideoGPT snapshot: missing tokenizer/config.json"):
        read_snapshot(fixtures / folder)


def test_not_a_folder_is_refused(tmp_path) -> None:
    with pytest.raises(SnapshotError, match="is not a folder"):
        read_snapshot(tmp_path / "nothing")


def test_a_tokenizer_link_to_a_missing_folder_is_named(fixtures, tmp_path) -> None:
    snapshot = tmp_path / "act-cond"
    shutil.copytree(fixtures / "act-cond", snapshot)  # its tokenizer link (a text file) comes, the folder it names not
    for read in (read_snapshot, load_model):  # load_model reads it as a snapshot, not as a run without step_*
        with pytest.raises(SnapshotError, match=r"act-cond/tokenizer is a link to \.\./act-free/tokenizer, which "
                                                r"does not exist"):
            read(snapshot)


def test_an_out_folder_holding_another_model_is_refused(fixtures, tmp_path, capsys) -> None:
    out = tmp_path / "out"
    (out / "step_003000").mkdir(parents=True)  # a trained model that `latest` points at
    (out / "latest").write_text("step_003000\n")
    assert main(["import-official", str(fixtures / "act-free"), "--out", str(out)]) == 2
    assert "holds other files (step_003000)" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["latest", "step_003000"]
    assert (out / "latest").read_text() == "step_003000\n"
    for _ in range(2):  # a new folder, then over that earlier import
        assert main(["import-official", str(fixtures / "act-free"), "--out", str(tmp_path / "again")]) == 0


def _edit_transformer(snapshot: Path, edit) -> None:
    path = snapshot / "transformer" / "model.safetensors"
    tensors = load_file(str(path))
    edit(tensors)
    save_file(tensors, str(path))


@pytest.mark.parametrize("edit, message", [
    (lambda t: t.update({"llm.action_recon_linear.weight": torch.zeros(4, 32)}),
     r"unmapped transformer tensors .*llm.action_recon_linear.weight"),
    (lambda t: t.pop("llm.model.layers.1.mlp.up_proj.weight"), r"missing transformer tensors .*core.layers.1.mlp.up_proj"),
    (lambda t: t.update({"llm.model.norm.weight": torch.ones(31)}),
     r"shape mismatches: core.norm.weight: snapshot \(31,\) vs model \(32,\)"),
])
def test_misfitting_tensors_are_named(fixtures, tmp_path, edit, message) -> None:
    snapshot = _copy(fixtures, "act-cond", tmp_path)
    _edit_transformer(snapshot, edit)
    with pytest.raises(SnapshotError, match=message):
        load_model(snapshot)


def test_misfitting_tokenizer_tensors_are_named(fixtures, tmp_path) -> None:
    snapshot = _copy(fixtures, "act-free", tmp_path)
    path = snapshot / "tokenizer" / "diffusion_pytorch_model.safetensors"
    tensors = load_file(str(path))
    tensors["extra.weight"] = tensors.pop("quant_linear.bias")
    save_file(tensors, str(path))
    with pytest.raises(SnapshotError, match=r"unmapped tokenizer tensors .*extra.weight.* \| missing tokenizer tensors "
                                            r".*quant_linear.bias"):
        load_model(snapshot)
