"""`TrainConfig`: every knob of the training loop, validated where it is built."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass
class TrainConfig:
    """Optimisation, schedule, logging and checkpoint settings shared by every training run.

    Steps count optimizer updates. `batch_size` is the global batch per update: it is split
    over processes and `grad_accum` micro-steps, so one process with batch G and two with
    G/2 each see the same samples at every step.
    """

    # optimisation
    lr: float = 1e-4  # peak learning rate, reached after warmup
    betas: tuple[float, float] = (0.9, 0.999)  # AdamW betas
    eps: float = 1e-8  # AdamW epsilon
    weight_decay: float = 0.0  # decoupled decay; never applied to biases, norms, embeddings
    grad_clip: float | None = 1.0  # max global grad norm; None disables clipping
    # schedule
    warmup_steps: int = 0  # linear warmup from 0 to `lr`
    schedule: Literal["constant", "cosine"] = "constant"  # after warmup
    min_lr_ratio: float = 0.0  # cosine floor, as a fraction of `lr`
    max_steps: int = 1000  # total optimizer updates
    # batches
    batch_size: int = 8  # global samples per update (all processes, all micro-steps)
    grad_accum: int = 1  # micro-steps per update
    num_workers: int = 0  # DataLoader worker processes per training process
    # precision and distribution
    mixed_precision: Literal["no", "bf16", "fp16"] | bool = "no"  # autocast dtype; fp16 needs a GPU
    #   (YAML reads a bare `no` as false: false is taken as "no")
    distributed: Literal["ddp", "fsdp"] = "ddp"  # strategy when several processes run
    find_unused_parameters: bool = False  # DDP: needed when some trainable parameters get no
    #   gradient in some steps (e.g. a discriminator before `disc_start`)
    seed: int = 0  # model init, data order, and per-process RNG (seed + rank)
    # monitoring
    log_every: int = 10  # updates between synced logs (TensorBoard, losses.jsonl, progress bar)
    val_every: int = 500  # updates between validation passes; 0 disables
    val_batches: int = 4  # global batches per validation pass
    sample_every: int = 1000  # updates between sample GIFs; 0 disables
    num_samples: int = 4  # videos per sample GIF
    tensorboard: bool = True  # write TensorBoard event files under out_dir/tensorboard
    wandb: bool = False  # also log to Weights & Biases (needs the `wandb` package)
    wandb_project: str = "ivideogpt"
    wandb_run_name: str | None = None
    progress: bool = True  # tqdm progress bar on the main process
    # checkpoints
    save_every: int = 1000  # updates between checkpoints; the last step is always saved
    keep_last: int = 3  # checkpoints kept besides the best one
    out_dir: str = "runs/default"  # run directory: checkpoints, logs, samples
    resume: str | None = None  # None: fresh run; "latest": last valid checkpoint in out_dir;
    #                            "auto": latest if any, else fresh; or a checkpoint / run directory

    def __post_init__(self) -> None:
        self.betas = tuple(self.betas)  # type: ignore[assignment]
        if self.mixed_precision is False:
            self.mixed_precision = "no"
        positive = ("lr", "max_steps", "batch_size", "grad_accum", "log_every", "save_every",
                    "keep_last", "val_batches", "num_samples")
        for name in positive:
            if getattr(self, name) <= 0:
                raise ValueError(f"train.{name} must be > 0, got {getattr(self, name)!r}")
        non_negative = ("warmup_steps", "val_every", "sample_every", "num_workers", "weight_decay", "eps")
        for name in non_negative:
            if getattr(self, name) < 0:
                raise ValueError(f"train.{name} must be >= 0, got {getattr(self, name)!r}")
        if len(self.betas) != 2 or not all(0.0 <= b < 1.0 for b in self.betas):
            raise ValueError(f"train.betas must be two numbers in [0, 1), got {self.betas!r}")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ValueError(f"train.min_lr_ratio must be in [0, 1], got {self.min_lr_ratio!r}")
        if self.grad_clip is not None and self.grad_clip <= 0:
            raise ValueError(f"train.grad_clip must be > 0 or null, got {self.grad_clip!r}")
        if self.schedule not in ("constant", "cosine"):
            raise ValueError(f"train.schedule must be 'constant' or 'cosine', got {self.schedule!r}")
        if self.mixed_precision not in ("no", "bf16", "fp16"):
            raise ValueError(f"train.mixed_precision must be 'no', 'bf16' or 'fp16', got {self.mixed_precision!r}")
        if self.distributed not in ("ddp", "fsdp"):
            raise ValueError(f"train.distributed must be 'ddp' or 'fsdp', got {self.distributed!r}")
        if self.batch_size % self.grad_accum:
            raise ValueError(f"train.batch_size={self.batch_size} is not divisible by "
                             f"train.grad_accum={self.grad_accum}")
        if not self.out_dir:
            raise ValueError("train.out_dir must name a directory")

    def micro_batch(self, num_processes: int) -> int:
        """Samples per process per micro-step; raises if the global batch does not split evenly."""
        parts = num_processes * self.grad_accum
        if self.batch_size % parts:
            raise ValueError(f"train.batch_size={self.batch_size} does not split over {num_processes} "
                             f"process(es) x train.grad_accum={self.grad_accum}")
        return self.batch_size // parts
