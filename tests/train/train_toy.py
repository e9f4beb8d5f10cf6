"""A few-thousand-parameter objective and a deterministic dataset for Trainer tests; also a runnable script.

`python tests/train/train_toy.py OUT --steps 12 --save-every 4 [--resume] [--sleep 0.05]` trains the toy
objective and writes OUT/losses.jsonl, so tests can compare runs (killed, resumed, 1 vs 2 processes).
With `--stream SHARDS` (a folder `write_toy_shards` filled) it trains from the streamed two-source
mixture instead and writes the samples each process trained on, in order, to OUT/keys_rank<r>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from ivideogpt.data.batch import Batch
from ivideogpt.data.episode import Episode

FRAMES, SIZE = 2, 4  # (T, 3, SIZE, SIZE) videos
FEATURES = 3 * SIZE * SIZE
STREAM_SIZE = 8  # frame size of the streamed toy episodes (the smallest data resolution)
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "1"}  # every run on the CPU, GPU or not


class ToyDataset(Dataset):
    """Item i is a fixed random 2-frame video whose second frame is a linear map of the first."""

    def __init__(self, length: int = 64, seed: int = 0) -> None:
        self.length, self.seed = length, seed
        self.mixing = torch.randn(FEATURES, FEATURES, generator=torch.Generator().manual_seed(1234)) / FEATURES**0.5

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> torch.Tensor:
        first = torch.rand(FEATURES, generator=torch.Generator().manual_seed(self.seed * 100_003 + index)) * 2 - 1
        second = torch.tanh(first @ self.mixing)
        return torch.stack([first, second]).view(FRAMES, 3, SIZE, SIZE)


def collate(items: list[torch.Tensor]) -> Batch:
    return Batch(frames=torch.stack(items), num_context=1)


@dataclass
class KeyedBatch(Batch):
    """A Batch that names its samples ("epoch|source/key|segment"), so a run can list what it trained on."""

    keys: list[str] = field(default_factory=list)


def collate_keyed(items: list[dict]) -> KeyedBatch:
    return KeyedBatch(frames=torch.stack([i["frames"] for i in items]), num_context=1,
                      keys=[f"{i['epoch']}|{i['key']}|{i['segment']}" for i in items])


def write_toy_shards(folder: Path) -> dict[str, list[str]]:
    """Shards of random 5-frame episodes: big/ 4 shards x 3, small/ 2 shards x 3 plus a 1-frame one (unusable).

    Returns each source's usable "source/key" names."""
    from ivideogpt.data.sources.webdataset import write_shard

    rng, names = np.random.default_rng(0), {}
    for source, shards in (("big", 4), ("small", 2)):
        for number in range(shards):
            keys = [f"s{number}e{k}" for k in range(3)]
            episodes = {key: Episode(frames=rng.integers(0, 256, (5, STREAM_SIZE, STREAM_SIZE, 3), dtype=np.uint8))
                        for key in keys}
            if source == "small" and number == 0:
                episodes["short"] = Episode(frames=np.zeros((1, STREAM_SIZE, STREAM_SIZE, 3), np.uint8))
            write_shard(folder / source / f"shard-{number:03d}.tar", episodes)
            names.setdefault(source, []).extend(f"{source}/{key}" for key in keys)
    return names


def toy_stream(folder: Path):
    """The streamed mixture of `write_toy_shards`' sources, weighted 3:1, with a shuffle buffer."""
    from ivideogpt.data.config import DataConfig
    from ivideogpt.data.mixed_stream import build_stream

    config = DataConfig(resolution=STREAM_SIZE, segment_length=FRAMES, num_context=1, stream=True, shuffle_buffer=4,
                        segments_per_episode=2, sources=[{"name": "big", "path": str(folder / "big"), "weight": 3},
                                                         {"name": "small", "path": str(folder / "small")}])
    return build_stream(config)


