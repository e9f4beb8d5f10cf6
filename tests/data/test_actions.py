"""Dataset metadata: atomic writes, and the folder a new dataset may be written to."""

from __future__ import annotations

import json

import pytest

from ivideogpt.data import actions
from ivideogpt.data.actions import new_dataset_folder, write_metadata


def test_a_failed_metadata_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    write_metadata(tmp_path, {"episodes": 1})

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(actions.json, "dump", full_disk)
    with pytest.raises(OSError, match="No space left"):
        write_metadata(tmp_path, {"episodes": 2})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metadata.json"]
    assert json.loads((tmp_path / "metadata.json").read_text()) == {"episodes": 1}


def test_a_new_dataset_never_lands_on_another(tmp_path):
    assert new_dataset_folder(tmp_path / "new") == tmp_path / "new"  # missing: used as is
    (tmp_path / "empty").mkdir()
    assert new_dataset_folder(tmp_path / "empty") == tmp_path / "empty"
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError):
        new_dataset_folder(tmp_path / "file")
    user = tmp_path / "user"
    write_metadata(user, {"converted_from": "video", "env": "pusht"})
    with pytest.raises(FileExistsError, match="already holds a dataset"):
        new_dataset_folder(user, generated_for="pusht")  # converted data is never replaced
    generated = tmp_path / "generated"
    write_metadata(generated, {"env": "gym_pusht/PushT-v0", "episodes": 2})
    (generated / "episode_000001.npz").write_bytes(b"old")
    (generated / "notes.txt").write_text("kept")
    new_dataset_folder(generated, generated_for="gym_pusht")
    assert sorted(p.name for p in generated.iterdir()) == ["metadata.json", "notes.txt"]
    assert "incomplete" in json.loads((generated / "metadata.json").read_text())
    with pytest.raises(FileExistsError):
        new_dataset_folder(generated)  # a converter does not replace generated data either
    for name in ("shard-0.tar.gz", "shard-0.TGZ", "shard-0.tar"):  # shards as users write them count too
        shards = tmp_path / name.replace(".", "_")
        shards.mkdir()
        (shards / name).write_bytes(b"x")
        with pytest.raises(FileExistsError, match="1 episode or shard files"):
            new_dataset_folder(shards)
