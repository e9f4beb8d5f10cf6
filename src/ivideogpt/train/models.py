"""Trained models from checkpoints: rebuild one from its saved experiment (`load_model`), or ship one (`export_model`).

This sits above the checkpoint files (`train/checkpoint.py`, which knows nothing of models) and the
experiment configs (`train/experiments.py`): a checkpoint's `config.yaml` names the architecture,
its `model.safetensors` holds the weights.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from torch import nn

from ivideogpt.configuration import ConfigError
from ivideogpt.data.actions import metadata_file, read_metadata_file
from ivideogpt.train import checkpoint as ckpt
from ivideogpt.train import experiments


def load_model(path: str | Path) -> nn.Module:
    """Rebuild the trained model of a checkpoint (or run) directory from its config.yaml and weights.

    A tokenizer checkpoint gives the tokenizer (eval mode); a transformer checkpoint a `WorldModel`
    whose `.tokenizer` and `.transformer` are the trained modules (`.num_context` and `.window`, the
    training clip length, from its data config). A released iVideoGPT snapshot folder (tokenizer/ +
    transformer/) is read directly into a `WorldModel`.
    """
    from ivideogpt.official import is_snapshot, load_snapshot

    if is_snapshot(path):
        return load_snapshot(path)
    return model_from_checkpoint(ckpt.resolve(path))


def model_from_checkpoint(path: Path) -> Any:
    """The model of one checkpoint directory (see `load_model`)."""
    experiment = experiments.read_experiment(path, strict=False)
    if isinstance(experiment, experiments.TokenizerExperiment):
        tokenizer = experiment.tokenizer.build()
        tokenizer.load_state_dict(ckpt.read_weights(path, "tokenizer."))
        return tokenizer.eval()
    from ivideogpt.world_model import WorldModel

    if experiment.tokenizer is None:
        raise ConfigError(f"{path}/config.yaml lacks the tokenizer config it was trained with")
    tokenizer, transformer = experiment.tokenizer.build(), experiment.transformer.build()
    tokenizer.load_state_dict(ckpt.read_weights(path, "tokenizer."))
    transformer.load_state_dict(ckpt.read_weights(path, "transformer."))
    world_model = WorldModel(tokenizer, transformer)
    world_model.num_context = experiment.data.num_context
    world_model.window = experiment.data.segment_length
    return world_model


def tokenizer_loss(path: str | Path) -> Any:
    """The `TokenizerObjectiveConfig` a checkpoint's tokenizer was trained with (None for a released snapshot,
    or a transformer run that does not record it: the paper's loss), to train it further the same way."""
    from ivideogpt.official import is_snapshot

    if is_snapshot(path):
        return None
    experiment = experiments.read_experiment(ckpt.resolve(path), strict=False)
    return experiment.objective if experiment.kind == "tokenizer" else experiment.tokenizer_objective


def export_model(checkpoint: str | Path, dest: str | Path) -> Path:
    """Copy a checkpoint's model (config.yaml and model.safetensors; no optimizer, RNG or logs) to `dest`.

    The copy is a checkpoint of its own (`dest/step_N`, manifest, `latest`), written atomically, so
    `load_model(dest)` rebuilds the model from it alone: the way to ship a trained model. The training
    data's metadata.json (action bounds, action repeat) is copied beside it as data_metadata.json.
    An earlier export in `dest` is removed once the new one is in place: left there, one of a later
    step would be the one `load_model` picks. A training run's checkpoints in `dest` are an error.
    """
    source, dest = ckpt.resolve(checkpoint), Path(dest)
    ckpt.check_destination(dest, lambda entry: ckpt.step_of(entry) is not None or entry.name in ("latest", "best"),
                           "export")
    earlier = ckpt.list_checkpoints(dest)
    step = ckpt.step_of(source) or 0
    data_metadata = training_data_metadata(source)
    tmp = ckpt.begin(dest, step)
    try:
        for name in ("config.yaml", "model.safetensors"):
            shutil.copy2(source / name, tmp / name)
        if data_metadata is not None:  # the action bounds and repeat travel with the model
            shutil.copy2(data_metadata, tmp / ckpt.DATA_METADATA)
        exported = ckpt.finish(dest, step)
    except BaseException:
        ckpt.abort(dest, step)
        raise
    for replaced in earlier:
        if replaced != exported:
            shutil.rmtree(replaced)
    return exported


def training_data_metadata(checkpoint: str | Path) -> Path | None:
    """The metadata.json a checkpoint's model was trained with: its own copy, else its data's, else None."""
    source = Path(ckpt.resolve(checkpoint))
    if (source / ckpt.DATA_METADATA).is_file():
        return source / ckpt.DATA_METADATA
    data = experiments.read_experiment(source, strict=False).data
    if not data.sources:
        return None
    file = metadata_file(data.sources[0].resolved_path(data.root))
    return file if file.is_file() else None


def training_metadata(checkpoint: str | Path) -> dict[str, Any] | None:
    """The contents of `training_data_metadata(checkpoint)` (action bounds, action repeat, env); None when unknown."""
    known = training_data_metadata(checkpoint)
    return None if known is None else read_metadata_file(known)
