"""Reports, test-video loading, LPIPS inside the protocol, and the `ivideogpt evaluate` command."""

from __future__ import annotations

import json
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from PIL import Image

from ivideogpt import cli
from ivideogpt.data.episode import Episode
from ivideogpt.eval.predictors import CopyLastFrame
from ivideogpt.eval.protocol import ProtocolConfig, run_protocol
from ivideogpt.eval.report import LABEL_WIDTH, comparison_markdown, write_report
from ivideogpt.eval.videos import load_test_videos
from ivideogpt.perceptual import LPIPS, VGG16Features

SHIPPED = Path(__file__).resolve().parents[2] / "checkpoints" / "pusht"


def test_report_files(make_videos, tmp_path) -> None:
    videos = make_videos(3, frames=5, size=16)
    config = ProtocolConfig(context_frames=2, horizon=3, samples=2, visualize=2)
    run = run_protocol(CopyLastFrame(), videos, config, tmp_path, progress=False)
    paths = write_report(tmp_path)
    markdown = (tmp_path / "results.md").read_text()
    assert "PSNR" in markdown and "copy-last-frame" in markdown and "t+3" in markdown and "FVD ↓ | n/a" in markdown
    gifs, pngs = [p for p in paths if p.suffix == ".gif"], [p for p in paths if p.suffix == ".png"]
    assert len(gifs) == len(pngs) == 2
    animation = iio.imread(gifs[0])
    assert animation.shape == (5, 3 * 16 + 4, LABEL_WIDTH + 16, 3)  # 5 steps; truth / best / typical rows
    assert Image.open(pngs[0]).size == (LABEL_WIDTH + 5 * 16 + 4 * 2, 3 * 16 + 4)
    table = comparison_markdown({"model": run.summary, "copy-last-frame": run.summary})
    assert "| metric | model | copy-last-frame |" in table and "| FVD ↓ | n/a | n/a |" in table


def test_lpips_in_protocol(make_videos, tmp_path) -> None:
    videos = make_videos(2, frames=4, size=16)
    lpips_model = LPIPS(VGG16Features())
    run = run_protocol(CopyLastFrame(), videos, ProtocolConfig(horizon=3, samples=2), tmp_path,
                       lpips_model=lpips_model, progress=False)
    entry = run.summary["metrics"]["lpips"]
    assert entry["mean"] > 0 and len(run.summary["per_horizon"]["lpips"]) == 3


def _write_episodes(root, lengths=(6, 6, 3)) -> None:
    rng = np.random.default_rng(0)
    for i, length in enumerate(lengths):
        frames = rng.integers(0, 256, (length, 16, 16, 3), dtype=np.uint8)
        Episode(frames, actions=rng.normal(size=(length, 2)).astype(np.float32)).save(root / f"ep{i}.npz")


