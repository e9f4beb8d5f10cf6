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

    def fake_load(checkpoint, device, context_frames=None, temperature=1.0):
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


def test_plan_command_needs_checkpoint_for_world_model(tmp_path) -> None:
    with pytest.raises(SystemExit, match="--checkpoint"):
        cli.main(["plan", "--out", str(tmp_path), *TINY])
