"""`ivideogpt plan` end to end on tiny settings."""

import json

import numpy as np
import pytest

pytest.importorskip("gym_pusht")

from ivideogpt import cli  # noqa: E402
from ivideogpt.commands import plan as plan_command  # noqa: E402
from ivideogpt.planning.experiment import LoadedWorldModel  # noqa: E402

TINY = ["--episodes", "1", "--max-steps", "2", "--horizon", "2", "--candidates", "4", "--elites", "2",
        "--iterations", "1", "--execute-steps", "1", "--videos", "1", "--video-format", "mp4"]


def test_plan_command_oracle_and_random(tmp_path, capsys) -> None:
    code = cli.main(["plan", "--env", "pusht", "--controllers", "random,oracle", "--out", str(tmp_path), *TINY])
    assert code == 0
    report = json.loads((tmp_path / "results.json").read_text())
    assert set(report["summary"]) == {"random", "oracle"} and report["cem"]["candidates"] == 4
    assert (tmp_path / "videos" / "episode_000.mp4").stat().st_size > 0
    assert "success_rate" in capsys.readouterr().out


def test_plan_command_with_world_model_checkpoint(tmp_path, monkeypatch, tiny_world_model) -> None:
    loaded: list[str] = []

    def fake_load(checkpoint, device, context_frames=None, temperature=1.0, precision="fp32"):
        loaded.append((checkpoint, temperature))
        return LoadedWorldModel(tiny_world_model, 2, np.zeros(2), np.full(2, 512.0))

    monkeypatch.setattr(plan_command, "load_world_model", fake_load)
    code = cli.main(["plan", "--checkpoint", "ckpt", "--controllers", "world-model", "--out", str(tmp_path),
                     "--temperature", "0.5", *TINY])
    assert code == 0 and loaded == [("ckpt", 0.5)]
    report = json.loads((tmp_path / "results.json").read_text())
    assert report["summary"]["world-model"]["steps"] == 2
    assert report["video_panels"] == ["world-model real", "world-model imagined"]
    assert report["summary"]["world-model"]["episodes"] == 1
    assert report["world_model"] == {"checkpoint": "ckpt", "temperature": 0.5, "context_frames": 2,
                                     "precision": "fp32"}


def test_load_world_model_puts_the_model_on_the_asked_device(monkeypatch, tiny_world_model) -> None:
    from ivideogpt import train
    from ivideogpt.world_model import WorldModel

    moved_to: list[str] = []
    monkeypatch.setattr(train, "load_model", lambda checkpoint: tiny_world_model)
    monkeypatch.setattr(plan_command, "training_action_facts", lambda checkpoint: (None, None, None))
    monkeypatch.setattr(WorldModel, "to", lambda self, device: moved_to.append(device) or self)
    loaded = plan_command.load_world_model("ckpt", "cuda:1", context_frames=2)
    assert moved_to == ["cuda:1"] and loaded.model is tiny_world_model


@pytest.mark.parametrize("flags, message", [(["--context-frames", "0"], "--context-frames must be >= 1, got 0"),
                                             (["--context-frames", "-1"], "--context-frames must be >= 1, got -1"),
                                             (["--temperature", "-1"], "--temperature must be >= 0, got -1.0")])
def test_plan_refuses_bad_world_model_flags_in_one_line(tmp_path, capsys, flags, message) -> None:
    assert cli.main(["plan", "--checkpoint", "checkpoints/pusht", "--out", str(tmp_path), *flags, *TINY]) == 2
    assert capsys.readouterr().err.strip() == f"ivideogpt plan: {message}"


def test_plan_and_evaluate_policy_refuse_a_horizon_past_the_training_window(tmp_path, capsys) -> None:
    small = ["--episodes", "1", "--max-steps", "1", "--candidates", "2", "--elites", "1", "--iterations", "1",
             "--controllers", "world-model"]
    for command in ("plan", "evaluate-policy"):
        assert cli.main([command, "--checkpoint", "checkpoints/pusht", "--out", str(tmp_path), "--horizon", "9",
                         *small]) == 2
        assert capsys.readouterr().err.strip() == (
            f"ivideogpt {command}: --horizon 9 after 1 context frame(s) goes past the model's 9-frame training "
            "window: pass --horizon 8 or less")
    assert cli.main(["plan", "--checkpoint", "checkpoints/pusht", "--out", str(tmp_path), "--horizon", "8",
                     *small]) == 0


def test_plan_command_needs_checkpoint_for_world_model(tmp_path, capsys) -> None:
    assert cli.main(["plan", "--out", str(tmp_path), *TINY]) == 2
    assert capsys.readouterr().err.startswith("ivideogpt plan: --checkpoint DIR is needed")
    assert cli.main(["plan", "--out", str(tmp_path), "--controllers", "random", "--action-repeat", "0", *TINY]) == 2
    assert capsys.readouterr().err.strip() == "ivideogpt plan: --action-repeat must be >= 1, got 0"


def test_training_action_facts_come_from_the_training_data(tmp_path, monkeypatch) -> None:
    from types import SimpleNamespace

    from ivideogpt.data.actions import write_metadata
    from ivideogpt.data.config import DataConfig, SourceConfig
    from ivideogpt.train import checkpoint, experiments

    data = tmp_path / "data"
    write_metadata(data, {"action_repeat": 3, "action_space": {"low": [0.0, 0.0], "high": [512.0, 512.0]}})
    configs = {"with": DataConfig(sources=[SourceConfig(name="pusht", path=str(data))]),
               "raw": DataConfig(sources=[SourceConfig(name="pusht", path=str(data), normalize_actions=False)]),
               "elsewhere": DataConfig(sources=[SourceConfig(name="pusht", path=str(tmp_path / "gone"))])}
    monkeypatch.setattr(checkpoint, "resolve", lambda path: path)
    monkeypatch.setattr(experiments, "read_experiment", lambda path, strict=True: SimpleNamespace(data=configs[str(path)]))
    low, high, repeat = plan_command.training_action_facts("with")
    assert repeat == 3 and low.tolist() == [0.0, 0.0] and high.tolist() == [512.0, 512.0]
    assert plan_command.training_action_facts("raw") == (None, None, 3)
    low, high, repeat = plan_command.training_action_facts("elsewhere")  # normalised, metadata not found
    assert repeat is None and high.tolist() == [512.0, 512.0]
    loaded = LoadedWorldModel(None, action_repeat=3)
    assert plan_command.resolve_action_repeat(None, loaded) == 3 and plan_command.resolve_action_repeat(2, loaded) == 2
    assert plan_command.resolve_action_repeat(None, None) == 1


def test_plan_command_goal_lpips_fails_clearly_without_weights(tmp_path, capsys) -> None:
    assert cli.main(["plan", "--controllers", "oracle", "--objective", "goal", "--goal-metric", "lpips",
                     "--lpips", str(tmp_path / "missing.pth"), "--out", str(tmp_path), *TINY]) == 2
    assert capsys.readouterr().err.startswith("ivideogpt plan: VGG16 weights for LPIPS not found")
