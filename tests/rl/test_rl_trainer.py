import json

import numpy as np
import torch
import pytest

from ivideogpt.rl.trainer import RLConfig, RLTrainer


def test_config_validation():
    with pytest.raises(ValueError, match="total_env_steps"):
        RLConfig.tiny(total_env_steps=101)
    cfg = RLConfig()
    assert (cfg.env.action_repeat, cfg.agent.num_seed_frames, cfg.mbpo.rollout_interval) == (2, 4000, 200)


def test_pusht_model_free_loop(tmp_path):
    pytest.importorskip("gym_pusht")
    cfg = RLConfig.tiny("pusht", model_free=True, tensorboard=False)
    trainer = RLTrainer(cfg, tmp_path)
    summary = trainer.run()
    assert summary["mode"] == "model-free" and summary["model_transitions"] == 0
    # seed: 40 env steps = 20 agent steps; then one update every 2 agent steps of 100
    assert summary["agent_updates"] == 40 and set(trainer.real_fractions) == {1.0}
    assert summary["episodes"] == 5 and summary["real_transitions"] == 100
    assert [e["env_step"] for e in summary["evals"]] == [0, 100, 200]
    assert all(0 <= e["success_rate"] <= 1 for e in summary["evals"])
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert {r["split"] for r in records} == {"train", "eval"}
    assert (tmp_path / "agent.safetensors").is_file() and (tmp_path / "videos" / "eval_00000100.gif").is_file()


def test_pusht_mbpo_loop(tmp_path, stub_model):
    pytest.importorskip("gym_pusht")
    cfg = RLConfig.tiny("pusht", total_env_steps=200, tensorboard=False)
    trainer = RLTrainer(cfg, tmp_path, model=stub_model)
    summary = trainer.run()
    mbpo = trainer.mbpo
    assert summary["mode"] == "mbpo"
    # MBPO starts at 40 env steps: init rollouts (8) then 4 every 20 env steps (60, 80, ..., 180)
    assert mbpo.events["rollout"] == list(range(40, 200, 20))
    assert len(mbpo.model_buffer.segments) == 8 + 4 * 7
    assert len(mbpo.model_buffer) == (8 + 4 * 7) * cfg.mbpo.horizon
    assert mbpo.events["transformer"][:2] == [40, 40] and mbpo.events["transformer"][2:] == list(range(44, 200, 4))
    assert mbpo.events["tokenizer"][2:] == list(range(48, 200, 8))
    assert set(trainer.real_fractions) == {0.5}
    rewards = np.concatenate([s.rewards[s.history:] for s in mbpo.model_buffer.segments])
    actions = np.concatenate([s.actions[s.history:] for s in mbpo.model_buffer.segments])
    np.testing.assert_allclose(rewards, actions.sum(-1), atol=1e-5)  # the stub's reward is the action sum
    videos = sorted(p.name for p in (tmp_path / "videos").iterdir())
    assert "real_vs_imagined_00000100.gif" in videos


@pytest.mark.slow
def test_metaworld_mbpo_loop(tmp_path, stub_model):
    pytest.importorskip("metaworld")
    cfg = RLConfig.tiny("metaworld/button-press-topdown-wall", total_env_steps=200, eval_every=200,
                        tensorboard=False)
    trainer = RLTrainer(cfg, tmp_path, model=stub_model)
    summary = trainer.run()
    assert summary["demonstrations"] == 1 and summary["episodes"] == 2
    assert summary["real_transitions"] == 50 + 100  # one 50-agent-step demo + two episodes
    assert trainer.mbpo.events["rollout"] == list(range(40, 200, 20))
    assert len(trainer.real.segments[0].frames) == 51 and trainer.real.segments[0].rewards.max() >= 10
    assert set(trainer.real_fractions) == {0.5}


class Killed(Exception):
    """Stands in for SIGKILL: the run stops mid-episode, leaving only what is on disk."""


def killing_env_factory(after_steps: int):
    from ivideogpt.envs.rl_wrappers import make_rl_env

    def factory(config, seed):
        env = make_rl_env(config, seed)
        step, calls = env.step, [0]

        def step_then_die(action):
            calls[0] += 1
            if calls[0] > after_steps:
                raise Killed
            return step(action)

        env.step = step_then_die
        return env

    return factory


