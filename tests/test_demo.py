"""The end-to-end demo, shrunk to seconds: data generation, both trainings, rollouts, GIF and metrics."""

from __future__ import annotations

import json

from ivideogpt.cli import main


def test_demo_writes_gif_metrics_and_summary(tmp_path, capsys) -> None:
    out, data = tmp_path / "demo", tmp_path / "pusht"
    args = ["demo", "--out", str(out), "--data", str(data), "--episodes", "6", "--episode-steps", "12",
            "--test-episodes", "2", "--horizon", "3", "--tokenizer-preset", "tokenizer_tiny",
            "--tokenizer-steps", "2", "--tokenizer-batch", "2", "--transformer-steps", "2",
            "--transformer-batch", "2", "--clips-per-episode", "2", "--samples", "2"]
    assert main(args) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["clips"] == 4 and metrics["horizon"] == 3 and metrics["samples_per_clip"] == 2
    assert metrics["temperature"] == 0.7
    for name in ("world_model", "world_model_best_of_samples", "copy_last_frame"):
        assert len(metrics[name]["psnr"]) == 3 and 0 < metrics[name]["ssim_mean"] <= 1
    best, mean = metrics["world_model_best_of_samples"]["psnr_mean"], metrics["world_model"]["psnr_mean"]
    assert best >= mean - 1e-6
    assert "reward_mae" in metrics
    gif = (out / "prediction.gif").read_bytes()
    assert gif[:6] == b"GIF89a"
    assert "copy_last_frame" in capsys.readouterr().out
    for kind in ("tokenizer", "transformer"):
        assert (out / "configs" / f"{kind}.yaml").is_file()
    assert main(args) == 0  # a rerun reuses the data and the finished trainings
    assert "generating" not in capsys.readouterr().out
