"""Gymnasium wrappers around the world model: spaces, shapes, dtypes, seeding, truncation, vector batching."""

import re

import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

from ivideogpt.envs.world_model_env import WorldModelEnv, WorldModelVectorEnv
from ivideogpt.frames import to_model, to_uint8
from ivideogpt.tokenizer import tokenizer_tiny
from ivideogpt.transformer import transformer_tiny
from ivideogpt.world_model import WorldModel


@pytest.fixture(scope="module")
def world() -> WorldModel:
    torch.manual_seed(0)
    transformer = transformer_tiny(action_dim=2, reward_head=True).build()
    torch.nn.init.normal_(transformer.reward_head.weight)
    return WorldModel(tokenizer_tiny().build(), transformer)


def pool(n: int = 3, tc: int = 1) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (n, tc, 64, 64, 3), dtype=np.uint8)


def test_env_passes_gymnasium_checker(world: WorldModel) -> None:
    env = WorldModelEnv(world, pool(), horizon=3)
    check_env(env, skip_render_check=True)


def test_env_reset_step_shapes_and_truncation(world: WorldModel) -> None:
    contexts = pool()
    env = WorldModelEnv(world, contexts, horizon=2)
    obs, info = env.reset(seed=0)
    assert obs.shape == (64, 64, 3) and obs.dtype == np.uint8 and obs in env.observation_space
    assert any(np.array_equal(obs, c[-1]) for c in contexts)  # first observation: the last context frame
    obs, reward, terminated, truncated, _ = env.step(env.action_space.sample())
    assert obs.shape == (64, 64, 3) and obs.dtype == np.uint8 and isinstance(reward, float)
    assert not terminated and not truncated
    assert env.step(np.zeros(2, np.float32))[3]  # truncated at the horizon
    first = env.reset(seed=5)[0], env.step(np.ones(2, np.float32))[0]
    again = env.reset(seed=5)[0], env.step(np.ones(2, np.float32))[0]
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    given = np.zeros((1, 64, 64, 3), np.uint8)
    assert not env.reset(options={"context": given})[0].any()


def test_env_needs_context_actions_for_several_context_frames(world: WorldModel) -> None:
    with pytest.raises(ValueError, match="context_actions"):
        WorldModelEnv(world, pool(tc=2))
    env = WorldModelEnv(world, pool(tc=2), context_actions=np.zeros((3, 1, 2), np.float32))
    assert env.reset(seed=0)[0].shape == (64, 64, 3)


def test_vector_env_batches_and_autoresets(world: WorldModel) -> None:
    env = WorldModelVectorEnv(world, pool(), num_envs=4, horizon=2)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (4, 64, 64, 3) and obs.dtype == np.uint8 and obs in env.observation_space
    obs, reward, terminated, truncated, _ = env.step(env.action_space.sample())
    assert obs.shape == (4, 64, 64, 3) and reward.shape == (4,) and reward.dtype == np.float32
    assert not truncated.any() and not terminated.any() and np.abs(reward).sum() > 0
    assert env.step(env.action_space.sample())[3].all()
    obs, reward, _, truncated, _ = env.step(env.action_space.sample())  # next-step autoreset
    assert not truncated.any() and (reward == 0).all() and world.state.num_future == 0


@pytest.mark.parametrize("vector", [False, True])
def test_actions_of_another_shape_are_refused_not_reshaped(world: WorldModel, vector: bool) -> None:
    env = WorldModelVectorEnv(world, pool(), num_envs=4) if vector else WorldModelEnv(world, pool())
    env.reset(seed=0)
    expected = (4, 2) if vector else (2,)
    for shape in ([(2, 4), (8,)] if vector else [(2, 1), (1, 2)]):  # e.g. (A, N) instead of (N, A)
        wrong = np.zeros(shape, np.float32)
        with pytest.raises(ValueError, match=re.escape(f"action space's shape {expected}, got {wrong.shape}")):
            env.step(wrong)
    assert env.step(np.zeros(expected, np.float32))[0].shape[-3:] == (64, 64, 3)


@pytest.fixture
def windowed() -> WorldModel:
    """A greedy model whose training clips held 3 frames (1 context + 2 predicted), as `load_model` records it."""
    torch.manual_seed(0)
    transformer = transformer_tiny(action_dim=2, reward_head=True).build()
    torch.nn.init.normal_(transformer.action_proj.weight, std=0.5)
    world_model = WorldModel(tokenizer_tiny().build(), transformer, temperature=0.0)
    world_model.window = 3  # the run's data.segment_length
    return world_model


