"""Meta-World data generation (slow: MuJoCo rendering)."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("metaworld")


@pytest.mark.slow
def test_generate_one_short_metaworld_episode(tmp_path):
    from ivideogpt.data import load_episode
    from ivideogpt.envs.metaworld_data import RendererError, generate_metaworld

    try:
        stats = generate_metaworld("button-press-topdown", tmp_path, episodes=1, steps=8, seed=0, progress=False)
    except RendererError as error:
        pytest.skip(f"no offscreen renderer: {error}")
    episode = load_episode(tmp_path / "episode_000000.npz")
    assert episode.frames.shape == (9, 64, 64, 3) and episode.actions.shape == (9, 4)
    assert np.all(np.abs(episode.actions) <= 1) and episode.rewards[0] == 0 and episode.states.shape == (9, 39)
    assert episode.frames.std() > 5  # a rendered scene, not a blank image
    assert (episode.frames[-1] != episode.frames[0]).any()  # the arm moved
    assert json.loads((tmp_path / "metadata.json").read_text())["env"] == "metaworld/button-press-topdown-v3"
    assert stats["frames"] == 9


def test_unknown_task_is_rejected():
    from ivideogpt.envs.metaworld_data import RendererError, make_metaworld_env

    try:
        make_metaworld_env("no-such-task")
    except ValueError as error:
        assert "button-press-topdown-v3" in str(error)
    except RendererError:
        pytest.skip("no offscreen renderer")


@pytest.mark.slow
def test_missing_renderer_gives_install_instructions():
    import ctypes.util
    import os
    import subprocess
    import sys

    if ctypes.util.find_library("OSMesa"):
        pytest.skip("OSMesa is installed here, so it cannot stand in for a missing renderer")
    code = ("from ivideogpt.envs.metaworld_data import RendererError, make_metaworld_env\n"
            "try:\n    make_metaworld_env('reach')\nexcept RendererError as e:\n    print('CAUGHT', e)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "MUJOCO_GL": "osmesa"})
    assert "CAUGHT" in result.stdout and "apt-get install libosmesa6" in result.stdout
