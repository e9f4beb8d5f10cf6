"""The one config surface: YAML file + dotted overrides into dataclasses, for TrainConfig and experiments."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from ivideogpt.configuration import ConfigError, load_config, parse_override, read_tree, save_config
from ivideogpt.train.config import TrainConfig
from ivideogpt.train.checkpoint import resolve
from ivideogpt.train.experiments import FROM_TOKENIZER, TokenizerExperiment, load_experiment, read_experiment

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def _yaml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def test_file_then_dotted_overrides(tmp_path: Path) -> None:
    path = _yaml(tmp_path, "lr: 1e-3\nbetas: [0.8, 0.95]\nschedule: cosine\nmixed_precision: no\n")
    cfg = load_config(TrainConfig, path, ["--lr=2e-4", "max_steps=50", "grad_clip=null"])
    assert cfg.lr == pytest.approx(2e-4) and cfg.max_steps == 50 and cfg.grad_clip is None
    assert cfg.betas == (0.8, 0.95) and cfg.schedule == "cosine"
    assert cfg.mixed_precision == "no"  # YAML's bare `no` (false) means "no"


@pytest.mark.parametrize("override, message", [
    ("lrr=1e-4", "unknown config key.*lrr"),
    ("max_steps=ten", "max_steps: expected an integer"),
    ("max_steps=1.5", "max_steps: expected an integer"),
    ("lr=fast", "lr: expected a number"),
    ("schedule=linear", "schedule.*not one of"),
    ("betas=[0.9]", "betas: expected 2 items"),
    ("batch_size=0", "batch_size must be > 0"),
    ("batch_size=6", "batch_size=6 is not divisible by train.grad_accum=4"),
    ("lr", "must look like key.sub=value"),
])
def test_bad_values_name_the_field(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(TrainConfig, None, ["grad_accum=4", "batch_size=8", override])


def test_parse_override_reads_yaml_values() -> None:
    assert parse_override("--train.betas=[0.9, 0.95]") == ("train.betas", [0.9, 0.95])
    assert parse_override("train.resume=") == ("train.resume", "")


def test_micro_batch_must_split_over_processes() -> None:
    cfg = TrainConfig(batch_size=12, grad_accum=2)
    assert cfg.micro_batch(2) == 3
    with pytest.raises(ValueError, match="does not split over 4 process"):
        cfg.micro_batch(4)


def test_experiment_layers_preset_file_and_flags(tmp_path: Path) -> None:
    path = _yaml(tmp_path, "kind: tokenizer\npreset: tokenizer_tiny\ntokenizer: {codebook_size: 64}\n"
                           "train: {lr: 3e-4}\n")
    experiment = load_experiment("tokenizer", path, ["--tokenizer.embed_dim=8", "--train.max_steps=7"])
    assert isinstance(experiment, TokenizerExperiment)
    assert experiment.tokenizer.down_channels == (16, 32, 32)  # from the preset
    assert experiment.tokenizer.codebook_size == 64 and experiment.tokenizer.embed_dim == 8
    assert experiment.train.lr == pytest.approx(3e-4) and experiment.train.max_steps == 7


def test_experiment_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown config key.*tokenizer.codebok_size"):
        load_experiment("tokenizer", None, ["tokenizer.codebok_size=3"])
    with pytest.raises(ConfigError, match="not a tokenizer preset"):
        load_experiment("tokenizer", None, ["preset=transformer_tiny"])
    with pytest.raises(ConfigError, match="unknown preset"):
        load_experiment("transformer", None, ["preset=transformer_huge"])
    with pytest.raises(ConfigError, match="yaml describes a 'tokenizer' run, not 'transformer'"):
        load_experiment("transformer", _yaml(tmp_path, "kind: tokenizer\n"))
    with pytest.raises(ConfigError, match="^the overrides describe a 'tokenizer' run, not 'transformer'"):
        load_experiment("transformer", None, ["kind=tokenizer"])
    with pytest.raises(ConfigError, match="data.resolution=32 differs"):
        load_experiment("tokenizer", None, ["data.resolution=32"])
    with pytest.raises(ConfigError, match="does not exist"):
        load_experiment("tokenizer", tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="is a folder; a YAML config file is expected"):
        load_experiment("tokenizer", tmp_path)
    (tmp_path / "episode.npz").write_bytes(b"PK\x03\x04\xff\xfe binary")
    with pytest.raises(ConfigError, match="episode.npz is not valid YAML"):
        load_experiment("tokenizer", tmp_path / "episode.npz")
    with pytest.raises(ConfigError, match=r"^train.grad_clip must be > 0 or null"):  # the section named once
        load_experiment("tokenizer", None, ["train.grad_clip=0"])


def test_sections_can_include_another_file(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "mix.yaml").write_text("segment_length: 9\nnum_context: 2\nsources: [{name: a, path: a}]\n")
    path = _yaml(tmp_path, "kind: tokenizer\ndata: {include: data/mix.yaml, num_context: 3}\n")
    data = load_experiment("tokenizer", path, ["data.segment_length=10"]).data
    assert (data.segment_length, data.num_context, data.sources[0].name) == (10, 3, "a")


def test_resolved_config_round_trips_through_yaml(tmp_path: Path) -> None:
    experiment = load_experiment("tokenizer", CONFIGS / "tokenizer_cpu.yaml", ["train.lr=5e-4"])
    save_config(experiment, tmp_path / "config.yaml")
    assert read_experiment(tmp_path) == experiment
    assert "include" not in read_tree(tmp_path / "config.yaml")["data"]


@pytest.mark.parametrize("name", sorted(p.stem for p in CONFIGS.glob("*.yaml")))
def test_shipped_recipes_load(name: str) -> None:
    kind = "tokenizer" if name.startswith("tokenizer") else "transformer"
    experiment = load_experiment(kind, CONFIGS / f"{name}.yaml")
    cpu = name.endswith("_cpu")
    assert experiment.train.mixed_precision == ("no" if cpu else "bf16")
    if not cpu:  # paper recipes, Table 3
        assert experiment.train.batch_size == 64 and experiment.train.grad_clip == 1.0
        expected = (500, "constant", 0.0) if kind == "tokenizer" else (5000, "cosine", 0.01)
        assert (experiment.train.warmup_steps, experiment.train.schedule, experiment.train.weight_decay) == expected


def test_the_continued_reference_run_starts_from_the_shipped_model_and_holds_out_its_episodes() -> None:
    root = CONFIGS.parent
    continued = load_experiment("transformer", root / "docs" / "reference" / "continued" / "config.yaml")
    shipped = read_experiment(resolve(root / "checkpoints" / "pusht"))
    assert continued.tokenizer_checkpoint == continued.init_from == "checkpoints/pusht"
    assert continued.data.heldout_episodes == shipped.data.heldout_episodes
    assert (continued.data.seed, continued.data.val_fraction) == (shipped.data.seed, shipped.data.val_fraction)
    decided_by_the_tokenizer = {name: getattr(continued.transformer, name) for name in FROM_TOKENIZER}
    assert continued.transformer == dataclasses.replace(shipped.transformer, **decided_by_the_tokenizer)


def test_starting_from_weights_of_another_architecture_is_a_clear_error(monkeypatch) -> None:
    monkeypatch.chdir(CONFIGS.parent)  # the continued run names checkpoints/pusht relative to the repository
    wider = load_experiment("transformer", Path("docs/reference/continued/config.yaml"),
                            ["transformer.hidden_size=64", "transformer.ffn_size=256", "transformer.num_heads=1"])
    with pytest.raises(ValueError, match=r"pusht/step_\d+ does not fit this WorldModelTransformer .*\) there, \("):
        wider.build_objective()


def test_field_docs_come_from_the_dataclass_source() -> None:
    from dataclasses import dataclass

    from ivideogpt.configuration import field_docs

    @dataclass
    class Example:
        plain: int = 1
        commented: int = 2  # a trailing comment
        continued: str = "#"  # one line
        #   and its continuation
        documented: float = 0.5
        """An attribute docstring."""

    assert field_docs(Example) == {"commented": "a trailing comment", "continued": "one line and its continuation",
                                   "documented": "An attribute docstring."}


def test_transformer_runs_refuse_what_the_tokenizer_decides(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("kind: transformer\ntokenizer_checkpoint: tok\ntransformer: {codebook_size: 64}\n")
    with pytest.raises(ConfigError, match="transformer.codebook_size comes from the tokenizer"):
        load_experiment("transformer", path)
    path.write_text("kind: transformer\ntokenizer_checkpoint: tok\n")
    with pytest.raises(ConfigError, match="transformer.future_grid comes from the tokenizer"):
        load_experiment("transformer", path, ["transformer.future_grid=[2,2]"])


def test_old_configs_keep_the_tokenizer_loss_in_the_tokenizer_section(tmp_path: Path) -> None:
    path = tmp_path / "old.yaml"
    path.write_text("kind: tokenizer\npreset: tokenizer_tiny\ntokenizer: {l2_weight: 1.0, perceptual_weight: 0.5}\n")
    experiment = load_experiment("tokenizer", path)
    assert (experiment.objective.l2_weight, experiment.objective.perceptual_weight) == (1.0, 0.5)
    assert load_experiment("tokenizer", None, ["preset=tokenizer_cpu"]).objective.l1_weight == 0.0  # preset recipe
