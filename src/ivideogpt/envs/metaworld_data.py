"""Embedded robot data: Meta-World v3 scripted-policy rollouts stored as project episodes.

Each episode takes one of the task's 50 goal variations (chosen from the seed), runs the
task's scripted policy from `metaworld.policies` with Gaussian action noise, repeats every
action `action_repeat` times (2, as in the paper's Meta-World experiments), and records one
upright frame per agent step. Rendering uses shadows and multisampling off (several times
faster at 64x64). Rewards are the env's rewards summed over the repeat; success is whether any
repeat succeeded. `MUJOCO_GL` defaults to egl (headless).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from ivideogpt.data.actions import new_dataset_folder, write_metadata
from ivideogpt.data.episode import Episode

# The corner2 camera placement the paper's Meta-World experiments use (mbrl/metaworld_env.py there).
PAPER_CORNER2_POSITION = (0.75, 0.075, 0.7)
RENDERER_HELP = ("MuJoCo cannot render offscreen. Install a headless OpenGL backend and select it before "
                 "starting Python: EGL (GPU driver, or Mesa: `apt-get install libegl1 libegl-mesa0`; "
                 "MUJOCO_GL=egl) or OSMesa (software: `apt-get install libosmesa6`, then MUJOCO_GL=osmesa).")


class RendererError(RuntimeError):
    """MuJoCo's offscreen renderer is missing or broken."""


def _task_name(task: str) -> str:
    return task if task.endswith("-v3") else f"{task}-v3"


def make_metaworld_env(task: str, resolution: int = 64, camera: str = "corner2", seed: int = 0,
                       paper_camera: bool = True) -> tuple[Any, list[Any], Any]:
    """(env, goal variations, scripted policy) for a Meta-World v3 task, with fast rendering checked."""
    os.environ.setdefault("MUJOCO_GL", "egl")
    try:
        import metaworld
        import mujoco
        from metaworld.policies import ENV_POLICY_MAP
    except Exception as error:  # an unusable GL backend fails at import time
        raise RendererError(f"{RENDERER_HELP} (import failed: {type(error).__name__}: {error})") from error
    name = _task_name(task)
    if name not in ENV_POLICY_MAP:
        raise ValueError(f"unknown Meta-World task {task!r}; v3 tasks: {', '.join(sorted(ENV_POLICY_MAP))}")
    benchmark = metaworld.MT1(name, seed=seed)
    env = benchmark.train_classes[name](render_mode="rgb_array", camera_name=camera, width=resolution,
                                        height=resolution)
    env.model.vis.quality.shadowsize = 0
    env.model.vis.quality.offsamples = 0
    if camera == "corner2" and paper_camera:
        env.model.cam_pos[mujoco.mj_name2id(env.model, mujoco.mjtObj.mjOBJ_CAMERA, "corner2")] = PAPER_CORNER2_POSITION
    env.set_task(benchmark.train_tasks[0])
    try:
        env.reset()
        frame = env.render()
    except Exception as error:
        raise RendererError(f"{RENDERER_HELP} (MUJOCO_GL={os.environ.get('MUJOCO_GL')}: "
                            f"{type(error).__name__}: {error})") from error
    if frame is None or np.asarray(frame).shape != (resolution, resolution, 3):
        raise RendererError(f"{RENDERER_HELP} (render returned {None if frame is None else np.shape(frame)})")
    return env, list(benchmark.train_tasks), ENV_POLICY_MAP[name]()


def _frame(env: Any) -> np.ndarray:
    return np.ascontiguousarray(env.render()[::-1])  # MuJoCo renders upside down


def rollout_metaworld(env: Any, policy: Any, task: Any, steps: int, rng: np.random.Generator,
                      noise: float = 0.1, action_repeat: int = 2) -> Episode:
    """One episode: T = steps + 1 frames, actions (T, 4) in [-1, 1], rewards, success, states (T, 39)."""
    env.set_task(task)
    state, _ = env.reset()
    frames, actions, rewards, success, states = [_frame(env)], [], [0.0], [False], [state]
    for _ in range(steps):
        action = np.clip(policy.get_action(state) + rng.normal(0.0, noise, 4), -1.0, 1.0).astype(np.float32)
        total, solved = 0.0, False
        for _ in range(action_repeat):
            state, reward, _, _, info = env.step(action)
            total += float(reward)
            solved |= bool(info.get("success", False))
        actions.append(action)
        frames.append(_frame(env))
        rewards.append(total)
        success.append(solved)
        states.append(state)
    last = np.clip(policy.get_action(state) + rng.normal(0.0, noise, 4), -1.0, 1.0).astype(np.float32)
    actions.append(last)  # taken at the last frame; its outcome is not recorded
    return Episode(frames=np.stack(frames), actions=np.stack(actions), rewards=np.asarray(rewards),
                   success=np.asarray(success), states=np.stack(states))


def generate_metaworld(task: str, out: str | Path, episodes: int, resolution: int = 64, steps: int = 100,
                       seed: int = 0, action_repeat: int = 2, noise: float = 0.1, camera: str = "corner2",
                       progress: bool = True) -> dict[str, Any]:
    """Write `episodes` scripted episodes of a Meta-World task and metadata.json to `out`; returns stats."""
    import warnings

    from tqdm import tqdm

    if episodes < 1 or steps < 1 or action_repeat < 1:
        raise ValueError(f"episodes, steps and action_repeat must be >= 1, got {episodes}, {steps}, {action_repeat}")
    if steps * action_repeat > 500:
        raise ValueError(f"steps x action_repeat = {steps * action_repeat} exceeds Meta-World's 500-step limit")
    out = new_dataset_folder(out, generated_for="metaworld/")  # no mixing, no stale episodes
    env, tasks, policy = make_metaworld_env(task, resolution, camera, seed)
    successes = 0
    began = time.perf_counter()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*Constant\\(s\\) may be too high.*")
        for number in tqdm(range(episodes), desc=f"{_task_name(task)} episodes", unit="episode", disable=not progress):
            rng = np.random.default_rng([seed, number])
            variation = tasks[int(rng.integers(len(tasks)))]
            episode = rollout_metaworld(env, policy, variation, steps, rng, noise, action_repeat)
            episode.save(out / f"episode_{number:06d}.npz")
            successes += bool(episode.success.any())
    seconds = time.perf_counter() - began
    env.close()
    frames = episodes * (steps + 1)
    stats = {"episodes": episodes, "frames": frames, "seconds": round(seconds, 2),
             "frames_per_second": round(frames / seconds, 1), "success_fraction": successes / episodes}
    write_metadata(out, {
        "format": "ivideogpt-episodes", "env": f"metaworld/{_task_name(task)}", "camera": camera,
        "policy": "metaworld.policies scripted + gaussian noise", "noise": noise, "action_repeat": action_repeat,
        "resolution": resolution, "steps": steps, "frames_per_episode": steps + 1, "episodes": episodes,
        "seed": seed, "action_space": {"low": [-1.0] * 4, "high": [1.0] * 4},
        "action_meaning": "end-effector delta xyz and gripper effort", "stats": stats})
    return stats
