"""The end-to-end demo: embedded Push-T data -> tiny tokenizer -> tiny action-conditioned world model -> rollouts.

Every stage is an ordinary project command under the hood (`ivideogpt data generate`, `ivideogpt
train tokenizer|transformer`), driven by config files the demo writes to `OUT/configs/`, so each
stage can be rerun or extended by hand. Rerunning the demo reuses finished stages.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

DEMO_TOKENIZER = "tokenizer_cpu"
DEMO_TRANSFORMER = "transformer_tiny"
# Push-T actions are 2-d target positions; why the action and position features: docs/training.md.
DEMO_TRANSFORMER_OPTIONS = {"action_dim": 2, "reward_head": True, "spatial_positions": True, "action_to_frame": True,
                            "action_frequencies": 6}


@dataclass
class DemoConfig:
    """Sizes of the demo; the defaults (the cpu recipe) finish in under 15 minutes on 2 idle CPU cores."""

    out: str = "outputs/demo"  # where runs, configs, metrics.json and prediction.gif go
    data: str = "data/pusht"  # generated here when absent
    episodes: int = 300  # Push-T episodes generated
    episode_steps: int = 100  # actions per episode (episode_steps + 1 frames)
    action_repeat: int = 3  # env steps per recorded frame, each action held for all of them (the agent
    #   then nearly reaches each target: what a frame shows follows from its action, see docs/training.md)
    test_episodes: int = 10  # the last episodes, held out from training, evaluated at the end
    context_frames: int = 1  # observed frames each rollout starts from
    horizon: int = 8  # predicted frames per rollout (training segments are context + horizon)
    tokenizer_preset: str = DEMO_TOKENIZER  # a tokenizer preset of `ivideogpt describe`
    transformer_preset: str = DEMO_TRANSFORMER  # a transformer preset of `ivideogpt describe`
    transformer_layers: int = 0  # transformer layers (0: the preset's)
    transformer_width: int = 0  # transformer hidden size, FFN 4x and heads of 64 (0: the preset's)
    context_tokens: int = 8  # tokens per side of a context frame (paper: 16); 8 halves the transformer's work
    tokenizer_steps: int = 300  # tokenizer training steps
    tokenizer_batch: int = 8  # clips per tokenizer step
    transformer_steps: int = 3400  # transformer training steps
    transformer_batch: int = 16  # clips per transformer step
    precision: str = "bf16"  # mixed precision of both trainings and of the scored rollouts ("no": fp32); bf16
    #   rollouts take ~35% less time and scored within 0.05 dB of fp32 on the demo's and the shipped model
    token_cache_stride: int = 4  # the transformer trains on ids of every k-th start frame, encoded once
    clips_per_episode: int = 4  # evaluation clips cut from each held-out episode
    samples: int = 8  # sampled rollouts per clip: their pixel average is the headline forecast; metrics
    #   also report the mean single sample and the best of them
    temperature: float = 0.7  # sampling temperature of the sampled rollouts (greedy ones are scored too)
    seed: int = 0  # seed of data generation, training and rollouts
    reference: str = "checkpoints/pusht"  # a shipped world model scored beside this one ("": none)
    export: str = ""  # also copy the trained world model here, as it is shipped (e.g. checkpoints/pusht)

    def __post_init__(self) -> None:
        for name in ("episodes", "episode_steps", "action_repeat", "test_episodes", "context_frames", "horizon",
                     "context_tokens", "tokenizer_steps", "tokenizer_batch", "transformer_steps", "transformer_batch",
                     "token_cache_stride", "clips_per_episode", "samples"):
            if getattr(self, name) < 1:
                raise ValueError(f"DemoConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.transformer_layers < 0 or self.transformer_width < 0 or self.transformer_width % 64:
            raise ValueError(f"DemoConfig.transformer_layers must be >= 0 and transformer_width a multiple of 64 "
                             f"(0: the preset's), got {self.transformer_layers} and {self.transformer_width}")
        if self.temperature < 0:
            raise ValueError(f"DemoConfig.temperature must be >= 0, got {self.temperature}")
        if self.test_episodes >= self.episodes:
            raise ValueError(f"test_episodes={self.test_episodes} leaves no training episodes of {self.episodes}")
        if self.context_frames + self.horizon > self.episode_steps + 1:
            raise ValueError("context_frames + horizon exceeds the episode length")


# Named starting points for `ivideogpt demo --recipe NAME`; any flag given beside it wins.
RECIPES: dict[str, dict[str, Any]] = {
    "cpu": {},  # DemoConfig's defaults: at most 15 minutes on 2 CPU cores
    # The reference recipe, data generation included: 16k tokenizer clips and 256k transformer samples
    # (the shipped checkpoints/pusht is its model trained further: docs/training.md). Its data has its
    # own seed, so the cpu recipe's held-out episodes are new to it when the demo scores it.
    "reference": {"out": "outputs/reference", "data": "data/pusht_reference", "episodes": 1000,
                  "test_episodes": 20, "seed": 1, "tokenizer_steps": 500, "tokenizer_batch": 32,
                  "transformer_steps": 4000, "transformer_batch": 64, "reference": "", "export": "checkpoints/pusht"},
}


def recipe(name: str, **overrides: Any) -> DemoConfig:
    """The DemoConfig of recipe `name` with `overrides` applied."""
    if name not in RECIPES:
        raise ValueError(f"unknown demo recipe {name!r}; choose one of {', '.join(RECIPES)}")
    return DemoConfig(**{**RECIPES[name], **overrides})


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
                   action_repeat=config.action_repeat, workers=len(os.sched_getaffinity(0)))
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


def transformer_options(config: DemoConfig) -> dict[str, Any]:
    """The transformer section's overrides of its preset: the demo's action features, then any size asked for."""
    options: dict[str, Any] = dict(DEMO_TRANSFORMER_OPTIONS)
    if config.transformer_layers:
        options["num_layers"] = config.transformer_layers
    if config.transformer_width:
        width = config.transformer_width
        options.update(hidden_size=width, ffn_size=4 * width, num_heads=width // 64)
    return options


def experiment_files(config: DemoConfig, data: Path, heldout: list[str]) -> dict[str, Path]:
    """Write the two training configs the demo runs, under OUT/configs/."""
    out = Path(config.out)
    tokenizer = {
        "kind": "tokenizer", "preset": config.tokenizer_preset, "tokenizer": {"context_tokens": config.context_tokens},
        "data": _data_section(config, data, heldout, segment_length=config.context_frames + config.horizon,
                              sampled_future=min(3, config.horizon)),
        "train": _train_section(out / "tokenizer", config.tokenizer_steps, config.tokenizer_batch, 1e-3,
                                mixed_precision=config.precision),
    }
    transformer = {
        "kind": "transformer", "preset": config.transformer_preset, "tokenizer_checkpoint": str(out / "tokenizer"),
        "token_cache_stride": config.token_cache_stride, "transformer": transformer_options(config),
        "objective": {"future_only_softmax": True},
        "data": _data_section(config, data, heldout, segment_length=config.context_frames + config.horizon),
        "train": _train_section(out / "transformer", config.transformer_steps, config.transformer_batch, 1e-3,
                                schedule="cosine", weight_decay=0.01, min_lr_ratio=0.1,
                                mixed_precision=config.precision),
    }
    paths = {}
    for name, tree in (("tokenizer", tokenizer), ("transformer", transformer)):
        paths[name] = out / "configs" / f"{name}.yaml"
        paths[name].parent.mkdir(parents=True, exist_ok=True)
        paths[name].write_text(yaml.safe_dump(tree, sort_keys=False))
    return paths


def train_stage(kind: str, config_file: Path) -> dict[str, Any]:
    """Run `ivideogpt train KIND --config FILE` in-process."""
    from ivideogpt.train.experiments import load_experiment
    from ivideogpt.train.run import train_experiment

    return train_experiment(load_experiment(kind, config_file))


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


def future_actions(batch: Any) -> torch.Tensor:
    """(B, H, A) the recorded actions that lead into the batch's future frames (actions[:, t]: frame t -> t + 1)."""
    tc = batch.num_context
    return batch.actions[:, tc - 1 : batch.frames.shape[1] - 1]


