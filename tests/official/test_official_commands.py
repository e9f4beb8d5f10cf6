"""Commands on imported snapshots: `evaluate`, and `train` fine-tuning an action-free one into an action-conditioned one."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from ivideogpt.cli import main as cli
from ivideogpt.data.episode import Episode
from ivideogpt.train import load_model

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
FIXTURE_SIZE = ["--transformer.hidden_size=32", "--transformer.ffn_size=64", "--transformer.num_layers=2",
                "--transformer.num_heads=2", "--transformer.action_dim=2"]
SHORT = ["--data.sources=[{name: toy, path: toy}]", "--data.segment_length=4", "--data.num_context=2",
         "--data.val_fraction=0.25", "--train.batch_size=2", "--train.max_steps=2", "--train.log_every=1",
         "--train.val_every=2", "--train.val_batches=1", "--train.save_every=2", "--train.sample_every=0",
         "--train.mixed_precision=no", "--train.num_workers=0", "--train.progress=false", "--train.warmup_steps=1"]


def _episodes(folder: Path, count: int, action_dim: int) -> None:
    rng = np.random.default_rng(0)
    for i in range(count):
        Episode(frames=rng.integers(0, 256, (6, 64, 64, 3), dtype=np.uint8),
                actions=rng.uniform(-1, 1, (6, action_dim)).astype(np.float32)).save(folder / f"e{i}.npz")


def test_evaluate_an_imported_checkpoint(fixtures, tmp_path, monkeypatch, capsys) -> None:
    _episodes(tmp_path / "test", 2, 4)
    monkeypatch.chdir(tmp_path)
    assert cli(["import-official", str(fixtures / "act-cond"), "--out", "imported"]) == 0
    assert cli(["evaluate", "--checkpoint", "imported", "--data", "test", "--protocol", "custom", "--context-frames",
                "2", "--horizon", "2", "--samples", "2", "--action-conditioned", "--no-progress", "--device", "cpu"]) == 0
    assert "2 context frame(s), 2 predicted, action-conditioned" in capsys.readouterr().out
    assert (tmp_path / "imported" / "eval-custom" / "results.json").is_file()


@pytest.mark.parametrize("name", ["act-free", "act-cond"])
def test_predict_from_a_snapshot_folder(fixtures, tmp_path, monkeypatch, capsys, name) -> None:
    _episodes(tmp_path / "episodes", 1, 4)
    monkeypatch.chdir(tmp_path)
    assert cli(["predict", str(fixtures / name), "episodes/e0.npz", "--horizon", "2", "--out", "pred.gif"]) == 0
    out = capsys.readouterr().out
    assert "t+1: PSNR" in out and "t+2: PSNR" in out and (tmp_path / "pred.gif").stat().st_size > 0
    assert cli(["predict", str(fixtures / name), "episodes/e0.npz", "--horizon", "2", "--out", "bf16.mp4",
                "--device", "cpu", "--precision", "bf16"]) == 0
    assert "t+2: PSNR" in capsys.readouterr().out and (tmp_path / "bf16.mp4").stat().st_size > 0
    assert cli(["predict", str(fixtures / name), "episodes/e0.npz", "--horizon", "9"]) == 2
    assert "ivideogpt predict: " in (err := capsys.readouterr().err) and "has 4 frames to predict after 2" in err
    assert cli(["predict", str(fixtures / name), "episodes/e0.npz", "--out", "pred.png"]) == 2
    output = capsys.readouterr()
    assert "must end in .gif or .mp4" in output.err and "PSNR" not in output.out  # refused before the rollout
    assert cli(["predict", str(fixtures / name), "episodes/e0.npz", "--start", "4"]) == 2
    assert capsys.readouterr().err.rstrip().endswith("from index 4")  # no horizon was asked for


@pytest.mark.slow
def test_action_conditioned_finetune_from_an_imported_action_free_snapshot(fixtures, tmp_path, monkeypatch) -> None:
    _episodes(tmp_path / "data" / "toy", 4, 2)
    monkeypatch.chdir(tmp_path)
    assert cli(["import-official", str(fixtures / "act-free"), "--out", "runs/imported"]) == 0
    assert cli(["train", "transformer", "--config", str(CONFIGS / "transformer_official_bair.yaml"),
                "--tokenizer_checkpoint=runs/imported", "--init_from=runs/imported", *FIXTURE_SIZE, *SHORT,
                "--train.out_dir=runs/tuned"]) == 0
    tuned = load_model("runs/tuned")
    assert tuned.action_dim == 2 and tuned.layout.variant == "official"
    assert type(tuned.tokenizer).__name__ == "OfficialTokenizer"
    context = torch.rand(1, 2, 3, 64, 64) * 2 - 1
    predicted, _ = tuned.rollout(context, torch.zeros(1, 2, 2))
    assert predicted.shape == (1, 2, 3, 64, 64)
    # the fine-tuned run resumes from its checkpoint and trains on to a later step
    assert cli(["train", "transformer", "--config", str(CONFIGS / "transformer_official_bair.yaml"),
                "--tokenizer_checkpoint=runs/imported", "--init_from=runs/imported", *FIXTURE_SIZE, *SHORT,
                "--train.out_dir=runs/tuned", "--train.max_steps=4", "--train.resume=latest"]) == 0
    steps = sorted(path.name for path in (tmp_path / "runs" / "tuned" / "checkpoints").glob("step_*"))
    assert steps[-1] == "step_000004" and load_model("runs/tuned").layout.variant == "official"


@pytest.mark.slow
def test_plan_with_an_imported_snapshot_fine_tuned_on_pusht(fixtures, tmp_path, monkeypatch) -> None:
    pytest.importorskip("gym_pusht")
    from ivideogpt.envs.pusht_data import generate_pusht

    generate_pusht(tmp_path / "data" / "pusht", episodes=3, steps=12, progress=False)
    monkeypatch.chdir(tmp_path)
    assert cli(["import-official", str(fixtures / "act-free"), "--out", "runs/imported"]) == 0
    pusht = [*SHORT, "--data.sources=[{name: pusht, path: pusht}]", "--transformer.reward_head=true"]
    assert cli(["train", "transformer", "--config", str(CONFIGS / "transformer_official_bair.yaml"),
                "--tokenizer_checkpoint=runs/imported", "--init_from=runs/imported", *FIXTURE_SIZE, *pusht,
                "--train.out_dir=runs/official_pusht"]) == 0
    assert cli(["plan", "--checkpoint", "runs/official_pusht", "--controllers", "world-model,hold-still",
                "--context-frames", "2", "--episodes", "1", "--max-steps", "2", "--horizon", "2",
                "--candidates", "4", "--elites", "2", "--iterations", "1", "--execute-steps", "1",
                "--videos", "0", "--precision", "bf16", "--out", "plan"]) == 0
    report = json.loads((tmp_path / "plan" / "results.json").read_text())
    assert report["world_model"]["checkpoint"] == "runs/official_pusht" and report["world_model"]["precision"] == "bf16"
    assert report["summary"]["world-model"]["steps"] == 2
