"""The end-to-end demo: embedded Push-T data -> tiny tokenizer -> tiny action-conditioned world model -> rollouts.

Every stage is an ordinary project command under the hood (`ivideogpt data generate`, `ivideogpt
train tokenizer|transformer`), driven by config files the demo writes to `OUT/configs/`, so each
stage can be rerun or extended by hand. Rerunning the demo reuses finished stages.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml



@dataclass
class DemoConfig:
    """Sizes of the demo; the defaults finish in about 10 minutes on 2 idle CPU cores."""

    out: str = "outputs/demo"
    data: str = "data/pusht"  # generated here when absent
    episodes: int = 150  # Push-T episodes generated
    episode_steps: int = 100  # actions per episode (episode_steps + 1 frames)
    action_repeat: int = 1  # env steps per recorded frame, each action held for all of them
    test_episodes: int = 10  # the last episodes, held out from training, evaluated at the end
    context_frames: int = 1
    horizon: int = 8  # predicted frames per rollout (training segments are context + horizon)
    tokenizer_preset: str = "tokenizer_cpu"
    transformer_preset: str = "transformer_tiny"
    tokenizer_steps: int = 450
    tokenizer_batch: int = 8
    transformer_steps: int = 600
    transformer_batch: int = 16
    clips_per_episode: int = 4  # evaluation clips cut from each held-out episode
    samples: int = 4  # rollouts per clip; metrics report the mean sample and the best of them
    temperature: float = 0.7  # sampling temperature of the rollouts (1.0: the model's own distribution)
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("episodes", "episode_steps", "action_repeat", "test_episodes", "context_frames", "horizon",
                     "tokenizer_steps", "tokenizer_batch", "transformer_steps", "transformer_batch",
                     "clips_per_episode", "samples"):
            if getattr(self, name) < 1:
                raise ValueError(f"DemoConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.temperature < 0:
            raise ValueError(f"DemoConfig.temperature must be >= 0, got {self.temperature}")
        if self.test_episodes >= self.episodes:
            raise ValueError(f"test_episodes={self.test_episodes} leaves no training episodes of {self.episodes}")
        if self.context_frames + self.horizon > self.episode_steps + 1:
            raise ValueError("context_frames + horizon exceeds the episode length")


def ensure_data(config: DemoConfig) -> Path:
    """Generate the Push-T episodes unless a complete set is already there."""
    from ivideogpt.envs.pusht_data import generate_pusht

    data = Path(config.data)
    metadata = data / "metadata.json"
    if metadata.is_file():
        saved = json.loads(metadata.read_text())
        wanted = (config.episodes, config.episode_steps, config.action_repeat)
        if (saved.get("episodes"), saved.get("steps"), saved.get("action_repeat", 1)) == wanted:
            return data
    print(f"[1/4] generating {config.episodes} Push-T episodes into {data}")
    generate_pusht(data, episodes=config.episodes, steps=config.episode_steps, seed=config.seed,
                   action_repeat=config.action_repeat)
    return data


def test_episode_keys(data: Path, count: int) -> list[str]:
    """The last `count` episode files (sorted by name): held out from training."""
    return [path.stem for path in sorted(data.glob("episode_*.npz"))[-count:]]


def _data_section(config: DemoConfig, data: Path, heldout: list[str], **extra: Any) -> dict[str, Any]:
    return {"sources": [{"name": "pusht", "path": str(data), "format": "npz"}], "resolution": 64,
            "num_context": config.context_frames, "heldout_episodes": [f"pusht/{k}" for k in heldout],
            "val_fraction": 0.05, "seed": config.seed, **extra}


def _train_section(out_dir: Path, steps: int, batch: int, lr: float, **extra: Any) -> dict[str, Any]:
    return {"max_steps": steps, "batch_size": batch, "lr": lr, "warmup_steps": min(100, steps // 10),
            "out_dir": str(out_dir), "resume": "auto", "log_every": 25, "val_every": max(steps // 4, 1),
            "val_batches": 2, "sample_every": steps, "save_every": max(steps // 4, 1), "keep_last": 1,
            "seed": 0, **extra}


def experiment_files(config: DemoConfig, data: Path, heldout: list[str]) -> dict[str, Path]:
    """Write the two training configs the demo runs, under OUT/configs/."""
    out = Path(config.out)
    tokenizer = {
        "kind": "tokenizer", "preset": config.tokenizer_preset,
        "data": _data_section(config, data, heldout, segment_length=config.context_frames + config.horizon,
                              sampled_future=min(3, config.horizon)),
        "train": _train_section(out / "tokenizer", config.tokenizer_steps, config.tokenizer_batch, 1e-3),
    }
    transformer = {
        "kind": "transformer", "preset": config.transformer_preset, "tokenizer_checkpoint": str(out / "tokenizer"),
        "transformer": {"action_dim": 2, "reward_head": True, "spatial_positions": True, "action_to_frame": True,
                        "action_frequencies": 6},
        "data": _data_section(config, data, heldout, segment_length=config.context_frames + config.horizon),
        "train": _train_section(out / "transformer", config.transformer_steps, config.transformer_batch, 1e-3,
                                schedule="cosine", weight_decay=0.01, min_lr_ratio=0.1, mixed_precision="bf16"),
    }
    paths = {}
    for name, tree in (("tokenizer", tokenizer), ("transformer", transformer)):
        paths[name] = out / "configs" / f"{name}.yaml"
        paths[name].parent.mkdir(parents=True, exist_ok=True)
        paths[name].write_text(yaml.safe_dump(tree, sort_keys=False))
    return paths


def train_stage(kind: str, config_file: Path) -> dict[str, Any]:
    """Run `ivideogpt train KIND --config FILE` in-process."""
    from ivideogpt.commands.train import main as train_main
    from ivideogpt.train.experiments import load_experiment

    return train_main(load_experiment(kind, config_file))


def evaluation_batch(run_dir: Path, config: DemoConfig) -> Any:
    """Held-out clips (context + horizon frames, with actions and rewards) as one Batch."""
    from ivideogpt.data import build_dataset, collate_segments
    from ivideogpt.train.experiments import read_experiment

    data_config = read_experiment(run_dir).data
    dataset = build_dataset(data_config, "test")
    items = []
    for number in range(len(dataset.episodes)):
        starts = dataset.episode_segments(number, stride=1)
        picks = np.linspace(0, len(starts) - 1, config.clips_per_episode).round().astype(int)
        items += [dataset.item(number, starts[i]) for i in sorted(set(picks.tolist()))]
    return collate_segments(items, data_config.num_context)


def rollout_predictions(world_model: Any, batch: Any, samples: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`samples` rollouts per clip under the clip's recorded actions: frames (S, B, H, 3, h, w), rewards (S, B, H)."""
    tc = batch.num_context
    horizon = batch.frames.shape[1] - tc
    actions = batch.actions[:, tc - 1 : tc - 1 + horizon]  # actions[:, t] leads from frame t to t + 1
    context_actions = batch.actions[:, : tc - 1] if tc > 1 else None
    frames, rewards = [], []
    for sample in range(samples):
        predicted, reward = world_model.rollout(batch.context_frames, actions, context_actions=context_actions,
                                                seed=seed + sample)
        frames.append(predicted)
        rewards.append(reward if reward is not None else torch.zeros(predicted.shape[:2]))
    return torch.stack(frames), torch.stack(rewards)