def test_load_test_videos(tmp_path, caplog: pytest.LogCaptureFixture) -> None:
    _write_episodes(tmp_path)
    good = (tmp_path / "ep0.npz").read_bytes()
    (tmp_path / "ep3.npz").write_bytes(good[: len(good) // 2])  # truncated: skipped and named, not fatal
    videos = load_test_videos(tmp_path, clip_length=5)
    assert [v.id for v in videos] == ["ep0", "ep1"]
    assert "1 unreadable episode file(s)" in caplog.text and "ep3.npz" in caplog.text
    assert videos[0].frames.shape == (5, 3, 16, 16) and videos[0].actions.shape == (5, 2)
    assert videos[0].frames.min() >= -1 and videos[0].frames.max() <= 1
    assert "skipped 1 episode" in caplog.text
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no episode files"):
        load_test_videos(tmp_path / "empty", clip_length=5)
    with pytest.raises(FileNotFoundError, match="nope does not exist: give a folder of episode files"):
        load_test_videos(tmp_path / "nope", clip_length=5)
    with pytest.raises(FileNotFoundError, match="ep0.npz is a file, not a folder of episode files"):
        load_test_videos(tmp_path / "ep0.npz", clip_length=5)


def test_evaluate_command(tmp_path, no_weights, capsys: pytest.CaptureFixture) -> None:
    _write_episodes(tmp_path / "data")
    out = tmp_path / "out"
    argv = ["evaluate", "--baseline", "copy-last-frame", "--data", str(tmp_path / "data"), "--protocol", "custom",
            "--context-frames", "2", "--horizon", "3", "--action-conditioned", "--output", str(out), "--no-progress"]
    assert cli.main(argv) == 0
    summary = json.loads((out / "results.json").read_text())
    assert summary["videos"] == 2 and summary["protocol"]["action_conditioned"] is True
    assert "skipped" in summary["metrics"]["fvd"] and "skipped" in summary["metrics"]["lpips"]
    assert (out / "results.md").is_file() and list((out / "visuals").glob("*.gif"))
    assert "PSNR" in capsys.readouterr().out

    assert cli.main([*argv, "--require-all"]) == 2
    assert "vgg16" in capsys.readouterr().err.lower()
    missing = ["evaluate", "--checkpoint", str(tmp_path / "nowhere"), "--data", str(tmp_path / "data"),
               "--protocol", "custom", "--context-frames", "1", "--horizon", "2", "--no-progress"]
    assert cli.main(missing) == 2
    assert "ivideogpt evaluate:" in capsys.readouterr().err
    for flags, field in ((["--samples", "0"], "ProtocolConfig.samples (--samples) must be >= 1, got 0"),
                         (["--seeds", "1", "1"], "ProtocolConfig.seeds (--seeds) must be distinct and non-empty")):
        assert cli.main([*argv, *flags]) == 2  # named as the flag the user typed, too
        assert capsys.readouterr().err.startswith(f"ivideogpt evaluate: {field}")


def test_evaluate_feeds_an_action_conditioned_model_its_actions_unless_told(tmp_path, no_weights, capsys) -> None:
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (4, 64, 64, 3), dtype=np.uint8)
    Episode(frames, actions=rng.uniform(-1, 1, (4, 2)).astype(np.float32)).save(tmp_path / "data" / "ep0.npz")
    argv = ["evaluate", "--checkpoint", str(SHIPPED), "--data", str(tmp_path / "data"), "--protocol", "custom",
            "--context-frames", "1", "--horizon", "2", "--samples", "2", "--output", str(tmp_path / "out"),
            "--no-progress"]
    assert cli.main(argv) == 0  # no conditioning flag: the shipped (action-conditioned) model gets the actions
    summary = json.loads((tmp_path / "out" / "results.json").read_text())
    assert summary["protocol"]["action_conditioned"] is True
    assert cli.main([*argv, "--action-free"]) == 2
    assert "drop --action-free" in capsys.readouterr().err
    # data the model cannot take: named with the data, not as the rollout's internal shape error
    wrong = tmp_path / "wrong"
    Episode(frames[:, :32, :32], actions=rng.uniform(-1, 1, (4, 2)).astype(np.float32)).save(wrong / "size" / "e.npz")
    Episode(frames, actions=rng.uniform(-1, 1, (4, 3)).astype(np.float32)).save(wrong / "actions" / "e.npz")
    for folder, message in (("size", "have 32x32 (width x height) frames; the world model takes 64x64"),
                            ("actions", "have 3-d actions; the world model was trained on 2-d ones")):
        assert cli.main([*argv[:4], str(wrong / folder), *argv[5:]]) == 2
        assert message in capsys.readouterr().err


def test_protocol_clips_predictions(make_videos, tmp_path) -> None:
    class Overshoot(CopyLastFrame):
        def predict(self, context, actions, horizon, generator=None):
            return torch.full((context.shape[0], horizon, *context.shape[2:]), 3.0)

    run = run_protocol(Overshoot(), make_videos(2), ProtocolConfig(horizon=2, samples=1), tmp_path, progress=False)
    assert np.isfinite(run.summary["metrics"]["psnr"]["mean"])
