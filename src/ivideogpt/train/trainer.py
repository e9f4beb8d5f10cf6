"""`Trainer`: the one training loop (tokenizer, transformer, anything with `compute_loss`)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from accelerate.utils import DistributedDataParallelKwargs, set_seed
from torch import nn
from torch.utils.data import DataLoader, Dataset, IterableDataset
from tqdm.auto import tqdm

from ivideogpt.configuration import config_to_dict, save_config
from ivideogpt.launch import on_cpu, process_state, stop_together
from ivideogpt.media import video_grid, write_video
from ivideogpt.train import checkpoint as ckpt
from ivideogpt.train import sharding
from ivideogpt.train.config import TrainConfig
from ivideogpt.train.optim import build_optimizer, build_scheduler
from ivideogpt.train.rng import preserved_rng, restore_rng
from ivideogpt.train.sampler import FixedSampler, StepSampler
from ivideogpt.train.state import CheckpointIO
from ivideogpt.train.streaming import PositionedCollate, StreamState
from ivideogpt.train.tracking import Tracker

log = logging.getLogger(__name__)


class NonFiniteLossError(RuntimeError):
    """The loss, gradient norm or weights became NaN/inf; training stopped before saving that state."""


class LossModule(nn.Module):
    """Routes `objective.compute_loss` through `forward`, so DDP/FSDP hooks and autocast apply to it."""

    def __init__(self, objective: nn.Module) -> None:
        super().__init__()
        self.objective = objective

    def forward(self, batch: Any, step: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return self.objective.compute_loss(batch, step)


class Trainer:
    """Owns the loop: Accelerator, AdamW, schedule, clipping, accumulation, logs, validation, samples, checkpoints.

    `objective.compute_loss(batch, step) -> (loss, logs)`; optional `objective.make_samples(batch)`
    returns {name: (B, T, 3, H, W) in [-1, 1]}; each becomes a GIF beside the ground truth (the
    "target" or "ground_truth" entry if given, else `batch.frames`).
    A map-style train dataset is read by step (`StepSampler`); an iterable one must be a resumable stream
    (`data/stream.py`: `ShardStream`, `MixedStream`), whose consumers' positions go into every checkpoint.
    `collate_fn` turns a list of items into a Batch.
    `config` is the full experiment config saved (as YAML) with every checkpoint.
    `resumed_from`: the checkpoint `cfg.resume` resolved to, whose weights the caller has already loaded into
    `objective` (`train_experiment` does, to encode the token cache with them): neither resolved nor read again.
    """

    def __init__(self, objective: nn.Module, train_dataset: Dataset, cfg: TrainConfig, *,
                 val_dataset: Dataset | None = None, collate_fn: Callable[[list[Any]], Any] | None = None,
                 component: str = "model", config: Any = None, resumed_from: Path | None = None) -> None:
        self.cfg, self.component = cfg, component
        self.config = config if config is not None else cfg
        self.train_dataset, self.val_dataset, self.collate_fn = train_dataset, val_dataset, collate_fn
        self.accelerator = _build_accelerator(cfg, objective)
        acc = self.accelerator
        self.micro_batch = cfg.micro_batch(acc.num_processes)
        self.out_dir = Path(cfg.out_dir)
        self.io = CheckpointIO(acc, self.out_dir / "checkpoints", cfg)
        resume_from = resumed_from if resumed_from is not None else self._restore_weights(objective)

        self.objective = objective
        optimizer = build_optimizer(objective, cfg)
        self.scheduler = build_scheduler(optimizer, cfg)
        self.model, self.optimizer = acc.prepare(LossModule(objective), optimizer)
        self.step, self.last_val, self.last_train = 0, None, None
        rng_state, saved_stream = None, None
        if resume_from is not None:
            state, rng_state = self.io.load(resume_from, self.model, self.optimizer, self.scheduler)
            self.step = int(state["step"])
            saved_stream = state["data_position"].get("stream")
            self.last_val = self.io.last_val[1] if self.io.last_val else None
            log.info("resuming from %s at step %d, learning rate %.3g (this run's schedule at that step)",
                     resume_from, self.step, self.optimizer.param_groups[0]["lr"])
        self.stream = (StreamState(train_dataset, acc.num_processes * max(1, cfg.num_workers), saved_stream)
                       if isinstance(train_dataset, IterableDataset) else None)
        set_seed(cfg.seed + acc.process_index + self.step)  # only used when no RNG state was saved
        if rng_state is not None:
            restore_rng(rng_state)
        if acc.is_main_process:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            save_config(self.config, self.out_dir / "config.yaml")
        self.tracker = (Tracker(self.out_dir, cfg, component, config_to_dict(self.config), self.step)
                        if acc.is_main_process else None)
        self._bad_step = torch.zeros((), dtype=torch.long, device=acc.device)  # first non-finite step + 1

    def _restore_weights(self, objective: nn.Module) -> Path | None:
        """The checkpoint `train.resume` asks for, its weights loaded into `objective` (None for a fresh run)."""
        resume_from = self.io.resume_target()
        if resume_from is not None:
            ckpt.load_weights(objective, resume_from)
        return resume_from

    # ---------------------------------------------------------------- data
    def _loader(self, dataset: Dataset, sampler: torch.utils.data.Sampler | None,
                collate_fn: Callable[[list[Any]], Any] | None = None) -> DataLoader:
        return DataLoader(dataset, batch_size=self.micro_batch, sampler=sampler,
                          collate_fn=collate_fn or self.collate_fn,
                          num_workers=self.cfg.num_workers, pin_memory=self.accelerator.device.type == "cuda",
                          generator=torch.Generator(),  # keeps the global RNG untouched by loader start-up
                          persistent_workers=self.cfg.num_workers > 0)

    def train_loader(self) -> DataLoader:
        """Batches for updates `self.step .. max_steps - 1` on this process (step-indexed, see StepSampler);
        from a stream: (batch, consumer, position) from where each consumer stands (see `StreamState`)."""
        acc, cfg = self.accelerator, self.cfg
        if self.stream is not None:
            self.stream.start(acc.process_index, acc.num_processes, self.step * cfg.grad_accum)
            return self._loader(self.train_dataset, None, PositionedCollate(self.collate_fn))
        sampler = StepSampler(len(self.train_dataset), cfg.batch_size, self.micro_batch, cfg.grad_accum,
                              acc.num_processes, acc.process_index, cfg.seed, self.step, cfg.max_steps)
        return self._loader(self.train_dataset, sampler)

    def _to_device(self, batch: Any) -> Any:
        return batch.to(self.accelerator.device) if hasattr(batch, "to") else batch

    # ---------------------------------------------------------------- loop
    def fit(self, until: int | None = None) -> dict[str, Any]:
        """Train until `max_steps` (or pause at step `until`; call again to go on); returns step and losses."""
        acc, cfg = self.accelerator, self.cfg
        stop = cfg.max_steps if until is None else min(until, cfg.max_steps)
        self.model.train()
        batches = iter(self.train_loader())
        sums: dict[str, list] = {}
        window_steps, window_start = 0, time.perf_counter()
        bar = tqdm(total=cfg.max_steps, initial=self.step, disable=not (acc.is_main_process and cfg.progress),
                   desc=self.component, dynamic_ncols=True)
        try:
            while self.step < stop:
                for _ in range(cfg.grad_accum):
                    batch = next(batches)
                    batch = self._to_device(self.stream.unpack(batch) if self.stream is not None else batch)
                    with acc.accumulate(self.model):
                        loss, logs = self.model(batch, self.step)
                        acc.backward(loss)
                        if acc.sync_gradients and cfg.grad_clip is not None:
                            norm = sharding.local(acc.clip_grad_norm_(self.model.parameters(), cfg.grad_clip))
                            self._flag_non_finite(norm)
                            _add(sums, {"grad_norm": norm})
                        self.optimizer.step()
                        self.optimizer.zero_grad(set_to_none=True)
                    self._flag_non_finite(loss)
                    _add(sums, {"loss": loss, **logs})
                lr = self.optimizer.param_groups[0]["lr"]  # the rate this update used
                self.scheduler.step()
                self.step += 1
                window_steps += 1
                bar.update(1)
                last = self.step == cfg.max_steps
                logged = self.step % cfg.log_every == 0 or self.step == stop
                if logged:
                    metrics = self._log_train(sums, window_steps * cfg.batch_size, lr, window_start)
                    bar.set_postfix(loss=f"{metrics['loss']:.4g}", samples_per_s=f"{metrics['samples_per_s']:.1f}")
                    sums, window_steps = {}, 0
                paused = time.perf_counter()
                if cfg.val_every and self.val_dataset is not None and (self.step % cfg.val_every == 0 or last):
                    self.validate()
                if cfg.sample_every and (self.step % cfg.sample_every == 0 or last):
                    self.write_samples()
                if self.step % cfg.save_every == 0 or last:
                    self.save()
                # validation, samples and checkpoints do not count against throughput
                window_start = time.perf_counter() if logged else window_start + time.perf_counter() - paused
        except BaseException:
            self.close()
            raise
        finally:
            bar.close()
        if self.step >= cfg.max_steps:
            self.close()
        return {"step": self.step, "train_loss": self.last_train, "val_loss": self.last_val}

    def close(self) -> None:
        """Flush and close the loggers (done by `fit` when training ends)."""
        if self.tracker is not None:
            self.tracker.close()
            self.tracker = None

    def _flag_non_finite(self, value: torch.Tensor) -> None:
        """Remember (on device, no sync) the first step whose loss or grad norm is NaN/inf."""
        bad = ~torch.isfinite(value.detach().float()).all()
        self._bad_step = torch.where(bad & (self._bad_step == 0), self.step + 1, self._bad_step)

    def _flag_non_finite_weights(self) -> None:
        """Flag the last update if it left a NaN/inf in the weights (a finite loss and gradient can still
        step into one, e.g. at a huge learning rate). One pass over the weights, so only before a save."""
        finite = torch.stack([torch.isfinite(sharding.own_shard(p.detach())).all() for p in self.model.parameters()])
        bad = ~finite.all()
        self._bad_step = torch.where(bad & (self._bad_step == 0), self.step, self._bad_step)  # the update of step - 1

    def check_finite(self) -> None:
        """Stop every process if any process saw a NaN/inf since the start: process 0 raises NonFiniteLossError,
        the others StoppedWithOthers (so the reason is shown once)."""
        first = self.accelerator.gather(self._bad_step.reshape(1))
        bad = [int(v) - 1 for v in first.tolist() if v > 0]
        if bad:
            latest = ckpt.find_latest(self.io.root)
            stop_together(NonFiniteLossError(
                f"training stopped: the loss, gradient norm or weights became non-finite at step {min(bad)} "
                f"(compute_loss(batch, step={min(bad)})); no checkpoint was written after it; "
                f"last good checkpoint: {latest if latest is not None else 'none'}"), reporter=0)

    def _log_train(self, sums: dict[str, list], samples: int, lr: float, since: float) -> dict[str, float]:
        """Sync the window's mean logs across processes (the only host sync of the loop) and record them."""
        self.check_finite()
        metrics = self._reduce_means(sums)
        seconds = max(time.perf_counter() - since, 1e-9)  # measured after the sync: device work is done
        metrics.update(lr=lr, samples_per_s=samples / seconds)
        self.last_train = metrics["loss"]
        if self.tracker is not None:
            self.tracker.log(self.step, "train", metrics)
        return metrics

    def _reduce_means(self, sums: dict[str, list]) -> dict[str, float]:
        """Means of accumulated logs, averaged over processes (the same names on every process)."""
        names = sorted(sums)
        stacked = torch.stack([sums[name][0] / sums[name][1] for name in names])
        values = self.accelerator.reduce(stacked, reduction="mean").tolist()
        return dict(zip(names, values))

    # ---------------------------------------------------------------- validation and samples
    @torch.no_grad()
    def validate(self) -> float | None:
        """Mean loss and logs over `val_batches` fixed global batches; the training RNG is left untouched."""
        if self.val_dataset is None or len(self.val_dataset) == 0:
            return None
        acc, cfg = self.accelerator, self.cfg
        sampler = FixedSampler(len(self.val_dataset), cfg.val_batches * cfg.batch_size, self.micro_batch,
                               acc.num_processes, acc.process_index)
        sums: dict[str, list] = {}
        self.model.eval()
        with preserved_rng():
            for batch in self._loader(self.val_dataset, sampler):
                loss, logs = self.model(self._to_device(batch), self.step)
                _add(sums, {"loss": loss, **logs})
        self.model.train()
        metrics = self._reduce_means(sums)
        self.last_val = metrics["loss"]
        self.io.note_validation(self.step, self.last_val)
        if self.tracker is not None:
            self.tracker.log(self.step, "val", metrics)
        return self.last_val

    @torch.no_grad()
    def write_samples(self) -> list[Path]:
        """GIFs of ground truth | prediction from `objective.make_samples` on fixed validation items
        (training items without a validation set, unless they are streamed: then none)."""
        make = getattr(self.objective, "make_samples", None)
        # Samples need pixels: a TokenDataset (pre-encoded ids) names its frame dataset `frames`.
        dataset = self.val_dataset if self.val_dataset is not None else getattr(self.train_dataset, "frames",
                                                                                self.train_dataset)
        if make is None or not self.accelerator.is_main_process or isinstance(dataset, IterableDataset):
            return []
        if sharding.is_sharded(self.accelerator):
            log.warning("sample GIFs are skipped under FSDP (the weights are sharded)")
            return []
        items = [dataset[i % len(dataset)] for i in range(self.cfg.num_samples)]
        batch = self._to_device(self.collate_fn(items) if self.collate_fn else torch.utils.data.default_collate(items))
        self.objective.eval()
        with preserved_rng(), self.accelerator.autocast():
            videos = dict(make(batch))
        self.objective.train()
        target = videos.pop("target", videos.pop("ground_truth", getattr(batch, "frames", None)))
        paths = []
        for name, video in videos.items():
            columns = [target, video] if target is not None else [video]
            path = write_video(self.out_dir / "samples" / f"step_{self.step:06d}_{name}.gif",
                               video_grid(columns, self.cfg.num_samples), fps=4)
            paths.append(path)
            if self.tracker is not None:
                self.tracker.log_video(self.step, name, path)
        return paths

    # ---------------------------------------------------------------- checkpoints
    def save(self) -> Path:
        """Write a checkpoint of the current step (after checking that no NaN/inf was seen)."""
        self._flag_non_finite_weights()
        self.check_finite()
        return self.io.save(self.step, self.model, self.optimizer, self.scheduler, self.config,
                            extra={"component": self.component, "train_loss": self.last_train},
                            stream=self.stream.gathered() if self.stream is not None else None)