def tokenizer_reconstruction(tokenizer: Any, batch: Any) -> torch.Tensor:
    """Future frames encoded and decoded by the tokenizer (B, H, 3, h, w): the best a rollout could draw."""
    with torch.inference_mode():
        context_ids, features = tokenizer.encode_context(batch.context_frames)
        future_ids = tokenizer.encode_future(batch.future_frames, features)
        decoder_features = tokenizer.context_decoder_features(context_ids, batch.context_frames)
        return tokenizer.decode_future(future_ids, decoder_features).clamp(-1, 1)


def score(batch: Any, predicted: torch.Tensor, predicted_rewards: torch.Tensor, reconstruction: torch.Tensor
          ) -> dict[str, Any]:
    """PSNR/SSIM per horizon: world model (mean and best sample), tokenizer reconstruction, copy-last-frame."""
    from ivideogpt.eval.metrics import psnr, ssim

    truth = batch.future_frames  # (B, H, 3, h, w)
    copy = batch.context_frames[:, -1:].expand_as(truth)
    psnr_samples = torch.stack([psnr(p, truth) for p in predicted])  # (S, B, H)
    ssim_samples = torch.stack([ssim(p, truth) for p in predicted])
    best = psnr_samples.mean(dim=2).argmax(dim=0)  # best sample per clip, by mean PSNR over the horizon
    rows = torch.arange(truth.shape[0])

    def per_horizon(values: torch.Tensor) -> list[float]:
        return [round(v, 3) for v in values.mean(dim=0).tolist()]

    results: dict[str, Any] = {
        "world_model": {"psnr": per_horizon(psnr_samples.mean(0)), "ssim": per_horizon(ssim_samples.mean(0))},
        "world_model_best_of_samples": {"psnr": per_horizon(psnr_samples[best, rows]),
                                        "ssim": per_horizon(ssim_samples[best, rows])},
        "tokenizer_reconstruction": {"psnr": per_horizon(psnr(reconstruction, truth)),
                                     "ssim": per_horizon(ssim(reconstruction, truth))},
        "copy_last_frame": {"psnr": per_horizon(psnr(copy, truth)), "ssim": per_horizon(ssim(copy, truth))},
    }
    for entry in results.values():
        entry["psnr_mean"] = round(float(np.mean(entry["psnr"])), 3)
        entry["ssim_mean"] = round(float(np.mean(entry["ssim"])), 4)
    if batch.rewards is not None:
        target = batch.rewards[:, batch.num_context :]
        results["reward_mae"] = round(float((predicted_rewards.mean(0) - target).abs().mean()), 4)
        results["reward_mae_constant_baseline"] = round(float((target - target.mean()).abs().mean()), 4)
    return results


