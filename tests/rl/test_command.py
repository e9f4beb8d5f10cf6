import json

import pytest

from ivideogpt.cli import build_parser, main
from ivideogpt.commands.rl import build_config


def test_config_from_flags_and_overrides():
    args = build_parser().parse_args(["rl", "--env", "metaworld/plate-slide", "--steps", "1000", "--model-free",
                                      "--set", "agent.lr=3e-4", "--out", "x", "mbpo.horizon=5"])
    cfg = build_config(args)
    assert cfg.total_env_steps == 1000 and cfg.model_free and cfg.agent.lr == 3e-4 and cfg.mbpo.horizon == 5
    assert cfg.env.task == "plate-slide" and cfg.env.num_demos == 5 and cfg.mbpo.init_rollout_batch == 640
    with pytest.raises(ValueError, match="nstep"):
        build_config(build_parser().parse_args(["rl", "--env", "pusht", "agent.nstep=0"]))


def test_config_records_the_world_model_choice():
    tiny = build_config(build_parser().parse_args(["rl", "--env", "pusht", "--tiny"]))
    assert (tiny.mbpo.world_model, tiny.mbpo.tokenizer_preset, tiny.mbpo.transformer_preset) == (
        None, "tokenizer_tiny", "transformer_tiny")
    loaded = build_config(build_parser().parse_args(["rl", "--env", "pusht", "--world-model", "runs/wm"]))
    assert loaded.mbpo.world_model == "runs/wm" and loaded.mbpo.tokenizer_preset == "tokenizer_64"


def test_cli_model_free_tiny_run(tmp_path):
    pytest.importorskip("gym_pusht")
    code = main(["rl", "--env", "pusht", "--tiny", "--model-free", "--steps", "100", "--out", str(tmp_path),
                 "--no-tensorboard"])
    assert code == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["mode"] == "model-free" and summary["env_steps"] == 100
    assert json.loads((tmp_path / "config.json").read_text())["env"]["name"] == "pusht"


@pytest.mark.slow
def test_cli_mbpo_with_tiny_world_model(tmp_path):
    pytest.importorskip("gym_pusht")
    code = main(["rl", "--env", "pusht", "--tiny", "--steps", "100", "--eval-every", "100", "--out", str(tmp_path),
                 "--no-tensorboard"])
    assert code == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["mode"] == "mbpo" and summary["model_transitions"] > 0
    assert (tmp_path / "videos" / "real_vs_imagined_00000100.gif").is_file()


def test_bad_overrides_and_conflicting_flags_are_one_line(capsys):
    for argv, message in ((["--set", "foo.bar=1"], "unknown config key 'foo.bar'"),
                          (["--set", "agent.lr.x=1"], "unknown config key 'agent.lr.x'"),
                          (["--model-free", "--world-model", "runs/wm"], "--world-model has no use with --model-free")):
        assert main(["rl", "--env", "pusht", "--tiny", *argv]) == 2
        assert capsys.readouterr().err.startswith(f"ivideogpt rl: {message}")


def test_a_world_model_from_scratch_starts_from_the_same_weights_for_one_seed():
    pytest.importorskip("gym_pusht")
    import torch

    from ivideogpt.commands.rl import make_world_model

    config = build_config(build_parser().parse_args(["rl", "--env", "pusht", "--tiny", "--seed", "3"]))
    first, second = (make_world_model(config).world_model.transformer.state_dict() for _ in range(2))
    assert all(torch.equal(first[name], second[name]) for name in first)


def test_a_pretrained_world_model_notes_what_differs_from_its_training(caplog):
    pytest.importorskip("gym_pusht")
    import logging
    from pathlib import Path

    from ivideogpt.commands.rl import make_world_model

    shipped = Path(__file__).resolve().parents[2] / "checkpoints" / "pusht"  # 1 context frame, action repeat 3
    config = build_config(build_parser().parse_args(["rl", "--env", "pusht", "--tiny", "--world-model", str(shipped)]))
    with caplog.at_level(logging.WARNING, logger="ivideogpt"):
        model = make_world_model(config)
    assert model.rollout.window == config.mbpo.sequence_length  # the clips MBPO trains it on, not its own 9
    assert "trained with 1 context frame(s); MBPO gives it 2 (mbpo.num_context=1 matches it)" in caplog.text
    assert "frames 3 env steps apart; this env's action repeat is 2" in caplog.text
