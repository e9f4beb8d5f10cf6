"""Files written whole or not at all, with the permissions of any new file of the user's."""

import os
import stat

import numpy as np
import pytest
import torch

from ivideogpt.data.actions import write_metadata
from ivideogpt.data.episode import Episode
from ivideogpt.files import NEW_FILE_MODE, atomic_file
from ivideogpt.train.checkpoint import save_tensors


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_new_file_mode_is_what_open_gives(tmp_path) -> None:
    (tmp_path / "plain").write_text("x")
    assert NEW_FILE_MODE == mode(tmp_path / "plain")


def test_atomic_file_replaces_whole_or_leaves_the_target(tmp_path) -> None:
    target = tmp_path / "a.json"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_file(target, "w") as stream:
            stream.write("half")
            raise RuntimeError("interrupted")
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]
    with atomic_file(target, "w") as stream:
        stream.write("new")
    assert target.read_text() == "new" and mode(target) == NEW_FILE_MODE


def test_episodes_metadata_and_weights_are_readable_like_other_new_files(tmp_path) -> None:
    os.chmod(tmp_path, 0o755)
    Episode(frames=np.zeros((2, 8, 8, 3), np.uint8)).save(tmp_path / "e.npz")
    write_metadata(tmp_path, {"episodes": 1})
    save_tensors(tmp_path / "w.safetensors", {"w": torch.zeros(2)})  # safetensors alone writes 0600
    assert {name: mode(tmp_path / name) for name in ("e.npz", "metadata.json", "w.safetensors")} == dict.fromkeys(
        ("e.npz", "metadata.json", "w.safetensors"), NEW_FILE_MODE)
