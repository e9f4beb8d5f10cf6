"""Released snapshot -> loaded modules -> a `WorldModel`, or a checkpoint of this project (`import-official`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from ivideogpt.configuration import save_config
from ivideogpt.data.config import DataConfig
from ivideogpt.official.mapping import load_checked, tokenizer_config, transformer_config, transformer_state
from ivideogpt.official.snapshot import Snapshot, read_snapshot
from ivideogpt.train import checkpoint as ckpt


def build_modules(snapshot: Snapshot) -> tuple[nn.Module, nn.Module]:
    """(tokenizer, transformer), built from the snapshot's configs, every tensor checked and loaded, in eval mode."""
    tok_config = tokenizer_config(snapshot.tokenizer_config)
    tokenizer = tok_config.build()
    load_checked(tokenizer, snapshot.tokenizer_tensors, "tokenizer")
    transformer = transformer_config(snapshot.transformer_config, snapshot.transformer_tensors, tok_config).build()
    mapped, unmapped = transformer_state(snapshot.transformer_tensors)
    load_checked(transformer, mapped, "transformer", unmapped)
    return tokenizer.eval(), transformer.eval()


def load_snapshot(path: str | Path) -> Any:
    """A `WorldModel` running a released snapshot folder (`.num_context` = its tokenizer's context frames)."""
    from ivideogpt.world_model import WorldModel

    tokenizer, transformer = build_modules(read_snapshot(path))
    world_model = WorldModel(tokenizer, transformer)
    world_model.num_context = tokenizer.config.context_frames
    return world_model


def import_snapshot(path: str | Path, out: str | Path) -> Path:
    """Write a released snapshot as a checkpoint of this project under `out`; returns the checkpoint directory.

    The checkpoint is a transformer run's (config.yaml + model.safetensors with `tokenizer.*` and
    `transformer.*`), so `load_model(out)`, `evaluate`, `plan` and fine-tuning read it like a trained one.
    An earlier import in `out` is replaced; an `out` holding anything else is refused.
    """
    from ivideogpt.train.experiments import TransformerExperiment
    from ivideogpt.transformer.objective import TransformerObjective

    ckpt.check_destination(Path(out), lambda entry: entry.name in ("latest", ckpt.checkpoint_name(0)), "import")
    tokenizer, transformer = build_modules(read_snapshot(path))
    context = tokenizer.config.context_frames
    experiment = TransformerExperiment(
        tokenizer=tokenizer.config, transformer=transformer.config, preset="transformer_small",
        data=DataConfig(resolution=tokenizer.config.resolution, num_context=context,
                        segment_length=max(16, context + 1)))
    state = TransformerObjective(transformer, tokenizer).state_dict()
    tmp = ckpt.begin(Path(out), 0)
    try:
        save_config(experiment, tmp / "config.yaml")
        ckpt.save_tensors(tmp / "model.safetensors", state)
        return ckpt.finish(Path(out), 0)
    except BaseException:
        ckpt.abort(Path(out), 0)
        raise