def comparable_records(out):
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k != "fps"} for r in records]


def scalars(out):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(out / "tensorboard")).Reload()
    return {tag: [(e.step, round(e.value, 6)) for e in events.Scalars(tag)]
            for tag in events.Tags()["scalars"] if not tag.endswith("/fps")}


@pytest.mark.parametrize("mode", ["model-free", "mbpo"])
def test_resume_after_a_kill_continues_exactly(tmp_path, stub_model, mode):
    pytest.importorskip("gym_pusht")
    from safetensors.torch import load_file

    cfg = RLConfig.tiny("pusht", model_free=mode == "model-free", tensorboard=mode == "model-free",
                        checkpoint_every=40)
    model = lambda: None if mode == "model-free" else type(stub_model)()  # noqa: E731
    whole = RLTrainer(cfg, tmp_path / "whole", model=model()).run()

    with pytest.raises(Killed):  # 70 agent steps = 140 env steps: the last checkpoint is at 120
        RLTrainer(cfg, tmp_path / "killed", model=model(), env_factory=killing_env_factory(70)).run()
    assert sorted(p.name for p in (tmp_path / "killed" / "checkpoints").glob("step_*")) == ["step_000120"]
    with pytest.raises(FileExistsError, match="--resume"):
        RLTrainer(cfg, tmp_path / "killed", model=model())
    resumed_trainer = RLTrainer(cfg, tmp_path / "killed", model=model(), resume=True)
    resumed = resumed_trainer.run()

    assert comparable_records(tmp_path / "killed") == comparable_records(tmp_path / "whole")
    for key in ("episodes", "agent_updates", "real_transitions", "model_transitions", "evals"):
        assert resumed[key] == whole[key], key
    a, b = load_file(tmp_path / "whole" / "agent.safetensors"), load_file(tmp_path / "killed" / "agent.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    if mode == "mbpo":
        assert resumed_trainer.mbpo.events["rollout"] == list(range(40, 200, 20))
    else:  # TensorBoard holds the same scalars too, those logged at the checkpoint's own step included
        assert scalars(tmp_path / "killed") == scalars(tmp_path / "whole")


def test_resume_refuses_a_changed_config_or_a_missing_checkpoint(tmp_path):
    pytest.importorskip("gym_pusht")
    with pytest.raises(FileNotFoundError, match="nothing to resume"):
        RLTrainer(RLConfig.tiny("pusht", model_free=True, tensorboard=False), tmp_path, resume=True)
    cfg = RLConfig.tiny("pusht", model_free=True, tensorboard=False, checkpoint_every=40, total_env_steps=80,
                        eval_episodes=0)
    RLTrainer(cfg, tmp_path).run()
    changed = RLConfig.tiny("pusht", model_free=True, tensorboard=False, checkpoint_every=40, total_env_steps=80,
                            eval_episodes=0, seed=2)
    with pytest.raises(ValueError, match="seed differ"):
        RLTrainer(changed, tmp_path, resume=True)
    shorter = RLConfig.tiny("pusht", model_free=True, tensorboard=False, checkpoint_every=40, total_env_steps=40,
                            eval_episodes=0)
    with pytest.raises(ValueError, match="checkpoint is at env step 80; --steps 40 would end before it"):
        RLTrainer(shorter, tmp_path, resume=True)
    longer = RLConfig.tiny("pusht", model_free=True, tensorboard=False, checkpoint_every=40, total_env_steps=120,
                           eval_episodes=0, video_format="mp4")  # operational fields may change too
    assert RLTrainer(longer, tmp_path, resume=True).run()["episodes"] == 3


def test_a_new_run_never_appends_to_an_earlier_runs_logs(tmp_path):
    pytest.importorskip("gym_pusht")
    cfg = RLConfig.tiny("pusht", model_free=True, tensorboard=False, checkpoint_every=0, total_env_steps=40,
                        eval_episodes=0)  # no checkpoint, as a short run or one killed before its first
    RLTrainer(cfg, tmp_path).run()
    before = (tmp_path / "metrics.jsonl").read_text()
    with pytest.raises(FileExistsError, match="earlier run's logs .* no checkpoint to resume from"):
        RLTrainer(cfg, tmp_path)
    assert (tmp_path / "metrics.jsonl").read_text() == before
