"""The best-of-N protocol: presets, conditioning, best-sample selection, FVD plumbing, resuming."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ivideogpt.eval import metrics
from ivideogpt.eval.predictors import CopyLastFrame, WorldModelPredictor
from ivideogpt.eval.videos import TestVideo
from ivideogpt.eval.protocol import ProtocolConfig, _generator, evaluate_video, protocol_config, run_protocol


class NoisyOracle:
    """Stochastic predictor: the true future plus noise drawn from `generator`; records its calls."""

    name = "noisy-oracle"

    def __init__(self, videos, noise: float = 0.3) -> None:
        self.futures = {float(v.frames[0].sum()): v.frames for v in videos}
        self.noise = noise
        self.calls: list[tuple] = []

    def predict(self, context, actions, horizon, generator=None):
        self.calls.append((context.shape, None if actions is None else actions.clone()))
        clip = self.futures[float(context[0, 0].sum())]
        future = clip[context.shape[1] : context.shape[1] + horizon].expand(context.shape[0], -1, -1, -1, -1)
        return future + self.noise * torch.randn(future.shape, generator=generator)


def test_presets() -> None:
    bair, robonet = protocol_config("bair"), protocol_config("robonet")
    assert (bair.context_frames, bair.horizon, bair.samples, bair.action_conditioned) == (1, 15, 100, False)
    assert (robonet.context_frames, robonet.horizon, robonet.action_conditioned) == (2, 10, True)
    custom = protocol_config("custom", context_frames=3, horizon=4, samples=None, seeds=[0, 1])
    assert (custom.clip_length, custom.samples, custom.seeds) == (7, 100, (0, 1))
    with pytest.raises(ValueError, match="horizon"):
        ProtocolConfig(horizon=0)
    with pytest.raises(ValueError, match="unknown protocol"):
        protocol_config("kinetics")


def test_copy_last_frame() -> None:
    context = torch.rand(2, 2, 3, 8, 8)
    out = CopyLastFrame().predict(context, None, 4)
    assert out.shape == (2, 4, 3, 8, 8) and torch.equal(out[:, 3], context[:, 1])


def test_best_of_n_and_conditioning(make_videos) -> None:
    video = make_videos(1)[0]
    config = ProtocolConfig(context_frames=2, horizon=3, samples=6, batch_size=4, action_conditioned=True)
    oracle = NoisyOracle([video])
    record, _ = evaluate_video(oracle, video, config, seed=0)
    assert [c[0][0] for c in oracle.calls] == [4, 2]  # samples chunked by batch_size
    assert torch.equal(oracle.calls[0][1][0], video.actions[:5])  # (B, Tc + horizon, A), actions[t]: frame t -> t+1
    # Recompute every sample's PSNR independently: the record keeps the best one.
    assert record["samples"] == 6 and len(record["best_per_frame"]["psnr"]) == 3
    assert record["best"]["psnr"] >= record["mean"]["psnr"] and record["best"]["ssim"] >= record["mean"]["ssim"]
    truth = video.frames[2:5]
    again = NoisyOracle([video])
    gen = _generator(0, video.id)
    samples = torch.cat([again.predict(video.frames[None, :2].repeat(b, 1, 1, 1, 1), None, 3, gen) for b in (4, 2)])
    per_sample = metrics.psnr(samples.clamp(-1, 1), truth.expand_as(samples)).mean(1)
    assert record["best"]["psnr"] == pytest.approx(per_sample.max().item(), rel=1e-6)
    assert record["best_sample"] == int(per_sample.argmax())

    free = NoisyOracle([video])
    evaluate_video(free, video, ProtocolConfig(context_frames=2, horizon=3, samples=2), seed=0)
    assert free.calls[0][1] is None
    with pytest.raises(ValueError, match="no actions"):
        video.actions = None
        evaluate_video(free, video, config, seed=0)


def test_each_seed_draws_other_samples_and_seed_0_keeps_its_stream() -> None:
    import zlib

    draws = [torch.rand(4, generator=_generator(seed, "clip")) for seed in (0, 1, 2)]
    assert not torch.equal(draws[0], draws[1]) and not torch.equal(draws[1], draws[2])
    assert torch.equal(draws[0], torch.rand(4, generator=torch.Generator().manual_seed(zlib.crc32(b"clip"))))
    assert torch.equal(draws[1], torch.rand(4, generator=_generator(1, "clip")))  # stable, for resume


def test_deterministic_predictor_sampled_once(make_videos) -> None:
    record, _ = evaluate_video(CopyLastFrame(), make_videos(1)[0], ProtocolConfig(horizon=3, samples=50), seed=0)
    assert record["samples"] == 1


def test_fvd_through_protocol(make_videos, i3d_file, tmp_path) -> None:
    videos = make_videos(4)
    config = ProtocolConfig(context_frames=1, horizon=5, samples=3, seeds=(0, 1), visualize=1)
    i3d = metrics.load_i3d(required=True)
    run = run_protocol(CopyLastFrame(), videos, config, tmp_path / "out", i3d=i3d, progress=False)
    fvd = run.summary["metrics"]["fvd"]
    clips = torch.stack([v.frames for v in videos])  # (4, 6, 3, H, W)
    copied = torch.cat([clips[:, :1], clips[:, :1].expand(-1, 5, -1, -1, -1)], 1)
    expected = metrics.fvd(metrics.i3d_features(clips, i3d), metrics.i3d_features(copied, i3d))
    assert expected > 0 and fvd["per_seed"] == pytest.approx([expected, expected], rel=1e-4)
    assert fvd["std_across_seeds"] == pytest.approx(0.0, abs=1e-9)
    assert run.summary["metrics"]["lpips"] == {"skipped": "no VGG16 weights for LPIPS"}
    assert len(run.summary["per_horizon"]["psnr"]) == 5


def test_resume_skips_done_videos(make_videos, tmp_path) -> None:
    videos = make_videos(3)
    config = ProtocolConfig(context_frames=1, horizon=4, samples=4, seeds=(0, 1))
    full = run_protocol(NoisyOracle(videos), videos, config, tmp_path / "full", progress=False)

    out = tmp_path / "resumed"
    run_protocol(NoisyOracle(videos), videos[:2], config, out, progress=False)  # interrupted after 2 videos
    lines = (out / "videos.jsonl").read_text().splitlines()
    (out / "videos.jsonl").write_text("\n".join(lines[:-1]) + "\n" + lines[-1][:10])  # last line cut short
    oracle = NoisyOracle(videos)
    resumed = run_protocol(oracle, videos, config, out, progress=False)
    assert len(oracle.calls) == 3  # seed 0: video 2; seed 1: videos 1 (cut short) and 2
    assert resumed.summary["metrics"] == full.summary["metrics"]

    again = NoisyOracle(videos)
    run_protocol(again, videos, config, out, progress=False)
    assert again.calls == []
    with pytest.raises(ValueError, match="another output directory"):
        run_protocol(NoisyOracle(videos), videos, ProtocolConfig(horizon=4, samples=5), out, progress=False)
    summary = json.loads((out / "results.json").read_text())
    assert summary["videos"] == 3 and summary["metrics"]["psnr"]["per_seed"] == full.summary["metrics"]["psnr"]["per_seed"]


@pytest.fixture(scope="module")
def tiny_world_model():
    tokenizer_config = pytest.importorskip("ivideogpt.tokenizer.config")
    transformer_config = pytest.importorskip("ivideogpt.transformer.config")
    from ivideogpt.world_model import WorldModel

    torch.manual_seed(0)
    return WorldModel(tokenizer_config.tokenizer_tiny().build(),
                      transformer_config.transformer_tiny(action_dim=2).build(), seed=0)


def test_world_model_adapter(tiny_world_model, tmp_path) -> None:
    predictor = WorldModelPredictor(tiny_world_model)
    context, actions = (torch.rand(1, 2, 3, 64, 64) * 2 - 1).repeat(3, 1, 1, 1, 1), torch.randn(1, 4, 2).repeat(3, 1, 1)
    first = predictor.predict(context, actions, 2, torch.Generator().manual_seed(1))
    second = predictor.predict(context, actions, 2, torch.Generator().manual_seed(1))
    other = predictor.predict(context, actions, 2, torch.Generator().manual_seed(2))
    assert first.shape == (3, 2, 3, 64, 64) and torch.equal(first, second) and not torch.equal(first, other)

    video = TestVideo("v", torch.rand(4, 3, 64, 64) * 2 - 1, torch.randn(4, 2))
    config = ProtocolConfig(context_frames=2, horizon=2, samples=3, action_conditioned=True)
    run = run_protocol(predictor, [video], config, tmp_path, progress=False)
    assert run.records[0]["samples"] == 3 and np.isfinite(run.summary["metrics"]["psnr"]["mean"])


def test_results_of_a_step_checkpoint_go_beside_the_checkpoints_not_into_one() -> None:
    from argparse import Namespace
    from pathlib import Path

    from ivideogpt.commands.evaluate import _output_dir

    def default(checkpoint: str | None, baseline: str | None = None) -> Path:
        return _output_dir(Namespace(output=None, checkpoint=checkpoint and Path(checkpoint), baseline=baseline,
                                     protocol="custom"))

    assert default("runs/a/checkpoints/step_000150") == Path("runs/a/eval/step_000150-custom")  # kept by keep_last
    assert default("runs/a") == Path("runs/a/eval-custom") and default("checkpoints/pusht") == Path(
        "checkpoints/pusht/eval-custom")
    assert default(None, "copy-last-frame") == Path("eval/copy-last-frame-custom")