def _reference(world_model: WorldModel, starts: np.ndarray, actions: np.ndarray, window: int) -> list[np.ndarray]:
    """Observations (B, 64, 64, 3) of greedy rollouts from uint8 `starts` (B, 64, 64, 3) under `actions` (T, B, 2)
    that restart from their newest frame after every window - 1 steps, by hand."""
    frames, observations = to_model(torch.as_tensor(starts))[:, None], []
    world_model.reset(frames)
    for t, action in enumerate(actions):
        if t and t % (window - 1) == 0:
            world_model.reset(frames)
        frames = world_model.step(torch.as_tensor(action))[0][:, None]
        observations.append(to_uint8(frames[:, 0]))
    return observations


@pytest.mark.parametrize("vector", [False, True])
def test_stepping_three_windows_re_anchors_at_each_window_boundary(windowed: WorldModel, vector: bool) -> None:
    starts = pool(2)[:, 0] if vector else pool(1)[:, 0]  # (B, 64, 64, 3)
    actions = np.random.default_rng(1).uniform(-1, 1, (9, len(starts), 2)).astype(np.float32)
    expected = _reference(windowed, starts, actions, window=3)
    env = (WorldModelVectorEnv(windowed, pool(), num_envs=2, horizon=9) if vector
           else WorldModelEnv(windowed, pool(), horizon=9))
    env.reset(seed=0, options={"contexts": starts[:, None]} if vector else {"context": starts})
    for t, action in enumerate(actions):
        obs, reward, _, truncated, _ = env.step(action if vector else action[0])
        assert obs.shape[-3:] == (64, 64, 3) and obs.dtype == np.uint8 and np.isfinite(reward).all()
        state = windowed.state  # never more frames than the model was trained on ...
        assert state.num_context + state.num_future <= 3
        assert (state.num_context, state.num_future) == (1, 1 + t % 2)  # ... re-anchored at steps 3, 5, 7, 9
        assert np.array_equal(obs, expected[t] if vector else expected[t][0])  # from its newest predicted frame
    assert np.all(truncated)


@pytest.mark.parametrize("vector", [False, True])
def test_a_refusing_env_stops_at_the_window_and_an_extending_one_grows(windowed: WorldModel, vector: bool) -> None:
    def make(past_window: str):
        if vector:
            return WorldModelVectorEnv(windowed, pool(), num_envs=2, horizon=9, past_window=past_window)
        return WorldModelEnv(windowed, pool(), horizon=9, past_window=past_window)

    action = np.zeros((2, 2) if vector else 2, np.float32)
    env = make("refuse")
    env.reset(seed=0)
    env.step(action)
    env.step(action)
    with pytest.raises(ValueError, match=r"holds 3 frames, the clip length .* trained on"):
        env.step(action)
    assert windowed.state.num_future == 2  # nothing was stepped
    env = make("extend")
    env.reset(seed=0)
    for _ in range(9):
        env.step(action)
    assert windowed.state.num_context + windowed.state.num_future == 10
    with pytest.raises(ValueError, match="past_window"):
        make("wrap")


@pytest.mark.parametrize("vector", [False, True])
def test_actions_outside_the_action_space_are_refused(world: WorldModel, vector: bool) -> None:
    env = WorldModelVectorEnv(world, pool(), num_envs=2) if vector else WorldModelEnv(world, pool())
    env.reset(seed=0)
    outside = np.full(env.action_space.shape, 5.0, np.float32)
    with pytest.raises(ValueError, match=r"action space's bounds \[-1, 1\], got values in \[5, 5\]"):
        env.step(outside)
    assert world.state.num_future == 0  # nothing was stepped


@pytest.mark.parametrize("make, match", [
    (lambda w: WorldModelEnv(w, pool(2, tc=2), context_actions=np.zeros((5, 1, 2))),
     r"context_actions must be \(2, 1, 2\) \(N, Tc-1, A\), one row per context, got \(5, 1, 2\)"),
    (lambda w: WorldModelEnv(w, pool(0)),
     r"contexts must be \(N, Tc, 3, H, W\) .* with N, Tc >= 1, got \(0, 1, 64, 64, 3\)"),
    (lambda w: WorldModelEnv(w, pool()).reset(options={"context": pool()[0, 0]}),
     r"options\['context'\] must be \(Tc, 3, H, W\) float in \[-1, 1\] or \(Tc, H, W, 3\) uint8 .* got \(64, 64, 3\)"),
    (lambda w: WorldModelEnv(w, pool()).reset(options={"contexts": pool()[0]}),
     r"unknown reset options \['contexts'\]; this env reads \['context', 'context_actions'\]"),
    (lambda w: WorldModelVectorEnv(w, pool(), num_envs=2).reset(options={"context": pool()[0]}),
     r"unknown reset options \['context'\]"),
])
def test_bad_contexts_and_reset_options_are_refused_with_what_was_expected(world: WorldModel, make, match) -> None:
    with pytest.raises(ValueError, match=match):
        make(world)
