"""`CheckpointIO`: saving and restoring the whole trainer state, called collectively by every process."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from safetensors.torch import load_file

from ivideogpt.configuration import save_config
from ivideogpt.launch import first_failure, stop_together
from ivideogpt.train import checkpoint as ckpt
from ivideogpt.train import sharding
from ivideogpt.train.config import TrainConfig
from ivideogpt.train.rng import capture_rng

log = logging.getLogger(__name__)


class CheckpointIO:
    """Writes model / optimizer / scheduler / RNG / data position atomically; finds and reads them back."""

    def __init__(self, accelerator: Accelerator, root: Path, cfg: TrainConfig) -> None:
        self.accelerator, self.root, self.cfg = accelerator, Path(root), cfg
        self.sharded = cfg.distributed == "fsdp"  # optimizer state in per-process shards, at any world size
        self.last_val: tuple[int, float] | None = None  # (step, loss) of the latest validation

    def resume_target(self) -> Path | None:
        """The checkpoint `train.resume` asks for (None for a fresh run); refuses to clobber a run."""
        return resume_target(self.cfg, self.root)

    def note_validation(self, step: int, loss: float) -> None:
        self.last_val = (step, loss)

    # ------------------------------------------------------------------ save
    def save(self, step: int, model: torch.nn.Module, optimizer: Any, scheduler: Any, config: Any,
             extra: dict[str, Any], stream: dict[str, Any] | None = None) -> Path:
        """Write checkpoint `step`; on any process's OSError remove the partial write and raise CheckpointError.

        `stream`: where each consumer of a streamed training set stands (saved as `data_position.stream`)."""
        acc, tmp = self.accelerator, ckpt.tmp_path(self.root, step)
        self._run(step, lambda: ckpt.begin(self.root, step) if acc.is_main_process else None)
        weights = acc.get_state_dict(model)  # collective under FSDP; keys start with "objective."
        if self.sharded:
            self._run(step, lambda: sharding.save_optimizer(model, optimizer, tmp / "optimizer"))

        def write() -> None:
            (tmp / "rng").mkdir(exist_ok=True)
            ckpt.write_json(tmp / "rng" / f"rank{acc.process_index}.json", capture_rng())
            if not acc.is_main_process:
                return
            ckpt.save_tensors(tmp / "model.safetensors",
                              {k.removeprefix("objective."): v for k, v in weights.items()})
            if not self.sharded:
                tensors, meta = ckpt.optimizer_to_files(optimizer.state_dict())
                ckpt.save_tensors(tmp / "optimizer.safetensors", tensors)
                ckpt.write_json(tmp / "optimizer.json", meta)
            ckpt.write_json(tmp / ckpt.STATE, self._trainer_state(step, scheduler, extra, stream))
            save_config(config, tmp / "config.yaml")

        self._run(step, write)

        def publish() -> None:
            if acc.is_main_process:
                ckpt.finish(self.root, step)
                ckpt.apply_retention(self.root, self.cfg.keep_last)

        self._run(step, publish)
        return self.root / ckpt.checkpoint_name(step)

    def _trainer_state(self, step: int, scheduler: Any, extra: dict[str, Any],
                       stream: dict[str, Any] | None) -> dict[str, Any]:
        cfg, acc = self.cfg, self.accelerator
        val = self.last_val
        return {
            "format": 1, "step": step, **extra,
            "samples_seen": step * cfg.batch_size,
            "data_position": {"next_sample": step * cfg.batch_size, "seed": cfg.seed, "batch_size": cfg.batch_size,
                              **({"stream": stream} if stream is not None else {})},
            "world_size": acc.num_processes, "grad_accum": cfg.grad_accum,
            "val_loss": val[1] if val is not None and val[0] == step else None,
            "last_val": {"step": val[0], "loss": val[1]} if val is not None else None,
            "scheduler": scheduler.state_dict(),
        }

    def _run(self, step: int, action: Any) -> None:
        """Run `action` on every process; if it failed anywhere, clean up and stop every process, the first that
        failed reporting its CheckpointError (see `launch.stop_together`)."""
        error: OSError | None = None
        try:
            action()
        except OSError as caught:
            error = caught
        first = first_failure(error is not None)
        if first is None:
            return
        if self.accelerator.is_main_process:
            ckpt.abort(self.root, step)
        stop_together(None if error is None else self._write_error(step, error), first)

    def _write_error(self, step: int, error: OSError) -> ckpt.CheckpointError:
        """What a process that could not write checkpoint `step` reports (caused by `error`)."""
        failure = ckpt.CheckpointError(
            f"could not write checkpoint {self.root / ckpt.checkpoint_name(step)}: {error}. "
            f"Earlier checkpoints are intact (latest: {ckpt.read_pointer(self.root, 'latest')}); "
            "free some space and continue with --resume")
        failure.__cause__ = error
        return failure

    # ------------------------------------------------------------------ load
    def load(self, path: Path, model: torch.nn.Module, optimizer: Any,
             scheduler: Any) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """Restore optimizer and scheduler (weights are loaded before `prepare`); returns the state and this rank's RNG."""
        acc, cfg = self.accelerator, self.cfg
        state = ckpt.read_json(path / ckpt.STATE)
        if state["data_position"]["batch_size"] != cfg.batch_size:
            log.warning("train.batch_size changed from %s to %s: the data order differs from an uninterrupted run",
                        state["data_position"]["batch_size"], cfg.batch_size)
        settings = [{k: v for k, v in group.items() if k != "params"} for group in optimizer.param_groups]
        if sharding.has_sharded_optimizer(path):
            sharding.load_optimizer(model, optimizer, path / "optimizer")
        elif sharding.is_sharded(acc):  # every process finds this: process 0 alone says it
            stop_together(ckpt.CheckpointError(f"{path} holds a whole optimizer state (a train.distributed=ddp "
                                               "run); resume it with train.distributed=ddp"), 0)
        else:
            meta = ckpt.read_json(path / "optimizer.json")
            optimizer.load_state_dict(ckpt.optimizer_from_files(load_file(str(path / "optimizer.safetensors")), meta))
        scheduler.load_state_dict(state["scheduler"])
        _apply_settings(optimizer, scheduler, settings)
        last = state.get("last_val")
        self.last_val = (last["step"], last["loss"]) if last else None
        rng_file = path / "rng" / f"rank{acc.process_index}.json"
        if not rng_file.is_file():
            log.warning("%s has no RNG state for process %d (it ran with %s processes): reseeding",
                        path, acc.process_index, state.get("world_size"))
            return state, None
        return state, ckpt.read_json(rng_file)


