"""RL logs: scalars to TensorBoard and a metrics.jsonl (videos: `ivideogpt.media`)."""

from __future__ import annotations

import json
from pathlib import Path



class RLLogger:
    """`log(step, split, metrics)` writes `rl/<split>/<name>` scalars and one JSON line per call."""

    def __init__(self, out_dir: str | Path, tensorboard: bool = True, purge_step: int | None = None,
                 keep_bytes: int | None = None) -> None:
        """On a resume, what the interrupted run logged after its checkpoint is dropped: TensorBoard
        events at or after `purge_step`, and metrics.jsonl past its first `keep_bytes` bytes."""
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.jsonl = self.out_dir / "metrics.jsonl"
        if keep_bytes is not None and self.jsonl.is_file():
            with open(self.jsonl, "r+b") as handle:
                handle.truncate(keep_bytes)
        self.writer = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(self.out_dir / "tensorboard"), purge_step=purge_step)
            if purge_step is not None:
                self._restore_step(purge_step)

    def _restore_step(self, step: int) -> None:
        """TensorBoard purges whole steps, but a checkpoint's step holds records from before it (kept in
        metrics.jsonl) and after it (logged again by the resumed run): write the former back."""
        if not self.jsonl.is_file():
            return
        for line in self.jsonl.read_text().splitlines():
            record = json.loads(line)
            if record.pop("env_step") == step:
                split = record.pop("split")
                for name, value in record.items():
                    self.writer.add_scalar(f"rl/{split}/{name}", value, step)

    def log(self, step: int, split: str, metrics: dict[str, float]) -> None:
        """`step` is the env (simulator) step count."""
        if self.writer is not None:
            for name, value in metrics.items():
                self.writer.add_scalar(f"rl/{split}/{name}", value, step)
        with open(self.jsonl, "a") as handle:
            handle.write(json.dumps({"env_step": step, "split": split, **metrics}) + "\n")

    def metrics_bytes(self) -> int:
        """Size of metrics.jsonl so far: a checkpoint records it to cut the log back on resume."""
        return self.jsonl.stat().st_size if self.jsonl.is_file() else 0

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
