"""Policy evaluation: controllers played inside a tiny world model and in Push-T, predicted vs real returns."""

import json
import math

import numpy as np
import pytest

pytest.importorskip("gym_pusht")
pytest.importorskip("scipy")

from ivideogpt import cli  # noqa: E402
from ivideogpt.commands import plan as plan_command  # noqa: E402
from ivideogpt.planning.experiment import (  # noqa: E402
    LoadedWorldModel, PlanSettings, make_controllers, pusht_cem_config,
)
from ivideogpt.planning.loop import HoldStillController, run_episode  # noqa: E402
from ivideogpt.planning.policy_eval import ImaginedPushT, correlations, evaluate_policies  # noqa: E402
from ivideogpt.planning.pusht import agent_position, coverage, make_pusht  # noqa: E402

NEAR_GOAL = {"reset_to_state": [300.0, 400.0, 280.0, 300.0, math.pi / 4]}


def test_correlations() -> None:
    assert correlations([1.0, 2.0, 3.0], [2.0, 4.0, 7.0])["spearman"] == pytest.approx(1.0)
    assert correlations([3.0, 2.0, 1.0], [1.0, 2.0, 3.0])["pearson"] == pytest.approx(-1.0)
    assert all(math.isnan(v) for v in correlations([1.0, 1.0], [1.0, 2.0]).values())  # a constant side
    assert all(math.isnan(v) for v in correlations([1.0], [1.0]).values())


def test_imagined_episode_starts_from_the_real_frame_and_imagines_the_rest(tiny_world_model) -> None:
    env = ImaginedPushT(tiny_world_model, action_low=np.zeros(2), action_high=np.full(2, 512.0))
    real = make_pusht()
    try:
        obs, _ = env.reset(seed=3, options=NEAR_GOAL)
        real_obs, _ = real.reset(seed=3, options=NEAR_GOAL)
        assert np.array_equal(obs["pixels"], real_obs["pixels"])
        result = run_episode(env, HoldStillController(agent_position), seed=3, max_steps=3, options=NEAR_GOAL,
                             coverage=coverage)
        assert result.steps == 3 and result.real.shape == (4, 64, 64, 3) and math.isfinite(result.total_reward)
        assert np.allclose(agent_position(env), NEAR_GOAL["reset_to_state"][:2])  # the simulator was not stepped
    finally:
        env.close()
        real.close()


def test_an_imagined_episode_longer_than_the_training_window_re_anchors_within_it(tiny_world_model) -> None:
    from ivideogpt.world_model import WorldModel

    model = WorldModel(tiny_world_model.tokenizer, tiny_world_model.transformer, seed=0)
    model.window = 3  # as `load_model` sets it: 1 context frame + 2 predicted
    env = ImaginedPushT(model, action_low=np.zeros(2), action_high=np.full(2, 512.0))
    try:
        env.reset(seed=3, options=NEAR_GOAL)
        held = []
        for _ in range(7):
            env.step(np.asarray([300.0, 400.0]))
            held.append(env.model.state.num_context + env.model.state.num_future)
        assert max(held) == 3 and held[:3] == [2, 3, 2]  # never past the window: re-anchored before steps 3, 5, 7
    finally:
        env.close()


def test_evaluate_policies_reports_predicted_and_real_returns(tiny_world_model, tmp_path) -> None:
    settings = PlanSettings(episodes=2, max_steps=3, start="near-goal", videos=1, video_format="gif",
                            controllers=("random", "hold-still", "world-model"))
    cem = pusht_cem_config(horizon=2, candidates=4, elites=2, iterations=1, execute_steps=1)
    loaded = LoadedWorldModel(tiny_world_model, 1, np.zeros(2), np.full(2, 512.0))
    env, imagined = make_pusht(), ImaginedPushT(tiny_world_model, action_low=np.zeros(2), action_high=np.full(2, 512.0))
    report = evaluate_policies(env, imagined, make_controllers(settings, cem, loaded),
                               make_controllers(settings, cem, loaded), settings, tmp_path, log=lambda _: None)
    assert [(r["controller"], r["episode"]) for r in report["episodes"]] == [
        (c, e) for c in ("random", "hold-still", "world-model") for e in range(2)]
    assert all(math.isfinite(r["predicted_return"]) and math.isfinite(r["real_return"]) for r in report["episodes"])
    hold = report["summary"]["hold-still"]
    assert hold["episodes"] == 2 and set(hold) >= {"predicted_return", "real_return", "pearson", "spearman"}
    assert report["all"]["episodes"] == 6
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["summary"].keys() == report["summary"].keys()
    assert (tmp_path / "videos" / "hold-still_episode_000.gif").stat().st_size > 0


def test_evaluate_policy_command(tmp_path, monkeypatch, capsys, tiny_world_model) -> None:
    monkeypatch.setattr(plan_command, "load_world_model",
                        lambda *a, **k: LoadedWorldModel(tiny_world_model, 1, np.zeros(2), np.full(2, 512.0), 2))
    code = cli.main(["evaluate-policy", "--checkpoint", "ckpt", "--episodes", "2", "--max-steps", "2",
                     "--out", str(tmp_path)])
    assert code == 0
    report = json.loads((tmp_path / "results.json").read_text())
    assert set(report["summary"]) == {"random", "hold-still"} and report["settings"]["action_repeat"] == 2
    assert "pearson" in capsys.readouterr().out
    assert cli.main(["evaluate-policy", "--checkpoint", "ckpt", "--controllers", "oracle", "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith("ivideogpt evaluate-policy: --controllers must name")


def test_a_model_needing_an_exact_context_count_starts_from_the_first_frame_repeated(tiny_world_model,
                                                                                      monkeypatch) -> None:
    tokenizer = type(tiny_world_model.tokenizer)
    monkeypatch.setattr(tokenizer, "fixed_context_frames", property(lambda self: 2))  # as a released tokenizer
    env = ImaginedPushT(tiny_world_model, action_low=np.zeros(2), action_high=np.full(2, 512.0))
    try:
        obs, _ = env.reset(seed=3, options=NEAR_GOAL)
        state = env.model.state
        assert state.num_context == 2 and state.actions.shape == (1, 1, 2)
        hold = np.asarray(NEAR_GOAL["reset_to_state"][:2]) / 256.0 - 1  # the agent's position, normalised
        np.testing.assert_allclose(state.actions[0, 0].cpu().numpy(), hold, atol=1e-5)
        assert env.step(np.full(2, 256.0))[0]["pixels"].shape == obs["pixels"].shape
    finally:
        env.close()