def _apply_settings(optimizer: Any, scheduler: Any, settings: list[dict[str, Any]]) -> None:
    """Put this run's optimizer settings (`settings`: each group's hyperparameters as built from the config) back
    over the ones a checkpoint restored, and set the learning rate of the restored step from this run's schedule.

    A checkpoint stores the old run's lr, betas, weight decay and the scheduler's base lr; without this, overrides
    given on --resume (train.lr, train.max_steps of a cosine schedule, ...) would be ignored, silently. With the
    same config it rewrites the same values, so a resumed run still matches an uninterrupted one exactly.
    """
    for group, own in zip(optimizer.param_groups, settings):
        group.update(own)
    scheduler.base_lrs = [group["initial_lr"] for group in optimizer.param_groups]
    for group, base, factor in zip(optimizer.param_groups, scheduler.base_lrs, scheduler.lr_lambdas):
        group["lr"] = base * factor(scheduler.last_epoch)
    scheduler._last_lr = [group["lr"] for group in optimizer.param_groups]


def resume_target(cfg: TrainConfig, root: Path | None = None) -> Path | None:
    """The checkpoint `cfg.resume` asks for under `root` (default `out_dir/checkpoints`), None for a fresh run.

    Refuses (CheckpointError) to start a fresh run over existing checkpoints, or to resume an older
    checkpoint into a directory that holds newer ones.
    """
    root = Path(cfg.out_dir) / "checkpoints" if root is None else Path(root)
    resume, existing = cfg.resume, ckpt.list_checkpoints(root)
    if resume is None:
        if existing:
            raise ckpt.CheckpointError(
                f"{cfg.out_dir} already holds checkpoints (latest {existing[-1].name}); pass --resume "
                "(train.resume=latest) to continue that run, or choose another train.out_dir")
        return None
    if resume in ("latest", "auto"):
        found = ckpt.find_latest(root)
        if found is None and resume == "latest":
            raise ckpt.CheckpointError(f"train.resume=latest, but there is no valid checkpoint under {root}")
        return found
    found = ckpt.resolve(resume)
    newer = [p.name for p in existing if (ckpt.step_of(p) or 0) > (ckpt.step_of(found) or 0)]
    if newer and found.parent.resolve() != root.resolve():
        raise ckpt.CheckpointError(f"{root} holds checkpoints newer than {found} ({', '.join(newer)}); "
                                   "resume into another train.out_dir")
    return found
