"""The RL loop: DrQ-v2 on a pixel environment, model-free or inside MBPO with a world model.

Counting: `env_step` counts simulator steps (frames), as the paper's intervals and episode
lengths do; the agent acts every `action_repeat` of them (`agent_step`).
"""

from __future__ import annotations

import copy
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from ivideogpt.configuration import config_to_dict, merge_tree
from ivideogpt.envs.rl_wrappers import EnvConfig, make_rl_env
from ivideogpt.media import side_by_side, write_video
from ivideogpt.rl import checkpoint as rl_checkpoint
from ivideogpt.rl.drqv2 import DrQV2Agent, DrQV2Config
from ivideogpt.rl.imagination import ImaginationModel, imagine
from ivideogpt.rl.logger import RLLogger
from ivideogpt.rl.mbpo import MBPO, MBPOConfig
from ivideogpt.rl.replay import SegmentReplay
from ivideogpt.train.rng import capture_rng, restore_rng

log = logging.getLogger(__name__)


@dataclass
class RLConfig:
    """One RL run. `total_env_steps` and `eval_every` count env steps."""

    env: EnvConfig = field(default_factory=EnvConfig)
    agent: DrQV2Config = field(default_factory=DrQV2Config)
    mbpo: MBPOConfig = field(default_factory=MBPOConfig)
    model_free: bool = False
    total_env_steps: int = 260_000
    eval_every: int = 2000
    eval_episodes: int = 20
    seed: int = 1
    video_format: str = "gif"
    tensorboard: bool = True
    device: str = "cpu"
    checkpoint_every: int = 10_000  # env steps between resumable checkpoints (at episode ends); 0 = none

    def __post_init__(self) -> None:
        ar = self.env.action_repeat
        for name in ("total_env_steps", "eval_every"):
            value = getattr(self, name)
            if value <= 0 or value % ar:
                raise ValueError(f"RLConfig.{name} must be a positive multiple of action_repeat ({ar}), got {value}")
        if self.agent.num_seed_frames % ar:
            raise ValueError(f"DrQV2Config.num_seed_frames ({self.agent.num_seed_frames}) must be a multiple of "
                             f"action_repeat ({ar})")
        if self.checkpoint_every < 0:
            raise ValueError(f"RLConfig.checkpoint_every must be >= 0, got {self.checkpoint_every}")
        if self.eval_episodes < 0:
            raise ValueError(f"RLConfig.eval_episodes must be >= 0, got {self.eval_episodes}")
        if self.video_format not in ("gif", "mp4"):
            raise ValueError(f"RLConfig.video_format must be 'gif' or 'mp4', got {self.video_format!r}")
        if not self.model_free:
            self.mbpo.check_action_repeat(ar)

    @classmethod
    def tiny(cls, env: str = "pusht", **overrides: Any) -> "RLConfig":
        """A few hundred env steps on the CPU: small networks, short episodes, tiny MBPO settings."""
        metaworld = env.startswith("metaworld/")  # long enough for a scripted demo to succeed
        env_cfg = EnvConfig.for_env(env, episode_length=100 if metaworld else 40, num_demos=1 if metaworld else 0)
        base: dict[str, Any] = dict(env=env_cfg, agent=DrQV2Config.tiny(), mbpo=MBPOConfig.tiny(),
                                    total_env_steps=200, eval_every=100, eval_episodes=1)
        base.update(overrides)
        return cls(**base)


# What a resumed run may change: none of them alters what the agent or the world model sees.
RESUME_MAY_CHANGE = ("total_env_steps", "device", "tensorboard", "video_format")