def write_gif(path: Path, batch: Any, predicted: torch.Tensor, clips: int = 4, scale: int = 2) -> Path:
    """Looping GIF: one row per clip, columns `ground truth | prediction | copy last frame`, labelled."""
    import imageio.v3 as iio
    from PIL import Image, ImageDraw

    from ivideogpt.train.tracking import video_grid

    chosen = torch.linspace(0, batch.frames.shape[0] - 1, min(clips, batch.frames.shape[0])).long()
    truth = batch.frames[chosen]
    context = batch.context_frames[chosen]
    prediction = torch.cat([context, predicted[0, chosen]], dim=1)
    copy = torch.cat([context, context[:, -1:].expand(-1, predicted.shape[2], -1, -1, -1)], dim=1)
    grid = video_grid([truth, prediction, copy], max_items=len(chosen))  # (T, H*rows, W*3, 3)
    grid = grid.repeat(scale, axis=1).repeat(scale, axis=2)
    width, column = grid.shape[2], grid.shape[2] // 3
    frames = []
    for t, image in enumerate(grid):
        header = Image.new("RGB", (width, 28), "white")
        draw = ImageDraw.Draw(header)
        for i, label in enumerate(("ground truth", "prediction", "copy last frame")):
            draw.text((i * column + 4, 2), label, fill="black")
        phase = "context" if t < batch.num_context else f"predicted +{t - batch.num_context + 1}"
        draw.text((4, 15), f"frame {t}: {phase}", fill="grey")
        frames.append(np.concatenate([np.asarray(header), image], axis=0))
    path.parent.mkdir(parents=True, exist_ok=True)
    iio.imwrite(path, np.stack(frames), extension=".gif", duration=400, loop=0)
    return path


def run_demo(config: DemoConfig) -> dict[str, Any]:
    """All four stages; returns the metrics written to OUT/metrics.json."""
    from ivideogpt.train.checkpoint import load_model

    began = time.perf_counter()
    out = Path(config.out)
    data = ensure_data(config)
    heldout = test_episode_keys(data, config.test_episodes)
    files = experiment_files(config, data, heldout)
    timings = {}
    for number, kind in ((2, "tokenizer"), (3, "transformer")):
        print(f"[{number}/4] training the {kind} ({files[kind]})")
        start = time.perf_counter()
        train_stage(kind, files[kind])
        timings[f"{kind}_seconds"] = round(time.perf_counter() - start, 1)
    print(f"[4/4] rolling the world model out on {config.test_episodes} held-out episodes")
    world_model = load_model(out / "transformer")
    world_model.temperature = config.temperature
    batch = evaluation_batch(out / "transformer", config)
    predicted, rewards = rollout_predictions(world_model, batch, config.samples, config.seed)
    metrics = {"clips": int(batch.frames.shape[0]), "context_frames": batch.num_context,
               "horizon": int(predicted.shape[2]), "samples_per_clip": config.samples,
               "temperature": config.temperature,
               **score(batch, predicted, rewards, tokenizer_reconstruction(world_model.tokenizer, batch))}
    metrics["seconds"] = {**timings, "total": round(time.perf_counter() - began, 1)}
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    write_gif(out / "prediction.gif", batch, predicted)
    return metrics


def summary(metrics: dict[str, Any], out: str) -> str:
    """A few lines for stdout: the world model against the copy-last-frame baseline."""
    lines = [f"world model vs copy-last-frame on {metrics['clips']} held-out clips "
             f"({metrics['context_frames']} context frame(s), {metrics['horizon']} predicted, "
             f"{metrics['samples_per_clip']} samples at temperature {metrics['temperature']}):"]
    for name in ("world_model", "world_model_best_of_samples", "tokenizer_reconstruction", "copy_last_frame"):
        entry = metrics[name]
        lines.append(f"  {name:<28} PSNR {entry['psnr_mean']:6.2f} dB   SSIM {entry['ssim_mean']:.4f}   "
                     f"PSNR by step {entry['psnr']}")
    gap = metrics["world_model"]["psnr_mean"] - metrics["copy_last_frame"]["psnr_mean"]
    lines.append(f"  mean-sample PSNR gap over the baseline: {gap:+.2f} dB")
    if "reward_mae" in metrics:
        lines.append(f"  reward MAE {metrics['reward_mae']} (predicting the mean: {metrics['reward_mae_constant_baseline']})")
    lines.append(f"  took {metrics['seconds']['total']:.0f} s; wrote {out}/prediction.gif and {out}/metrics.json")
    return "\n".join(lines)
