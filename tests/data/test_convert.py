"""Converters to project episodes (BAIR, RoboNet, video, HDF5, tar shards) and the `ivideogpt data` command."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import yaml

from ivideogpt.cli import main
from ivideogpt.data.config import DataConfig
from ivideogpt.data.convert import convert
from ivideogpt.data.episode import Episode
from ivideogpt.data import load_episode
from ivideogpt.data.stream import ShardStream
from ivideogpt.data.sources import detect_format
from ivideogpt.data.sources.tfrecord import encode_example, write_tfrecord
from ivideogpt.media import write_video


def _frames(length: int, size: int = 64) -> np.ndarray:
    values = (10 * np.arange(length))[:, None, None, None]
    return np.broadcast_to(values, (length, size, size, 3)).astype(np.uint8).copy()


def _bair_record(length: int) -> bytes:
    features = {}
    for t in range(length):
        features[f"{t}/image_aux1/encoded"] = [_frames(length)[t].tobytes()]
        features[f"{t}/image_main/encoded"] = [np.zeros((64, 64, 3), np.uint8).tobytes()]
        features[f"{t}/action"] = np.asarray([t, 0.5, -0.5, 1.0], np.float32)
        features[f"{t}/endeffector_pos"] = np.asarray([t, t, t], np.float32)
    return encode_example(features)


def test_convert_bair_tfrecords(tmp_path):
    write_tfrecord(tmp_path / "train" / "traj_0_to_255.tfrecords", [_bair_record(6), _bair_record(6)])
    assert detect_format(tmp_path / "train") == "bair"
    report = convert("bair", tmp_path / "train", tmp_path / "out", progress=False)
    assert report.used == 2 and not report.skipped
    episode = load_episode(tmp_path / "out" / "traj_0_to_255" / "1.npz")
    np.testing.assert_array_equal(episode.frames, _frames(6))
    np.testing.assert_array_equal(episode.actions[:, 0], np.arange(6))
    assert episode.states.shape == (6, 3)
    metadata = json.loads((tmp_path / "out" / "metadata.json").read_text())
    assert metadata["episodes"] == 2 and metadata["action_space"]["low"] == [0, 0.5, -0.5, 1.0]


def test_alignment_is_refused_on_a_fixed_convention_also_when_the_format_is_detected(tmp_path):
    from ivideogpt.data.sources import make_reader

    write_tfrecord(tmp_path / "train" / "traj_0_to_255.tfrecords", [_bair_record(6)])
    with pytest.raises(ValueError, match="bair sources have a fixed reward convention"):
        convert("bair", tmp_path / "train", tmp_path / "out", options={"alignment": "on_arrival"}, progress=False)
    with pytest.raises(ValueError, match="bair sources have a fixed reward convention"):  # a config's `auto`
        make_reader("auto", tmp_path / "train", {"alignment": "after_action"})


def test_convert_robonet_hdf5_with_autograsp_actions(tmp_path):
    length = 5
    video = write_video(tmp_path / "v.mp4", _frames(length, 48)).read_bytes()
    (tmp_path / "raw").mkdir()
    with h5py.File(tmp_path / "raw" / "penn_traj0.hdf5", "w") as f:
        frames = f.create_dataset("env/cam0_video/frames", data=np.frombuffer(video, np.uint8))
        frames.attrs["T"], frames.attrs["image_format"] = length, "RGB"
        f["env/state"] = np.stack([np.zeros(length), np.asarray([0, 1, 0, 1, 1], np.float32)], 1)
        f["policy/actions"] = np.ones((length - 1, 4), np.float32)
        f.create_group("metadata").attrs.update({"primitives": "autograsp", "high_bound": [1, 1, 1, 1, 2.0],
                                                 "low_bound": [0, 0, 0, 0, -2.0]})
    (tmp_path / "raw" / "broken.hdf5").write_bytes(b"nope")
    report = convert("robonet", tmp_path / "raw", tmp_path / "out", resolution=32, progress=False)
    assert report.used == 1 and len(report.skipped) == 1
    episode = load_episode(tmp_path / "out" / "penn_traj0.npz")
    assert episode.frames.shape == (5, 32, 32, 3) and episode.actions.shape == (5, 5)
    np.testing.assert_array_equal(episode.actions[:4, 4], [2.0, -2.0, 2.0, 2.0])  # gripper from the next state
    np.testing.assert_allclose(episode.frames[:, 16, 16, 0], 10 * np.arange(5), atol=3)


def test_an_episode_that_fails_to_decode_is_reported_by_its_file(tmp_path, monkeypatch):
    from ivideogpt.data.episode import EpisodeError
    from ivideogpt.data.sources.video import VideoFolderReader

    for name in ("good", "damaged"):
        write_video(tmp_path / "videos" / f"{name}.mp4", _frames(4, 16))
    load = VideoFolderReader.load

    def damaged_packets(self, info):  # headers fine, so the scan keeps it; the decode then fails
        if info.episode_id == "damaged":
            raise EpisodeError("video decoding failed after 0 frames")
        return load(self, info)

    monkeypatch.setattr(VideoFolderReader, "load", damaged_packets)
    report = convert("video", tmp_path / "videos", tmp_path / "out", progress=False)
    assert report.used == 1 and [where for where, _, _ in report.skipped] == [str(tmp_path / "videos" / "damaged.mp4")]


def test_cli_convert_video_and_hdf5(tmp_path):
    write_video(tmp_path / "videos" / "clip.mp4", _frames(7, 32))
    assert main(["data", "convert", "video", str(tmp_path / "videos"), "--out", str(tmp_path / "v"), "--quiet",
                 "--resolution", "16"]) == 0
    assert load_episode(tmp_path / "v" / "clip.npz").frames.shape == (7, 16, 16, 3)
    with h5py.File(tmp_path / "traj.h5", "w") as f:
        f["obs/pixels"] = _frames(5, 16)
        f["act"] = np.ones((5, 3))
    assert main(["data", "convert", "hdf5", str(tmp_path / "traj.h5"), "--out", str(tmp_path / "h"), "--quiet",
                 "--option", "image_key=obs/pixels", "--option", "action_key=act"]) == 0
    assert load_episode(tmp_path / "h" / "traj.npz").actions.shape == (5, 3)


def test_cli_check_reports_splits(tmp_path, write_episodes, capsys):
    write_episodes(tmp_path / "eps", 10)
    (tmp_path / "eps" / "bad.npz").write_bytes(b"")
    config = {"data": {"segment_length": 4, "resolution": 8, "val_fraction": 0.2,
                       "sources": [{"name": "mine", "path": "eps"}]}}
    (tmp_path / "data.yaml").write_text(yaml.safe_dump(config))
    assert main(["data", "check", str(tmp_path / "data.yaml"), f"root={tmp_path}", "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["episodes"]["train"] == {"mine": 8} and result["episodes"]["val"] == {"mine": 2}
    assert result["skipped"] == {"unreadable": 1} and result["action_dim"] == 2
    assert main(["data", "check", str(tmp_path / "data.yaml"), f"root={tmp_path}", "stream=true", "--json"]) == 0
    streamed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])  # what a streamed run trains on
    assert streamed["episodes"] == {"train": {"mine": 10}, "val": {}, "test": {}}
    assert any("no validation or held-out split" in note for note in streamed["notes"])


def test_cli_convert_to_shards_that_stream(tmp_path, write_episodes):
    write_episodes(tmp_path / "eps" / "run.1", 5, length=6)
    assert main(["data", "convert", "npz", str(tmp_path / "eps"), "--out", str(tmp_path / "shards"), "--quiet",
                 "--shards", "2"]) == 0
    assert sorted(p.name for p in (tmp_path / "shards").iterdir()) == ["metadata.json", "shard-000000.tar",
                                                                        "shard-000001.tar"]
    metadata = json.loads((tmp_path / "shards" / "metadata.json").read_text())
    assert (metadata["format"], metadata["shards"], metadata["episodes"]) == ("ivideogpt-shards", 2, 5)
    config = DataConfig(resolution=8, segment_length=6, segments_per_episode=1, shuffle_buffer=0)
    items = list(ShardStream(tmp_path / "shards", config, action_dim=2, rewards=True))
    assert sorted(i["key"] for i in items) == [f"run_1/episode_{n:03d}" for n in range(5)]
    original = load_episode(tmp_path / "eps" / "run.1" / "episode_003.npz")
    (item,) = [i for i in items if i["key"].endswith("_003")]
    assert item["actions"].tolist() == original.actions.tolist() and item["rewards"].tolist() == list(range(6))


def test_convert_never_overwrites_a_dataset_and_stops_on_a_failed_write(tmp_path, write_episodes, monkeypatch):
    write_episodes(tmp_path / "eps", 3, length=6)
    existing = tmp_path / "existing"
    assert main(["data", "convert", "npz", str(tmp_path / "eps"), "--out", str(existing), "--quiet"]) == 0
    before = (existing / "metadata.json").read_text()
    # another conversion into it, even a failing one, is refused and changes nothing
    for source in (tmp_path / "eps", tmp_path / "no_such_folder"):
        assert main(["data", "convert", "npz", str(source), "--out", str(existing), "--quiet"]) == 2
    assert (existing / "metadata.json").read_text() == before
    with pytest.raises(FileNotFoundError, match="no_such_folder does not exist"):
        convert("npz", tmp_path / "no_such_folder", tmp_path / "fresh", progress=False)
    with pytest.raises(ValueError, match="unknown reader option.*imagekey; the readers take: .*image_key"):
        convert("npz", tmp_path / "eps", tmp_path / "fresh", options={"imagekey": "rgb"}, progress=False)
    (tmp_path / "empty").mkdir()
    assert convert("npz", tmp_path / "empty", tmp_path / "fresh", progress=False).used == 0
    assert not (tmp_path / "fresh" / "metadata.json").exists()  # nothing converted: no dataset described
    # a full disk is not a bad source episode: it stops the conversion instead of skipping every episode
    def full_disk(self, path):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Episode, "save", full_disk)
    with pytest.raises(OSError, match="No space left"):
        convert("npz", tmp_path / "eps", tmp_path / "full", progress=False)


def test_bounds_of_transition_actions_are_those_of_the_actions(tmp_path):
    (tmp_path / "src").mkdir()
    actions = np.stack([np.linspace(1, 2, 5), np.full(5, 1.5)], 1).astype(np.float32)  # T - 1 rows, none 0
    for number in range(2):
        np.savez(tmp_path / "src" / f"ep{number}.npz", frames=np.zeros((6, 8, 8, 3), np.uint8), actions=actions)
    convert("npz", tmp_path / "src", tmp_path / "out", progress=False)
    bounds = json.loads((tmp_path / "out" / "metadata.json").read_text())["action_space"]
    assert bounds["low"] == [1.0, 1.5] and bounds["high"] == [2.0, 1.5]


@pytest.mark.parametrize("shards", [None, 1])
def test_episodes_whose_safe_names_collide_are_all_kept(tmp_path, shards):
    for number, name in enumerate(["a b.npz", "a_b.npz", "run.1.npz", "run_1.npz"]):
        Episode(frames=np.full((4, 8, 8, 3), number, np.uint8)).save(tmp_path / "src" / name)
    report = convert("npz", tmp_path / "src", tmp_path / "out", progress=False, shards=shards)
    renamed = 2 if shards else 1  # "a b" / "a_b" always; "run.1" / "run_1" as shard keys (a key ends at a dot)
    assert report.used == 4 and sum("was taken by another episode" in note for note in report.notes) == renamed
    if shards:
        report = convert("tar", tmp_path / "out", tmp_path / "back", progress=False)  # every member came through
    folder = tmp_path / ("back" if shards else "out")
    values = sorted(int(load_episode(path).frames[0, 0, 0, 0]) for path in folder.rglob("*.npz"))
    assert values == [0, 1, 2, 3]


def test_converting_into_the_source_is_refused(tmp_path, write_episodes):
    write_episodes(tmp_path / "src", 2)
    with pytest.raises(ValueError, match="lies inside the source"):
        convert("npz", tmp_path / "src", tmp_path / "src" / "converted", progress=False)
    assert not (tmp_path / "src" / "converted").exists()


@pytest.mark.parametrize("command", [["convert", "npz", "SRC", "--out", "OUT"],
                                     ["generate", "pusht", "--episodes", "1", "--out", "OUT"]])
def test_a_resolution_of_no_pixels_is_refused_by_the_command(tmp_path, write_episodes, capsys, command):
    write_episodes(tmp_path / "src", 1)
    paths = {"SRC": str(tmp_path / "src"), "OUT": str(tmp_path / "out")}
    with pytest.raises(SystemExit) as stopped:
        main(["data", *[paths.get(word, word) for word in command], "--resolution", "0", "--quiet"])
    assert stopped.value.code == 2
    assert "argument --resolution: must be a positive number of pixels, got '0'" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
