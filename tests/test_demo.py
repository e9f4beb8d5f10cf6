"""The end-to-end demo, shrunk to seconds: data generation, both trainings, rollouts, GIF and metrics."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import imageio.v3 as iio
import pytest
import torch

from ivideogpt.cli import main
from ivideogpt.demo import recipe, rollout_model


def test_demo_writes_gif_metrics_and_summary(tmp_path, capsys) -> None:
    out, data = tmp_path / "demo", tmp_path / "pusht"
    args = ["demo", "--out", str(out), "--data", str(data), "--episodes", "6", "--episode-steps", "12",
            "--test-episodes", "2", "--horizon", "3", "--tokenizer-preset", "tokenizer_tiny",
            "--tokenizer-steps", "2", "--tokenizer-batch", "2", "--transformer-steps", "2",
            "--transformer-batch", "2", "--clips-per-episode", "2", "--samples", "2", "--reference", "",
            "--export", str(tmp_path / "shipped")]
    assert main(args) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["clips"] == 4 and metrics["horizon"] == 3 and metrics["samples_per_clip"] == 2
    assert metrics["temperature"] == 0.7 and metrics["decoding"] == "mean of 2 samples at T 0.7"
    for name in ("world_model", "world_model_shuffled_actions", "world_model_greedy", "world_model_sampled",
                 "world_model_best_of_samples", "tokenizer_reconstruction", "copy_last_frame"):
        assert len(metrics[name]["psnr"]) == 3 and 0 < metrics[name]["ssim_mean"] <= 1
    best, mean = metrics["world_model_best_of_samples"]["psnr_mean"], metrics["world_model_sampled"]["psnr_mean"]
    assert best >= mean - 1e-6
    assert metrics["action_gap_db"] == pytest.approx(
        metrics["world_model"]["psnr_mean"] - metrics["world_model_shuffled_actions"]["psnr_mean"], abs=2e-3)
    control = metrics["controllability"]  # greedy rollouts under other actions
    assert control["gap_over_shuffled_db"] == pytest.approx(
        metrics["world_model_greedy"]["psnr_mean"] - control["greedy_shuffled"]["psnr_mean"], abs=2e-3)
    assert len(control["greedy_zero"]["psnr"]) == 3 and isinstance(control["ignores_actions"], bool)
    assert "reward_mae" in metrics
    assert metrics["rollout_precision"] == "bf16"  # the demo's default precision, trainings and rollouts alike
    assert set(metrics["seconds"]) == {"data_seconds", "tokenizer_seconds", "transformer_seconds",
                                       "evaluation_seconds", "total"}
    gif = (out / "prediction.gif").read_bytes()
    assert gif[:6] == b"GIF89a"
    printed = capsys.readouterr().out
    assert "copy last frame" in printed and "true actions over shuffled" in printed
    for kind in ("tokenizer", "transformer"):
        assert (out / "configs" / f"{kind}.yaml").is_file()
    assert (tmp_path / "shipped" / "step_000002" / "model.safetensors").is_file()  # exported as shipped
    width = iio.imread(out / "prediction.gif", index=0).shape[1]  # truth | mean of samples | greedy | copy
    # a rerun reuses the data and the finished trainings (encoding no token cache again), and scores a
    # shipped model beside its own
    token_caches = Path(os.environ["IVIDEOGPT_CACHE_DIR"]) / "tokens"
    assert any(token_caches.glob("*")), "the first run trained from cached ids"
    shutil.rmtree(token_caches)
    assert main([*args, "--reference", str(tmp_path / "shipped")]) == 0
    assert not any(token_caches.glob("*"))
    printed = capsys.readouterr().out
    assert "generating" not in printed and "shipped reference model" in printed
    shipped = json.loads((out / "metrics.json").read_text())["reference_model"]
    assert shipped["world_model"] == metrics["world_model"]  # the same weights score the same
    assert iio.imread(out / "prediction.gif", index=0).shape[1] == width * 5 // 4  # and the reference model
    fp32 = rollout_model(tmp_path / "shipped", recipe("cpu", precision="no"))
    assert fp32.precision == "fp32" and fp32.transformer.lm_head.weight.dtype == torch.float32


def test_demo_transformer_size_overrides_the_preset() -> None:
    from ivideogpt.demo import DEMO_TRANSFORMER_OPTIONS, recipe, transformer_options

    assert transformer_options(recipe("cpu")) == DEMO_TRANSFORMER_OPTIONS  # the preset's own size
    wide = transformer_options(recipe("reference", transformer_layers=4, transformer_width=256))
    assert (wide["num_layers"], wide["hidden_size"], wide["ffn_size"], wide["num_heads"]) == (4, 256, 1024, 4)
    assert wide["action_frequencies"] == DEMO_TRANSFORMER_OPTIONS["action_frequencies"]
    with pytest.raises(ValueError, match="multiple of 64"):
        recipe("cpu", transformer_width=100)


@pytest.mark.cuda
def test_scoring_helpers_take_a_model_on_the_gpu() -> None:
    from ivideogpt.data.batch import Batch
    from ivideogpt.demo import rollout_predictions, tokenizer_reconstruction
    from ivideogpt.tokenizer import tokenizer_tiny
    from ivideogpt.transformer import transformer_tiny
    from ivideogpt.world_model import WorldModel

    model = WorldModel(tokenizer_tiny().build(), transformer_tiny(action_dim=2, reward_head=True).build()).to("cuda")
    batch = Batch(torch.rand(2, 3, 3, 64, 64) * 2 - 1, actions=torch.rand(2, 3, 2), num_context=1)
    frames, rewards = rollout_predictions(model, batch, samples=2, seed=0)
    assert frames.shape == (2, 2, 2, 3, 64, 64) and frames.device.type == rewards.device.type == "cpu"
    assert tokenizer_reconstruction(model.tokenizer, batch).device.type == "cpu"