def rollout_predictions(world_model: Any, batch: Any, samples: int, seed: int, actions: torch.Tensor | None = None
                        ) -> tuple[torch.Tensor, torch.Tensor]:
    """`samples` rollouts per clip: frames (S, B, H, 3, h, w), rewards (S, B, H).

    actions: (B, H, A) leading into the future frames; default the clips' recorded ones.
    """
    tc = batch.num_context
    context_actions = batch.actions[:, : tc - 1] if tc > 1 else None
    actions = future_actions(batch) if actions is None else actions
    frames, rewards = [], []
    for sample in range(samples):
        predicted, reward = world_model.rollout(batch.context_frames, actions, context_actions=context_actions,
                                                seed=seed + sample)
        frames.append(predicted.cpu())  # scored against the batch, which stays on the CPU
        rewards.append(reward.cpu() if reward is not None else torch.zeros(predicted.shape[:2]))
    return torch.stack(frames), torch.stack(rewards)


def tokenizer_reconstruction(tokenizer: Any, batch: Any) -> torch.Tensor:
    """Future frames encoded and decoded by the tokenizer (B, H, 3, h, w): the best a rollout could draw."""
    device = next(tokenizer.parameters()).device
    context, future = batch.context_frames.to(device), batch.future_frames.to(device)
    with torch.inference_mode():
        context_ids, features = tokenizer.encode_context(context)
        future_ids = tokenizer.encode_future(future, features)
        decoder_features = tokenizer.context_decoder_features(context_ids, context)
        return tokenizer.decode_future(future_ids, decoder_features).clamp(-1, 1).cpu()