class ToyObjective(nn.Module):
    """Predicts frame 1 from frame 0 (MLP with dropout, a norm and an embedding); NaN loss at `nan_at`."""

    def __init__(self, dropout: float = 0.0, nan_at: int | None = None, sleep: float = 0.0, size: int = SIZE) -> None:
        super().__init__()
        features = 3 * size * size
        self.net = nn.Sequential(nn.Linear(features, 24), nn.GELU(), nn.Dropout(dropout), nn.Linear(24, features))
        self.norm = nn.LayerNorm(features)
        self.offset = nn.Embedding(1, features)
        self.nan_at, self.sleep, self.size = nan_at, sleep, size
        self.seen: list[str] = []  # sample names of the KeyedBatches trained on, in order

    def predict(self, batch: Batch) -> torch.Tensor:
        first = batch.frames[:, 0].flatten(1)
        return self.net(self.norm(first)) + self.offset.weight

    def compute_loss(self, batch: Batch, step: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        if self.sleep:
            time.sleep(self.sleep)
        self.seen.extend(getattr(batch, "keys", []))
        error = self.predict(batch) - batch.frames[:, 1].flatten(1)
        loss = error.pow(2).mean()
        if self.nan_at is not None and step == self.nan_at:
            loss = loss * float("nan")
        return loss, {"mse": loss.detach(), "mae": error.abs().mean().detach()}

    def make_samples(self, batch: Batch) -> dict[str, torch.Tensor]:
        prediction = self.predict(batch).view(-1, 1, 3, self.size, self.size).clamp(-1, 1)
        return {"prediction": torch.cat([batch.frames[:, :1], prediction], dim=1)}


def build_trainer(out: Path, steps: int = 12, save_every: int = 4, resume: str | None = None,
                  dropout: float = 0.1, nan_at: int | None = None, sleep: float = 0.0, stream: Path | None = None,
                  **train: object):
    """A Trainer over the toy objective (on `toy_stream(stream)` when given); `train` overrides TrainConfig fields."""
    from ivideogpt.train import Trainer, TrainConfig

    settings = dict(lr=3e-3, warmup_steps=2, schedule="cosine", max_steps=steps, batch_size=8, log_every=1,
                    val_every=4, val_batches=2, sample_every=0, save_every=save_every, keep_last=2,
                    out_dir=str(out), resume=resume, progress=False, tensorboard=False, weight_decay=0.01)
    settings.update(train)
    cfg = TrainConfig(**settings)
    torch.manual_seed(cfg.seed)
    if stream is not None:
        objective = ToyObjective(dropout=dropout, nan_at=nan_at, sleep=sleep, size=STREAM_SIZE)
        return Trainer(objective, toy_stream(stream), cfg, collate_fn=collate_keyed, component="toy", config=cfg)
    objective = ToyObjective(dropout=dropout, nan_at=nan_at, sleep=sleep)
    return Trainer(objective, ToyDataset(64), cfg, val_dataset=ToyDataset(16, seed=1), collate_fn=collate,
                   component="toy", config=cfg)


def read_losses(out: Path, split: str = "train") -> dict[int, float]:
    """step -> loss of one split from a run's losses.jsonl."""
    records = [json.loads(line) for line in (Path(out) / "losses.jsonl").read_text().splitlines() if line]
    return {r["step"]: r["loss"] for r in records if r["split"] == split}


def _train(out: Path, args: argparse.Namespace, distributed: str) -> None:
    """One Trainer's run into `out`; process 0 writes out/summary.json (with the strategy that really ran)."""
    trainer = build_trainer(out, args.steps, args.save_every, args.resume, dropout=args.dropout, sleep=args.sleep,
                            stream=args.stream, batch_size=args.batch_size, grad_accum=args.grad_accum,
                            num_workers=args.workers, distributed=distributed)
    summary = trainer.fit(args.until)
    trainer.close()
    acc = trainer.accelerator
    if args.stream is not None:
        (out / f"keys_rank{acc.process_index}.json").write_text(json.dumps(trainer.objective.seen))
    if acc.is_main_process:
        (out / "summary.json").write_text(json.dumps({**summary, "world_size": acc.num_processes,
                                                      "distributed_type": acc.distributed_type.value}))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--save-every", type=int, default=4)
    parser.add_argument("--resume", default=None)
    parser.add_argument("--sleep", type=float, default=0.0)
    parser.add_argument("--dropout", type=float, default=0.1)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--grad-accum", type=int, default=1)
    parser.add_argument("--stream", type=Path, default=None, help="shard folder written by write_toy_shards")
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers per process")
    parser.add_argument("--distributed", default="ddp")
    parser.add_argument("--until", type=int, default=None, help="stop after this step; the schedule ends at --steps")
    parser.add_argument("--then", default=None, help="train again in this process with this strategy, into OUT/then "
                                                     "(as the demo trains a tokenizer, then a transformer)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    _train(args.out, args, args.distributed)
    if args.then is not None:
        _train(args.out / "then", args, args.then)
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
