"""One training engine on `accelerate` for every model: config, loop, schedules, checkpoints."""

from ivideogpt.train.checkpoint import CheckpointError, find_latest, resolve
from ivideogpt.train.config import TrainConfig
from ivideogpt.train.models import export_model, load_model
from ivideogpt.train.optim import build_optimizer, build_scheduler, lr_factor, parameter_groups
from ivideogpt.train.sampler import StepSampler
from ivideogpt.train.trainer import LossModule, NonFiniteLossError, Trainer

__all__ = [
    "CheckpointError", "LossModule", "NonFiniteLossError", "StepSampler", "TrainConfig", "Trainer",
    "build_optimizer", "build_scheduler", "export_model", "find_latest", "load_model", "lr_factor", "parameter_groups", "resolve",
]
