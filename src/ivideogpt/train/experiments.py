"""Experiment configs for `ivideogpt train tokenizer|transformer`: load them, read them back from checkpoints.

An experiment = a model preset (its section layered on the preset's values) + data + training.
The resolved experiment is saved as `config.yaml` in every checkpoint, so a checkpoint directory
alone rebuilds its model: a transformer experiment embeds the tokenizer config it was trained with.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

from torch import nn

from ivideogpt.configuration import ConfigError, config_to_dict, expand_includes, from_dict, merge_tree, read_tree
from ivideogpt.data.config import DataConfig
from ivideogpt.tokenizer.config import TokenizerConfig
from ivideogpt.tokenizer.objective import LOSS_FIELDS, TokenizerObjectiveConfig, preset_objective
from ivideogpt.train import checkpoint as ckpt
from ivideogpt.train import memory
from ivideogpt.train.config import TrainConfig
from ivideogpt.transformer.config import TransformerConfig
from ivideogpt.transformer.objective import TransformerObjectiveConfig

log = logging.getLogger(__name__)


@dataclass
class TokenizerExperiment:
    """Train a tokenizer: `preset` names the architecture, `tokenizer` holds its (overridable) fields."""

    kind: Literal["tokenizer"] = "tokenizer"
    preset: str = "tokenizer_cpu"  # a tokenizer preset of `ivideogpt describe`
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)  # starts from the preset's values
    objective: TokenizerObjectiveConfig = field(default_factory=TokenizerObjectiveConfig)  # the loss; starts from
    #   the preset's recipe (tokenizer_cpu and tokenizer_tiny skip the perceptual loss)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    init_from: str | None = None  # tokenizer checkpoint whose weights start this run (fine-tuning)

    def __post_init__(self) -> None:
        if self.data.resolution != self.tokenizer.resolution:
            raise ValueError(f"data.resolution={self.data.resolution} differs from "
                             f"tokenizer.resolution={self.tokenizer.resolution}")

    def build_objective(self, initialise: bool = True) -> nn.Module:
        """The TokenizerObjective to train (weights from `init_from` when `initialise`)."""
        from ivideogpt.tokenizer.objective import TokenizerObjective

        self.objective.check_weights_path("objective")
        memory.check_codebook(self.tokenizer, shards=memory.sharded_over(self.train))
        objective = TokenizerObjective(self.tokenizer, loss=self.objective)
        if initialise and self.init_from:
            objective.tokenizer.load_state_dict(ckpt.weights_for(objective.tokenizer, self.init_from, "tokenizer."))
        return objective


@dataclass
class TransformerExperiment:
    """Train the world-model transformer on ids from a trained tokenizer (or both, see `objective.mode`)."""

    kind: Literal["transformer"] = "transformer"
    tokenizer_checkpoint: str | None = None  # trained tokenizer: a checkpoint or run directory (a tokenizer's or a
    #   world model's, e.g. one written by `ivideogpt import-official`)
    tokenizer: TokenizerConfig | None = None  # filled from tokenizer_checkpoint when the run starts
    tokenizer_objective: TokenizerObjectiveConfig | None = None  # the loss the tokenizer was trained with (filled
    #   from tokenizer_checkpoint when unset): what trains it further when objective.mode is full or tokenizer
    preset: str = "transformer_tiny"  # a transformer preset of `ivideogpt describe`
    transformer: TransformerConfig = field(default_factory=TransformerConfig)  # starts from the preset's values;
    #   codebook_size and token grids come from the tokenizer (setting them is an error)
    objective: TransformerObjectiveConfig = field(default_factory=TransformerObjectiveConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    init_from: str | None = None  # transformer checkpoint to start from (e.g. action-free -> action-conditioned)
    token_cache: bool = True  # encode every training clip once and train from the stored ids
    #   (used when the tokenizer is frozen and the data is neither augmented, sub-sampled nor streamed)
    token_cache_dir: str | None = None  # default: $IVIDEOGPT_CACHE_DIR/tokens or ~/.cache/ivideogpt/tokens
    token_cache_stride: int = 1  # encode every k-th start frame of each episode (k times faster to build)

    def __post_init__(self) -> None:
        if self.token_cache_stride < 1:
            raise ValueError(f"token_cache_stride must be >= 1, got {self.token_cache_stride}")

    def token_cache_blocker(self) -> str | None:
        """Why this run cannot train from cached ids, or None when it can."""
        if not self.token_cache:
            return "token_cache is off"
        if self.objective.mode != "transformer":
            return f"objective.mode={self.objective.mode!r} trains the tokenizer too"
        if self.data.augment:
            return "data.augment draws new pixels for every item"
        if self.data.sampled_future:
            return "data.sampled_future draws a new subset of frames for every item"
        if self.data.stream:
            return "data.stream reads the shards as they come"
        return None

    def build_objective(self, initialise: bool = True) -> nn.Module:
        """The TransformerObjective; the tokenizer config comes from `tokenizer_checkpoint` unless already set,
        its weights too when `initialise` (a resumed run restores every weight from its own checkpoint)."""
        from ivideogpt.transformer.objective import TransformerObjective

        if self.tokenizer_checkpoint and (initialise or self.tokenizer is None):
            source = ckpt.resolve(self.tokenizer_checkpoint)
            saved = read_experiment(source)
            if saved.tokenizer is None:  # a world model's checkpoint carries the tokenizer it was trained with
                raise ConfigError(f"tokenizer_checkpoint {source} holds a {saved.kind} run without a tokenizer")
            self.tokenizer = saved.tokenizer
            if self.tokenizer_objective is None:
                self.tokenizer_objective = saved.objective if saved.kind == "tokenizer" else saved.tokenizer_objective
        if self.tokenizer is None:
            raise ConfigError("a transformer run needs tokenizer_checkpoint (a trained tokenizer's run directory)")
        tokenizer = self.tokenizer.build()
        if initialise and self.tokenizer_checkpoint:  # a resumed run gets every weight from its own checkpoint
            tokenizer.load_state_dict(ckpt.read_weights(source, "tokenizer."))
        if self.data.resolution != self.tokenizer.resolution:
            raise ConfigError(f"data.resolution={self.data.resolution} differs from the tokenizer's "
                              f"{self.tokenizer.resolution}")
        facts = tokenizer.describe()
        self.transformer = dataclasses.replace(self.transformer, codebook_size=facts["codebook_size"],
                                               context_grid=tuple(facts["context_tokens"]),
                                               future_grid=tuple(facts["future_tokens"]))
        shards = memory.sharded_over(self.train)
        memory.check_vocabulary(self.transformer, trained=self.objective.mode != "tokenizer", shards=shards)
        if self.objective.mode != "transformer":  # the tokenizer trains too
            memory.check_codebook(self.tokenizer, shards=shards)
        transformer = self.transformer.build()
        if initialise and self.init_from:
            transformer.load_pretrained(ckpt.weights_for(transformer, self.init_from, "transformer."))
        tokenizer_objective = None
        if self.objective.mode != "transformer":
            from ivideogpt.tokenizer.objective import TokenizerObjective

            if self.tokenizer_objective is not None:
                self.tokenizer_objective.check_weights_path("tokenizer_objective")
            tokenizer_objective = TokenizerObjective(self.tokenizer, tokenizer, loss=self.tokenizer_objective)
        return TransformerObjective(transformer, tokenizer, self.objective, tokenizer_objective)


Experiment = Union[TokenizerExperiment, TransformerExperiment]
EXPERIMENTS: dict[str, type] = {"tokenizer": TokenizerExperiment, "transformer": TransformerExperiment}
FROM_TOKENIZER = ("codebook_size", "context_grid", "future_grid")  # transformer fields the tokenizer decides
_SECTIONS = {"tokenizer": (TokenizerConfig, "tokenizer"), "transformer": (TransformerConfig, "transformer")}


def load_experiment(kind: str, path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Any:
    """Defaults, the preset's model section, the YAML file, then dotted overrides -> a validated experiment.

    A section may start from another file: `data: {include: data/oxe_pretrain.yaml, sampled_future: 6}`.
    """
    if kind not in EXPERIMENTS:
        raise ConfigError(f"unknown experiment kind {kind!r}; choose one of {sorted(EXPERIMENTS)}")
    cls = EXPERIMENTS[kind]
    tree = expand_includes(read_tree(path), Path(path).parent if path is not None else Path("."))
    _refuse_tokenizer_facts(kind, tree, overrides)
    tree = read_tree(None, overrides, base=tree)
    if tree.setdefault("kind", kind) != kind:
        raise ConfigError(f"{f'{path} describes' if path else 'the overrides describe'} a {tree['kind']!r} run, "
                          f"not {kind!r}")
    tree = _split_tokenizer_loss(tree)
    model_cls, section = _SECTIONS[kind]
    preset = tree.get("preset", cls.preset)
    if not isinstance(preset, str):
        raise ConfigError(f"preset: expected a preset name, got {preset!r}")
    from ivideogpt.presets import PRESETS, get_preset

    try:
        base = get_preset(preset)
    except ValueError as error:
        raise ConfigError(f"preset: {error}") from error
    if not isinstance(base, model_cls):
        names = [n for n in PRESETS if n.startswith(kind)]
        raise ConfigError(f"preset: {preset!r} is not a {kind} preset; choose one of {', '.join(names)}")
    user = tree.get(section) or {}
    if not isinstance(user, dict):
        raise ConfigError(f"{section}: expected a mapping of {model_cls.__name__} fields, got {user!r}")
    tree[section] = merge_tree(config_to_dict(base), user)
    if kind == "tokenizer":
        tree["objective"] = merge_tree(config_to_dict(preset_objective(preset)), tree.get("objective") or {})
    defaults = config_to_dict(cls())
    return from_dict(cls, merge_tree(defaults, tree))


def _refuse_tokenizer_facts(kind: str, tree: dict[str, Any], overrides: list[str] | tuple[str, ...]) -> None:
    """`transformer.codebook_size` and the token grids are the tokenizer's: a transformer run may not set them
    (a config written by a run records them beside the `tokenizer:` they came from, and may)."""
    if kind != "transformer":
        return
    given = [o.split("=", 1)[0].removeprefix("transformer.") for o in overrides if o.startswith("transformer.")]
    section = tree.get("transformer")
    if tree.get("tokenizer") is None and isinstance(section, dict):
        given += list(section)
    clash = sorted(set(given) & set(FROM_TOKENIZER))
    if clash:
        raise ConfigError(f"transformer.{clash[0]} comes from the tokenizer (tokenizer_checkpoint); remove it from "
                          f"the config and the flags (the tokenizer decides {', '.join(FROM_TOKENIZER)})")


def _split_tokenizer_loss(tree: dict[str, Any]) -> dict[str, Any]:
    """Configs written before the tokenizer's loss had a section of its own (old checkpoints included) kept it
    in `tokenizer:`; move it to `objective:` of a tokenizer run, `tokenizer_objective:` of a transformer run."""
    section = tree.get("tokenizer")
    loss = {name: section.pop(name) for name in list(section) if name in LOSS_FIELDS} if isinstance(section, dict) else {}
    if loss:
        target = "objective" if tree.get("kind") == "tokenizer" else "tokenizer_objective"
        tree[target] = merge_tree(loss, tree.get(target) or {})
    return tree


def read_experiment(checkpoint: str | Path, strict: bool = True) -> Any:
    """The experiment saved in a checkpoint directory's config.yaml.

    With `strict=False` (rebuilding a model for inference), `data` and `train` keys that this
    version no longer knows are dropped with a warning instead of failing.
    """
    path = Path(checkpoint) / "config.yaml"
    tree = read_tree(path)
    kind = tree.get("kind")
    if kind not in EXPERIMENTS:
        raise ConfigError(f"{path} has no known `kind` (got {kind!r}); it was not written by `ivideogpt train`")
    tree = _split_tokenizer_loss(tree)
    if not strict:
        for name, section_cls in (("data", DataConfig), ("train", TrainConfig)):
            known = {f.name for f in dataclasses.fields(section_cls)}
            stale = sorted(set(tree.get(name) or {}) - known)
            if stale:
                log.warning("%s: ignoring %s keys this version does not know: %s", path, name, ", ".join(stale))
                tree[name] = {k: v for k, v in tree[name].items() if k in known}
    return from_dict(EXPERIMENTS[kind], merge_tree(config_to_dict(EXPERIMENTS[kind]()), tree))
