"""Gymnasium wrappers around the world model: spaces, shapes, dtypes, seeding, truncation, vector batching."""

import re

import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

from ivideogpt.envs.world_model_env import WorldModelEnv, WorldModelVectorEnv
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