class RLTrainer:
    """Builds env, agent, buffers (and MBPO when given a world model) and runs the loop.

    With `resume`, the newest checkpoint under `out_dir/checkpoints` is loaded and `run` continues
    from it exactly: the same updates, rollouts and logs as a run that was never interrupted.
    """

    def __init__(self, config: RLConfig, out_dir: str | Path, model: ImaginationModel | None = None,
                 env_factory: Callable[[EnvConfig, int], Any] = make_rl_env, resume: bool = False) -> None:
        self.config, self.out_dir = config, Path(out_dir)
        self.checkpoint_root = self.out_dir / "checkpoints"
        torch.manual_seed(config.seed)
        self.env = env_factory(config.env, config.seed)
        self.eval_env = env_factory(config.env, config.seed + 10_000)
        obs_shape = tuple(self.env.observation_space.shape)
        self.agent = DrQV2Agent(obs_shape, int(self.env.action_space.shape[0]), config.agent, config.device)
        a = config.agent
        self.real = SegmentReplay(a.replay_capacity, config.env.frame_stack, a.nstep, a.discount, config.seed)
        self.mbpo: MBPO | None = None
        if model is not None and not config.model_free:
            self.mbpo = MBPO(config.mbpo, model, self.real, config.env.frame_stack, a.nstep, a.discount, config.seed)
        self.real_fractions: list[float] = []
        self.num_updates = 0
        self.counters: dict[str, Any] = {"agent_step": 0, "episodes": 0, "evals": [], "seconds": 0.0,
                                         "demonstrations": None, "metrics_bytes": 0}
        if resume:
            self._load_checkpoint()
        elif rl_checkpoint.any_exists(self.checkpoint_root):
            raise FileExistsError(f"{self.checkpoint_root} holds a checkpoint of an earlier run: resume it "
                                  f"(--resume) or choose another output directory")
        elif (self.out_dir / "metrics.jsonl").is_file():  # its logs would mix with this run's
            raise FileExistsError(f"{self.out_dir} holds an earlier run's logs (metrics.jsonl) and no checkpoint to "
                                  f"resume from: choose another output directory, or delete it to start over")
        purge = self.counters["agent_step"] * config.env.action_repeat if resume else None
        self.logger = RLLogger(self.out_dir, tensorboard=config.tensorboard, purge_step=purge,
                               keep_bytes=self.counters["metrics_bytes"] if resume else None)

    def _load_checkpoint(self) -> None:
        """Restore everything `_save_checkpoint` wrote (the logger then cuts its logs back to that moment)."""
        loaded = rl_checkpoint.load_latest(self.checkpoint_root)
        if loaded is None:
            raise FileNotFoundError(f"nothing to resume: no complete checkpoint under {self.checkpoint_root}")
        weights, state, counters = loaded
        reached = counters["agent_step"] * self.config.env.action_repeat
        if reached > self.config.total_env_steps:
            raise ValueError(f"the checkpoint is at env step {reached}; --steps {self.config.total_env_steps} would "
                             f"end before it (--steps may only grow on resume)")
        free = dict.fromkeys(RESUME_MAY_CHANGE)
        mine = dict(config_to_dict(self.config), **free)
        saved = merge_tree(copy.deepcopy(mine), dict(state["config"], **free))  # keys it predates: this run's
        if saved != mine:
            changed = sorted(k for k in mine if saved.get(k) != mine[k])
            raise ValueError(f"the checkpoint was written with a different config ({', '.join(changed)} differ); "
                             f"only {', '.join(RESUME_MAY_CHANGE)} may change on resume")
        self.agent.load_state_dict(weights)
        self.agent.load_optimizer_state_dict(state["agent_optimizers"])
        self.real.load_state_dict(state["real"])
        if self.mbpo is not None:
            if state["mbpo"] is None:
                raise ValueError("the checkpoint is of a model-free run; it cannot resume with a world model")
            self.mbpo.load_state_dict(state["mbpo"])
        self.real_fractions, self.num_updates = list(state["real_fractions"]), state["num_updates"]
        restore_rng(state["rng"])
        self.counters = counters
        log.info("resuming from %s at env step %d", self.checkpoint_root, reached)

    def _save_checkpoint(self, env_step: int) -> None:
        self.counters["metrics_bytes"] = self.logger.metrics_bytes()
        state = {"config": config_to_dict(self.config), "agent_optimizers": self.agent.optimizer_state_dict(),
                 "real": self.real.state_dict(), "mbpo": None if self.mbpo is None else self.mbpo.state_dict(),
                 "real_fractions": list(self.real_fractions), "num_updates": self.num_updates,
                 "rng": capture_rng()}
        rl_checkpoint.save(self.checkpoint_root, env_step, self.agent.state_dict(), state, self.counters)

    def preload_demonstrations(self) -> int:
        """Scripted Meta-World demonstrations into the real buffer (not counted as env steps)."""
        env_cfg = self.config.env
        if env_cfg.num_demos == 0 or env_cfg.name == "pusht":
            return 0
        from ivideogpt.envs.rl_metaworld import collect_demonstrations

        demos = collect_demonstrations(self.eval_env, env_cfg.task, env_cfg.num_demos, seed=self.config.seed)
        for demo in demos:
            self.real.add_episode(demo["frames"], demo["actions"], demo["rewards"])
        return len(demos)

    def evaluate(self, agent_step: int) -> tuple[dict[str, float], np.ndarray]:
        """Mean-action episodes -> (return, success rate, length) and the first episode's frames."""
        returns, successes, lengths, video = [], [], [], np.zeros((0,))
        for episode in range(self.config.eval_episodes):
            obs, info = self.eval_env.reset(seed=self.config.seed + 10_000 + episode)
            frames, total, solved, done, steps = [info["frame"]], 0.0, False, False, 0
            while not done:
                action = self.agent.act(obs, agent_step, eval_mode=True)
                obs, reward, terminated, truncated, info = self.eval_env.step(action.numpy())
                frames.append(info["frame"])
                total, solved, steps = total + reward, solved or bool(info["success"]), steps + 1
                done = terminated or truncated
            returns.append(total)
            successes.append(float(solved))
            lengths.append(steps * self.config.env.action_repeat)
            if episode == 0:
                video = np.stack(frames)
        logs = {"episode_return": float(np.mean(returns)), "success_rate": float(np.mean(successes)),
                "episode_length": float(np.mean(lengths))} if returns else {}
        return logs, video

    def imagined_video(self) -> np.ndarray | None:
        """Real clip | the world model's open-loop rollout under the same actions (T, H, 2W + gap, 3)."""
        if self.mbpo is None or not self.real.segments:
            return None
        c = self.mbpo.config
        k = max(self.config.env.frame_stack, c.num_context)
        clip = self.real.sample_clips(1, k + c.horizon, c.num_context)
        real = ((clip.frames[0].permute(0, 2, 3, 1) + 1) * 127.5).round().to(torch.uint8).numpy()
        actions = clip.actions[0, k - 1:k - 1 + c.horizon]
        replay = iter(actions)
        out = imagine(self.mbpo.model, lambda obs: next(replay)[None].expand(obs.shape[0], -1),
                      real[None, :k], clip.actions[:, :k - 1].numpy(), c.horizon, self.config.env.frame_stack)
        return side_by_side(real, out.frames[0], scale=1)

    def _eval_and_record(self, agent_step: int, env_step: int) -> dict[str, float]:
        logs, video = self.evaluate(agent_step)
        if logs:
            self.logger.log(env_step, "eval", logs)
        ext = self.config.video_format
        if len(video):
            write_video(self.out_dir / "videos" / f"eval_{env_step:08d}.{ext}", video)
        imagined = self.imagined_video() if self.mbpo is not None and self.mbpo.started else None
        if imagined is not None:
            write_video(self.out_dir / "videos" / f"real_vs_imagined_{env_step:08d}.{ext}", imagined, fps=4)
        return logs

    def _episode_seed(self, episode: int) -> int:
        """Each training episode's reset seed: fixed by its number, so a resumed run meets the same episodes."""
        return self.config.seed + episode

    def run(self) -> dict[str, Any]:
        """Train until `total_env_steps` (continuing a resumed checkpoint); returns a summary (also summary.json)."""
        cfg, ar, counters = self.config, self.config.env.action_repeat, self.counters
        if counters["demonstrations"] is None:
            (self.out_dir / "config.json").write_text(json.dumps(config_to_dict(cfg), indent=2))
            counters["demonstrations"] = self.preload_demonstrations()
        seed_agent_steps = cfg.agent.num_seed_frames // ar
        obs, info = self.env.reset(seed=self._episode_seed(counters["episodes"]))
        frames, actions, rewards, discounts = [info["frame"]], [], [], []
        ep_return, ep_success, start = 0.0, False, time.time() - counters["seconds"]
        evals = counters["evals"]
        next_checkpoint = (counters["agent_step"] * ar // cfg.checkpoint_every + 1) * cfg.checkpoint_every \
            if cfg.checkpoint_every else None
        bar = tqdm(total=cfg.total_env_steps, initial=counters["agent_step"] * ar, unit="env step", desc="rl",
                   mininterval=2.0)
        for agent_step in range(counters["agent_step"], cfg.total_env_steps // ar):
            bar.update(ar)
            env_step = agent_step * ar
            if env_step % cfg.eval_every == 0 and cfg.eval_episodes:
                evals.append({"env_step": env_step, **self._eval_and_record(agent_step, env_step)})
            action = self.agent.act(obs, agent_step, eval_mode=False)
            if agent_step >= seed_agent_steps and len(self.real):
                logs: dict[str, float] = {}
                if self.mbpo is not None:
                    policy = lambda o: self.agent.act(o, agent_step, eval_mode=False)  # noqa: E731
                    logs |= self.mbpo.on_agent_step(env_step, policy)
                if agent_step % cfg.agent.update_every_steps == 0:
                    if self.mbpo is not None:
                        batch, n_real = self.mbpo.sample(cfg.agent.batch_size)
                    else:
                        batch, n_real = self.real.sample(cfg.agent.batch_size), cfg.agent.batch_size
                    self.real_fractions.append(n_real / len(batch))
                    logs |= self.agent.update(batch, agent_step)
                    self.num_updates += 1
                if logs and agent_step % 50 == 0:
                    self.logger.log(env_step, "train", logs)
            obs, reward, terminated, truncated, info = self.env.step(action.numpy())
            frames.append(info["frame"])
            actions.append(action.numpy())
            rewards.append(reward)
            discounts.append(0.0 if terminated else 1.0)
            ep_return, ep_success = ep_return + reward, ep_success or bool(info["success"])
            if terminated or truncated:
                self.real.add_episode(np.stack(frames), np.stack(actions), np.asarray(rewards, np.float32),
                                      np.asarray(discounts, np.float32))
                counters["episodes"] += 1
                bar.set_postfix(episodes=counters["episodes"], last_return=f"{ep_return:.3g}", refresh=False)
                self.logger.log(env_step + ar, "train", {"episode_return": ep_return, "episode_success": float(ep_success),
                                                          "episode_length": len(actions) * ar,
                                                          "fps": (env_step + ar) / (time.time() - start)})
                if next_checkpoint is not None and env_step + ar >= next_checkpoint:
                    counters.update(agent_step=agent_step + 1, seconds=time.time() - start)
                    self._save_checkpoint(env_step + ar)
                    passed = (env_step + ar - next_checkpoint) // cfg.checkpoint_every + 1
                    next_checkpoint += cfg.checkpoint_every * passed
                obs, info = self.env.reset(seed=self._episode_seed(counters["episodes"]))
                frames, actions, rewards, discounts = [info["frame"]], [], [], []
                ep_return, ep_success = 0.0, False
        bar.close()
        if cfg.eval_episodes:
            evals.append({"env_step": cfg.total_env_steps, **self._eval_and_record(cfg.total_env_steps // ar,
                                                                                  cfg.total_env_steps)})
        summary = {"env_steps": cfg.total_env_steps, "episodes": counters["episodes"],
                   "demonstrations": counters["demonstrations"], "agent_updates": self.num_updates,
                   "real_transitions": len(self.real),
                   "model_transitions": len(self.mbpo.model_buffer) if self.mbpo else 0,
                   "mode": "model-free" if self.mbpo is None else "mbpo", "seconds": time.time() - start,
                   "evals": evals}
        (self.out_dir / "summary.json").write_text(json.dumps(summary, indent=2))
        self.save_agent()
        self.logger.close()
        return summary

    def save_agent(self) -> Path:
        from ivideogpt.train.checkpoint import save_tensors

        path = self.out_dir / "agent.safetensors"
        save_tensors(path.with_suffix(".tmp"), self.agent.state_dict())
        path.with_suffix(".tmp").replace(path)
        return path
