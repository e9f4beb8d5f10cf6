"""Readers on tiny files written here: video folders, HDF5, RLDS/TFRecord, tar shards."""

from __future__ import annotations

import io
import tarfile

import h5py
import numpy as np
import pytest
from PIL import Image

from ivideogpt.data.episode import EpisodeError
from ivideogpt.data.report import DataReport
from ivideogpt.data.sources import detect_format, make_reader
from ivideogpt.data.sources.tfrecord import (encode_example, iter_records, masked_crc32c, parse_example,
                                             write_tfrecord)
from ivideogpt.media import write_video
from ivideogpt.data.sources.webdataset import write_shard


def _ramp(length: int, size: int = 16) -> np.ndarray:
    """Constant frames of value 10 * t, robust to lossy codecs."""
    values = (10 * np.arange(length))[:, None, None, None]
    return np.broadcast_to(values, (length, size, size, 3)).astype(np.uint8).copy()


def _png(frame: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(frame).save(buffer, format="PNG")
    return buffer.getvalue()


def test_video_folder_with_side_actions(tmp_path):
    write_video(tmp_path / "a.mp4", _ramp(9))
    write_video(tmp_path / "sub" / "b.webm", _ramp(7))
    write_video(tmp_path / "c.gif", _ramp(5))
    np.save(tmp_path / "a.actions.npy", np.ones((8, 3), np.float32))
    np.save(tmp_path / "a.rewards.npy", np.arange(9, dtype=np.float32))
    (tmp_path / "broken.mp4").write_bytes(b"\x00" * 100)
    assert detect_format(tmp_path) == "video"
    reader, report = make_reader("video", tmp_path), DataReport()
    infos = {i.episode_id: i for i in reader.scan(report)}
    assert {k: v.length for k, v in infos.items()} == {"a": 9, "sub/b": 7, "c": 5}
    assert infos["a"].action_dim == 3 and infos["sub/b"].action_dim is None
    assert len(report.skipped) == 1 and "broken.mp4" in report.skipped[0][0]
    episode = reader.load(infos["a"])
    assert episode.frames.shape == (9, 16, 16, 3) and episode.actions.shape == (9, 3)
    np.testing.assert_array_equal(episode.rewards, np.arange(9))
    shifted = make_reader("video", tmp_path, {"alignment": "after_action"}).load(infos["a"])
    np.testing.assert_array_equal(shifted.rewards, [0, *range(8)])
    np.testing.assert_allclose(episode.frames[:, 8, 8, 0], 10 * np.arange(9), atol=3)
    gif = reader.load(infos["c"]).frames
    np.testing.assert_allclose(gif[:, 8, 8, 0], 10 * np.arange(5), atol=40)  # gif palettes are coarse


def test_hdf5_single_and_grouped_episodes(tmp_path):
    with h5py.File(tmp_path / "single.h5", "w") as f:
        f["frames"] = _ramp(6)
        f["actions"] = np.ones((6, 2), np.float32)
        f["rewards"] = np.arange(6, dtype=np.float32)
    with h5py.File(tmp_path / "robomimic.hdf5", "w") as f:
        for name, length in (("demo_0", 5), ("demo_1", 7), ("demo_10", 4)):
            f[f"data/{name}/obs/agentview_image"] = _ramp(length)
            f[f"data/{name}/actions"] = np.zeros((length, 7), np.float32)
        f["data/demo_bad/obs/agentview_image"] = _ramp(5)
        f["data/demo_bad/actions"] = np.zeros((2, 7), np.float32)
    report = DataReport()
    reader = make_reader("auto", tmp_path)
    infos = {i.episode_id: i for i in reader.scan(report)}
    assert sorted(infos) == ["robomimic/data/demo_0", "robomimic/data/demo_1", "robomimic/data/demo_10", "single"]
    assert infos["single"].has_rewards and infos["robomimic/data/demo_1"].action_dim == 7
    assert len(report.skipped) == 1 and "demo_bad" in report.skipped[0][0]
    episode = reader.load(infos["robomimic/data/demo_1"])
    assert episode.frames.shape == (7, 16, 16, 3) and episode.rewards is None


def test_hdf5_custom_keys_and_encoded_frames(tmp_path):
    frames = _ramp(4)
    with h5py.File(tmp_path / "enc.h5", "w") as f:
        data = f.create_dataset("cam/jpg", (4,), dtype=h5py.vlen_dtype(np.uint8))
        for t in range(4):
            data[t] = np.frombuffer(_png(frames[t]), np.uint8)
        f["ctrl"] = np.ones((3, 2))
    reader = make_reader("hdf5", tmp_path, {"image_key": "cam/jpg", "action_key": "ctrl"})
    (info,) = reader.scan(DataReport())
    episode = reader.load(info)
    np.testing.assert_array_equal(episode.frames, frames)
    assert episode.actions.shape == (4, 2)


def test_tfrecord_framing_and_example_round_trip(tmp_path):
    assert masked_crc32c(b"") == 0xA282EAD8
    example = {"b": [b"x", b"yz"], "f": np.asarray([1.5, -2.0], np.float32), "i": np.asarray([3, -4], np.int64)}
    path = write_tfrecord(tmp_path / "x.tfrecord", [encode_example(example)] * 2)
    records = list(iter_records(path, verify=True))
    parsed = parse_example(records[1])
    assert parsed["b"] == [b"x", b"yz"] and parsed["f"].tolist() == [1.5, -2.0] and parsed["i"].tolist() == [3, -4]
    data = path.read_bytes()
    (tmp_path / "cut.tfrecord").write_bytes(data[:-7])
    with pytest.raises(EpisodeError, match="truncated"):
        list(iter_records(tmp_path / "cut.tfrecord"))


def _rlds_episode(length: int, nested: bool) -> bytes:
    frames = _ramp(length, 8)
    features = {"steps/observation/image": [_png(f) for f in frames],
                "steps/reward": np.arange(length, dtype=np.float32),
                "steps/is_first": np.eye(1, length, dtype=np.int64)[0]}
    if nested:
        features["steps/action/world_vector"] = np.ones((length, 3), np.float32)
        features["steps/action/gripper"] = np.zeros((length, 1), np.float32)
    else:
        features["steps/action"] = np.arange(length * 3, dtype=np.float32)
    return encode_example(features)


def test_rlds_reader_flattened_steps(tmp_path):
    write_tfrecord(tmp_path / "ds-train.tfrecord-00000-of-00002", [_rlds_episode(5, False), _rlds_episode(6, True)])
    write_tfrecord(tmp_path / "ds-train.tfrecord-00001-of-00002", [b"\x08\x96\x01garbage"])
    assert detect_format(tmp_path) == "rlds"
    reader, report = make_reader("rlds", tmp_path), DataReport()
    infos = reader.scan(report)
    assert [(i.length, i.action_dim) for i in infos] == [(5, 3), (6, 4)]
    assert len(report.skipped) == 1
    episode = reader.load(infos[0])
    np.testing.assert_array_equal(episode.frames[:, 0, 0, 0], 10 * np.arange(5))
    np.testing.assert_array_equal(episode.actions[1], [3, 4, 5])
    np.testing.assert_array_equal(episode.rewards, [0, 0, 1, 2, 3])  # RLDS reward[t] arrives at frame t + 1
    assert reader.load(infos[1]).actions.shape == (6, 4)


def _record_starts(episodes: list[bytes]) -> list[int]:
    """Byte offset of each record `write_tfrecord` writes: 12 header bytes, the payload, 4 CRC bytes."""
    return [sum(16 + len(e) for e in episodes[:k]) for k in range(len(episodes))]


@pytest.mark.parametrize("damage, detail", [("cut_payload", "truncated record"),
                                            ("cut_header", "truncated record header"),
                                            ("bad_length_crc", "corrupt record length")])
def test_a_cut_or_damaged_shard_keeps_the_records_before_the_damage(tmp_path, damage, detail):
    episodes = [_rlds_episode(length, False) for length in (4, 5, 6)]
    shard = write_tfrecord(tmp_path / "ds-train.tfrecord-00000-of-00001", episodes)
    last = _record_starts(episodes)[-1]
    data = bytearray(shard.read_bytes())
    if damage == "bad_length_crc":
        data[last + 8] ^= 0xFF
    cut = {"cut_payload": last + 12 + len(episodes[-1]) // 2, "cut_header": last + 5}.get(damage, len(data))
    shard.write_bytes(bytes(data[:cut]))
    reader, report = make_reader("auto", tmp_path), DataReport()
    infos = reader.scan(report)
    assert [i.length for i in infos] == [4, 5]
    (where, kind, reason), = report.skipped
    assert (where, kind) == (str(shard), "truncated") and report.found == 3
    assert f"{detail} at byte {last}" in reason and "recovered 2 complete" in reason
    np.testing.assert_array_equal(reader.load(infos[1]).frames[:, 0, 0, 0], 10 * np.arange(5))
    records = iter_records(shard)
    assert [len(parse_example(next(records))["steps/reward"]) for _ in range(2)] == [4, 5]
    with pytest.raises(EpisodeError, match=f"{detail} at byte {last}"):
        next(records)


def test_a_shard_damaged_in_its_first_record_is_unreadable(tmp_path):
    (tmp_path / "junk.tfrecord").write_bytes(b"not a tfrecord at all")
    report = DataReport()
    assert make_reader("rlds", tmp_path).scan(report) == []
    assert report.skipped == [(str(tmp_path / "junk.tfrecord"), "unreadable", "corrupt record length at byte 0")]


def test_a_record_with_a_bad_payload_crc_is_skipped_alone(tmp_path):
    episodes = [_rlds_episode(length, False) for length in (4, 5, 6)]
    shard = write_tfrecord(tmp_path / "ds.tfrecord", episodes)
    middle = _record_starts(episodes)[1]
    data = bytearray(shard.read_bytes())
    data[middle + 16 + len(episodes[1]) - 1] ^= 0xFF  # the payload CRC of record 1
    shard.write_bytes(bytes(data))
    assert [i.length for i in make_reader("rlds", tmp_path).scan(DataReport())] == [4, 5, 6]  # CRCs unchecked
    report = DataReport()
    infos = make_reader("rlds", tmp_path, {"verify": True}).scan(report)
    assert [i.length for i in infos] == [4, 6]
    (where, kind, reason), = report.skipped
    assert where == f"{shard}#record1" and f"corrupt record payload at byte {middle}" in reason


def test_tar_shards_index_npz_and_video_samples(tmp_path, make_episode):
    shard = write_shard(tmp_path / "shard-000.tar", {"ep0": make_episode(9), "ep1": make_episode(10)})
    with tarfile.open(shard, "a") as archive:
        for name, data in (("vid.mp4", write_video(tmp_path / "v.mp4", _ramp(6)).read_bytes()),
                           ("vid.actions.npy", _npy(np.ones((6, 2), np.float32))), ("bad.npz", b"junk")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    assert detect_format(tmp_path) == "tar"
    reader, report = make_reader("tar", tmp_path), DataReport()
    infos = {i.episode_id: i for i in reader.scan(report)}
    assert {k: (v.length, v.action_dim) for k, v in infos.items()} == {
        "shard-000/ep0": (9, 2), "shard-000/ep1": (10, 2), "shard-000/vid": (6, 2)}
    assert report.counts["unreadable"] == 1
    np.testing.assert_array_equal(reader.load(infos["shard-000/ep1"]).frames, make_episode(10).frames)
    assert reader.load(infos["shard-000/vid"]).frames.shape == (6, 16, 16, 3)


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def test_every_option_a_reader_reads_is_accepted():
    """make_reader refuses unknown option keys (typos); a key some reader reads must never be refused."""
    import re
    from pathlib import Path

    from ivideogpt.data import sources

    read = {key for file in Path(sources.__file__).parent.glob("*.py")
            for key in re.findall(r"options\.get\(\"([a-z_]+)\"", file.read_text())}
    assert read and read <= set(sources.READER_OPTIONS), read - set(sources.READER_OPTIONS)


def test_a_folder_of_several_formats_says_which_files_are_not_read(tmp_path, make_episode, caplog):
    from ivideogpt.media import write_video

    for number in range(2):
        make_episode(6).save(tmp_path / f"ep{number}.npz")
    write_video(tmp_path / "clip.mp4", np.zeros((4, 16, 16, 3), np.uint8))
    assert detect_format(tmp_path) == "npz"
    assert "holds 2 npz file(s) and also 1 video: only the npz files are read" in caplog.text
