"""HDF5 rewards and success: robomimic files (after-action rewards, `dones` not success) and other files.

robomimic itself is not installed; its files are reproduced with h5py as
`robomimic/scripts/dataset_states_to_obs.py` writes them: `data` with attributes `total` and
`env_args` (JSON), one `data/demo_<i>` group per demonstration with attribute `num_samples` and
datasets `states`, `actions`, `rewards` (float64, `rewards[t]` computed after `actions[t]`),
`dones` (int64, from `done_mode`), groups `obs/` and `next_obs/` of camera images and
proprioception, and `mask/train`, `mask/valid` lists of demo names.

ALOHA / ACT episodes are written as `aloha_scripts/record_episodes.py` (and ACT's recording
scripts) write them with `COMPRESS = True`: root attributes `sim` and `compress`, one uint8
dataset `observations/images/<camera>` of shape (T, padded) per camera holding each frame's JPEG
bytes (`cv2.imencode`, quality 50) zero-padded to the longest frame of any camera, `compress_len`
(float32, (cameras, T)) with the true lengths in the recording's camera order (not sorted),
`observations/qpos`, `observations/qvel` and `action` (T, 14).
"""

from __future__ import annotations

import io
import json

import h5py
import numpy as np
import pytest
from PIL import Image

from ivideogpt.data.episode import EpisodeError
from ivideogpt.data.report import DataReport
from ivideogpt.data.sources import make_reader
from ivideogpt.data.sources.rlds import decode_image


def _frames(length: int) -> np.ndarray:
    values = (10 * np.arange(length))[:, None, None, None]
    return np.broadcast_to(values, (length, 8, 8, 3)).astype(np.uint8).copy()


