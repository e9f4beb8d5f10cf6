"""Where training logs go: TensorBoard (default), Weights & Biases (optional), losses.jsonl, sample GIFs
(written by `ivideogpt.media`)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ivideogpt.configuration import ConfigError
from ivideogpt.train.config import TrainConfig

LOSSES_FILE = "losses.jsonl"


def truncate_jsonl(path: Path, after_step: int) -> None:
    """Drop records with step > `after_step` (they are recomputed after a resume); atomic rewrite."""
    if not path.is_file():
        return
    kept = [line for line in path.read_text().splitlines()
            if line.strip() and json.loads(line).get("step", 0) <= after_step]
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(line + "\n" for line in kept))
    os.replace(tmp, path)


class Tracker:
    """Writes scalars as `component/split/metric` to TensorBoard / W&B and as JSON lines to losses.jsonl."""

    def __init__(self, out_dir: Path, cfg: TrainConfig, component: str, config: dict[str, Any],
                 start_step: int) -> None:
        self.out_dir, self.component = Path(out_dir), component
        self.jsonl = self.out_dir / LOSSES_FILE
        truncate_jsonl(self.jsonl, start_step)
        self.tensorboard = None
        if cfg.tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.tensorboard = SummaryWriter(str(self.out_dir / "tensorboard"),
                                             purge_step=start_step if start_step else None)
        self.wandb = None
        if cfg.wandb:
            self.wandb = _start_wandb(self.out_dir, cfg, config)

    def log(self, step: int, split: str, metrics: dict[str, float]) -> None:
        """Record `metrics` (plain names) of `split` ("train", "val") at `step`."""
        keyed = {f"{self.component}/{split}/{name}": value for name, value in metrics.items()}
        if self.tensorboard is not None:
            for key, value in keyed.items():
                self.tensorboard.add_scalar(key, value, step)
        if self.wandb is not None:
            self.wandb.log(keyed, step=step)
        with open(self.jsonl, "a") as handle:
            handle.write(json.dumps({"step": step, "split": split, **metrics}) + "\n")

    def log_video(self, step: int, name: str, path: Path) -> None:
        """Point W&B at a written GIF (TensorBoard users open the file from samples/)."""
        if self.wandb is not None:
            import wandb

            self.wandb.log({f"{self.component}/samples/{name}": wandb.Video(str(path))}, step=step)

    def close(self) -> None:
        if self.tensorboard is not None:
            self.tensorboard.close()
        if self.wandb is not None:
            self.wandb.finish()


def _start_wandb(out_dir: Path, cfg: TrainConfig, config: dict[str, Any]) -> Any:
    """Start (or resume, with the id kept in out_dir) a W&B run; a clear error if wandb is missing."""
    try:
        import wandb
    except ImportError as error:
        raise ConfigError("train.wandb=true needs the `wandb` package: pip install 'ivideogpt[wandb]' "
                          "(or set train.wandb=false; TensorBoard logs are written either way)") from error
    id_file = out_dir / "wandb_id"
    run_id = id_file.read_text().strip() if id_file.is_file() else wandb.util.generate_id()
    id_file.write_text(run_id)
    return wandb.init(project=cfg.wandb_project, name=cfg.wandb_run_name, id=run_id, resume="allow",
                      dir=str(out_dir), config=config)