def _add(sums: dict[str, list], logs: dict[str, torch.Tensor]) -> None:
    """Accumulate detached scalar logs as [sum, count] on device (no host sync)."""
    for name, value in logs.items():
        value = value.detach().float().mean() if isinstance(value, torch.Tensor) else torch.tensor(float(value))
        if name in sums:
            sums[name][0] = sums[name][0] + value
            sums[name][1] += 1
        else:
            sums[name] = [value.clone(), 1]


def _build_accelerator(cfg: TrainConfig, objective: nn.Module) -> Accelerator:
    """Accelerator with the config's precision, accumulation and (optional) FSDP plugin."""
    if cfg.mixed_precision == "fp16" and not torch.cuda.is_available():
        raise ValueError("train.mixed_precision=fp16 needs a GPU; use bf16 (supported on CPU) or no")
    plugin = sharding.plugin(objective) if cfg.distributed == "fsdp" else None
    # A second Trainer in one process (tokenizer, then transformer) may use another precision:
    # forget the previous run's settings; the process group, if any, is kept.
    AcceleratorState._reset_state(reset_partial_state=False)
    sharding.forget()
    ddp = DistributedDataParallelKwargs(find_unused_parameters=cfg.find_unused_parameters)
    process_state()  # joins a launch's process group here, so that it is left cleanly at exit
    accelerator = Accelerator(cpu=on_cpu(), mixed_precision=cfg.mixed_precision,
                              gradient_accumulation_steps=cfg.grad_accum, fsdp_plugin=plugin, kwargs_handlers=[ddp],
                              step_scheduler_with_optimizer=False)
    if plugin is not None:
        sharding.enable(accelerator, plugin, cfg.mixed_precision)
    return accelerator