def _write_robomimic(path, env: str, demos: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
    """demos: {name: (rewards, dones)}, one row per step."""
    with h5py.File(path, "w") as handle:
        data = handle.create_group("data")
        for name, (rewards, dones) in demos.items():
            length = len(rewards)
            demo = data.create_group(name)
            demo.attrs["num_samples"] = length
            demo.create_dataset("states", data=np.zeros((length, 32)))
            demo.create_dataset("actions", data=np.tile(np.linspace(-1, 1, 7), (length, 1)))
            demo.create_dataset("rewards", data=np.asarray(rewards, np.float64))
            demo.create_dataset("dones", data=np.asarray(dones, np.int64))
            frames = _frames(length + 1)
            for group, images in (("obs", frames[:-1]), ("next_obs", frames[1:])):
                demo.create_dataset(f"{group}/agentview_image", data=images)
                demo.create_dataset(f"{group}/robot0_eef_pos", data=np.zeros((length, 3)))
        data.attrs["total"] = sum(len(r) for r, _ in demos.values())
        data.attrs["env_args"] = json.dumps({"env_name": env, "type": 1, "env_kwargs": {"control_freq": 20}})
        names = np.array([n.encode() for n in demos], dtype="S")
        handle.create_dataset("mask/train", data=names[:-1])
        handle.create_dataset("mask/valid", data=names[-1:])


def _episodes(path, options=None) -> dict:
    reader, report = make_reader("hdf5", path, options), DataReport()
    infos = reader.scan(report)
    assert not report.skipped
    return {i.episode_id.rsplit("/", 1)[-1]: reader.load(i) for i in infos}


def test_robomimic_lift_rewards_arrive_one_step_later_and_dones_are_not_success(tmp_path):
    # Lift: sparse reward 1 from the step whose action lifts the cube; done_mode 2: done on success and at the end
    rewards = np.array([0, 0, 0, 0, 1, 1, 1], float)
    _write_robomimic(tmp_path / "lift.hdf5", "Lift", {"demo_0": (rewards, rewards.astype(int)),
                                                      "demo_1": (np.zeros(5), [0, 0, 0, 0, 1])})
    episodes = _episodes(tmp_path / "lift.hdf5")
    lift = episodes["demo_0"]
    np.testing.assert_array_equal(lift.rewards, [0, 0, 0, 0, 0, 1, 1])
    np.testing.assert_array_equal(lift.frames[:, 0, 0, 0], 10 * np.arange(7))
    assert lift.actions.shape == (7, 7) and lift.success is None
    assert episodes["demo_1"].success is None and not episodes["demo_1"].rewards.any()
    unshifted = _episodes(tmp_path / "lift.hdf5", {"alignment": "on_arrival"})["demo_0"]
    np.testing.assert_array_equal(unshifted.rewards, rewards)


def test_robomimic_stack_without_success_never_claims_it(tmp_path):
    # Stack, done_mode 1: dones mark only the end of each demonstration; no demonstration succeeds
    _write_robomimic(tmp_path / "stack.hdf5", "Stack", {f"demo_{k}": (np.zeros(6), [0] * 5 + [1]) for k in range(3)})
    for episode in _episodes(tmp_path / "stack.hdf5").values():
        assert episode.success is None and not episode.rewards.any()


def test_success_is_read_from_success_keys_only(tmp_path):
    with h5py.File(tmp_path / "plain.h5", "w") as handle:
        handle["frames"] = _frames(5)
        handle["rewards"] = np.arange(5, dtype=np.float32)
        handle["dones"] = np.array([0, 0, 0, 0, 1])
        handle["is_success"] = np.array([0, 0, 1, 1, 1])
    episode = _episodes(tmp_path / "plain.h5")["plain"]
    np.testing.assert_array_equal(episode.rewards, np.arange(5))  # not a robomimic file: on arrival
    np.testing.assert_array_equal(episode.success, [0, 0, 1, 1, 1])
    shifted = _episodes(tmp_path / "plain.h5", {"alignment": "after_action"})["plain"]
    np.testing.assert_array_equal(shifted.rewards, [0, 0, 1, 2, 3])
    np.testing.assert_array_equal(shifted.success, [0, 0, 0, 1, 1])
    with pytest.raises(ValueError, match="option alignment"):
        make_reader("hdf5", tmp_path, {"alignment": "next"})


def test_a_file_without_known_frame_keys_lists_its_datasets(tmp_path):
    with h5py.File(tmp_path / "act.hdf5", "w") as handle:
        handle["observations/cams/top"] = _frames(4)
        handle["action"] = np.zeros((4, 2), np.float32)
    report = DataReport()
    assert make_reader("hdf5", tmp_path).scan(report) == []
    (where, _, reason), = report.skipped
    assert "set options.image_key to one of its datasets: cams/top" in reason  # relative to observations/


ALOHA_CAMERAS = ("cam_high", "cam_low", "cam_left_wrist")  # the recording's order; h5py lists them sorted


def _aloha_frames(camera: str, length: int) -> np.ndarray:
    """Frames whose JPEGs differ in size per camera: noise (cam_high) > a pattern (wrist) > flat (cam_low)."""
    y, x = np.mgrid[0:24, 0:32]
    frames = []
    for t in range(length):
        if camera == "cam_high":
            frames.append(np.random.default_rng(t).integers(0, 256, (24, 32, 3)))
        elif camera == "cam_low":
            frames.append(np.full((24, 32, 3), 10 * t))
        else:
            frames.append(np.stack([(7 * x + 10 * t) % 256, (9 * y) % 256, (4 * (x + y)) % 256], -1))
    return np.asarray(frames, np.uint8)


def _jpeg(frame: np.ndarray) -> bytes:
    """JPEG bytes at quality 50, as `cv2.imencode` writes them for ALOHA (PIL stands in for OpenCV)."""
    buffer = io.BytesIO()
    Image.fromarray(frame).save(buffer, format="JPEG", quality=50)
    return buffer.getvalue()


def _write_aloha(path, length: int = 4) -> dict[str, list[bytes]]:
    """An ALOHA episode with COMPRESS = True; returns each camera's JPEG bytes."""
    encoded = {camera: [_jpeg(frame) for frame in _aloha_frames(camera, length)] for camera in ALOHA_CAMERAS}
    compress_len = np.array([[len(blob) for blob in encoded[camera]] for camera in ALOHA_CAMERAS])
    padded_size = compress_len.max()
    with h5py.File(path, "w") as root:
        root.attrs["sim"] = False
        root.attrs["compress"] = True
        image = root.create_group("observations").create_group("images")
        for camera in ALOHA_CAMERAS:
            rows = np.zeros((length, padded_size), np.uint8)
            for t, blob in enumerate(encoded[camera]):
                rows[t, :len(blob)] = np.frombuffer(blob, np.uint8)
            image.create_dataset(camera, data=rows, chunks=(1, padded_size))
        root.create_dataset("observations/qpos", data=np.zeros((length, 14)))
        root.create_dataset("observations/qvel", data=np.zeros((length, 14)))
        root.create_dataset("action", data=np.tile(np.linspace(-1, 1, 14), (length, 1)))
        root.create_dataset("compress_len", (len(ALOHA_CAMERAS), length), "f4")  # ALOHA's (h5py's default) dtype
        root["compress_len"][...] = compress_len
    return encoded


def test_aloha_compressed_cameras_are_decoded_frame_by_frame(tmp_path):
    encoded = _write_aloha(tmp_path / "episode_0.hdf5")
    with h5py.File(tmp_path / "episode_1.hdf5", "w") as root:  # the same tools with COMPRESS = False
        root.attrs["compress"] = False
        root["observations/images/cam_high"] = _aloha_frames("cam_high", 3)
        root["action"] = np.zeros((3, 14))
    default = _episodes(tmp_path)  # `observations/images`: its first camera by name, cam_high
    # cam_left_wrist is second by name, third in compress_len: read in name order, cam_low's lengths would cut it short
    wrist = _episodes(tmp_path / "episode_0.hdf5", {"image_key": "observations/images/cam_left_wrist"})
    for camera, episode in (("cam_high", default["episode_0"]), ("cam_left_wrist", wrist["episode_0"])):
        np.testing.assert_array_equal(episode.frames, np.stack([decode_image(b) for b in encoded[camera]]))
        recorded = _aloha_frames(camera, 4).mean(axis=(1, 2))  # JPEG at quality 50 keeps each frame's colour
        np.testing.assert_allclose(episode.frames.mean(axis=(1, 2)), recorded, atol=6)
        assert episode.actions.shape == (4, 14)
    np.testing.assert_array_equal(default["episode_1"].frames, _aloha_frames("cam_high", 3))


def test_an_undecodable_aloha_frame_names_the_file_camera_and_frame(tmp_path):
    _write_aloha(tmp_path / "episode_0.hdf5")
    with h5py.File(tmp_path / "episode_0.hdf5", "a") as root:
        frame = root["observations/images/cam_high"][2]
        frame[len(frame) // 3:] = 0  # cut inside the JPEG
        root["observations/images/cam_high"][2] = frame
    reader = make_reader("hdf5", tmp_path)
    (info,) = reader.scan(DataReport())
    with pytest.raises(EpisodeError, match=r"episode_0.hdf5:/observations/images/cam_high frame 2: cannot decode"):
        reader.load(info)


def test_2d_uint8_frames_that_are_not_jpeg_rows_are_refused_when_indexed(tmp_path):
    _write_aloha(tmp_path / "episode_0.hdf5")
    with h5py.File(tmp_path / "episode_1.hdf5", "w") as root:  # frames flattened to pixel rows: not images
        root["frames"] = _frames(5).reshape(5, -1)
        root["actions"] = np.zeros((5, 2))
    report = DataReport()
    assert [info.episode_id for info in make_reader("hdf5", tmp_path).scan(report)] == ["episode_0"]
    (where, kind, reason), = report.skipped
    assert where.endswith("episode_1.hdf5:/") and kind == "inconsistent"
    assert "frames: bad shape (5, 192) (2-D rows must be zero-padded JPEG/PNG bytes" in reason
