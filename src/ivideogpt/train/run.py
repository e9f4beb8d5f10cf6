"""Train one experiment: its data, its objective, the token cache, the Trainer. What `ivideogpt train` and the
demo both call."""

from __future__ import annotations

import logging
from functools import partial
from typing import Any

from accelerate.utils import set_seed

from ivideogpt.configuration import ConfigError
from ivideogpt.data import build_datasets, collate_segments
from ivideogpt.data.mixed_stream import build_stream
from ivideogpt.launch import failing_together, process_state
from ivideogpt.train import checkpoint as ckpt
from ivideogpt.train.state import resume_target
from ivideogpt.train.streaming import check_share
from ivideogpt.train.token_cache import TokenDataset, load_or_build
from ivideogpt.train.trainer import Trainer

log = logging.getLogger(__name__)


def train_experiment(experiment: Any) -> dict[str, Any]:
    """Build data and objective for `experiment`, train, and return the final step and losses."""
    data, cfg = experiment.data, experiment.train
    process_state()  # join the launch first, so that its processes can agree on the set-up's failures
    with failing_together():  # a set-up error on any process stops them all here, reported once
        datasets, objective, resume_from = _set_up(experiment)
    train_data = datasets["train"]
    finished = resume_from is not None and (ckpt.step_of(resume_from) or 0) >= cfg.max_steps
    if experiment.kind == "transformer" and not finished:  # a finished run needs no ids encoded
        train_data = _cached_tokens(experiment, objective.tokenizer, train_data)
    trainer = Trainer(objective, train_data, cfg, val_dataset=datasets.get("val"),
                      collate_fn=partial(collate_segments, num_context=data.num_context),
                      component=experiment.kind, config=experiment, resumed_from=resume_from)
    return trainer.fit()


def _set_up(experiment: Any) -> tuple[dict[str, Any], Any, Any]:
    """The datasets (checked to feed every process), the objective and the checkpoint to resume (or None).

    Reads files only, no collective: every process gets through it, failed or not, to agree on the outcome.
    """
    data, cfg = experiment.data, experiment.train
    resume_from = resume_target(cfg)  # before indexing: a taken or wrong run directory is said at once, alone
    datasets = _datasets(data, cfg)
    if data.stream:
        state = process_state()
        check_share(datasets["train"], state.process_index, state.num_processes, cfg.num_workers)
    if experiment.kind == "transformer":
        _check_actions(experiment, datasets["train"])
    set_seed(cfg.seed)  # the same initial weights on every process
    objective = experiment.build_objective(initialise=resume_from is None)
    if resume_from is not None:  # the frozen tokenizer's weights before it encodes the token cache
        ckpt.load_weights(objective, resume_from)
    return datasets, objective, resume_from


def _datasets(data: Any, cfg: Any) -> dict[str, Any]:
    """The training set (streamed from shards with `data.stream`) and the validation split when there is one."""
    if data.stream:
        if data.val_fraction > 0 and cfg.val_every > 0:
            log.info("data.stream: no validation split (streamed shards are not indexed)")
        return {"train": build_stream(data)}
    splits = ("train", "val") if data.val_fraction > 0 and cfg.val_every > 0 else ("train",)
    return build_datasets(data, splits)


def _cached_tokens(experiment: Any, tokenizer: Any, dataset: Any) -> Any:
    """The training split as pre-encoded ids (`TokenDataset`) when the run allows it, else `dataset` unchanged.

    The first process encodes (or finds) the cache while the others wait, then all read it.
    """
    blocker = experiment.token_cache_blocker()
    if blocker is not None:
        log.info("training from frames, encoding every batch: %s", blocker)
        return dataset
    state = process_state()
    tokenizer.to(state.device)
    with state.main_process_first():
        cache = load_or_build(tokenizer, dataset, experiment.token_cache_dir, experiment.token_cache_stride,
                              device=state.device,
                              precision=experiment.train.mixed_precision, build=state.is_main_process,
                              progress=experiment.train.progress)
    return TokenDataset(dataset, cache)


def _check_actions(experiment: Any, dataset: Any) -> None:
    """Fail early when the transformer's action width or reward head does not fit the data."""
    want, have = experiment.transformer.action_dim, dataset.action_dim
    if want and have != want:
        raise ConfigError(f"transformer.action_dim={want} but the data has "
                          f"{'no actions' if have is None else f'{have}-dim actions'}"
                          f"{'' if have is None else f'; set --transformer.action_dim={have}'}")
    if experiment.transformer.reward_head and not dataset.has_rewards:
        raise ConfigError("transformer.reward_head=true but the data has no rewards")