def sample_scores(batch: Any, predicted: torch.Tensor) -> dict[str, Any]:
    """Scores of S sampled rollouts (S, B, H, 3, h, w): the mean sample and the best of the S per clip."""
    from ivideogpt.eval.metrics import psnr, score_entry, ssim

    truth = batch.future_frames
    psnr_samples = torch.stack([psnr(p, truth) for p in predicted])  # (S, B, H)
    ssim_samples = torch.stack([ssim(p, truth) for p in predicted])
    best = psnr_samples.mean(dim=2).argmax(dim=0)  # best sample per clip, by mean PSNR over the horizon
    rows = torch.arange(truth.shape[0])
    return {"mean": score_entry(psnr_samples.mean(0), ssim_samples.mean(0)),
            "best": score_entry(psnr_samples[best, rows], ssim_samples[best, rows])}


def reward_errors(batch: Any, predicted_rewards: torch.Tensor) -> dict[str, float]:
    """MAE of predicted rewards (B, H) against the recorded ones, and of predicting their mean."""
    target = batch.rewards[:, batch.num_context :]
    return {"reward_mae": round(float((predicted_rewards - target).abs().mean()), 4),
            "reward_mae_constant_baseline": round(float((target - target.mean()).abs().mean()), 4)}


def prediction_gif(path: Path, batch: Any, predictions: dict[str, torch.Tensor], clips: int = 4,
                   scale: int = 2) -> Path:
    """Looping GIF: a row per clip, columns `ground truth | each prediction (B, H, 3, h, w) | copy last frame`."""
    from ivideogpt.media import video_grid, with_header, write_video

    chosen = torch.linspace(0, batch.frames.shape[0] - 1, min(clips, batch.frames.shape[0])).long()
    context = batch.context_frames[chosen]
    horizon = batch.frames.shape[1] - batch.num_context
    columns = {"ground truth": batch.frames[chosen],
               **{label: torch.cat([context, predicted[chosen]], dim=1) for label, predicted in predictions.items()},
               "copy last frame": torch.cat([context, context[:, -1:].expand(-1, horizon, -1, -1, -1)], dim=1)}
    grid = video_grid(list(columns.values()), max_items=len(chosen))  # (T, H*rows, W*columns, 3)
    grid = grid.repeat(scale, axis=1).repeat(scale, axis=2)
    notes = [f"frame {t}: " + ("context" if t < batch.num_context else f"predicted +{t - batch.num_context + 1}")
             for t in range(grid.shape[0])]
    return write_video(path, with_header(grid, list(columns), grid.shape[2] // len(columns), notes), fps=2.5)


def evaluate_world_model(world_model: Any, batch: Any, config: DemoConfig) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """The demo's scores of a world model on the held-out clips, and its forecasts (B, H, 3, h, w) by rule.

    The headline forecast is the pixel average of `samples` rollouts at `temperature`: the model's
    expected frame, which is what minimises squared error (PSNR) when the future is uncertain; a
    single greedy rollout (the argmax code of every patch) is scored beside it, as are the mean single
    sample and the best of them. The same average under shuffled actions (another clip's), and the
    greedy gaps over shuffled and zero actions (`eval/controllability.py`), show whether it follows
    its actions.
    """
    from ivideogpt.eval.controllability import controllability, shuffled
    from ivideogpt.eval.metrics import frame_scores

    tc, truth = batch.num_context, batch.future_frames
    world_model.temperature = 0.0
    greedy, rewards = rollout_predictions(world_model, batch, 1, config.seed)
    control = controllability(world_model, batch.context_frames, future_actions(batch), truth,
                              context_actions=batch.actions[:, : tc - 1] if tc > 1 else None, seed=config.seed,
                              true_frames=greedy[0])
    world_model.temperature = config.temperature
    sampled = rollout_predictions(world_model, batch, config.samples, config.seed)[0]
    expected = sampled.mean(0)
    other = rollout_predictions(world_model, batch, config.samples, config.seed, shuffled(future_actions(batch)))[0]
    single = sample_scores(batch, sampled)
    scores = {"world_model": frame_scores(expected, truth),
              "world_model_shuffled_actions": frame_scores(other.mean(0), truth),
              "world_model_greedy": frame_scores(greedy[0], truth),
              "world_model_sampled": single["mean"], "world_model_best_of_samples": single["best"],
              "controllability": {"greedy_" + key: control[key] for key in ("shuffled", "zero")} | {
                  key: control[key] for key in ("gap_over_shuffled_db", "gap_over_zero_db", "ignores_actions")}}
    scores["action_gap_db"] = round(scores["world_model"]["psnr_mean"]
                                    - scores["world_model_shuffled_actions"]["psnr_mean"], 3)
    if batch.rewards is not None and world_model.predicts_reward:
        scores.update(reward_errors(batch, rewards[0]))
    return scores, {"expected": expected, "greedy": greedy[0]}


def rollout_model(path: str | Path, config: DemoConfig) -> Any:
    """The world model at `path`, set to roll out in the demo's precision."""
    from ivideogpt.train import load_model

    world_model = load_model(path)
    world_model.set_precision("bf16" if config.precision == "bf16" else "fp32")
    return world_model


def run_demo(config: DemoConfig) -> dict[str, Any]:
    """All four stages; returns the metrics written to OUT/metrics.json."""
    from ivideogpt.eval.metrics import frame_scores
    from ivideogpt.train import export_model

    began = time.perf_counter()
    out = Path(config.out)
    data = ensure_data(config)
    timings = {"data_seconds": round(time.perf_counter() - began, 1)}
    heldout = test_episode_keys(data, config.test_episodes)
    files = experiment_files(config, data, heldout)
    for number, kind in ((2, "tokenizer"), (3, "transformer")):
        print(f"[{number}/4] training the {kind} ({files[kind]})")
        start = time.perf_counter()
        train_stage(kind, files[kind])
        timings[f"{kind}_seconds"] = round(time.perf_counter() - start, 1)
    print(f"[4/4] rolling the world model out on {config.test_episodes} held-out episodes")
    start = time.perf_counter()
    world_model = rollout_model(out / "transformer", config)
    batch = evaluation_batch(out / "transformer", config)
    scores, forecasts = evaluate_world_model(world_model, batch, config)
    predictions = {f"mean of {config.samples} samples": forecasts["expected"], "greedy": forecasts["greedy"]}
    if config.reference and Path(config.reference).exists():
        print(f"      and the shipped reference model {config.reference} on the same clips")
        scores["reference_model"], reference = evaluate_world_model(rollout_model(config.reference, config),
                                                                            batch, config)
        predictions["reference, greedy"] = reference["greedy"]
    truth = batch.future_frames
    metrics = {"clips": int(batch.frames.shape[0]), "context_frames": batch.num_context,
               "horizon": int(truth.shape[1]), "decoding": f"mean of {config.samples} samples at T {config.temperature}",
               "samples_per_clip": config.samples, "rollout_precision": world_model.precision,
               "temperature": config.temperature, **scores,
               "tokenizer_reconstruction": frame_scores(tokenizer_reconstruction(world_model.tokenizer, batch), truth),
               "copy_last_frame": frame_scores(batch.context_frames[:, -1:].expand_as(truth), truth)}
    timings["evaluation_seconds"] = round(time.perf_counter() - start, 1)
    metrics["seconds"] = {**timings, "total": round(time.perf_counter() - began, 1)}
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    prediction_gif(out / "prediction.gif", batch, predictions)
    if config.export:
        print(f"      exported the world model to {export_model(out / 'transformer', config.export)}")
    return metrics


def summary(metrics: dict[str, Any], out: str) -> str:
    """A few lines for stdout: the world model against copying the last frame and against other actions."""
    rows = (("world_model", f"world model, {metrics['decoding']}"),
            ("world_model_shuffled_actions", "  the same, shuffled actions"),
            ("world_model_greedy", "world model, greedy"),
            ("world_model_sampled", f"world model, T {metrics['temperature']} mean sample"),
            ("world_model_best_of_samples", f"world model, best of {metrics['samples_per_clip']} samples"),
            ("tokenizer_reconstruction", "tokenizer reconstruction"), ("copy_last_frame", "copy last frame"))
    lines = [f"world model vs copy-last-frame on {metrics['clips']} held-out clips "
             f"({metrics['context_frames']} context frame(s), {metrics['horizon']} predicted):"]
    for name, label in rows:
        entry = metrics[name]
        lines.append(f"  {label:<32} PSNR {entry['psnr_mean']:6.2f} dB   SSIM {entry['ssim_mean']:.4f}   "
                     f"PSNR by step {entry['psnr']}")
    copy, control = metrics["copy_last_frame"]["psnr_mean"], metrics["controllability"]
    lines.append(f"  PSNR gain over copying the last frame: {metrics['world_model']['psnr_mean'] - copy:+.2f} dB "
                 f"({metrics['decoding']}), {metrics['world_model_greedy']['psnr_mean'] - copy:+.2f} dB greedy; "
                 f"true actions over shuffled: {metrics['action_gap_db']:+.2f} dB ({control['gap_over_shuffled_db']:+.2f} "
                 f"greedy, over zero actions {control['gap_over_zero_db']:+.2f})"
                 f"{' (WARNING: the model ignores its actions)' if control['ignores_actions'] else ''}")
    if "reward_mae" in metrics:
        lines.append(f"  reward MAE {metrics['reward_mae']} (predicting the mean: {metrics['reward_mae_constant_baseline']})")
    if "reference_model" in metrics:
        shipped = metrics["reference_model"]
        lines.append(f"  shipped reference model: {shipped['world_model']['psnr_mean'] - copy:+.2f} dB over copying "
                     f"({metrics['decoding']}), {shipped['world_model_greedy']['psnr_mean'] - copy:+.2f} dB greedy; "
                     f"true actions over shuffled {shipped['action_gap_db']:+.2f} dB "
                     f"({shipped['controllability']['gap_over_shuffled_db']:+.2f} greedy)")
    lines.append(f"  took {metrics['seconds']['total']:.0f} s; wrote {out}/prediction.gif and {out}/metrics.json")
    return "\n".join(lines)
